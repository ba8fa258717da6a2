import CamclassTestSupport
import CamclassDaemon
import Capture
import Foundation
import ImageOps
import Inference
import Logging
import Pipeline
import Support
import Synchronization
import Testing
import WireFormat

/// Collects every classification record's source, seq and arrival time (a real sink on the
/// publishing worker; parsing allocates, which is fine in a test).
final class SourceRecordLog: RecordSink, @unchecked Sendable {
    struct Entry { var source: String; var seq: Int; var atNs: UInt64 }
    private let entries = Mutex<[Entry]>([])

    func publish(_ line: UnsafeRawBufferPointer) {
        guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
              o["type"] as? String == "classification", let source = o["source"] as? String, let seq = o["seq"] as? Int else { return }
        entries.withLock { $0.append(Entry(source: source, seq: seq, atNs: Clock.monotonicNs())) }
    }

    var all: [Entry] { entries.withLock { $0 } }
    func of(_ source: String) -> [Entry] { all.filter { $0.source == source } }
    func count(_ source: String) -> Int { of(source).count }

    /// Each source's seq numbers are contiguous and increasing from its first record.
    func inOrderWithoutGaps(_ source: String) -> Bool {
        let seqs = of(source).map(\.seq)
        return zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }
    }

    /// The longest time between two consecutive records of `source`.
    func longestGapNs(_ source: String, after: UInt64 = 0) -> UInt64 {
        let t = of(source).map(\.atNs).filter { $0 >= after }
        return zip(t, t.dropFirst()).map { $1 - $0 }.max() ?? 0
    }
}

@Suite("Several sources on one engine", .serialized)
struct MultiSourceTests {
    let quiet = Logger(label: "multi-source-test", factory: { _ in SwiftLogNoOpLogHandler() })
    let labels = LabelSet(names: (0..<1000).map { "c\($0)" })

    func standInEngine(latencyUs: Int, cores: Int = 1, workers: Int = 4) throws -> (BPUEngine, BPUFakeModel) {
        let standIn = try StandInDNN.open()
        let model = BPUFakeModel(["latency_us": "\(latencyUs)", "cores": "\(cores)"])
        var o = BPUOptions()
        o.libraryPath = standIn.path
        o.workers = workers
        o.timeoutMs = 10_000
        let engine = try BPUEngine(model: ModelDescriptor(name: "standin", modelPath: model.path), classes: nil, options: o, logger: quiet)
        return (engine, model)
    }

    func replay(_ name: String, fps: Double, luma: UInt8 = 100) -> ReplaySource {
        ReplaySource(name: name, images: [bpuConstantFrame(luma: luma, width: 320, height: 240)], fileNames: ["\(name).nv12"], fps: fps, loop: true)
    }

    /// Spare capacity (the stand-in does 500 frames/s): a 5 FPS and a 30 FPS source each get their
    /// full rate, each in order, both in one stream of records.
    @Test func twoSourcesAtDifferentRatesEachGetTheirFullRate() throws {
        let (engine, model) = try standInEngine(latencyUs: 2000)
        defer { model.remove() }
        let log = SourceRecordLog()
        let pipeline = ClassificationPipeline(engine: engine, labels: labels, modelName: "standin", sinks: [log],
                                              options: PipelineOptions(), logger: quiet)
        try pipeline.addSource(replay("slow", fps: 5), spec: LaneSpec(name: "slow"))
        try pipeline.addSource(replay("fast", fps: 30), spec: LaneSpec(name: "fast"))
        try pipeline.start()
        Thread.sleep(forTimeInterval: 4)
        pipeline.stop()
        pipeline.wait()
        let slow = log.count("slow"), fast = log.count("fast")
        print("4 s: slow \(slow) records (5 FPS), fast \(fast) records (30 FPS)")
        #expect(slow >= 17 && slow <= 22, "slow: \(slow)")
        #expect(fast >= 108 && fast <= 124, "fast: \(fast)")
        #expect(log.inOrderWithoutGaps("slow") && log.inOrderWithoutGaps("fast"))
        #expect(log.of("slow").first?.seq == 0 && log.of("fast").first?.seq == 0, "each source numbers its own frames")
        let lanes = pipeline.lanes
        #expect(lanes.map(\.name) == ["slow", "fast"])
        #expect(pipeline.counters(of: lanes[1]).droppedQueueFull == 0, "spare capacity: nothing dropped")
    }

