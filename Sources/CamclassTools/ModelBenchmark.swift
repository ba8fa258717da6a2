import Client
import CamclassDaemon
import WireFormat
import Capture
import Glibc
import ImageOps
import Inference
import Logging
import Support
import Synchronization

/// `camclass bench` per model: the seed-style row. Three engines are compiled one after the
/// other (compiling takes well under a second per model here):
/// - latency hint, one request: single-stream latency p50/p99 (all cores on one frame);
/// - throughput hint, N requests: FPS with 1…N in flight (the seeds' "multi-thread FPS");
/// - the daemon's own settings: raw engine FPS vs the daemon's end-to-end FPS, alternately,
///   plus the per-stage split at camera rate (`PipelineBenchmark`).
/// Thread context: blocking; call from a command-line main or a dedicated thread.
public struct ModelBenchmark: SetUpBenchmark {
    public struct Options: Sendable {
        /// Maximum requests in flight for the throughput curve (the seeds use 4 threads).
        public var maxInFlight = 4
        public var latencySeconds = 2.0
        /// Measuring time per point of the 1…N curve.
        public var curveSeconds = 1.5
        /// Raw vs daemon rounds and the camera-rate run (see `PipelineBenchmark.Options`).
        public var pipeline = PipelineBenchmark.Options()
        public init() {}
    }

    let setup: BenchmarkSetup
    let options: Options

    public init(config: DaemonConfig, options: Options, logger: Logger) {
        (setup, self.options) = (BenchmarkSetup(config: config, logger: logger), options)
    }

    /// Measures the model at `sidecar` (or a network file). A model that fails to load or run
    /// gives a row with `error` set, so `--all` goes on with the next model.
    public func row(sidecar: String, catalogue: ModelCatalogue?, progress: (String) -> Void) -> ModelTableRow {
        do { return try measure(sidecar: sidecar, catalogue: catalogue, progress: progress).row } catch {
            var r = ModelTableRow(model: ModelDescriptor.stem(of: sidecar), family: nil, sidecar: sidecar, input: "?", paramsM: nil)
            if let model = try? ModelDescriptor.load(path: sidecar) {
                r = ModelTableRow(model: model.name, family: model.family, sidecar: sidecar,
                                  input: "\(model.inputWidth)x\(model.inputHeight)", paramsM: ModelTable.millions(model.params))
            }
            r.error = "\(error)"
            ModelTable.applyCatalogue(catalogue, to: &r)
            return r
        }
    }

    /// The row plus the raw-vs-daemon details (`camclass bench --model` prints both).
    /// - Throws: what loading or running the model throws (`InferenceError`, `DaemonError`).
    public func measure(sidecar: String, catalogue: ModelCatalogue?,
                        progress: (String) -> Void) throws -> (row: ModelTableRow, pipeline: PipelineBenchmark.Result) {
        let model = try ModelDescriptor.load(path: sidecar)
        var row = ModelTableRow(model: model.name, family: model.family, sidecar: sidecar,
                                input: "\(model.inputWidth)x\(model.inputHeight)", paramsM: ModelTable.millions(model.params))
        ModelTable.applyCatalogue(catalogue, to: &row)
        let result = try measure(model: model, into: &row, progress: progress)
        return (row, result)
    }

