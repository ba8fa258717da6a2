import CamclassTestSupport
import CamclassDaemon
import CamclassTools
import Client
import WireFormat
import Capture
import Foundation
import Glibc
import ImageOps
@testable import Inference
import Logging
import Pipeline
import Publishing
import Support
import Testing

/// A test double for the inference engine: every slot returns the same scores (probabilities)
/// after an optional delay standing in for inference time. Not a real model.
final class ConstantScoresEngineDouble: InferenceEngine, @unchecked Sendable {
    final class Slot: InferenceSlot, @unchecked Sendable {
        let buffer = NV12Buffer(width: 224, height: 224)
        let scores: [Float]
        let delayUs: UInt32
        init(scores: [Float], delayUs: UInt32) {
            self.scores = scores
            self.delayUs = delayUs
        }
        var input: NV12MutableView { buffer.view }
        func infer(scores out: UnsafeMutableBufferPointer<Float>) throws {
            if delayUs > 0 { usleep(delayUs) }
            for i in 0..<min(out.count, scores.count) { out[i] = scores[i] }
        }
    }

    let info: EngineInfo
    let slots: [any InferenceSlot]

    init(scores: [Float], slots: Int = 2, delayUs: UInt32 = 0) {
        info = EngineInfo(backend: "double", device: "none", precision: "f32", inputWidth: 224, inputHeight: 224,
                          classes: scores.count, slots: slots, outputsLogits: false, summary: "ConstantScoresEngineDouble")
        self.slots = (0..<slots).map { _ in Slot(scores: scores, delayUs: delayUs) }
    }

    static func catScores() -> [Float] {
        var s = [Float](repeating: 0.0005, count: 1000)
        s[285] = 0.39; s[281] = 0.3; s[282] = 0.1
        return s
    }
}

