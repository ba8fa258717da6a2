import CamclassTestSupport
import Support
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Foundation
import Inference
import Pipeline
import Publishing
import Testing

/// Scripted score sequences → exact stable labels and change events.
@Suite struct StableLabelTests {
    struct Step: Equatable, CustomStringConvertible {
        var stable: String
        var change: String?   // "previous->new after N ms"
        var description: String { stable + (change.map { " [\($0)]" } ?? "") }
    }

    /// Runs frames (time in ms, class scores) through a stabilizer; returns stable label and changes.
    static func run(_ frames: [(ms: UInt64, scores: [Int: Float])], labels: [String] = ["a", "b", "c", "d"],
                    groups: [(name: String, classes: [Int])] = [], options: StableLabelOptions) -> [Step] {
        let vocabulary = RecordVocabulary(labels: labels, groups: groups)
        let s = StableLabel(vocabulary: vocabulary, options: options)
        var scores = [Float](repeating: 0, count: labels.count)
        func name(_ i: Int32) -> String { i >= 0 ? vocabulary.stableNames[Int(i)] : "unknown" }
        return frames.map { f in
            for i in scores.indices { scores[i] = f.scores[i] ?? 0 }
            let u = scores.withUnsafeBufferPointer { s.update(scores: $0, timeNs: f.ms * 1_000_000) }
            return Step(stable: name(u.label),
                        change: u.changed ? "\(name(u.previous))->\(name(u.label)) after \(u.previousDurationNs / 1_000_000) ms" : nil)
        }
    }

    static func options(smoothing: Int = 1, enter: Double = 0.6, leave: Double = 0.4, dwellMs: Int = 0) -> StableLabelOptions {
        var o = StableLabelOptions()
        o.smoothingFrames = smoothing
        o.enter = enter
        o.leave = leave
        o.minDwellMs = dwellMs
        return o
    }

