import CamclassTestSupport
import CamclassTools
import Foundation
import Glibc
import Testing

/// A nearly idle daemon does not wake up (issue 12): at 1 FPS its threads block on events — the
/// next frame's time, a condition, a descriptor — so the whole process switches context a few
/// times per frame and not hundreds of times per second (sleep-polling loops measured ~400/s).
/// A regression guard with a generous bound, not the benchmark (`camclass bench-cpu` prints the
/// figures). Needs the built camclassd binary (CAMCLASS_TEST_CAMCLASSD, which `make test` builds)
/// and the stand-in libdnn.so (CAMCLASS_TEST_STANDIN_DNN, `make standin`): with the BPU stand-in,
/// inference adds no thread pool of its own to the count.
@Suite(.serialized) struct IdleWakeupTests {
    @Test func aDaemonAtOneFramePerSecondStaysAsleepBetweenFrames() async throws {
        let dir = TestEnv.tempDir("idle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let standin = try TestEnv.require("CAMCLASS_TEST_STANDIN_DNN", "run the suite with `make test` (it builds Tests/StandIns/libdnn.so)")
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 1, extra: """
            inference: {backend: bpu, bpu_library: \(standin)}
            """)
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--model", TestEnv.repoRoot + "/Tests/StandIns/bench_b2.model"],
                                       dir: dir)
        let log = dir + "/log/classifications.log"
        let classified = await eventually(60) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\"classification\"") }
        try #require(classified, "no classification within 60 s; stderr:\n\(daemon.stderr)")
        // Past start-up (model load, first frame, READY), then a window of several frames.
        try await Task.sleep(for: .seconds(1.5))
        let before = try #require(ProcessSample.read(pid: daemon.pid), "the daemon exited: \(daemon.stderr)")
        let linesBefore = lineCount(log)
        try await Task.sleep(for: .seconds(5))
        let after = try #require(ProcessSample.read(pid: daemon.pid), "the daemon exited: \(daemon.stderr)")
        let frames = lineCount(log) - linesBefore
        let delta = after.since(before)
        let perThread = delta.threads.filter { $0.switches > 0 }
            .map { "\($0.name)×\($0.count): \(String(format: "%.1f", Double($0.switches) / delta.seconds))/s" }
        #expect(frames >= 3, "the daemon kept classifying at 1 FPS: \(frames) records in \(delta.seconds) s")
        #expect(delta.switchesPerSecond < 60,
                "\(String(format: "%.1f", delta.switchesPerSecond)) context switches/s at 1 FPS (per thread: \(perThread.joined(separator: ", ")))")
        daemon.signal(SIGTERM)
        let status = await daemon.waitExit(timeout: 20)
        #expect(status == 0, "exit \(String(describing: status)); stderr:\n\(daemon.stderr)")
    }

    private func lineCount(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").reduce(0) { $0 + ($1 == "\n" ? 1 : 0) }
    }
}
