import Client
import CamclassDaemon
import WireFormat
import Capture
import Glibc
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Synchronization

/// `camclass bench`: raw engine throughput versus the daemon's end-to-end throughput on the same
/// engine and in-flight count, measured alternately in one run (these machines are noisy).
public struct PipelineBenchmark: SetUpBenchmark {
    public struct Options: Sendable {
        public var rounds = 3
        public var secondsPerRun = 3.0
        public var frameWidth = 640
        public var frameHeight = 480
        public var samplesDir: String?
        /// Replay rate of the latency run (a camera's rate, well below saturation).
        public var latencyFPS = 30.0
        public init() {}
    }

    public struct Result: Sendable {
        public var engine: String
        public var workers: Int
        public var rawFPS: [Double] = []
        public var pipelineFPS: [Double] = []
        /// capture→publish minus inference at camera rate (`latencyFPS`): what the daemon adds.
        public var addedLatencyMs: [Double] = []
        /// The same under saturation (unpaced replay): includes queueing behind busy workers.
        public var saturatedAddedLatencyMs: [Double] = []
        public var stageMs: [String: Double] = [:]  // medians per stage
        public var dropped = 0

        public var rawMedian: Double { median(rawFPS) }
        public var pipelineMedian: Double { median(pipelineFPS) }
        public var ratio: Double { rawMedian > 0 ? pipelineMedian / rawMedian : 0 }
        /// The median of each round's pipeline/raw: the two halves of a round ran seconds apart, so
        /// a drift of the shared machine's speed between rounds cancels out (as the sources bench's).
        public var pairedRatio: Double { median(zip(pipelineFPS, rawFPS).map { $0.1 > 0 ? $0.0 / $0.1 : 0 }) }
        public var addedP50: Double { percentile(addedLatencyMs, 0.50) }
        public var addedP99: Double { percentile(addedLatencyMs, 0.99) }
        public var saturatedP50: Double { percentile(saturatedAddedLatencyMs, 0.50) }
    }

    let setup: BenchmarkSetup
    let options: Options

    public init(config: DaemonConfig, options: Options, logger: Logger) {
        (setup, self.options) = (BenchmarkSetup(config: config, logger: logger), options)
    }

    /// Runs raw and pipeline measurements alternately, `rounds` times each.
    /// Thread context: blocking; call from a dedicated thread or a command-line main.
    public func run(progress: (String) -> Void) throws -> Result {
        let (model, labels, engine) = try setup.engine()
        return try run(engine: engine, model: model, labels: labels, progress: progress)
    }

    /// The same on an engine the caller built (`camclass bench --all` builds one per model).
    public func run(engine: any InferenceEngine, model: ModelDescriptor, labels: LabelSet,
                    progress: (String) -> Void) throws -> Result {
        let frames = try benchFrames()
        var result = Result(engine: engine.info.summary, workers: engine.slots.count)
        var preprocess: [Double] = [], inference: [Double] = [], total: [Double] = []
        var stages: [String: [Double]] = [:]
        for round in 1...options.rounds {
            let raw = rawThroughput(engine: engine, frame: frames[0])
            result.rawFPS.append(raw)
            progress(String(format: "round %d: raw engine %.1f FPS", round, raw))
            let p = try pipelineRun(engine: engine, labels: labels, model: model, frames: frames, fps: 0)
            result.pipelineFPS.append(p.fps)
            result.saturatedAddedLatencyMs += p.added
            result.dropped += p.dropped
            progress(String(format: "round %d: daemon pipeline %.1f FPS", round, p.fps))
            let l = try pipelineRun(engine: engine, labels: labels, model: model, frames: frames, fps: options.latencyFPS)
            result.addedLatencyMs += l.added
            preprocess += l.preprocess
            inference += l.inference
            total += l.total
            for (k, v) in l.stages { stages[k, default: []].append(v) }
            progress(String(format: "round %d: latency at %.0f FPS: added p50 %.3f ms", round, options.latencyFPS,
                            percentile(l.added, 0.5)))
        }
        result.stageMs = ["preprocess": median(preprocess), "inference": median(inference), "total": median(total)]
        // Per-stage means at camera rate (median over rounds): convert, scale, infer, postprocess, publish.
        for (k, v) in stages { result.stageMs[k] = median(v) }
        return result
    }