    func measure(model: ModelDescriptor, into row: inout ModelTableRow,
                 progress: (String) -> Void) throws -> PipelineBenchmark.Result {
        let labels = try LabelSet.of(model)
        let pipelineBench = PipelineBenchmark(config: config, options: options.pipeline, logger: logger)
        let frames = try pipelineBench.benchFrames()

        // 1. Single stream.
        do {
            var c = config
            c.inference.performanceHint = .latency
            c.inference.workers = 1
            let engine = try makeEngine(config: c, model: model, labels: labels, logger: logger)
            let samples = Self.singleStream(slot: engine.slots[0], frame: frames[0], classes: engine.info.classes,
                                            seconds: options.latencySeconds)
            row.latencyP50Ms = percentile(samples, 0.50)
            row.latencyP99Ms = percentile(samples, 0.99)
            progress(String(format: "%@: single stream p50 %.2f ms, p99 %.2f ms (%d frames)", model.name,
                            row.latencyP50Ms, row.latencyP99Ms, samples.count))
        }
        // 2. Throughput with 1…N in flight.
        do {
            var c = config
            c.inference.performanceHint = .throughput
            c.inference.workers = max(1, options.maxInFlight)
            let engine = try makeEngine(config: c, model: model, labels: labels, logger: logger)
            for slot in engine.slots { NV12Ops.scale(frames[0].view.readOnly, into: slot.input, mode: .crop) }
            row.fpsInFlight = (1...engine.slots.count).map { k in
                Self.throughput(slots: Array(engine.slots.prefix(k)), classes: engine.info.classes, seconds: options.curveSeconds)
            }
            progress("\(model.name): FPS with 1…\(engine.slots.count) in flight: " +
                     row.fpsInFlight.map { String(format: "%.1f", $0) }.joined(separator: " / "))
        }
        // 3. Raw engine vs the daemon path, with the daemon's settings.
        let engine = try makeEngine(config: config, model: model, labels: labels, logger: logger)
        let r = try pipelineBench.run(engine: engine, model: model, labels: labels) { progress("\(model.name): " + $0) }
        row.engine = engine.info.summary
        row.precision = engine.info.precision
        row.workers = r.workers
        row.rawFPS = r.rawMedian
        row.daemonFPS = r.pipelineMedian
        row.addedLatencyP50Ms = r.addedP50
        row.daemonLatencyP50Ms = r.stageMs["total"] ?? 0
        for stage in ModelTable.stageOrder { if let v = r.stageMs[stage] { row.stageMs[stage] = v } }
        return r
    }

    /// Back-to-back inference on one slot; per-call latency in ms. Runs at least 20 calls.
    static func singleStream(slot: any InferenceSlot, frame: NV12Buffer, classes: Int, seconds: Double) -> [Double] {
        NV12Ops.scale(frame.view.readOnly, into: slot.input, mode: .crop)
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: classes)
        defer { scores.deallocate() }
        for _ in 0..<5 { try? slot.infer(scores: scores) }  // warm-up (first calls allocate)
        var samples: [Double] = []
        samples.reserveCapacity(100_000)
        let end = Clock.monotonicNs() + UInt64(seconds * 1e9)
        while samples.count < 20 || (Clock.monotonicNs() < end && samples.count < 100_000) {
            let t0 = Clock.monotonicNs()
            guard (try? slot.infer(scores: scores)) != nil else { break }
            samples.append(Double(Clock.monotonicNs() - t0) / 1e6)
        }
        return samples
    }

    /// `slots.count` threads inferring back to back, one per slot; completed inferences per second.
    static func throughput(slots: [any InferenceSlot], classes: Int, seconds: Double) -> Double {
        let done = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        // Every thread warms up, then all (and the clock) start together.
        let start = ThreadBarrier(parties: slots.count + 1)
        let threads = slots.enumerated().map { i, slot in
            DedicatedThread(name: "bench-flight\(i)") {
                let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: classes)
                defer { scores.deallocate() }
                try? slot.infer(scores: scores)  // warm-up outside the window
                start.arriveAndWait()
                while !stop.load(ordering: .relaxed) {
                    if (try? slot.infer(scores: scores)) != nil { done.add(1, ordering: .relaxed) }
                }
            }
        }
        start.arriveAndWait()
        let startNs = Clock.monotonicNs()
        Clock.sleep(untilMonotonicNs: startNs + UInt64(seconds * 1e9))
        let counted = done.load(ordering: .relaxed)
        let elapsed = Clock.monotonicNs() - startNs
        stop.store(true, ordering: .relaxed)
        threads.forEach { $0.join() }
        return ModelTable.fps(count: counted, elapsedNs: elapsed)
    }
}

extension ModelDescriptor {
    /// `dir/name.model.yaml` → `name`.
    static func stem(of path: String) -> String {
        var s = path.split(separator: "/").last.map(String.init) ?? path
        for ext in [".model.yaml", ".yaml", ".onnx", ".xml"] where s.hasSuffix(ext) { s.removeLast(ext.count); break }
        return s
    }
}