    @Test func hysteresisHoldsBetweenLeaveAndEnter() {
        let steps = Self.run([
            (0, [0: 0.7, 1: 0.2]),     // a enters
            (10, [0: 0.5, 1: 0.4]),    // a holds (≥ leave)
            (20, [0: 0.45, 1: 0.5]),   // b is higher but below enter: a holds
            (30, [0: 0.35, 1: 0.55]),  // a below leave, b below enter: unknown
            (40, [0: 0.3, 1: 0.65]),   // b enters
            (50, [0: 0.2, 1: 0.41]),   // b holds down to leave
            (60, [0: 0.62, 1: 0.38]),  // a enters (b fell below leave anyway)
            (70, [0: 0.45, 1: 0.55]),  // a holds: b above a but below enter
            (80, [0: 0.45, 1: 0.61]),  // b ≥ enter and above a: switch while a still ≥ leave
        ], options: Self.options())
        #expect(steps == [
            Step(stable: "a", change: "unknown->a after 0 ms"),
            Step(stable: "a"), Step(stable: "a"),
            Step(stable: "unknown", change: "a->unknown after 30 ms"),
            Step(stable: "b", change: "unknown->b after 10 ms"),
            Step(stable: "b"),
            Step(stable: "a", change: "b->a after 20 ms"),
            Step(stable: "a"),
            Step(stable: "b", change: "a->b after 20 ms"),
        ], "\(steps)")
    }

    @Test func minimumDwellRejectsBlipsAndDelaysChanges() {
        var frames: [(ms: UInt64, scores: [Int: Float])] = []
        for t in stride(from: UInt64(0), through: 120, by: 40) { frames.append((t, [0: 0.9])) }   // 0…120: a
        frames.append((160, [1: 0.9, 0: 0.05]))                                                 // one-frame blip of b
        frames.append((200, [0: 0.9]))
        for t in stride(from: UInt64(240), through: 360, by: 40) { frames.append((t, [1: 0.9])) } // b from 240
        let steps = Self.run(frames, options: Self.options(dwellMs: 100))
        #expect(steps.map(\.stable) == ["unknown", "unknown", "unknown", "a", "a", "a", "a", "a", "a", "b"], "\(steps)")
        #expect(steps.compactMap(\.change) == ["unknown->a after 120 ms", "a->b after 240 ms"])
    }

    @Test func ewmaSmoothsScoresOverNFrames() {
        // smoothing 3 → α = 0.5.
        let vocabulary = RecordVocabulary(labels: ["a", "b"])
        let s = StableLabel(vocabulary: vocabulary, options: Self.options(smoothing: 3))
        func feed(_ a: Float, _ b: Float, _ ms: UInt64) -> StableUpdate {
            [a, b].withUnsafeBufferPointer { s.update(scores: $0, timeNs: ms * 1_000_000) }
        }
        let u0 = feed(1, 0, 0)       // starts from the first frame: a = 1
        let u1 = feed(0, 1, 10)      // a = .5, b = .5: a holds (b not above it)
        let u2 = feed(0, 1, 20)      // a = .25 < leave, b = .75 ≥ enter
        let u3 = feed(1, 0, 30)      // a = .625, b = .375: a ≥ enter and above b (b fell below leave)
        #expect(u0.label == 0 && u0.score == 1 && u0.changed)
        #expect(u1.label == 0 && u1.score == 0.5 && !u1.changed)
        #expect(u2.label == 1 && u2.score == 0.75 && u2.changed && u2.previous == 0 && u2.previousDurationNs == 20_000_000)
        #expect(u3.label == 0 && u3.score == 0.625 && u3.changed && u3.previous == 1)
        // Without smoothing the same frames flip every time.
        let raw = Self.run([(0, [0: 1]), (10, [1: 1]), (20, [1: 1]), (30, [0: 1])], labels: ["a", "b"], options: Self.options())
        #expect(raw.map(\.stable) == ["a", "b", "b", "a"])
    }

    @Test func coarseGroupsSumTheirClasses() {
        // Classes 1 and 2 are "cat"; 0 and 3 keep their own labels.
        let labels = ["tench", "tabby", "tiger cat", "espresso"]
        let steps = Self.run([
            (0, [1: 0.33, 2: 0.30, 3: 0.37]),   // espresso is top-1, but cat = 0.63
            (10, [1: 0.1, 2: 0.1, 3: 0.8]),
        ], labels: labels, groups: [("cat", [1, 2])], options: Self.options())
        #expect(steps == [Step(stable: "cat", change: "unknown->cat after 0 ms"), Step(stable: "espresso", change: "cat->espresso after 10 ms")])
        let v = RecordVocabulary(labels: labels, groups: [("cat", [1, 2])])
        #expect(v.stableNames == ["cat", "tench", "espresso"])
        #expect(v.classes(named: "CAT") == [1, 2])
        #expect(v.classes(named: "espresso") == [3])
    }

    @Test func resetStartsAfresh() {
        let vocabulary = RecordVocabulary(labels: ["a", "b"])
        let s = StableLabel(vocabulary: vocabulary, options: Self.options(smoothing: 10))
        _ = [Float(1), 0].withUnsafeBufferPointer { s.update(scores: $0, timeNs: 0) }
        s.reset()
        let u = [Float(0), 1].withUnsafeBufferPointer { s.update(scores: $0, timeNs: 1) }
        #expect(u.label == 1 && u.score == 1)
    }

    /// The publishing worker's path: stabilizer → classification record with `stable` → `change` record
    /// → the text log line, all exact.
    @Test func recordsCarryStableLabelAndChange() throws {
        var labels = (0..<1000).map { "class \($0)" }
        labels[281] = "tabby"; labels[285] = "Egyptian cat"
        let vocabulary = RecordVocabulary(labels: labels, groups: [("cat", [281, 282, 283, 284, 285])])
        let stable = StableLabel(vocabulary: vocabulary, options: Self.options(smoothing: 1, enter: 0.5, leave: 0.3, dwellMs: 0))
        let encoder = RecordEncoder(source: "/dev/video0", model: "lite0", vocabulary: vocabulary, fileNames: [])
        let text = TextRecordEncoder(vocabulary: vocabulary)
        let r = ClassificationResult(maxTopK: 2, classes: 1000)
        r.seq = 123
        r.captureNs = 5_000_000_000
        r.realtimeNs = 1_795_425_600_123_456_789  // 2026-11-23T09:20:00.123456789Z
        r.allScores[285] = 0.39; r.allScores[281] = 0.2; r.allScores[7] = 0.1
        r.topCount = 2
        r.topClasses[0] = 285; r.topScores[0] = 0.39
        r.topClasses[1] = 281; r.topScores[1] = 0.2
        r.totalNs = 7_100_000
        stable.apply(to: r)
        #expect(r.stableChanged)
        let rec = try #require(try JSONSerialization.jsonObject(with: Data(Array(encoder.classification(r)))) as? [String: Any])
        #expect(rec["stable"] as? String == "cat")
        #expect(abs((rec["stable_score"] as? Double ?? 0) - 0.59) < 1e-6)
        let change = try #require(try JSONSerialization.jsonObject(with: Data(Array(encoder.change(r)))) as? [String: Any])
        #expect(change["type"] as? String == "change")
        #expect(change["seq"] as? Int == 123)
        #expect(change["stable"] as? String == "cat")
        #expect(change["previous"] as? String == "unknown")
        #expect(change["previous_ms"] as? Double == 0)
        let line = try #require(text.encode(PublishedRecord(kind: .classification, json: encoder.classification(r), result: r)))
        #expect(String(decoding: line, as: UTF8.self) == "2026-11-23T09:20:00.123Z #123 Egyptian cat 0.39 (stable: cat) 7.1 ms\n")
        let changeLine = try #require(text.encode(PublishedRecord(kind: .change, json: encoder.change(r), result: r)))
        #expect(String(decoding: changeLine, as: UTF8.self) == "2026-11-23T09:20:00.123Z #123 change: unknown -> cat (unknown lasted 0.0 s)\n")
    }
}