    /// Saturation on the CPU engine: three unpaced sources share it in proportion to their weights.
    @Test(arguments: [[1, 1, 1], [1, 2, 1]])
    func unpacedSourcesShareASaturatedEngineByWeight(weights: [Int]) throws {
        var config = DaemonConfig()
        config.model.path = try TestEnv.tinyModel()
        config.inference.openVINOLibrary = try TestEnv.openVINO()
        config.inference.workers = 2
        let model = try ModelDescriptor.load(path: config.model.path)
        let tinyLabels = try LabelSet.of(model)
        let engine = try makeEngine(config: config, model: model, labels: tinyLabels, logger: quiet)
        let log = SourceRecordLog()
        var options = PipelineOptions()
        options.frameLimit = 600 * weights.reduce(0, +) / 3
        let pipeline = ClassificationPipeline(engine: engine, labels: tinyLabels, modelName: "tiny", sinks: [log],
                                              options: options, logger: quiet)
        for (i, w) in weights.enumerated() {
            try pipeline.addSource(replay("s\(i)", fps: 0, luma: UInt8(60 + 40 * i)), spec: LaneSpec(name: "s\(i)", weight: w))
        }
        try pipeline.start()
        #expect(pipeline.waitFinished(timeoutNs: 120_000_000_000))
        pipeline.stop()
        pipeline.wait()
        let counts = (0..<weights.count).map { log.count("s\($0)") }
        let shares = zip(counts, weights).map { Double($0) / Double($1) }
        print("weights \(weights): records \(counts), per unit of weight \(shares)")
        #expect(shares.max()! / shares.min()! <= 1.10, "per-weight throughput within 10 %: \(counts)")
        for i in weights.indices { #expect(log.inOrderWithoutGaps("s\(i)")) }
    }

    /// The stand-in BPU with 4 tasks in flight fed by two sources: kept busy (≥ 0.97 of what it
    /// can do: 1 core at 10 ms a task = 100 frames/s).
    @Test func twoSourcesKeepTheStandInBPUBusy() throws {
        let (engine, model) = try standInEngine(latencyUs: 10_000, workers: 4)
        defer { model.remove() }
        let log = SourceRecordLog()
        let pipeline = ClassificationPipeline(engine: engine, labels: labels, modelName: "standin", sinks: [log],
                                              options: PipelineOptions(), logger: quiet)
        try pipeline.addSource(replay("a", fps: 0), spec: LaneSpec(name: "a"))
        try pipeline.addSource(replay("b", fps: 0, luma: 200), spec: LaneSpec(name: "b"))
        try pipeline.start()
        Thread.sleep(forTimeInterval: 1)  // warm up
        let before = pipeline.counters.published
        let t0 = Clock.monotonicNs()
        Thread.sleep(forTimeInterval: 5)
        let fps = Double(pipeline.counters.published - before) / (Double(Clock.monotonicNs() - t0) / 1e9)
        pipeline.stop()
        pipeline.wait()
        print("stand-in BPU, two sources, 4 in flight: \(String(fixed: fps, decimals: 1)) FPS of 100 possible; a \(log.count("a")), b \(log.count("b"))")
        #expect(fps >= 97, "BPU kept busy: \(fps) FPS")
        let a = Double(log.count("a")), b = Double(log.count("b"))
        #expect(max(a, b) / min(a, b) <= 1.1, "equal weights, equal shares: \(a) / \(b)")
    }

    /// Removing one source and adding another while running: the untouched source keeps
    /// publishing in order with no gap longer than two frame intervals.
    @Test func removingAndAddingASourceLeavesTheOthersUntouched() throws {
        let (engine, model) = try standInEngine(latencyUs: 2000)
        defer { model.remove() }
        let log = SourceRecordLog()
        let pipeline = ClassificationPipeline(engine: engine, labels: labels, modelName: "standin", sinks: [log],
                                              options: PipelineOptions(), logger: quiet)
        try pipeline.addSource(replay("kept", fps: 20), spec: LaneSpec(name: "kept"))
        try pipeline.addSource(replay("gone", fps: 20), spec: LaneSpec(name: "gone"))
        try pipeline.start()
        Thread.sleep(forTimeInterval: 1)
        let changeAt = Clock.monotonicNs()
        let removed = pipeline.removeSource(named: "gone")
        #expect(removed != nil)
        try pipeline.addSource(replay("new", fps: 20), spec: LaneSpec(name: "new"))
        Thread.sleep(forTimeInterval: 1.5)
        let goneCount = log.count("gone")
        Thread.sleep(forTimeInterval: 0.5)
        pipeline.stop()
        pipeline.wait()
        #expect(log.count("gone") == goneCount, "a removed source publishes nothing more")
        #expect(log.count("new") >= 25, "the added source runs: \(log.count("new"))")
        #expect(log.inOrderWithoutGaps("kept"))
        let gap = log.longestGapNs("kept", after: changeAt - 200_000_000)
        #expect(gap <= 100_000_000, "the untouched source's longest gap: \(gap / 1_000_000) ms (2 intervals = 100 ms)")
        #expect(pipeline.counters.published == log.all.count, "totals keep the removed source's records")
    }
}
