import CamclassTestSupport
import Publishing
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Foundation
import Inference
import Pipeline
import Testing

/// Table arithmetic, rendering and model discovery (no engine).
@Suite struct ModelTableTests {
    func row(_ raw: Double, _ daemon: Double) -> ModelTableRow {
        var r = ModelTableRow(model: "efficientnet_b2", family: "EfficientNet", sidecar: "m/efficientnet_b2.model.yaml",
                              input: "224x224", paramsM: 9.11)
        r.rawFPS = raw
        r.daemonFPS = daemon
        r.latencyP50Ms = 3.456
        r.latencyP99Ms = 5.0
        r.fpsInFlight = [120, 250, 248.6, 251]
        r.stageMs = ["capture": 0.05, "convert": 0.1, "infer": 6.0, "postprocess": 0.01, "publish": 0.02]
        return r
    }

    @Test func ratioAndRates() {
        #expect(ModelTable.ratio(97, 100) == 0.97)
        #expect(ModelTable.ratio(5, 0) == 0)
        #expect(ModelTable.ratio(.nan, 10) == 0)
        #expect(ModelTable.fps(count: 300, elapsedNs: 2_000_000_000) == 150)
        #expect(ModelTable.fps(count: 3, elapsedNs: 0) == 0)
        #expect(row(200, 196).ratio == 0.98)
    }

    @Test func bestOfTheInFlightCurve() {
        #expect(ModelTable.best([120, 250, 248.6, 251]) == (251, 4))
        #expect(ModelTable.best([300, 250]) == (300, 1))
        #expect(ModelTable.best([]) == (0, 0))
        #expect(row(1, 1).bestFPS.inFlight == 4)
    }

    @Test func paramsAndStageSum() throws {
        #expect(ModelTable.millions(9_110_000) == 9.11)
        #expect(ModelTable.millions(nil) == nil)
        let dev = try #require(ModelTable.paramsDeviation(4.0, seed: 3.6))
        #expect(abs(dev - 0.1111) < 0.001)
        #expect(ModelTable.paramsDeviation(4.0, seed: nil) == nil)
        #expect(abs(row(1, 1).stageSumMs - 6.18) < 1e-9)
    }

    @Test func stageSnapshotMeans() throws {
        let times = StageTimes()
        let before = times.snapshot()
        #expect(before.meanMs(.infer) == nil)
        times.add(.infer, 2_000_000)
        times.add(.infer, 4_000_000)
        times.add(.publish, 500_000)
        let after = times.snapshot()
        #expect(after.meanMs(.infer, since: before) == 3.0)
        #expect(after.meanMs(.publish, since: before) == 0.5)
        #expect(after.meanMs(.capture, since: before) == nil)
        times.add(.infer, 9_000_000)
        #expect(times.snapshot().meanMs(.infer, since: after) == 9.0)
        #expect(PipelineStage.allCases.map(\.name) == ModelTable.stageOrder)
    }

    @Test func markdownRowHasEveryColumnAndFlagsMissedTarget() {
        let good = ModelTable.markdownRow(row(200, 199))
        #expect(good.filter { $0 == "|" }.count == 10)
        #expect(good.contains("| efficientnet_b2 | 9.11 |"))
        #expect(good.contains("3.46 / 5.00"))
        #expect(good.contains("120 / 250 / 249 / 251"))
        #expect(good.contains("0.995 |"))
        #expect(!good.contains("⚠"))
        #expect(ModelTable.markdownRow(row(200, 150)).contains("0.750 ⚠"))
        var failed = row(0, 0)
        failed.error = "bad | model"
        let f = ModelTable.markdownRow(failed)
        #expect(f.contains("failed: bad / model") && f.filter { $0 == "|" }.count == 10)
        let table = ModelTable.markdown([row(200, 199)], notes: ["note"])
        let lines = table.split(separator: "\n")
        #expect(lines[0] == Substring(ModelTable.markdownHeader))
        #expect(lines[1].filter { $0 == "|" }.count == 10)
        #expect(lines.last == "- note")
    }

    static let catalogueYAML = """
        url_pattern: https://example.invalid/{bin}
        board: RDK X5
        models:
          - name: EfficientNet_B2
            family: EfficientNet
            timm: efficientnet_b2
            bin: EfficientNet_B2_224x224_nv12.bin
            input: {width: 224, height: 224}
            params_m: 9.07
            rdk_x5: {latency_ms: 3.31, latency_4t_ms: 10.51, fps_4t: 376.77}
          - name: FastViT_T8
            family: FastViT
            timm: fastvit_t8
            bin: FastViT_T8_224x224_nv12.bin
            input: {width: 224, height: 224}
            params_m: 3.6
        """

    @Test func catalogueColumnsAndOrder() throws {
        let cat = try ModelCatalogue.parse(yaml: Self.catalogueYAML, file: "test.yaml")
        var r = row(1, 1)
        ModelTable.applyCatalogue(cat, to: &r)
        #expect(r.seedParamsM == 9.07 && r.expectedLatencyMs == 3.31 && r.expectedFPS4t == 376.77 && r.expectedBoard == "RDK X5")
        #expect(ModelTable.markdownRow(r).contains("9.11 (9.07)"))
        #expect(ModelTable.markdownRow(r).contains("3.31 ms, 376.8 FPS"))
        var unknown = ModelTableRow(model: "tiny_classifier", family: nil, sidecar: "x", input: "32x32", paramsM: 0.02)
        ModelTable.applyCatalogue(cat, to: &unknown)
        #expect(unknown.expectedLatencyMs == nil && unknown.seedParamsM == nil)
        ModelTable.applyCatalogue(nil, to: &unknown)

        let dir = TestEnv.tempDir("table")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["a_model", "efficientnet_b2", "fastvit_t8"] {
            FileManager.default.createFile(atPath: "\(dir)/\(name).model.yaml", contents: Data())
        }
        FileManager.default.createFile(atPath: "\(dir)/notes.txt", contents: Data())
        let order = try ModelTable.sidecars(in: dir, catalogue: cat).map { ($0 as NSString).lastPathComponent }
        #expect(order == ["efficientnet_b2.model.yaml", "fastvit_t8.model.yaml", "a_model.model.yaml"])
        let plain = try ModelTable.sidecars(in: dir, catalogue: nil).map { ($0 as NSString).lastPathComponent }
        #expect(plain == ["a_model.model.yaml", "efficientnet_b2.model.yaml", "fastvit_t8.model.yaml"])
        let empty = TestEnv.tempDir("empty")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: BenchError.self) { try ModelTable.sidecars(in: empty, catalogue: nil) }
    }

    @Test func jsonCarriesDerivedFigures() throws {
        let data = try ModelTable.json([row(200, 196)], meta: ["cores": "2"])
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(obj["rows"] as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(rows[0]["ratio"] as? Double == 0.98)
        #expect(rows[0]["bestFPS"] as? Double == 251)
        #expect(rows[0]["bestInFlight"] as? Int == 4)
        #expect((rows[0]["fpsInFlight"] as? [Double])?.count == 4)
        #expect((obj["meta"] as? [String: String])?["cores"] == "2")
    }
}
