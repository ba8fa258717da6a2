import CamclassTestSupport
import Publishing
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Foundation
import Inference
import Logging
import Testing

extension TestEnv {
    static func modelsDir(_ sidecars: [String]) throws -> String {
        let dir = tempDir("models")
        let fm = FileManager.default
        for sidecar in sidecars {
            let model = try ModelDescriptor.load(path: sidecar)
            for file in [sidecar, model.modelPath] + (model.labelsPath.map { [$0] } ?? []) {
                let dst = dir + "/" + (file as NSString).lastPathComponent
                if !fm.fileExists(atPath: dst) { try fm.createSymbolicLink(atPath: dst, withDestinationPath: file) }
            }
        }
        return dir
    }

    /// (exit status, stdout, stderr) of `binary` run from the repository root.
    static func run(_ binary: String, _ args: [String], env: [String: String] = [:]) throws -> (Int32, String, String) {
        let r = try runCommand(binary, args, env: env)
        return (r.status, r.stdout, r.stderr)
    }
}

/// `camclass bench` on the tiny test model and the default model with real OpenVINO: a few short
/// runs, checking the row's shape and sanity (finite, positive), not speed.
@Suite(.serialized) struct ModelTableIntegrationTests {
    static func shortOptions() -> ModelBenchmark.Options {
        var o = ModelBenchmark.Options()
        o.maxInFlight = 2
        o.latencySeconds = 0.2
        o.curveSeconds = 0.2
        o.pipeline.rounds = 1
        o.pipeline.secondsPerRun = 0.4
        o.pipeline.samplesDir = ProcessInfo.processInfo.environment["CAMCLASS_TEST_SAMPLES"]
        return o
    }

    static func checkSane(_ r: ModelTableRow) {
        #expect(r.error == nil, "\(r.model): \(r.error ?? "")")
        for (name, v) in [("latency p50", r.latencyP50Ms), ("latency p99", r.latencyP99Ms), ("raw FPS", r.rawFPS),
                          ("daemon FPS", r.daemonFPS), ("ratio", r.ratio), ("daemon latency", r.daemonLatencyP50Ms)] {
            #expect(v.isFinite && v > 0, "\(r.model): \(name) = \(v)")
        }
        #expect(r.latencyP99Ms >= r.latencyP50Ms)
        #expect(r.fpsInFlight.count == 2 && r.fpsInFlight.allSatisfy { $0.isFinite && $0 > 0 }, "\(r.fpsInFlight)")
        for stage in ModelTable.stageOrder {
            let v = r.stageMs[stage]
            #expect(v != nil && v!.isFinite && v! >= 0, "\(r.model): stage \(stage) = \(String(describing: v))")
        }
        #expect((r.stageMs["infer"] ?? 0) > 0)
        #expect(r.workers >= 1 && r.precision != "" && r.engine.contains("OpenVINO"))
    }

    @Test func benchRowsForTinyAndDefaultModel() throws {
        _ = try TestEnv.openVINO()
        _ = try TestEnv.samples()
        let tiny = try TestEnv.tinyModel(), lite0 = try TestEnv.model()
        let bench = ModelBenchmark(config: DaemonConfig(), options: Self.shortOptions(), logger: Logger(label: "test"))
        let cat = try ModelCatalogue.load(path: TestEnv.repoRoot + "/config/models.yaml")
        for sidecar in [tiny, lite0] {
            let row = bench.row(sidecar: sidecar, catalogue: cat) { _ in }
            Self.checkSane(row)
            #expect(row.paramsM != nil)
        }
        // A model that cannot load gives a row with the reason, not a crash.
        let broken = bench.row(sidecar: "/nonexistent/x.model.yaml", catalogue: cat) { _ in }
        #expect(broken.error?.contains("not found") == true && broken.model == "x")
    }

    @Test func benchAllCommandWritesMarkdownAndJSON() throws {
        _ = try TestEnv.openVINO()
        let camclass = try TestBinary.camclass()
        let samples = try TestEnv.samples()
        let dir = try TestEnv.modelsDir([try TestEnv.tinyModel(), try TestEnv.model()])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = dir + "/table.json", md = dir + "/table.md"
        let (status, out, err) = try TestEnv.run(camclass, [
            "bench", "--all", "--models-dir", dir, "--samples", samples, "--in-flight", "2", "--rounds", "1", "--seconds", "0.3",
            "--latency-seconds", "0.2", "--curve-seconds", "0.2", "--json", json, "--markdown", md])
        #expect(status == 0, "camclass bench --all failed: \(err)\n\(out)")
        let data = try #require(FileManager.default.contents(atPath: json))
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(obj["rows"] as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["model"] as? String }) == ["tiny_classifier", "efficientnet_lite0"])
        for row in rows {
            for key in ["latencyP50Ms", "latencyP99Ms", "rawFPS", "daemonFPS", "ratio", "bestFPS"] {
                let v = row[key] as? Double
                #expect(v != nil && v!.isFinite && v! > 0, "\(row["model"] ?? "?"): \(key) = \(String(describing: row[key]))")
            }
            #expect((row["fpsInFlight"] as? [Double])?.count == 2)
            #expect((row["stageMs"] as? [String: Double]).map { Set($0.keys) } == Set(ModelTable.stageOrder))
        }
        let table = try String(contentsOfFile: md, encoding: .utf8)
        let tableRows = table.split(separator: "\n").filter { $0.hasPrefix("| ") }
        #expect(tableRows.count == 3)  // header + 2 models
        #expect(tableRows.allSatisfy { $0.filter { $0 == "|" }.count == 10 })
        #expect(out.contains(ModelTable.markdownHeader))
    }
}
