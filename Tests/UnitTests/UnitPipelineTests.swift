import CamclassTestSupport
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Capture
import Foundation
import ImageOps
import Inference
import Pipeline
@testable import Publishing
import Testing

@Suite struct UnitPostprocessTests {
    @Test func softmaxIsNormalisedAndStable() {
        var v: [Float] = [1000, 1001, 1002, -5]
        v.withUnsafeMutableBufferPointer { Postprocess.softmax($0) }
        #expect(abs(v.reduce(0, +) - 1) < 1e-5)
        #expect(v[2] > v[1] && v[1] > v[0] && v[3] < 1e-6)
        #expect(abs(v[2] - 0.6652) < 1e-3)
    }

    @Test func topKOrdersBestFirstAndSkipsNaN() {
        let v: [Float] = [0.1, 0.5, .nan, 0.9, 0.3, 0.9]
        var classes = [Int32](repeating: -1, count: 3)
        var scores = [Float](repeating: 0, count: 3)
        let n = v.withUnsafeBufferPointer { p in
            classes.withUnsafeMutableBufferPointer { c in scores.withUnsafeMutableBufferPointer { s in
                Postprocess.topK(p, k: 3, classes: c, scores: s)
            } }
        }
        #expect(n == 3)
        #expect(classes == [3, 5, 1])
        #expect(scores == [0.9, 0.9, 0.5])
        // k larger than the vector.
        var c2 = [Int32](repeating: -1, count: 10), s2 = [Float](repeating: 0, count: 10)
        let n2 = [Float(2), 1].withUnsafeBufferPointer { p in
            c2.withUnsafeMutableBufferPointer { c in s2.withUnsafeMutableBufferPointer { s in Postprocess.topK(p, k: 10, classes: c, scores: s) } }
        }
        #expect(n2 == 2 && c2[0] == 0 && c2[1] == 1)
    }
}

@Suite struct UnitRecordTests {
    @Test func classificationRecordIsValidJSONWithAllFields() throws {
        let labels = LabelSet(names: ["tench", "say \"hi\"\\now"])
        let encoder = RecordEncoder(source: "/dev/video0", model: "lite0", labels: labels.names,
                                    fileNames: ["a.jpg"])
        let r = ClassificationResult(maxTopK: 2)
        r.seq = 42
        r.captureNs = 123_456_789
        r.realtimeNs = 1_795_000_000_123_456_789
        r.fileIndex = 0
        r.topCount = 2
        r.topClasses[0] = 1; r.topScores[0] = 0.87654
        r.topClasses[1] = 0; r.topScores[1] = 0.1
        r.preprocessNs = 150_000; r.inferenceNs = 2_500_000; r.totalNs = 3_000_500
        r.dropped = 3
        let bytes = Array(encoder.classification(r))
        #expect(bytes.last == 0x0A)
        #expect(!bytes.dropLast().contains(0x0A), "one line per record")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(obj["type"] as? String == "classification")
        #expect(obj["seq"] as? Int == 42)
        #expect(obj["capture_ns"] as? Int == 123_456_789)
        #expect(obj["source"] as? String == "/dev/video0")
        #expect(obj["file"] as? String == "a.jpg")
        #expect(obj["model"] as? String == "lite0")
        #expect(obj["dropped"] as? Int == 3)
        let time = try #require(obj["time"] as? String)
        #expect(time == "2026-11-18T11:06:40.123456Z")  // date -u -d @1795000000
        let top = try #require(obj["top"] as? [[String: Any]])
        #expect(top.count == 2)
        #expect(top[0]["class"] as? Int == 1)
        #expect(top[0]["label"] as? String == "say \"hi\"\\now")
        #expect(abs((top[0]["score"] as? Double ?? 0) - 0.8765) < 1e-9)
        let lat = try #require(obj["latency_ms"] as? [String: Any])
        #expect(lat["preprocess"] as? Double == 0.15)
        #expect(lat["inference"] as? Double == 2.5)
        #expect(abs((lat["total"] as? Double ?? 0) - 3.001) < 1e-9)
    }

    @Test func fixedPointFormatting() {
        var w = ByteWriter(capacity: 64)
        for (v, d, expected) in [(0.0, 3, "0.000"), (1.23456, 2, "1.23"), (-2.5, 1, "-2.5"), (0.99999, 2, "1.00"),
                                 (Double.nan, 2, "null"), (12, 0, "12")] as [(Double, Int, String)] {
            w.reset()
            w.fixed(v, decimals: d)
            #expect(String(decoding: w.bytes, as: UTF8.self) == expected)
        }
    }
}

@Suite struct UnitPoolTests {
    @Test func poolExhaustionIsCountedAndReleaseReturnsTheBuffer() {
        let pool = FramePool(count: 1, width: 16, height: 16)
        var held: FrameLease? = pool.acquire()
        #expect(pool.available == 0)
        let secondMissing = pool.acquire() == nil
        #expect(secondMissing)
        #expect(pool.exhaustedCount == 1)
        held = nil
        #expect(pool.available == 1, "a lease that ends returns its buffer")
    }
}

final class AtomicFlagBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