    /// 640x480 NV12 frames: the sample photos scaled to the frame size, or a gradient if none.
    func benchFrames() throws -> [NV12Buffer] {
        let w = options.frameWidth, h = options.frameHeight
        var out: [NV12Buffer] = []
        if let dir = options.samplesDir, let replay = try? ReplaySource(path: dir, fps: 0, loop: false) {
            replay.open()
            while let frame = try? replay.nextFrame(), let pixels = frame.nv12 {
                let b = NV12Buffer(width: w, height: h)
                NV12Ops.scale(pixels, into: b.view, mode: .crop)
                out.append(b)
            }
        }
        if out.isEmpty {
            let b = NV12Buffer(width: w, height: h)
            let v = b.view
            for y in 0..<h { for x in 0..<w { v.y[y * v.layout.strideY + x] = UInt8((x + y) & 0xFF) } }
            for y in 0..<h / 2 { for x in 0..<w { v.uv[y * v.layout.strideUV + x] = 128 } }
            out.append(b)
        }
        return out
    }

    /// Every slot inferring back to back on a preallocated, already scaled NV12 input.
    func rawThroughput(engine: any InferenceEngine, frame: NV12Buffer) -> Double {
        let slots = engine.slots
        for slot in slots { NV12Ops.scale(frame.view.readOnly, into: slot.input, mode: .crop) }
        let done = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let classes = engine.info.classes
        let threads = slots.enumerated().map { i, slot in
            DedicatedThread(name: "bench-raw\(i)") {
                let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: classes)
                defer { scores.deallocate() }
                while !stop.load(ordering: .relaxed) {
                    if (try? slot.infer(scores: scores)) != nil { done.add(1, ordering: .relaxed) }
                }
            }
        }
        // Warm-up as long as the pipeline run's, so both count steady state only.
        Clock.sleep(untilMonotonicNs: Clock.monotonicNs() + 300_000_000)
        let startCount = done.load(ordering: .relaxed)
        let start = Clock.monotonicNs()
        Clock.sleep(untilMonotonicNs: start + UInt64(options.secondsPerRun * 1e9))
        let counted = done.load(ordering: .relaxed) - startCount
        let elapsed = Double(Clock.monotonicNs() - start) / 1e9
        stop.store(true, ordering: .relaxed)
        threads.forEach { $0.join() }
        return Double(counted) / elapsed
    }

    struct PipelineRun {
        var fps: Double
        var added: [Double]
        var preprocess: [Double]
        var inference: [Double]
        var total: [Double]
        var dropped: Int
        var stages: [String: Double] = [:]
    }

    /// The daemon's path: unpaced replay → queue → workers (in order) → socket (one
    /// subscriber reading) + rolling log in a temporary directory.
    func pipelineRun(engine: any InferenceEngine, labels: LabelSet, model: ModelDescriptor,
                     frames: [NV12Buffer], fps: Double) throws -> PipelineRun {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let source = ReplaySource(name: "bench", images: frames, fileNames: frames.indices.map { "frame\($0).nv12" },
                                  fps: fps, loop: true)
        let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let socket = UnixSocketPublisher(options: SocketOptions(path: dir + "/bench.sock"), logger: quiet)
        let log = RollingLog(options: RollingLogOptions(path: dir + "/bench.log"), logger: quiet)
        let samples = LatencySamples(capacity: 1 << 20)
        var options = PipelineOptions()
        options.queueCapacity = config.pipeline.queueCapacity
        let pipeline = ClassificationPipeline(source: source, engine: engine, labels: labels, modelName: model.name,
                                              sinks: [socket, log], options: options, logger: quiet,
                                              onResult: { r in samples.add(r) })
        try log.start()
        try socket.start()
        let reader = SubscriberConnection.drainInBackground(path: dir + "/bench.sock")
        try pipeline.start()
        // Warm-up, then count published records over the measuring window.
        Clock.sleep(untilMonotonicNs: Clock.monotonicNs() + 300_000_000)
        let startCount = pipeline.counters.published
        samples.reset()
        let stagesBefore = pipeline.stageTimes.snapshot()
        let start = Clock.monotonicNs()
        Clock.sleep(untilMonotonicNs: start + UInt64(self.options.secondsPerRun * 1e9))
        let counted = pipeline.counters.published - startCount
        let stagesAfter = pipeline.stageTimes.snapshot()
        let elapsed = Double(Clock.monotonicNs() - start) / 1e9
        let snapshot = samples.snapshot()
        pipeline.stop()
        pipeline.wait()
        socket.stop()
        log.stop()
        reader.stop()
        var stages: [String: Double] = [:]
        for stage in PipelineStage.allCases {
            if let ms = stagesAfter.meanMs(stage, since: stagesBefore) { stages[stage.name] = ms }
        }
        return PipelineRun(fps: Double(counted) / elapsed, added: snapshot.added, preprocess: snapshot.preprocess,
                           inference: snapshot.inference, total: snapshot.total, dropped: pipeline.counters.droppedTotal,
                           stages: stages)
    }
}

