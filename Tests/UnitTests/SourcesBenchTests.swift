import CamclassTools
import Foundation
import Testing

/// `camclass bench --sources`: the figures (ratio, paired ratio, min/max share), the table and
/// the parsing of the count list (no engine).
@Suite struct SourcesBenchTests {
    /// Two rounds: 1 source at 100 and 110 FPS, 2 at 96 and 99, 4 at 90 and 122.
    func result() -> SourcesBenchResult {
        SourcesBenchResult(engine: "OpenVINO CPU", workers: 2, rows: [
            SourcesBenchRow(sources: 1, fps: [100, 110], published: [[300], [330]]),
            SourcesBenchRow(sources: 2, fps: [96, 99], published: [[150, 138], [150, 147]]),
            SourcesBenchRow(sources: 4, fps: [90, 122], published: [[70, 70, 70, 60], [90, 90, 90, 90]], dropped: 3),
        ])
    }

    @Test func shareIsFewestOverMost() {
        #expect(SourcesBenchRow.share([150, 138]) == 138.0 / 150.0)
        #expect(SourcesBenchRow.share([70, 60, 70, 70]) == 60.0 / 70.0)
        #expect(SourcesBenchRow.share([42]) == 1)
        #expect(SourcesBenchRow.share([5, 0]) == 0)  // a starved source
        #expect(SourcesBenchRow.share([0, 0]) == 0)
        #expect(SourcesBenchRow.share([]) == 0)
    }

    @Test func rowMediansAndWorstRound() {
        let r = result().rows[2]
        #expect(r.shares == [60.0 / 70.0, 1])
        #expect(r.shareWorst == 60.0 / 70.0)
        // percentile's median of two picks the upper one (index round(0.5) = 1 after sorting).
        #expect(r.shareMedian == 1)
        #expect(r.fpsMedian == 122)
    }

    @Test func ratiosAgainstTheSmallestCount() {
        let res = result()
        #expect(res.baseline?.sources == 1)
        #expect(res.ratio(res.rows[0]) == 1)
        #expect(res.ratio(res.rows[1]) == 99.0 / 110.0)
        #expect(res.ratio(res.rows[2]) == 122.0 / 110.0)
        // Paired: per round 96/100 = 0.96 and 99/110 = 0.9; median (upper) 0.96.
        #expect(abs(res.pairedRatio(res.rows[1]) - 0.96) < 1e-12)
        #expect(res.pairedRatio(res.rows[0]) == 1)
        #expect(!res.meetsTargets)  // 2 sources: 0.9 < 0.95

        // Without 1 in the list the smallest count is the reference; listed order does not matter.
        let noOne = SourcesBenchResult(engine: "", workers: 1, rows: [
            SourcesBenchRow(sources: 4, fps: [200], published: [[50, 50, 50, 50]]),
            SourcesBenchRow(sources: 2, fps: [200], published: [[100, 95]]),
        ])
        #expect(noOne.baseline?.sources == 2)
        #expect(noOne.ratio(noOne.rows[0]) == 1)
        #expect(noOne.meetsTargets)

        // A baseline that published nothing gives ratio 0, never inf or NaN.
        let dead = SourcesBenchResult(engine: "", workers: 1, rows: [
            SourcesBenchRow(sources: 1, fps: [0], published: [[0]]),
            SourcesBenchRow(sources: 2, fps: [50], published: [[25, 25]]),
        ])
        #expect(dead.ratio(dead.rows[1]) == 0 && dead.pairedRatio(dead.rows[1]) == 0)
    }

    @Test func markdownHasOneRowPerCount() {
        let md = result().markdown()
        let lines = md.split(separator: "\n")
        #expect(lines.first.map(String.init) == SourcesBenchResult.markdownHeader)
        #expect(lines.count == 5)
        #expect(lines[2] == "| 1 | 110.0 | 1.000 | 1.000 | 1.000 | 1.000 | 110.0 |")
        #expect(lines[3] == "| 2 | 99.0 | 0.900 | 0.960 | 0.980 | 0.920 | 49.5 |")
        #expect(lines[4] == "| 4 | 122.0 | 1.109 | 1.109 | 1.000 | 0.857 | 30.5 |")
    }

    @Test func jsonCarriesTheDerivedFigures() throws {
        let data = try result().json(meta: ["cores": "2"])
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(obj["workers"] as? Int == 2 && obj["fpsTarget"] as? Double == 0.95 && obj["shareTarget"] as? Double == 0.9)
        let rows = try #require(obj["rows"] as? [[String: Any]])
        #expect(rows.map { $0["sources"] as? Int } == [1, 2, 4])
        #expect(rows[1]["ratio"] as? Double == 99.0 / 110.0)
        #expect(rows[2]["shareWorst"] as? Double == 60.0 / 70.0 && rows[2]["dropped"] as? Int == 3)
        #expect((rows[2]["published"] as? [[Int]])?.count == 2)
    }

    @Test func countListParsing() throws {
        #expect(try SourcesBenchmark.parseCounts("1,2,4") == [1, 2, 4])
        #expect(try SourcesBenchmark.parseCounts(" 4, 1 ") == [4, 1])
        #expect(try SourcesBenchmark.parseCounts("3") == [3])
        #expect(throws: SourcesBenchError.badCount("0", max: 32)) { try SourcesBenchmark.parseCounts("1,0") }
        #expect(throws: SourcesBenchError.badCount("33", max: 32)) { try SourcesBenchmark.parseCounts("33") }
        #expect(throws: SourcesBenchError.badCount("", max: 32)) { try SourcesBenchmark.parseCounts("1,,2") }
        #expect(throws: SourcesBenchError.badCount("two", max: 32)) { try SourcesBenchmark.parseCounts("two") }
        #expect(throws: SourcesBenchError.badCount("99999999999999999999", max: 32)) {
            try SourcesBenchmark.parseCounts("99999999999999999999")
        }
        #expect(throws: SourcesBenchError.repeated(2)) { try SourcesBenchmark.parseCounts("1,2,2") }
        #expect(SourcesBenchError.repeated(2).description.contains("--sources"))
    }
}
