import CamclassTestSupport
import Publishing
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Foundation
import Inference
import Testing

/// Label parsing, folder and CSV formats, metrics and the report (no engine).
@Suite struct EvalTests {
    static let wnids = EvalDataset.parseWnids("n01440764\nn01443537\n\nn01484850\n")

    @Test func labelsAreClassIdsOrWordNetIds() {
        #expect(Self.wnids == ["n01440764": 0, "n01443537": 1, "n01484850": 3])
        #expect(EvalDataset.parseLabel("281", wnids: [:], classes: 1000) == 281)
        #expect(EvalDataset.parseLabel("0042", wnids: [:], classes: 1000) == 42)
        #expect(EvalDataset.parseLabel(" 7 ", wnids: [:], classes: 1000) == 7)
        #expect(EvalDataset.parseLabel("n01443537", wnids: Self.wnids, classes: 1000) == 1)
        #expect(EvalDataset.parseLabel("1000", wnids: [:], classes: 1000) == nil)
        #expect(EvalDataset.parseLabel("-1", wnids: [:], classes: 1000) == nil)
        #expect(EvalDataset.parseLabel("n99999999", wnids: Self.wnids, classes: 1000) == nil)
        #expect(EvalDataset.parseLabel("tabby", wnids: Self.wnids, classes: 1000) == nil)
        #expect(EvalDataset.parseLabel("n01484850", wnids: Self.wnids, classes: 2) == nil)
    }

    @Test func shippedWordNetListMatchesTheLabels() throws {
        let ids = try EvalDataset.loadWnids(path: TestEnv.repoRoot + "/config/imagenet1k-wnids.txt")
        #expect(ids.count == 1000)
        #expect(ids["n01440764"] == 0)     // tench
        #expect(ids["n02123045"] == 281)   // tabby
        #expect(ids["n07920052"] == 967)   // espresso
        #expect(throws: EvalError.self) { try EvalDataset.loadWnids(path: "/nonexistent/wnids.txt") }
    }

    @Test func csvSplitting() {
        #expect(EvalDataset.splitCSV("a.jpg,281") == ["a.jpg", "281"])
        #expect(EvalDataset.splitCSV("\"x, y.jpg\", 5") == ["x, y.jpg", "5"])
        #expect(EvalDataset.splitCSV("\"say \"\"hi\"\".jpg\",1,extra") == ["say \"hi\".jpg", "1", "extra"])
        #expect(EvalDataset.splitCSV("only") == ["only"])
        #expect(EvalDataset.splitCSV("a,") == ["a", ""])
    }