/// Per-record latencies collected on the publishing worker into preallocated storage.
final class LatencySamples: @unchecked Sendable {
    private let lock = Mutex(0)
    private var added: [Double]
    private var preprocess: [Double]
    private var inference: [Double]
    private var total: [Double]

    init(capacity: Int) {
        added = []; added.reserveCapacity(capacity)
        preprocess = []; preprocess.reserveCapacity(capacity)
        inference = []; inference.reserveCapacity(capacity)
        total = []; total.reserveCapacity(capacity)
    }

    func add(_ r: ClassificationResult) {
        lock.withLock { _ in
            guard added.count < added.capacity else { return }
            added.append(Double(r.totalNs &- r.inferenceNs) / 1e6)
            preprocess.append(Double(r.preprocessNs) / 1e6)
            inference.append(Double(r.inferenceNs) / 1e6)
            total.append(Double(r.totalNs) / 1e6)
        }
    }

    func reset() {
        lock.withLock { _ in
            added.removeAll(keepingCapacity: true); preprocess.removeAll(keepingCapacity: true)
            inference.removeAll(keepingCapacity: true); total.removeAll(keepingCapacity: true)
        }
    }

    func snapshot() -> (added: [Double], preprocess: [Double], inference: [Double], total: [Double]) {
        lock.withLock { _ in (Array(added), Array(preprocess), Array(inference), Array(total)) }
    }
}

public func median(_ v: [Double]) -> Double { percentile(v, 0.5) }

public func percentile(_ v: [Double], _ p: Double) -> Double {
    guard !v.isEmpty else { return 0 }
    let s = v.sorted()
    let idx = min(s.count - 1, max(0, Int((Double(s.count - 1) * p).rounded())))
    return s[idx]
}

func makeTempDir() -> String {
    var template = Array("/tmp/camclass-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

func removeTree(_ dir: String) {
    guard let d = opendir(dir) else { return }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { unlink(dir + "/" + name) }
    }
    closedir(d)
    rmdir(dir)
}

/// What every benchmark starts from: the daemon's configuration and a logger, and the model loaded
/// the way the daemon loads it.
struct BenchmarkSetup {
    let config: DaemonConfig
    let logger: Logger

    /// The model at `config.model.path`, its labels and an engine for it.
    func engine() throws -> (ModelDescriptor, LabelSet, any InferenceEngine) {
        let (model, labels) = try ModelDescriptor.loadWithLabels(path: config.model.path)
        return (model, labels, try makeEngine(config: config, model: model, labels: labels, logger: logger))
    }
}

/// A benchmark built on a `BenchmarkSetup`: its configuration and logger at hand.
protocol SetUpBenchmark {
    var setup: BenchmarkSetup { get }
}

extension SetUpBenchmark {
    var config: DaemonConfig { setup.config }
    var logger: Logger { setup.logger }
}
