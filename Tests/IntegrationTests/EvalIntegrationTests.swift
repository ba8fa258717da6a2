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

/// `camclass eval` through the real daemon path on real photos (the samples), with the tiny test
/// model and the default model, and the float reference through the venv's onnxruntime.
@Suite(.serialized) struct EvalIntegrationTests {
    /// samples/chelsea.jpg in a class-id folder (281 tabby), samples/coffee.jpg in a WordNet-id
    /// folder (n07920052 espresso), plus a corrupt JPEG that must be reported, not fatal.
    static func labelledFolder() throws -> String {
        let samples = try TestEnv.samples()
        let dir = TestEnv.tempDir("eval")
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/281", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/n07920052", withIntermediateDirectories: true)
        try fm.copyItem(atPath: samples + "/chelsea.jpg", toPath: dir + "/281/chelsea.jpg")
        try fm.copyItem(atPath: samples + "/coffee.jpg", toPath: dir + "/n07920052/coffee.jpg")
        return dir
    }

    static func images(_ dir: String) throws -> [LabelledImage] {
        let ids = try EvalDataset.loadWnids(path: TestEnv.repoRoot + "/config/imagenet1k-wnids.txt")
        return try EvalDataset.folder(dir, wnids: ids, classes: 1000).images
    }

    @Test func evalRunsTheDaemonPathOnTinyAndDefaultModel() throws {
        _ = try TestEnv.openVINO()
        let dir = try Self.labelledFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A damaged JPEG is counted as failed; the others are still classified.
        let good = try #require(FileManager.default.contents(atPath: dir + "/281/chelsea.jpg"))
        FileManager.default.createFile(atPath: dir + "/281/broken.jpg", contents: good.prefix(600))
        let images = try Self.images(dir)
        #expect(images.map(\.label).sorted() == [281, 281, 967])
        for model in [try TestEnv.tinyModel(), try TestEnv.model()] {
            var config = DaemonConfig()
            config.model.path = model
            var calls = 0
            let run = try EvalRunner(config: config, logger: Logger(label: "test")).run(images: images) { done, total in
                calls += 1
                #expect(done <= total && total == 3)
            }
            #expect(calls >= 1)
            #expect(run.results.map(\.path) == images.map(\.path))
            let m = EvalMetrics(run.results)
            #expect(m.images == 3 && m.evaluated == 2 && m.failed == 1, "\(run.results)")
            #expect(run.results.first { $0.path.hasSuffix("broken.jpg") }?.error != nil)
            for r in run.results where r.error == nil {
                #expect(r.top.count == 5 && r.scores.count == 5)
                #expect(r.scores.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 })
                #expect(zip(r.scores, r.scores.dropFirst()).allSatisfy { $0 >= $1 })
            }
            #expect((0...1).contains(m.top1) && (0...1).contains(m.top5))
            if model == (try TestEnv.model()) {
                // Lite0 has real weights: the espresso is espresso, and the cat is in the top 5.
                #expect(m.top5 == 1.0, "\(run.results)")
                #expect(run.results.first { $0.label == 967 }?.top.first == 967)
            }
        }
    }

    @Test func floatReferenceAgreement() throws {
        _ = try TestEnv.openVINO()
        let venv = try TestEnv.venv()
        let dir = try Self.labelledFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let images = try Self.images(dir)
        let model = try TestEnv.model()
        var config = DaemonConfig()
        config.model.path = model
        var results = try EvalRunner(config: config, logger: Logger(label: "test")).run(images: images) { _, _ in }.results
        let ref = FloatReference(python: venv + "/bin/python3", script: TestEnv.repoRoot + "/tools/evaltool.py")
        let out = try ref.run(sidecar: model, paths: images.map(\.path))
        #expect(out.engine.contains("onnxruntime"))
        for i in results.indices { results[i].referenceTop = out.top[results[i].path] }
        let m = EvalMetrics(results)
        #expect(m.referenceEvaluated == 2)
        let agreement = try #require(m.agreement)
        #expect((0...1).contains(agreement))
        #expect(m.referenceTop5 == 1.0)
        // A missing script is an error that says what to do.
        do {
            _ = try FloatReference(python: venv + "/bin/python3", script: "/nonexistent/evaltool.py").run(sidecar: model, paths: [])
            Issue.record("a missing reference script must throw")
        } catch let e as EvalError {
            #expect(e.description.contains("--reference-script"))
        }
    }

    @Test func evalCommandJSONWithReferenceOnTinyModel() throws {
        _ = try TestEnv.openVINO()
        let camclass = try TestBinary.camclass()
        let venv = try TestEnv.venv()
        let dir = try Self.labelledFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let csv = dir + "/labels.csv"
        try "path,label\n281/chelsea.jpg,281\nn07920052/coffee.jpg,n07920052\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let (status, out, err) = try TestEnv.run(camclass, [
            "eval", "--csv", csv, "--model", try TestEnv.tinyModel(), "--json", "--reference", "--python", venv + "/bin/python3"])
        #expect(status == 0, "camclass eval failed: \(err)")
        // Piped: no progress bar on stderr.
        #expect(!err.contains("["), "\(err)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "not JSON: \(out)")
        let metrics = try #require(obj["metrics"] as? [String: Any])
        #expect(metrics["images"] as? Int == 2 && metrics["evaluated"] as? Int == 2)
        let agreement = try #require(metrics["agreement"] as? Double)
        #expect((0...1).contains(agreement))
        let results = try #require(obj["results"] as? [[String: Any]])
        #expect(results.allSatisfy { ($0["top"] as? [Int])?.count == 5 && ($0["referenceTop"] as? [Int])?.count == 5 })

        // The human summary, from a folder.
        let (s2, text, e2) = try TestEnv.run(camclass, ["eval", dir, "--model", try TestEnv.model()])
        #expect(s2 == 0, "\(e2)")
        #expect(text.contains("camclassd NV12 path") && text.contains("2 images, 2 classified, 0 failed"), "\(text)")
        // Neither a folder nor a CSV: a usage error.
        let (s3, _, e3) = try TestEnv.run(camclass, ["eval", dir + "/missing", "--model", try TestEnv.tinyModel()])
        #expect(s3 != 0 && e3.contains("not a directory"), "\(e3)")
    }
}
