@testable import CamclassDaemon
import CamclassTestSupport
import Foundation
import Glibc
import Testing

/// SIGHUP on the real daemon with a subscriber connected: a threshold change, a refused broken
/// config and a model (engine) reload, all without the subscriber noticing more than a frame's gap.
@Suite(.serialized) struct ReloadTests {
    @Test func reloadKeepsSubscribersAndRefusesBrokenConfig() async throws {
        let dir = TestEnv.tempDir("reload")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yaml"
        let fps = 20
        try writeDaemonConfig(config, dir: dir, fps: fps, topK: 5)
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        let daemon = try DaemonProcess(arguments: ["--config", config], environment: [
            "NOTIFY_SOCKET": listener.name, "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
        ], dir: dir)
        let socketPath = dir + "/camclassd.sock"
        #expect(await eventually(60) { listener.messages.contains { $0.fields["READY"] == "1" } }, "stderr:\n\(daemon.stderr)")
        let reader = try RecordReader(socketPath: socketPath)
        func tops(_ l: RecordReader.Line) -> Int { (l.object["top"] as? [Any])?.count ?? -1 }
        #expect(await eventually(10) { reader.classifications().filter { tops($0) == 5 }.count >= 10 })

        // 1. A threshold: top_k 5 → 2. The pipeline is rebuilt on the loaded engine.
        try writeDaemonConfig(config, dir: dir, fps: fps, topK: 2)
        let hup1 = Date()
        daemon.signal(SIGHUP)
        #expect(await eventually(10) { reader.classifications().filter { $0.time > hup1 && tops($0) == 2 }.count >= 10 },
                "top_k 2 did not take effect; stderr:\n\(daemon.stderr)")
        let reload1 = try #require(reader.lines.first { $0.type == "reload" })
        #expect((reload1.object["changed"] as? [String]) == ["model.top_k"])
        // Every record after the reload record has the new setting; none before it does.
        let lines = reader.lines
        let r1 = try #require(lines.firstIndex { $0.type == "reload" })
        #expect(lines[..<r1].filter { $0.type == "classification" }.allSatisfy { tops($0) == 5 })
        #expect(lines[(r1 + 1)...].filter { $0.type == "classification" }.allSatisfy { tops($0) == 2 })
        let m1 = listener.messages.filter { $0.time >= hup1 }
        let reloading = m1.firstIndex { $0.fields["RELOADING"] == "1" && $0.fields["MONOTONIC_USEC"] != nil }
        let readyAgain = m1.firstIndex { $0.fields["READY"] == "1" }
        #expect(reloading != nil && readyAgain != nil && reloading! < readyAgain!, "RELOADING=1 then READY=1: \(m1.map(\.text))")

        // 2. A broken config is refused; the running one (top_k 2) carries on, the subscriber too.
        try writeDaemonConfig(config, dir: dir, fps: fps, topK: 2, extra: "inference: {precision: f64}")
        let hup2 = Date()
        daemon.signal(SIGHUP)
        #expect(await eventually(10) { daemon.stderr.contains("configuration reload refused") })
        #expect(daemon.stderr.contains("inference.precision"), "the error names the key: \(daemon.stderr)")
        #expect(await eventually(10) { reader.classifications().filter { $0.time > hup2 && tops($0) == 2 }.count >= 10 })
        #expect(listener.messages.contains { $0.time >= hup2 && $0.fields["READY"] == "1" && ($0.fields["STATUS"] ?? "").contains("refused") })
        #expect(reader.lines.filter { $0.type == "reload" }.count == 1, "a refused reload swaps nothing")

        // 2b. (Issue 11, F4) A value that trapped the running daemon on SIGHUP: refused, it lives on.
        try writeDaemonConfig(config, dir: dir, fps: fps, topK: 2, extra: "stable: {min_dwell_ms: 9223372036854775807}")
        let hup2b = Date()
        daemon.signal(SIGHUP)
        #expect(await eventually(10) { daemon.stderr.components(separatedBy: "configuration reload refused").count == 3 })
        #expect(daemon.stderr.contains("stable.min_dwell_ms"), "the error names the key: \(daemon.stderr)")
        #expect(await eventually(10) { reader.classifications().filter { $0.time > hup2b && tops($0) == 2 }.count >= 10 })
        #expect(daemon.process.isRunning)

