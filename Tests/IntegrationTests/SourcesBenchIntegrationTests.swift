import CamclassTestSupport
import Foundation
import Testing

/// `camclass bench --sources`: short real runs (the tiny model on OpenVINO, the BPU stand-in),
/// checking the printed table's shape and sanity (both rows, finite positive numbers), not speed.
@Suite(.serialized) struct SourcesBenchIntegrationTests {
    /// The table's data rows by source count: every cell a finite number.
    static func tableRows(_ out: String) -> [Int: [Double]] {
        var rows: [Int: [Double]] = [:]
        for line in out.split(separator: "\n") where line.hasPrefix("| ") && !line.hasPrefix("| sources") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard let n = cells.first.flatMap({ Int($0) }) else { continue }
            rows[n] = cells.dropFirst().compactMap { Double($0) }.filter(\.isFinite)
        }
        return rows
    }

    /// Both rows present with all six figures finite; FPS positive, shares in (0, 1].
    static func checkTable(_ out: String, counts: [Int]) {
        let rows = tableRows(out)
        #expect(Set(rows.keys) == Set(counts), "table rows \(rows.keys.sorted()) in:\n\(out)")
        for n in counts {
            guard let v = rows[n] else { continue }
            #expect(v.count == 6, "\(n) sources: \(v)")
            guard v.count == 6 else { continue }
            let (fps, ratio, paired, share, worst, perSource) = (v[0], v[1], v[2], v[3], v[4], v[5])
            #expect(fps > 0 && ratio > 0 && paired > 0 && perSource > 0, "\(n) sources: \(v)")
            #expect(share > 0 && share <= 1 && worst > 0 && worst <= share, "\(n) sources: \(v)")
            if n == 1 { #expect(ratio == 1 && share == 1, "\(v)") }
        }
    }

    @Test func tinyModelOnOpenVINOWithOneAndTwoSources() throws {
        _ = try TestEnv.openVINO()
        let camclass = try TestBinary.camclass()
        let samples = try TestEnv.samples(), tiny = try TestEnv.tinyModel()
        let dir = TestEnv.tempDir("srcbench")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = dir + "/sources.json"
        let (status, out, err) = try TestEnv.run(camclass, [
            "bench", "--model", tiny, "--sources", "1,2", "--samples", samples, "--rounds", "1", "--seconds", "1", "--json", json])
        #expect(status == 0, "camclass bench --sources failed: \(err)\n\(out)")
        Self.checkTable(out, counts: [1, 2])
        #expect(out.contains("OpenVINO"), "\(out)")
        let data = try #require(FileManager.default.contents(atPath: json))
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(obj["rows"] as? [[String: Any]])
        #expect(rows.map { $0["sources"] as? Int } == [1, 2])
        // Each source of the two-source run published frames, and the unpaced replays lost none.
        let published = try #require(rows[1]["published"] as? [[Int]])
        #expect(published.count == 1 && published[0].count == 2 && published[0].allSatisfy { $0 > 0 }, "\(published)")
        #expect(rows.allSatisfy { $0["dropped"] as? Int == 0 }, "\(rows)")
    }

    @Test func bpuStandInWithOneAndTwoSources() throws {
        let camclass = try TestBinary.camclass()
        let standin = try TestEnv.standInDNN(), samples = try TestEnv.samples()
        let (status, out, err) = try TestEnv.run(camclass, [
            "bench", "--backend", "bpu", "--bpu-library", standin, "--model", TestEnv.repoRoot + "/Tests/StandIns/bench_b2.model",
            "--workers", "4", "--sources", "1,2", "--samples", samples, "--rounds", "1", "--seconds", "1"])
        #expect(status == 0, "camclass bench --backend bpu --sources failed: \(err)\n\(out)")
        Self.checkTable(out, counts: [1, 2])
        #expect(out.contains("theoretical max FPS: 302.1 FPS"), "\(out)")
        #expect(out.contains("2 sources:") && out.contains("% of theoretical"), "\(out)")
    }

    @Test func badSourceListsAreUsageErrors() throws {
        let camclass = try TestBinary.camclass()
        for (args, says) in [(["--sources", "1,0"], "'0' is not a number of sources"), (["--sources", "2,2"], "2 is listed twice"),
                             (["--sources", "1,2", "--all"], "drop --all")] {
            let (status, out, err) = try TestEnv.run(camclass, ["bench"] + args)
            #expect(status == 64, "\(args): exit \(status)\n\(err)\n\(out)")
            #expect(err.contains(says), "\(args): \(err)")
        }
    }
}
