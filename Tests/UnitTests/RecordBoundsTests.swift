import CamclassTestSupport
import Foundation
import Testing
import WireFormat

/// Issue 10/11 (F2): a record is never emitted cut. The classification encoder is sized from the
/// configuration (top_k, the longest label) at start-up; one-off records grow until they fit.
/// Unit tests: no environment.
@Suite struct RecordBoundsTests {
    /// 100 entries (model.top_k's maximum) of the longest labels, with characters JSON escapes
    /// (quotes, backslashes, control characters): ~6x their length. The old 16 KiB buffer cut this.
    @Test func largestTopKWithLongEscapedLabelsIsOneWholeJSONLine() throws {
        let long = String(repeating: "\"\\\u{01}", count: 85)  // 255 bytes, each escaped to 2-6 bytes
        let labels = (0..<1000).map { "\($0)" + long }
        let vocabulary = RecordVocabulary(labels: labels)
        let encoder = RecordEncoder(source: "front", model: "m", vocabulary: vocabulary, fileNames: [String(repeating: "f", count: 300)],
                                    maxTopK: 100)
        let r = ClassificationResult(maxTopK: 100, classes: 1000)
        r.seq = 7
        r.fileIndex = 0
        r.topCount = 100
        for i in 0..<100 {
            r.topClasses[i] = Int32(999 - i)
            r.topScores[i] = 0.001
        }
        let line = Array(encoder.classification(r))
        #expect(line.count > 16 * 1024, "the case is larger than the old fixed buffer")
        #expect(line.last == 0x0A && line.filter { $0 == 0x0A }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.dropLast())) as? [String: Any])
        let top = try #require(object["top"] as? [[String: Any]])
        #expect(top.count == 100 && top[0]["label"] as? String == labels[999])
        #expect(encoder.spans.count == 100)
    }

    /// Should a record still not fit, nothing is returned: never a line without its end.
    @Test func aRecordThatDoesNotFitIsNotEmittedAtAll() {
        let labels = (0..<10).map { _ in String(repeating: "x", count: 100) }
        let encoder = RecordEncoder(source: "s", model: "m", vocabulary: RecordVocabulary(labels: labels), fileNames: [], maxTopK: 2)
        let r = ClassificationResult(maxTopK: 10, classes: 10)
        r.topCount = 2
        encoder.writer = ByteWriter(capacity: 300)  // smaller than one record
        #expect(encoder.classification(r).isEmpty)
        #expect(encoder.spans.count == 0)
    }

    @Test func oneOffRecordsGrowUntilTheyFit() {
        let message = String(repeating: "é\"", count: 5000)
        let bytes = ByteWriter.whole(capacity: 16) { w in
            w.ascii("{\"error\":")
            w.jsonString(message)
            w.ascii("}\n")
        }
        #expect(bytes.last == 0x0A)
        let parsed = try? JSONSerialization.jsonObject(with: Data(bytes.dropLast())) as? [String: String]
        #expect(parsed?["error"] == message)
    }
}