        // 3. An engine reload (precision f32): loaded beside the running pipeline, then swapped.
        try writeDaemonConfig(config, dir: dir, fps: fps, topK: 2, extra: "inference: {precision: f32}")
        let hup3 = Date()
        daemon.signal(SIGHUP)
        #expect(await eventually(30) { reader.lines.filter { $0.type == "reload" }.count == 2 }, "stderr:\n\(daemon.stderr)")
        #expect(await eventually(10) { reader.classifications().filter { $0.time > hup3 }.count >= 40 })
        let reload2 = try #require(reader.lines.last { $0.type == "reload" })
        // (Issue 11, F12) `seq` grows for the daemon's life: it does not restart at 0 on reload.
        let seqs = reader.classifications().compactMap { $0.object["seq"] as? Int }
        #expect(seqs.count > 60 && zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "seqs across two reloads: \(seqs)")
        #expect((reload2.object["changed"] as? [String]) == ["inference.precision"])
        #expect((reload2.object["engine"] as? String)?.contains("precision f32") == true)
        // Logged once the new engine's first record is out (the reload record precedes it).
        func engineReloadLine() -> Substring? {
            daemon.stderr.split(separator: "\n").last { $0.contains("configuration reloaded") && $0.contains("reload.engine=reloaded") }
        }
        #expect(await eventually(10) { engineReloadLine() != nil })
        let logLine = try #require(engineReloadLine(), "stderr:\n\(daemon.stderr)")
        let loadMs = try #require(Self.metric(String(logLine), "reload.model_load_ms"))
        let reportedGap = try #require(Self.metric(String(logLine), "reload.gap_ms"))
        // The subscriber's own view, from the records themselves (capture times, CLOCK_MONOTONIC, so
        // this machine's scheduling noise on the reading side does not count): the last frame of the
        // old engine and the first of the new one, on either side of the reload record.
        let all = reader.lines
        let r2 = try #require(all.lastIndex { $0.type == "reload" })
        let before = try #require(all[..<r2].last { $0.type == "classification" })
        let after = try #require(all[(r2 + 1)...].first { $0.type == "classification" })
        let captureGapMs = Double((after.object["capture_ns"] as? Int ?? 0) - (before.object["capture_ns"] as? Int ?? 0)) / 1e6
        let period = 1000.0 / Double(fps)
        // While the new model loaded, the old pipeline kept publishing.
        let duringLoad = all[..<r2].filter { $0.type == "classification" && $0.time > hup3 }.count
        #expect(duringLoad >= 2 || loadMs < 2 * period, "only \(duringLoad) records while the model loaded for \(loadMs) ms")
        print("reload with a model load: model_load_ms=\(loadMs), daemon gap_ms=\(reportedGap), capture gap across the swap \(Int(captureGapMs)) ms, frame period \(Int(period)) ms")
        #expect(captureGapMs < max(loadMs, 2 * period) + 250, "a \(captureGapMs) ms gap in the stream; the model load took \(loadMs) ms")
        #expect(reportedGap < max(loadMs, 2 * period) + 250)

        // Still the same connection throughout; the shutdown record, then EOF.
        #expect(!reader.atEOF)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: 15) == 0, "stderr:\n\(daemon.stderr)")
        #expect(await eventually(5) { reader.atEOF })
        #expect(reader.lines.last?.type == "shutdown", "last line: \(String(describing: reader.lines.last?.object))")
    }

    static func metric(_ line: String, _ key: String) -> Double? {
        guard let r = line.range(of: key + "=") else { return nil }
        return Double(line[r.upperBound...].prefix { $0 == "." || $0.isNumber })
    }
}