@Suite struct UnitRollingLogTests {
    @Test func rotationNamesLimitsAndWholeRecords() throws {
        let dir = TestEnv.tempDir("log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = RollingLogOptions(path: dir + "/app.log")
        o.maxBytes = 1000
        o.keep = 3
        let log = RollingLog(options: o, logger: .init(label: "test"))
        try log.start()
        for seq in 0..<200 {
            let line = "{\"seq\":\(seq),\"pad\":\"\(String(repeating: "x", count: 30))\"}\n"
            var l = line
            l.withUTF8 { log.publish(UnsafeRawBufferPointer($0)) }
        }
        log.stop()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names == ["app.log", "app.log.1", "app.log.2", "app.log.3"])
        var seqs: [Int] = []
        for name in ["app.log.3", "app.log.2", "app.log.1", "app.log"] {
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            #expect(text.utf8.count <= 1000, "\(name) exceeds max_bytes")
            #expect(text.hasSuffix("\n"), "\(name) ends mid-record")
            for line in text.split(separator: "\n") {
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                seqs.append(obj["seq"] as! Int)
            }
        }
        // The newest records, each once, in order, with no gap.
        #expect(seqs.last == 199)
        #expect(seqs == Array((200 - seqs.count)..<200))
        #expect(log.currentStats.rotations >= 3)
        #expect(log.currentStats.lostRecords == 0)
    }
}

@Suite struct UnitConfigTests {
    @Test func shippedConfigParses() throws {
        let c = try DaemonConfig.load(file: TestEnv.repoRoot + "/config/camclassd.yaml")
        #expect(c.pipeline.queueCapacity == 2)
        #expect(c.publish.mode == 0o660)
        #expect(c.inference.backend == .openvino)
    }

    @Test func unknownKeyNamesKeyAndFile() {
        #expect {
            _ = try DaemonConfig.parse(yaml: "pipeline:\n  queue_capacity: 2\n  queue_capactiy: 3\n", file: "x.yaml")
        } throws: { error in
            let e = error as? ConfigError
            return e?.key == "pipeline.queue_capactiy" && e?.file == "x.yaml" && "\(error)".contains("unknown key")
        }
    }

    @Test func badValuesNameKeyValueAndFile() {
        let cases: [(String, String, String)] = [
            ("pipeline:\n  queue_capacity: zero\n", "pipeline.queue_capacity", "zero"),
            ("pipeline:\n  queue_capacity: -1\n", "pipeline.queue_capacity", "-1"),
            ("inference:\n  backend: tpu\n", "inference.backend", "tpu"),
            ("source:\n  loop: sometimes\n", "source.loop", "sometimes"),
            ("publish:\n  socket_mode: \"0999\"\n", "publish.socket_mode", "0999"),
            ("nonsense:\n  a: 1\n", "nonsense", ""),
        ]
        for (yaml, key, value) in cases {
            do {
                _ = try DaemonConfig.parse(yaml: yaml, file: "/etc/camclassd/camclassd.yaml")
                Issue.record("accepted \(yaml)")
            } catch let e as ConfigError {
                #expect(e.key == key, "\(yaml)")
                #expect(e.value == value, "\(yaml)")
                #expect("\(e)".contains("/etc/camclassd/camclassd.yaml"))
            } catch { Issue.record("unexpected \(error)") }
        }
        #expect(throws: ConfigError.self) { _ = try DaemonConfig.parse(yaml: "a: [unclosed", file: "y.yaml") }
    }

    @Test func emptyFileAndEmptySectionKeepDefaults() throws {
        #expect(try DaemonConfig.parse(yaml: "", file: "e.yaml").pipeline.queueCapacity == 2)
        #expect(try DaemonConfig.parse(yaml: "log:\n", file: "e.yaml").log.keep == 5)
    }
}

/// The log writer's choice between its batch timer and an untimed (idle) wait: records a second
/// apart each cost one wake-up and are written at once; records 33 ms apart are taken on the timer.
@Suite struct RollingLogBatchingTests {
    private let period = RollingLog.batchNs

    @Test func theFirstRecordAndSlowRecordsLeaveTheWriterIdle() {
        #expect(RollingLog.waitsIdle(previousNs: 0, lastNs: 5_000_000_000, lastWaitBroughtRecords: true))
        #expect(RollingLog.waitsIdle(previousNs: 5_000_000_000, lastNs: 6_000_000_000, lastWaitBroughtRecords: true))
        #expect(RollingLog.waitsIdle(previousNs: 5_000_000_000, lastNs: 5_000_000_000 + period, lastWaitBroughtRecords: true))
    }

    @Test func recordsLessThanAPeriodApartKeepTheTimer() {
        #expect(!RollingLog.waitsIdle(previousNs: 5_000_000_000, lastNs: 5_033_000_000, lastWaitBroughtRecords: true))
        #expect(!RollingLog.waitsIdle(previousNs: 5_000_000_000, lastNs: 5_000_000_000 + period - 1, lastWaitBroughtRecords: true))
    }

    @Test func aPeriodWithoutRecordsEndsTheTimer() {
        #expect(RollingLog.waitsIdle(previousNs: 5_000_000_000, lastNs: 5_033_000_000, lastWaitBroughtRecords: false))
    }
}

/// How many OpenVINO requests the pipeline keeps in flight when `inference.workers` is 0.
@Suite struct OpenVINODefaultRequestsTests {
    @Test func throughputHintDoublesTheOptimumSoAStreamNeverWaitsForAWorker() {
        #expect(OpenVINOEngine.defaultRequests(optimal: 2, hint: "throughput") == 4)
        #expect(OpenVINOEngine.defaultRequests(optimal: 4, hint: "THROUGHPUT") == 8)
    }

    @Test func latencyHintKeepsTheOptimum() {
        #expect(OpenVINOEngine.defaultRequests(optimal: 1, hint: "latency") == 1)
    }

    @Test func anOptimumOpenVINODidNotReportCountsAsOne() {
        #expect(OpenVINOEngine.defaultRequests(optimal: 0, hint: "throughput") == 2)
        #expect(OpenVINOEngine.defaultRequests(optimal: 0, hint: "latency") == 1)
    }
}