/// A stuck subscriber costs the others nothing and is told what it missed.
@Suite(.serialized) struct ProtocolBackpressureTests {
    @Test func stuckSubscriberLosesOnlyItsOwnRecordsAndIsToldWhenItResumes() async throws {
        // 128 KiB per subscriber: the stuck one overflows after ~400 records; a reader that keeps
        // up may lag that far behind (a loaded machine) without losing anything.
        let (pub, dir) = try ProtocolTestEnv.publisher("stuck", configure: {
            $0.subscriberBufferBytes = 128 * 1024
        })
        defer { pub.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let (good1, _) = try TestClient.connect(path)
        let (good2, _) = try TestClient.connect(path)
        let (stuck, _) = try TestClient.connect(path)
        let g1 = Spawned { try ProtocolConformanceTests.readSeqs(good1) }
        let g2 = Spawned { try ProtocolConformanceTests.readSeqs(good2) }

        let feeder = RecordFeeder(sinks: [pub])
        let sample: [(Int, Float)] = [(285, 0.4), (281, 0.3), (282, 0.1), (7, 0.05), (8, 0.01)]
        var took: [UInt64] = []
        took.reserveCapacity(5000)
        func publish(_ n: Int) {
            for _ in 0..<n {
                let t0 = Clock.monotonicNs()
                feeder.publish(top: sample)
                took.append(Clock.monotonicNs() - t0)
                usleep(400)
            }
        }
        // Thousands of records while one subscriber reads nothing.
        publish(4000)
        #expect(ProtocolTestEnv.waitUntil { pub.subscriberStats.contains { $0.dropped > 0 } })
        let whileStuck = try #require(pub.subscriberStats.first { $0.dropped > 0 })
        // It resumes: reads what was buffered, then more records arrive.
        let s = Spawned { try ProtocolConformanceTests.readStream(stuck) }
        usleep(300_000)
        publish(1000)
        feeder.publishRaw("{\"type\":\"end\"}")
        let seqs1 = try await g1.value, seqs2 = try await g2.value
        let stuckStream = try await s.value

        expectSeqs(seqs1, 0..<5000, "good subscriber 1")
        expectSeqs(seqs2, 0..<5000, "good subscriber 2")
        #expect(whileStuck.dropped > 2500, "\(whileStuck)")
        // Every record is either delivered to the stuck subscriber or counted in a `dropped` record.
        let delivered = stuckStream.seqs
        let told = stuckStream.dropped.reduce(0, +)
        #expect(!stuckStream.dropped.isEmpty, "no dropped record after resuming")
        #expect(delivered.count + told == 5000, "delivered \(delivered.count) + told \(told)")
        #expect(delivered == delivered.sorted())
        // After resuming it gets the stream again without gaps to the end.
        expectSeqs(Array(delivered.suffix(1000)), 4000..<5000, "the stuck subscriber after resuming")
        #expect(stuckStream.droppedTotal == told, "the last dropped record's total counts every loss")
        // The publishing worker never waited for anyone. Wall time includes the test thread being
        // preempted: on a loaded 2-core machine p99 is about one scheduler slice (≤ 4.2 ms under
        // stress-ng, while publish() never waited more than 0.3 ms for the journal lock) and a
        // single call took up to 140 ms. So the typical call is bounded by p99, and the worst one
        // well above a preemption yet far below what waiting for the stuck subscriber would cost
        // (it reads nothing until all 4000 are published: such a publish() would never return).
        took.sort()
        let p99 = took[took.count * 99 / 100], slowest = took[took.count - 1]
        #expect(p99 < 10_000_000, "publish() p99 \(Double(p99) / 1e6) ms")
        #expect(slowest < 500_000_000, "publish() took \(Double(slowest) / 1e6) ms once")
    }

    /// The whole pipeline (test-double engine, real socket and log): a stuck subscriber does not
    /// change the pipeline's throughput, and the log and a reading subscriber get every record.
    /// A reader never loses a record silently; one it loses because it was itself descheduled
    /// too long is counted and announced, and only makes that pair of runs not count.
    @Test func pipelineThroughputIsUnchangedByAStuckSubscriber() async throws {
        func run(stuck: Bool) async throws -> (fps: Double, reader: ReaderLog, logged: Int, stuckDropped: Int) {
            let dir = TestEnv.tempDir("bp-pipe")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var so = SocketOptions(path: dir + "/s.sock")
            // 128 KiB holds ~300 of these records: the stuck subscriber still loses most of the
            // 1500, while the reader may fall ~0.3 s behind (a loaded 2-core machine deschedules
            // it for tens of ms) without losing any. 8 KiB (~20 records, 20-40 ms at this rate)
            // made a healthy reader lose records in ~1 run in 10 under load, stuck one or not.
            so.subscriberBufferBytes = 128 * 1024
            so.kernelSendBufferBytes = 4096
            let socket = UnixSocketPublisher(options: so, logger: ProtocolTestEnv.quiet)
            var lo = RollingLogOptions(path: dir + "/c.log")
            lo.bufferBytes = 16 << 20
            let log = RollingLog(options: lo, logger: ProtocolTestEnv.quiet)
            let frames = (0..<4).map { _ in NV12Buffer(width: 320, height: 240) }
            let source = ReplaySource(name: "double", images: frames, fileNames: ["0", "1", "2", "3"], fps: 0, loop: true)
            let engine = ConstantScoresEngineDouble(scores: ConstantScoresEngineDouble.catScores(), slots: 2, delayUs: 2000)
            var po = PipelineOptions()
            po.frameLimit = 1500
            po.stable = StableLabelOptions()
            let pipeline = ClassificationPipeline(source: source, engine: engine, labels: LabelSet(names: (0..<1000).map { "c\($0)" }),
                                                  modelName: "double", sinks: [socket, log], options: po, logger: ProtocolTestEnv.quiet)
            try log.start()
            try socket.start()
            let (good, _) = try TestClient.connect(dir + "/s.sock")
            var stuckClient: TestClient?
            if stuck { stuckClient = try TestClient.connect(dir + "/s.sock").0 }
            #expect(ProtocolTestEnv.waitUntil { socket.subscriberCount == (stuck ? 2 : 1) })
            // Without a JSON parser: a debug build's JSONSerialization is slow enough on a loaded
            // machine to make the reader itself the slow subscriber.
            let reader = Spawned { try ProtocolConformanceTests.readAccounted(good, records: 1500) }
            let t0 = Clock.monotonicNs()
            try pipeline.start()
            try await onThread { pipeline.wait() }
            let fps = 1500 / (Double(Clock.monotonicNs() - t0) / 1e9)
            // The end marker once the reader (the first subscriber) has every record in hand or
            // counted as lost, so that it has room for the marker and the `dropped` record owed.
            let expected = socket.publishedCount
            #expect(ProtocolTestEnv.waitUntil(timeoutMs: 20_000) {
                socket.subscriberStats.first.map { $0.delivered + $0.dropped + $0.filtered == expected && $0.buffered == 0 } ?? false
            }, "the reader did not take what was published: \(socket.subscriberStats)")
            var end = "{\"type\":\"end\"}\n"
            end.withUTF8 { socket.publish(UnsafeRawBufferPointer($0)) }
            let got = try await reader.value
            let stats = socket.subscriberStats
            socket.stop(flushTimeoutMs: 100)
            log.stop()
            _ = stuckClient
            // Records a reader loses must be ones the daemon counted and told it about, never
            // silently missing (a torn, merged or skipped record).
            #expect(got.sawEnd, "the reader never got the end marker: \(got)")
            #expect(got.silentlyLost == 0 && got.outOfOrder.isEmpty, "stuck=\(stuck): \(got)")
            #expect(got.told == stats.first?.dropped, "told \(got.told), the daemon counted \(stats.first?.dropped ?? -1)")
            let text = try String(contentsOfFile: dir + "/c.log", encoding: .utf8)
            let logged = text.split(separator: "\n").filter { $0.hasPrefix("{\"type\":\"classification\"") }.count
            return (fps, got, logged, stats.dropFirst().first?.dropped ?? 0)
        }
        // Pairs of runs back to back; the machine is shared (other suites run in parallel), so a
        // pair may be disturbed: up to three pairs, and one within 20 % where both readers got
        // every record shows the stuck subscriber costs nothing (a publisher that blocked on it
        // would stall for good, not by 20 %; one that let it use the reader's room would make the
        // reader lose records in every pair, not in a pair disturbed by a stall of the reader).
        struct Pair: CustomStringConvertible {
            var fps: (free: Double, withStuck: Double)
            var readerLost: (free: Int, withStuck: Int)
            var clean: Bool { fps.withStuck > fps.free * 0.8 && readerLost == (0, 0) }
            var description: String { "fps \(fps), reader told it lost \(readerLost)" }
        }
        var pairs: [Pair] = []
        for _ in 0..<3 {
            let free = try await run(stuck: false)
            let withStuck = try await run(stuck: true)
            #expect(free.logged == 1500 && withStuck.logged == 1500)
            #expect(withStuck.stuckDropped > 1000, "the stuck subscriber should have lost most records: \(withStuck.stuckDropped)")
            pairs.append(Pair(fps: (free.fps, withStuck.fps), readerLost: (free.reader.told, withStuck.reader.told)))
            if pairs.last!.clean { break }
        }
        #expect(pairs.contains { $0.clean }, "no pair where the reader beside a stuck subscriber got every record at ≥ 80 % of the fps: \(pairs)")
    }
}