    @Test func csvFormat() throws {
        let text = "# photos\npath,label\nimgs/a.jpg,281\n/abs/b.jpeg, n01443537\n\n\"c d.jpg\",0\n"
        let images = try EvalDataset.csv(text: text, baseDir: "/data", wnids: Self.wnids, classes: 1000)
        #expect(images == [LabelledImage(path: "/data/imgs/a.jpg", label: 281), LabelledImage(path: "/abs/b.jpeg", label: 1),
                           LabelledImage(path: "/data/c d.jpg", label: 0)])
        // No header is fine too.
        #expect(try EvalDataset.csv(text: "a.jpg,3", baseDir: ".", wnids: [:], classes: 10).count == 1)
        do {
            _ = try EvalDataset.csv(text: "a.jpg,3\nb.jpg,cat\n", baseDir: ".", wnids: [:], classes: 10, file: "x.csv")
            Issue.record("a bad label must throw")
        } catch let e as EvalError {
            #expect(e.description.contains("x.csv:2") && e.description.contains("'cat'"))
        }
        #expect(throws: EvalError.self) { try EvalDataset.csv(text: "a.jpg\n", baseDir: ".", wnids: [:], classes: 10) }
        #expect(throws: EvalError.self) { try EvalDataset.csv(text: "# nothing\n", baseDir: ".", wnids: [:], classes: 10) }
    }

    @Test func folderFormat() throws {
        let dir = TestEnv.tempDir("evalfolder")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        for sub in ["281", "n01443537", ".hidden"] { try fm.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
        for f in ["281/b.jpg", "281/a.JPEG", "281/notes.txt", "n01443537/c.jpg", ".hidden/x.jpg"] {
            fm.createFile(atPath: "\(dir)/\(f)", contents: Data([0xFF, 0xD8]))
        }
        fm.createFile(atPath: "\(dir)/README", contents: Data())
        let found = try EvalDataset.folder(dir, wnids: Self.wnids, classes: 1000)
        #expect(found.images == [LabelledImage(path: "\(dir)/281/a.JPEG", label: 281), LabelledImage(path: "\(dir)/281/b.jpg", label: 281),
                                 LabelledImage(path: "\(dir)/n01443537/c.jpg", label: 1)])
        #expect(found.skipped == ["\(dir)/281/notes.txt"])
        try fm.createDirectory(atPath: "\(dir)/cats", withIntermediateDirectories: true)
        do {
            _ = try EvalDataset.folder(dir, wnids: Self.wnids, classes: 1000)
            Issue.record("an unknown folder name must throw")
        } catch let e as EvalError {
            #expect(e.description.contains("'cats'"))
        }
        #expect(throws: EvalError.self) { try EvalDataset.folder(dir + "/missing", wnids: [:], classes: 1000) }
        let empty = TestEnv.tempDir("evalempty")
        defer { try? fm.removeItem(atPath: empty) }
        #expect(throws: EvalError.self) { try EvalDataset.folder(empty, wnids: [:], classes: 1000) }
    }

    static func result(_ label: Int, _ top: [Int], ref: [Int]? = nil, error: String? = nil) -> EvalImageResult {
        var r = EvalImageResult(path: "p\(label)", label: label)
        r.top = top
        r.scores = top.map { _ in 0.1 }
        r.referenceTop = ref
        r.error = error
        return r
    }

    @Test func metrics() {
        let results = [
            Self.result(1, [1, 2, 3, 4, 5], ref: [1, 2, 3, 4, 5]),   // top-1, agrees
            Self.result(2, [9, 2, 3, 4, 5], ref: [2, 9, 3, 4, 5]),   // top-5 only; reference top-1; disagrees
            Self.result(3, [9, 8, 7, 6, 5], ref: [9, 8, 7, 6, 5]),   // miss, agrees
            Self.result(4, [4, 1, 2, 3, 5], ref: nil),               // no reference result
            Self.result(5, [], error: "corrupt JPEG"),                // failed: in neither
        ]
        let m = EvalMetrics(results)
        #expect(m.images == 5 && m.evaluated == 4 && m.failed == 1)
        #expect(m.top1 == 0.5 && m.top5 == 0.75)
        #expect(m.referenceEvaluated == 3)
        #expect(m.referenceTop1 == 2.0 / 3.0 && m.referenceTop5 == 2.0 / 3.0)
        #expect(m.agreement == 2.0 / 3.0)
        let none = EvalMetrics([Self.result(1, [2])])
        #expect(none.agreement == nil && none.referenceTop1 == nil && none.top1 == 0 && none.top5 == 0)
        #expect(EvalMetrics([]).top1 == 0)
        #expect(results[1].agrees == false && results[0].agrees == true && results[3].agrees == nil)
    }

    @Test func reportAndProgressBar() throws {
        let labels = LabelSet(names: (0..<10).map { "c\($0)" })
        let results = [Self.result(1, [1, 2], ref: [1, 2]), Self.result(2, [3, 2], ref: [2, 3]), Self.result(3, [], error: "unreadable")]
        let report = EvalReport(model: "m", engine: "e", referenceEngine: "onnxruntime f32", seconds: 2, results: results)
        let text = report.text(labels: labels, perImage: true)
        #expect(text.contains("3 images, 2 classified, 1 failed"))
        #expect(text.contains("[top-1] p1: label 1 c1; got 1 c1"))
        #expect(text.contains("[top-5] p2: label 2 c2; got 3 c3 0.10; float says 2 c2"))
        #expect(text.contains("p3: failed: unreadable"))
        #expect(text.contains("camclassd NV12 path      50.0 %   100.0 %"))
        #expect(text.contains("top-1 agreement NV12 path vs float reference: 50.0 % (1 of 2 images)"))
        #expect(!EvalReport(model: "m", engine: "e", referenceEngine: nil, seconds: 1, results: results)
            .text(labels: labels, perImage: false).contains("agreement"))
        let obj = try #require(try JSONSerialization.jsonObject(with: report.json()) as? [String: Any])
        #expect((obj["results"] as? [Any])?.count == 3)
        #expect((obj["metrics"] as? [String: Any])?["agreement"] as? Double == 0.5)

        #expect(ProgressBar.line(done: 5, total: 10, width: 10) == "[#####.....] 5/10")
        #expect(ProgressBar.line(done: 12, total: 10, width: 4) == "[####] 12/10")
        #expect(ProgressBar.line(done: 0, total: 0, width: 2) == "[##] 0/0")
        #expect(!ProgressBar(enabled: false).enabled)
    }
}