/// The `stable:` config section and the coarse-groups file.
@Suite struct StableLabelConfigTests {
    @Test func shippedConfigTurnsStableLabelsOnWithTheShippedGroups() throws {
        let c = try DaemonConfig.load(file: TestEnv.repoRoot + "/config/camclassd.yaml")
        #expect(c.stable.enabled && c.stable.smoothingFrames == 5 && c.stable.enter == 0.5 && c.stable.leave == 0.3 && c.stable.minDwellMs == 500)
        #expect(c.stable.groups == TestEnv.repoRoot + "/config/coarse-groups.yaml", "resolved against the config file's directory")
        let labels = try LabelSet(path: TestEnv.repoRoot + "/config/imagenet1k-labels.txt")
        let v = try c.recordVocabulary(labels: labels)
        #expect(v.groupCount == 15)
        #expect(v.classes(named: "cat") == [281, 282, 283, 284, 285])
        #expect(v.classes(named: "dog").count == 118)
        #expect(v.classes(named: "person") == [981, 982, 983])
        #expect(v.stableNames[Int(v.classToStable[285])] == "cat")
        #expect(v.stableNames[Int(v.classToStable[967])] == "drink")
        #expect(v.stableNames[Int(v.classToStable[817])] == "vehicle")
        #expect(v.stableNames[Int(v.classToStable[398])] == "abacus", "classes in no group keep their label")
        // The new log and publish keys are there too, with the built-in defaults.
        #expect(c.log.format == .json && c.log.fsync == .rotation && !c.log.gzip && !c.log.rotateDaily)
        #expect(c.publish.maxRequestsPerSecond == 20 && c.pipeline.latencyWindowSeconds == 10)
    }

    @Test func badStableAndLogValuesNameKeyAndValue() {
        let cases: [(String, String, String)] = [
            ("stable:\n  enter: 1.5\n", "stable.enter", "1.5"),
            ("stable:\n  smoothing: 0\n", "stable.smoothing", "0"),
            ("stable:\n  enter: 0.4\n  leave: 0.6\n", "stable.leave", "0.6"),
            ("stable:\n  min_dwell_ms: -5\n", "stable.min_dwell_ms", "-5"),
            ("stable:\n  hysteresis: 2\n", "stable.hysteresis", "2"),
            ("log:\n  format: xml\n", "log.format", "xml"),
            ("log:\n  fsync: sometimes\n", "log.fsync", "sometimes"),
            ("log:\n  max_bytes: 100\n", "log.max_bytes", "100"),
            ("publish:\n  max_request_bytes: 10\n", "publish.max_request_bytes", "10"),
            ("publish:\n  max_requests_per_second: 0\n", "publish.max_requests_per_second", "0"),
            ("pipeline:\n  latency_window_s: 0.5\n", "pipeline.latency_window_s", "0.5"),
        ]
        for (yaml, key, value) in cases {
            do {
                _ = try DaemonConfig.parse(yaml: yaml, file: "/etc/camclassd/camclassd.yaml")
                Issue.record("accepted \(yaml)")
            } catch let e as ConfigError {
                #expect(e.key == key, "\(yaml) → \(e)")
                #expect(e.value == value, "\(yaml) → \(e)")
                #expect(e.file == "/etc/camclassd/camclassd.yaml")
            } catch { Issue.record("unexpected \(error)") }
        }
        #expect((try? DaemonConfig.parse(yaml: "log:\n  max_bytes: 0\n", file: "x.yaml"))?.log.maxBytes == 0)
    }

    @Test func groupsFileErrorsNameGroupAndEntry() {
        func check(_ yaml: String, key: String, value: String, reason: String) {
            do {
                _ = try CoarseGroups.parse(yaml: yaml, file: "g.yaml", classes: 1000)
                Issue.record("accepted \(yaml)")
            } catch let e as ConfigError {
                #expect(e.key == key && e.value == value && e.reason.contains(reason), "\(e)")
            } catch { Issue.record("unexpected \(error)") }
        }
        check("groups:\n  cat: [281-285]\n  tiger: [285]\n", key: "groups.tiger", value: "285", reason: "already in group 'cat'")
        check("groups:\n  cat: [\"285-281\"]\n", key: "groups.cat", value: "285-281", reason: "first ≤ last")
        check("groups:\n  big: [\"990-1000\"]\n", key: "groups.big", value: "990-1000", reason: "0…999")
        check("groups:\n  unknown: [1]\n", key: "groups.unknown", value: "unknown", reason: "other than 'unknown'")
        check("groups:\n  empty: []\n", key: "groups.empty", value: "[]", reason: "non-empty")
        check("classes:\n  cat: [1]\n", key: "groups", value: "", reason: "mapping `groups:`")
        let ok = try? CoarseGroups.parse(yaml: "groups:\n  b: [3, \"5-6\"]\n  a: [1]\n", file: "g.yaml", classes: 10)
        #expect(ok?.map(\.name) == ["a", "b"])
        #expect(ok?.last?.classes == [3, 5, 6])
    }
}