/// A reading subscriber's account of a run: what it got, and whether each record it did not get
/// was announced by a `dropped` record before the next one (docs/protocol.md).
struct ReaderLog: Sendable, CustomStringConvertible {
    var seqs = 0
    /// The sum of the `dropped` counts it was sent.
    var told = 0
    /// Classification records missing beyond what the `dropped` records before the next one count.
    var silentlyLost = 0
    var firstSilentGap: Range<Int>?
    var outOfOrder: [Int] = []
    var sawEnd = false

    var description: String {
        "got \(seqs), told of \(told) lost, silently lost \(silentlyLost) (first gap \(firstSilentGap.map { "\($0)" } ?? "none")), out of order \(outOfOrder.prefix(5)), end \(sawEnd)"
    }
}

extension ProtocolConformanceTests {
    struct Stream: Sendable {
        var seqs: [Int] = []
        var dropped: [Int] = []
        var droppedTotal = 0
    }

    /// Reads until the `end` marker, checking that the classification seqs `0..<records` arrive
    /// in order and that every gap is covered by the `dropped` counts received since the record
    /// before it (a `dropped` record may also count lost non-classification records).
    static func readAccounted(_ c: TestClient, records: Int) throws -> ReaderLog {
        var log = ReaderLog()
        var next = 0
        var toldSince = 0
        func account(upTo s: Int) {
            let missing = s - next
            guard missing > toldSince else { return }
            log.silentlyLost += missing - toldSince
            if log.firstSilentGap == nil { log.firstSilentGap = next..<s }
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            guard let line = try c.connection.readLine(timeoutMs: 500) else { if c.connection.atEOF { break }; continue }
            switch QuickRecord(line) {
            case .classification(let seq):
                log.seqs += 1
                if seq < next { log.outOfOrder.append(seq); continue }
                account(upTo: seq)
                next = seq + 1
                toldSince = 0
            case .dropped(let count, _):
                log.told += count
                toldSince += count
            case .end:
                account(upTo: records)
                log.sawEnd = true
                return log
            case .other: break
            }
        }
        account(upTo: records)
        return log
    }

    /// Classification seqs and `dropped` counts until the `end` marker.
    static func readStream(_ c: TestClient) throws -> Stream {
        var s = Stream()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            guard let line = try c.connection.readLine(timeoutMs: 500) else { if c.connection.atEOF { break }; continue }
            switch QuickRecord(line) {
            case .end: return s
            case .dropped(let count, let total):
                s.dropped.append(count)
                s.droppedTotal = total
            case .classification(let seq): s.seqs.append(seq)
            case .other: break
            }
        }
        return s
    }
}