/// Which settings a reload applies how, in process.
@Suite struct ReloadPlanTests {
    @Test func categorisesChanges() throws {
        let base = "model:\n  top_k: 5\nstable:\n  enter: 0.5\n"
        let old = try DaemonConfig.parse(yaml: base, file: "c.yaml")
        func plan(_ yaml: String) throws -> ReloadPlan { ReloadPlan(old: old, new: try DaemonConfig.parse(yaml: yaml, file: "c.yaml")) }

        var p = try plan("model:\n  top_k: 3\nstable:\n  enter: 0.5\n")
        #expect(p.pipelineChanged && !p.engineChanged && !p.sourcesChanged && p.changed == ["model.top_k"])

        p = try plan(base + "inference:\n  precision: f32\n")
        #expect(p.engineChanged && !p.pipelineChanged && !p.sourcesChanged && p.changed == ["inference.precision"])

        p = try plan(base + "source:\n  fps: 5\n")
        #expect(p.sourcesChanged && !p.engineChanged && p.changed == ["source auto changed"])

        // Socket and log settings need a restart: kept, reported, nothing else changes.
        p = try plan(base + "publish:\n  socket: /tmp/elsewhere.sock\nlog:\n  keep: 9\n")
        #expect(p.needRestart == ["publish.socket", "log.keep"])
        #expect(p.effective.publish.path == old.publish.path && p.effective.log.keep == old.log.keep)
        #expect(!p.sourcesChanged && !p.engineChanged && !p.pipelineChanged && p.changed.isEmpty)

        // Stable-label thresholds rebuild the pipeline, not the camera.
        p = try plan("model:\n  top_k: 5\nstable:\n  enter: 0.7\n  min_dwell_ms: 900\n")
        #expect(p.pipelineChanged && !p.sourcesChanged && p.changed == ["stable.enter", "stable.min_dwell_ms"])

        p = try plan(base + "daemon:\n  log_level: debug\n")
        #expect(p.changed == ["daemon.log_level"] && !p.sourcesChanged && !p.pipelineChanged)

        // A value written differently but meaning the same is no change (sections compare values).
        p = try plan("model:\n  top_k: 5\nstable:\n  enter: 0.50\n")
        #expect(p.changed.isEmpty && !p.pipelineChanged)
    }
}

/// SIGHUP that adds one source and removes another on the real daemon, with a subscriber
/// listening: only those two open and close; the untouched source goes on without a gap.
@Suite(.serialized) struct SourceReloadTests {
    func write(_ path: String, dir: String, sources: [(name: String, fps: Int)]) throws {
        let entries = sources.map { "  - name: \($0.name)\n    path: \(try! TestEnv.samples())\n    fps: \($0.fps)" }.joined(separator: "\n")
        let yaml = """
        sources:
        \(entries)
        model:
          path: \(try TestEnv.tinyModel())
        publish:
          socket: \(dir)/camclassd.sock
        log:
          path: \(dir)/log/classifications.log
        """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test func addingAndRemovingSourcesLeavesTheOtherPublishing() async throws {
        let dir = TestEnv.tempDir("reload-sources")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yaml"
        try write(config, dir: dir, sources: [("kept", 20), ("gone", 10)])
        let daemon = try DaemonProcess(arguments: ["--config", config], environment: [
            "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
        ], dir: dir)
        let socketPath = dir + "/camclassd.sock"
        #expect(await eventually(60) { FileManager.default.fileExists(atPath: socketPath) }, "stderr:\n\(daemon.stderr)")
        let reader = try RecordReader(socketPath: socketPath)
        func of(_ name: String) -> [RecordReader.Line] { reader.classifications().filter { $0.object["source"] as? String == name } }
        #expect(await eventually(30) { of("kept").count >= 20 && of("gone").count >= 10 }, "stderr:\n\(daemon.stderr)")

        try write(config, dir: dir, sources: [("kept", 20), ("new", 10)])
        let hup = Date()
        daemon.signal(SIGHUP)
        #expect(await eventually(30) { reader.lines.contains { $0.type == "reload" } && of("new").count >= 10 }, "stderr:\n\(daemon.stderr)")
        try await Task.sleep(for: .seconds(1))
        let reload = try #require(reader.lines.first { $0.type == "reload" })
        let changed = reload.object["changed"] as? [String] ?? []
        #expect(changed.contains("source new added") && changed.contains("source gone removed"), "\(changed)")
        #expect(daemon.stderr.contains("reload: sources changed in place"), "applied in place, the engine kept")
        // The removed source publishes nothing after the reload record.
        #expect(!of("gone").contains { $0.time > reload.time.addingTimeInterval(0.5) })
        // The untouched source: every frame, in order, and no pause around the reload.
        let kept = of("kept")
        let seqs = kept.compactMap { $0.object["seq"] as? Int }
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "kept's seq has a gap: \(seqs)")
        let around = kept.filter { $0.time > hup.addingTimeInterval(-1) }.map(\.time)
        let longest = zip(around, around.dropFirst()).map { $1.timeIntervalSince($0) }.max() ?? 0
        // 2 frame intervals at 20 FPS, plus the subscriber's own scheduling on a busy machine.
        #expect(longest <= 0.2, "kept's longest gap around the reload: \(Int(longest * 1000)) ms")
        print("source reload: kept's longest gap around the reload \(Int(longest * 1000)) ms, \(kept.count) records in order")
        daemon.signal(SIGTERM)
        #expect(await eventually(20) { !daemon.process.isRunning })
    }
}
