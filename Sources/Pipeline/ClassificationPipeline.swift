import Capture
import Glibc
import ImageOps
import Inference
import Logging
import WireFormat
import Support
import Synchronization

public struct PipelineOptions: ConfigSection {
    public static let section = "pipeline"
    /// Frames waiting for a worker; when full the oldest is dropped.
    public var queueCapacity = 2
    /// The `model:` section's top_k and resize.
    public var model = ModelOptions()
    /// Stop after this many published classifications (tests, benchmarks); nil = run until stopped.
    public var frameLimit: Int?
    /// The first frame's `seq`: a pipeline that replaces another on reload carries on its numbering,
    /// so `seq` grows for the daemon's life.
    public var firstSeq: UInt64 = 0
    /// Consecutive inference failures after which the engine counts as unhealthy and the pipeline stops.
    public var maxConsecutiveFailures = 50
    /// Stable labels (smoothing, hysteresis, dwell) on the publishing worker; nil = off.
    public var stable: StableLabelOptions?
    /// Names for records and the stable-label space (coarse groups); nil = the model's labels.
    @NotCompared public var vocabulary: RecordVocabulary? = nil
    /// Seconds of per-stage latencies `status` summarises.
    public var latencyWindowSeconds = 10.0
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        queueCapacity = try r.int("queue_capacity", queueCapacity, 1...64, unit: "frames")
        maxConsecutiveFailures = try r.int("max_consecutive_failures", maxConsecutiveFailures, 1...100_000)
        latencyWindowSeconds = try r.double("latency_window_s", latencyWindowSeconds, 1...3600, unit: "seconds")
    }
}

/// The `model:` section: which model, how many of its best classes each record carries, and how a
/// frame is fitted to the model's input.
public struct ModelOptions: ConfigSection {
    public static let section = "model"
    /// The model's sidecar (`.model.yaml`) or network file.
    public var path = "models/efficientnet_lite0.model.yaml"
    /// Entries in each record's `top` (bounded: every entry is in every record on every subscriber).
    public var topK = 5
    public var resize: ResizeMode = .crop
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        path = try r.string("path", path, maxBytes: 4095, allowEmpty: false)
        topK = try r.int("top_k", topK, 1...100, unit: "classes")
        resize = try r.choice("resize", resize)
    }
}

extension ResizeMode: ConfigEnum {}

public enum PipelineError: Error, CustomStringConvertible {
    case source(String)
    case engineUnhealthy(String)

    public var description: String {
        switch self {
        case .source(let s): return "frame source failed: \(s)"
        case .engineUnhealthy(let s): return "inference engine unhealthy: \(s)"
        }
    }
}

/// What a source added to a pipeline is called and how it shares the engine.
public struct LaneSpec: Sendable {
    public var name: String
    public var weight = 1
    /// The first frame's `seq` (a source that carries on across a reload keeps its numbering).
    public var firstSeq: UInt64 = 0
    public init(name: String, weight: Int = 1, firstSeq: UInt64 = 0) {
        self.name = name
        self.weight = weight
        self.firstSeq = firstSeq
    }
}

/// capture thread per source → `FrameScheduler` (a bounded ring per source, fair weighted pick) →
/// N inference workers (one engine slot each; each converts its frame straight into its slot's
/// input) → the result ring, which restores the order frames were taken in → record sinks.
/// There is no result thread: the worker that completes the next result in order publishes it and
/// any results after it that are already complete (one worker at a time, the "publishing worker"), so a frame
/// costs no hand-off between the engine's completion and the sinks.
/// Sources can be added and removed while it runs; the others keep publishing meanwhile.
/// Engine slots, result ring, conversion scratch and encoders are sized when the pipeline or a
/// source is set up, so the steady state allocates nothing per frame.
/// Thread context: `start`, `stop`, `wait`, `addSource`, `removeSource` from the owner (they
/// block); everything else on dedicated threads.
public final class ClassificationPipeline: @unchecked Sendable {
    public let engine: any InferenceEngine
    public let options: PipelineOptions
    public let scheduler = FrameScheduler()
    /// Time per stage (capture hand-over, convert into the input, infer, post-process, publish), for `camclass bench`.
    public let stageTimes = StageTimes()
    private let sinks: [any RecordSink]
    private let modelName: String
    private let logger: Logger
    private let onResult: (@Sendable (ClassificationResult) -> Void)?
    /// Names used in records (class labels, stable labels).
    public let vocabulary: RecordVocabulary
    /// Per-stage latencies of the last `latencyWindowSeconds`, over every source.
    public let latency: LatencyWindow

    /// The sources, in the order they were added; guarded by `lanesLock`.
    private let lanesLock = Mutex<[SourceLane]>([])
    /// Counters of sources removed while running (so the totals never go backwards).
    private let removedTotals = Mutex(PipelineCounters())
    /// The largest frame any source delivers: the workers' conversion scratch is sized from it,
    /// and re-made (outside the per-frame path) when a larger source is added.
    private let scratchSize = Mutex<(width: Int, height: Int)>((2, 2))
    private let scratchGeneration = Atomic<Int>(0)

    // Result ring: ticket t lives in results[t % count]; `ready` marks completed tickets.
    private let results: [ClassificationResult]
    private var resultLanes: [SourceLane?]
    private let resultCond = Condition()
    private var ready: [Bool]
    private var nextToEmit: UInt64 = 0
    /// A worker is publishing results in order right now (see `emitReady`); guarded by `resultCond`.
    private var emitting = false
    /// Workers waiting for their result slot to be published (the ring is full); guarded by `resultCond`.
    private var slotWaiters = 0
    private var workersRunning = 0
    /// The frame limit was reached; written by the emitter (one at a time, ordered by `resultCond`).
    private var limitHit = false
    private var finished = false
    private var started = false
    /// Called once when the pipeline finishes (see `whenFinished`); guarded by `resultCond`.
    private var finishObservers: [@Sendable () -> Void] = []

    /// Inference failures are logged at most once per 10 s, with a count of those not logged.
    private let inferenceFailureLog = SharedLogRateLimiter()
    private let published = Atomic<Int>(0)
    /// Frames captured by every source (for the pipeline-wide input rate).
    private let capturedTotal = Atomic<Int>(0)
    private let consecutiveFailures = Atomic<Int>(0)
    private let stopRequested = Atomic<Bool>(false)
    private let engineFailure = Mutex<PipelineError?>(nil)
    private var threads: [DedicatedThread] = []

    /// A pipeline over `engine` with no source yet (`addSource`).
    /// - Parameters:
    ///   - sinks: receive every record's JSON line, in order, on whichever worker thread publishes
    ///     it (one at a time; must not block).
    ///   - onResult: optional observer, called like the sinks (e.g. console printing).
    public init(engine: any InferenceEngine, labels: LabelSet, modelName: String,
                sinks: [any RecordSink], options: PipelineOptions, logger: Logger,
                onResult: (@Sendable (ClassificationResult) -> Void)? = nil) {
        self.engine = engine
        self.options = options
        self.sinks = sinks
        self.modelName = modelName
        self.logger = logger
        self.onResult = onResult
        let workers = engine.slots.count
        let ringSize = max(2, workers * 2)
        // The stable-label stage needs every class's probability; otherwise only the top-k is kept.
        let allClasses = options.stable == nil ? 0 : engine.info.classes
        results = (0..<ringSize).map { _ in ClassificationResult(maxTopK: max(1, options.model.topK), classes: allClasses) }
        resultLanes = Array(repeating: nil, count: ringSize)
        ready = Array(repeating: false, count: ringSize)
        vocabulary = options.vocabulary ?? RecordVocabulary(labels: labels.names)
        latency = LatencyWindow(seconds: options.latencyWindowSeconds)
    }

    /// A pipeline with one source, named after it (the single-camera daemon, tools, tests).
    public convenience init(source: any FrameSource, engine: any InferenceEngine, labels: LabelSet, modelName: String,
                            sinks: [any RecordSink], options: PipelineOptions, logger: Logger,
                            onResult: (@Sendable (ClassificationResult) -> Void)? = nil) {
        self.init(engine: engine, labels: labels, modelName: modelName, sinks: sinks, options: options, logger: logger,
                  onResult: onResult)
        addLane(source: source, spec: LaneSpec(name: source.name, firstSeq: options.firstSeq))
    }

    /// The sources now running, in the order they were added.
    public var lanes: [SourceLane] { lanesLock.withLock { $0 } }
    public func lane(named name: String) -> SourceLane? { lanes.first { $0.name == name } }
    /// The first source (the only one for a single-camera daemon).
    public var source: any FrameSource { lanes.first!.source }

    /// Leases a source may have out at once: its ring, one per worker converting, one being pushed.
    public var leasesPerSource: Int { options.queueCapacity + engine.slots.count + 1 }

    /// Adds a source: sized, wired, and, when the pipeline runs, opened and started.
    /// - Throws: whatever the source's `open` throws (then nothing was added).
    @discardableResult
    public func addSource(_ source: any FrameSource, spec: LaneSpec) throws -> SourceLane {
        source.reserveLeases(leasesPerSource)
        let running = resultCond.locked { started && !finished }
        if running { try source.open() }
        let lane = addLane(source: source, spec: spec)
        if running { startCapture(lane) }
        logger.info("source added", metadata: ["source": "\(spec.name)", "source.weight": "\(lane.weight)"])
        return lane
    }

    @discardableResult
    private func addLane(source: any FrameSource, spec: LaneSpec) -> SourceLane {
        source.reserveLeases(leasesPerSource)
        let encoder = RecordEncoder(source: spec.name, model: modelName, vocabulary: vocabulary,
                                    fileNames: source.fileNames, maxTopK: max(1, options.model.topK))
        let stable = options.stable.map { StableLabel(vocabulary: vocabulary, options: $0) }
        let lane = SourceLane(name: spec.name, source: source, weight: spec.weight, queueCapacity: options.queueCapacity,
                              firstSeq: spec.firstSeq, encoder: encoder, stable: stable,
                              latencyWindowSeconds: options.latencyWindowSeconds)
        let size = source.maxFrameSize
        let grew = scratchSize.withLock { s -> Bool in
            guard size.width > s.width || size.height > s.height else { return false }
            s = (max(s.width, size.width), max(s.height, size.height))
            return true
        }
        if grew { scratchGeneration.add(1, ordering: .releasing) }
        scheduler.add(lane)
        lanesLock.withLock { $0.append(lane) }
        return lane
    }

    /// Stops one source, lets its queued and in-flight frames be published, closes it and takes
    /// it out; the other sources keep running meanwhile. Blocks until done.
    /// - Returns: the removed lane (its counters stay readable), nil when no source has that name.
    @discardableResult
    public func removeSource(named name: String, closeSource: Bool = true) -> SourceLane? {
        guard let lane = lane(named: name) else { return nil }
        scheduler.hold()  // the pipeline does not end just because this was its last source
        defer { scheduler.release() }
        lane.stopRequested.store(true, ordering: .relaxed)
        lane.source.requestStop()
        scheduler.close(lane)
        lane.captureThread?.join()
        lane.captureThread = nil
        scheduler.waitDrained(lane)
        let final = scheduler.counters(lane)
        lane.finalQueue.withLock { $0 = final }
        scheduler.remove(lane)
        lanesLock.withLock { $0.removeAll { $0 === lane } }
        removedTotals.withLock { $0 = $0.adding(counters(of: lane)) }
        if lane.state == .streaming || lane.state == .starting { lane.stateRaw.store(SourceState.stopped.rawValue, ordering: .relaxed) }
        if closeSource { lane.source.close() }
        logger.info("source removed", metadata: ["source": "\(name)", "source.published": "\(lane.published.load(ordering: .relaxed))"])
        return lane
    }

    /// Keeps the pipeline running while it has no source (a reload replacing the only one).
    public func holdOpen() { scheduler.hold() }
    public func releaseHold() { scheduler.release() }

    /// What the first source is doing (the single-source view; `lanes` has each).
    public var sourceState: SourceState { lanes.first?.state ?? .stopped }
    /// Size of the first source's frames last classified.
    public var frameSize: (width: Int, height: Int) { lanes.first?.frameSize ?? (0, 0) }
    /// The first source's current stable label's name (nil when the stage is off).
    public var stableLabelName: String? { lanes.first?.stableLabelName }

    /// One source's counters.
    public func counters(of lane: SourceLane) -> PipelineCounters {
        let q = lane.finalQueue.withLock { $0 } ?? scheduler.counters(lane)
        var c = PipelineCounters()
        c.captured = lane.captured.load(ordering: .relaxed)
        c.published = lane.published.load(ordering: .relaxed)
        c.droppedQueueFull = q.droppedOldest
        c.droppedSource = lane.sourceDropped.load(ordering: .relaxed)
        c.droppedCorrupt = lane.corrupt.load(ordering: .relaxed)
        c.inferenceErrors = lane.inferenceErrors.load(ordering: .relaxed)
        c.queueDepth = q.depth
        return c
    }

    /// Every source's counters added up, removed sources included.
    public var counters: PipelineCounters {
        lanes.reduce(removedTotals.withLock { $0 }) { $0.adding(counters(of: $1)) }
    }

    /// Why the pipeline stopped on its own (an unhealthy engine; a source that failed, once no
    /// source runs any more), if it did.
    public var error: PipelineError? {
        if let e = engineFailure.withLock({ $0 }) { return e }
        guard isFinished else { return nil }
        for lane in lanes { if let e = lane.error { return .source(e) } }
        return nil
    }

    /// Opens every source and starts all threads.
    /// - Throws: whatever a source's `open` throws (missing camera, busy device…); sources opened
    ///   before it are closed again.
    public func start() throws {
        let current = lanes
        var opened: [any FrameSource] = []
        do {
            for lane in current {
                try lane.source.open()
                opened.append(lane.source)
            }
        } catch {
            for s in opened { s.requestStop(); s.close() }
            throw error
        }
        let slots = engine.slots
        resultCond.locked {
            workersRunning = slots.count
            started = true
        }
        for (i, slot) in slots.enumerated() {
            threads.append(DedicatedThread(name: "camclass-infer\(i)") { [self] in workerLoop(slot) })
        }
        for lane in current { startCapture(lane) }
        logger.info("pipeline started", metadata: [
            "pipeline.workers": "\(slots.count)", "pipeline.queue": "\(options.queueCapacity)",
            "pipeline.sources": "\(current.map(\.name).joined(separator: ","))", "pipeline.resize": "\(options.model.resize.rawValue)"])
    }

    private func startCapture(_ lane: SourceLane) {
        let index = lanes.firstIndex { $0 === lane } ?? 0
        lane.captureThread = DedicatedThread(name: index == 0 ? "camclass-capture" : "camclass-capture\(index)") { [self] in
            captureLoop(lane)
        }
    }

    /// Asks every source to stop; frames already captured are still classified and published.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        for lane in lanes {
            lane.stopRequested.store(true, ordering: .relaxed)
            lane.source.requestStop()
        }
    }

    /// Blocks until every thread has finished (after `stop`, the end of the replays, or the frame
    /// limit), then closes the sources.
    public func wait() {
        for lane in lanes {
            lane.captureThread?.join()
            lane.captureThread = nil
        }
        for t in threads { t.join() }
        threads.removeAll()
        for lane in lanes { lane.source.close() }
    }

    /// Blocks until the pipeline finished on its own or `timeoutNs` passed; true when finished.
    public func waitFinished(timeoutNs: UInt64) -> Bool {
        resultCond.wait(timeoutNs: timeoutNs, until: { finished })
    }

    /// Whether every thread's work is done (stopped, end of the replays, frame limit, failure). Never blocks.
    public var isFinished: Bool { resultCond.locked { finished } }

    /// Runs `body` once when the pipeline finishes: on the last worker thread as it ends, or at
    /// once on the caller's thread when it already has. Lets an owner await the end instead of
    /// polling it. `body` must not block (it runs on a pipeline thread, after the last record).
    public func whenFinished(_ body: @escaping @Sendable () -> Void) {
        let already = resultCond.locked { () -> Bool in
            if finished { return true }
            finishObservers.append(body)
            return false
        }
        if already { body() }
    }

    // MARK: threads

    private func captureLoop(_ lane: SourceLane) {
        defer { scheduler.close(lane) }
        let source = lane.source
        while !stopRequested.load(ordering: .relaxed) && !lane.stopRequested.load(ordering: .relaxed) {
            var frame: FrameLease
            do {
                guard let next = try source.nextFrame() else {
                    if !stopRequested.load(ordering: .relaxed) && !lane.stopRequested.load(ordering: .relaxed) {
                        lane.ended.store(true, ordering: .relaxed)
                        logger.info("source ended", metadata: ["source": "\(lane.name)"])
                    }
                    break
                }
                frame = next
            } catch {
                lane.failure.withLock { $0 = "\(error)" }
                lane.stateRaw.store(SourceState.failed.rawValue, ordering: .relaxed)
                logger.error("frame source failed", metadata: ["source": "\(lane.name)", "error": "\(error)"])
                break
            }
            frame.info.seq = lane.nextSeq
            lane.nextSeq += 1
            if frame.info.handOverNs > 0 { stageTimes.add(.capture, frame.info.handOverNs) }
            if frame.info.sourceDropped > 0 { lane.sourceDropped.add(Int(frame.info.sourceDropped), ordering: .relaxed) }
            lane.captured.add(1, ordering: .relaxed)
            capturedTotal.add(1, ordering: .relaxed)
            scheduler.push(frame, lane: lane)
        }
    }

    private func makeConverter() -> (ModelInputConverter, Int) {
        let generation = scratchGeneration.load(ordering: .acquiring)
        let size = scratchSize.withLock { $0 }
        let input = engine.slots[0].input.layout
        // +1: a source's size is even (NV12), a JPEG's may be one more (its last column/row is cropped).
        return (ModelInputConverter(maxWidth: size.width + 1, maxHeight: size.height + 1,
                                    inputWidth: input.width, inputHeight: input.height), generation)
    }

    private func workerLoop(_ slot: any InferenceSlot) {
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: engine.info.classes)
        scores.initialize(repeating: 0)
        var (converter, generation) = makeConverter()
        defer {
            scores.deallocate()
            // Every worker emits what it completed before it leaves (`emitReady`), so when the
            // last one leaves every result has been published.
            let last = resultCond.locked { () -> Bool in
                workersRunning -= 1
                return workersRunning == 0
            }
            if last { finishPipeline() }
        }
        let logits = engine.info.outputsLogits
        while true {
            var picked: SourceLane?
            guard let frame = scheduler.pop(lane: &picked), let lane = picked else { break }
            if scratchGeneration.load(ordering: .acquiring) != generation {
                (converter, generation) = makeConverter()  // a larger source was added (not per frame)
            }
            let info = frame.info
            let ticket = info.ticket
            let t0 = Clock.monotonicNs()
            var ok = true
            var converted = true
            do throws(FrameConversionError) {
                try converter.convert(frame.payload, into: slot.input, mode: options.model.resize)
            } catch {
                converted = false
                ok = false
                frame.reject(error)
                let n = lane.corrupt.add(1, ordering: .relaxed).newValue
                // The first, then every hundredth: a camera sending garbage must not flood the log.
                if n == 1 || n % 100 == 0 {
                    logger.warning("corrupt frame dropped", metadata: [
                        "source": "\(lane.name)", "frame.error": "\(error)", "source.corrupt_frames": "\(n)"])
                }
            }
            _ = consume frame  // the buffer goes back (to the driver) as soon as it is converted
            let t1 = Clock.monotonicNs()
            if converted {
                do {
                    try slot.infer(scores: scores)
                    consecutiveFailures.store(0, ordering: .relaxed)
                } catch {
                    ok = false
                    lane.inferenceErrors.add(1, ordering: .relaxed)
                    let n = consecutiveFailures.add(1, ordering: .relaxed).newValue
                    // Rate-limited, not per consecutive run: an engine failing every other frame
                    // would otherwise log a line per failure (issue 11 F19).
                    if let suppressed = inferenceFailureLog.admit() {
                        logger.warning("inference failed; frame dropped", metadata: [
                            "error": "\(error)", "inference.consecutive_failures": "\(n)",
                            "inference.errors_total": "\(counters.inferenceErrors)", "log.suppressed": "\(suppressed)"])
                    }
                    if n >= options.maxConsecutiveFailures {
                        engineFailure.withLock { $0 = $0 ?? .engineUnhealthy("\(n) consecutive failures, last: \(error)") }
                        stop()
                    }
                }
            }
            let t2 = Clock.monotonicNs()
            stageTimes.add(.convert, t1 - t0)
            if converted { stageTimes.add(.infer, t2 - t1) }
            // Wait for this ticket's result slot to be free (publishing lags ≤ ring size; the
            // ring is twice the workers, so this waits only behind a slow sink).
            let index = Int(ticket % UInt64(results.count))
            resultCond.locked {
                slotWaiters += 1
                resultCond.waitLocked(until: { ticket < nextToEmit + UInt64(results.count) && !ready[index] })
                slotWaiters -= 1
            }
            let r = results[index]
            r.seq = info.seq
            r.captureNs = info.captureNs
            r.fileIndex = info.fileIndex
            r.width = Int32(info.width)
            r.height = Int32(info.height)
            r.preprocessNs = t1 - t0
            r.inferenceNs = t2 - t1
            r.ok = ok
            if ok {
                let t3 = Clock.monotonicNs()
                if logits { Postprocess.softmax(scores) }
                r.topCount = Postprocess.topK(UnsafeBufferPointer(scores), k: options.model.topK,
                                              classes: r.topClasses, scores: r.topScores)
                if r.allScores.count > 0 {
                    UnsafeMutableRawBufferPointer(r.allScores).copyMemory(from: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: scores[0..<min(scores.count, r.allScores.count)])))
                }
                stageTimes.add(.postprocess, Clock.monotonicNs() - t3)
            } else {
                r.topCount = 0
            }
            let emitter = resultCond.locked { () -> Bool in
                resultLanes[index] = lane
                ready[index] = true
                if emitting { return false }  // the emitter publishes it when it is next in order
                emitting = true
                return true
            }
            if emitter { emitReady() }
        }
    }

    /// Publishes, in ticket order, every completed result from `nextToEmit` on, and stops at the
    /// first one not completed yet (the worker completing it emits it then). Runs on the worker
    /// that set `emitting`; checking for the next result and clearing `emitting` happen under one
    /// lock, so a result completed meanwhile is never left behind.
    private func emitReady() {
        while true {
            var index = -1
            var lane: SourceLane?
            let next = resultCond.locked { () -> Bool in
                let i = Int(nextToEmit % UInt64(results.count))
                guard ready[i] else {
                    emitting = false
                    return false
                }
                index = i
                lane = resultLanes[i]
                return true
            }
            guard next else { return }
            if let lane { publish(results[index], lane: lane) }
            let wake = resultCond.locked { () -> Bool in
                ready[index] = false
                resultLanes[index] = nil
                nextToEmit += 1
                return slotWaiters > 0
            }
            if wake { resultCond.broadcast() }
            if let lane { scheduler.finished(lane: lane) }
        }
    }

    /// The end, once the last worker has left: each source's final state, then the observers.
    private func finishPipeline() {
        let limitHit = resultCond.locked { self.limitHit }
        for lane in lanes where lane.state != .failed {
            let end: SourceState = engineFailure.withLock({ $0 }) != nil ? .failed
                : (limitHit || lane.ended.load(ordering: .relaxed)) ? .ended : .stopped
            lane.stateRaw.store(end.rawValue, ordering: .relaxed)
        }
        let observers = resultCond.locked { () -> [@Sendable () -> Void] in
            finished = true
            defer { finishObservers = [] }
            return finishObservers
        }
        resultCond.broadcast()
        for observe in observers { observe() }
    }

    /// Publishes one result of `lane` (the emitting worker).
    private func publish(_ r: ClassificationResult, lane: SourceLane) {
        let limitReached = options.frameLimit.map { published.load(ordering: .relaxed) >= $0 } ?? false
        guard r.ok && !limitReached else { return }
        let c = counters(of: lane)
        r.dropped = UInt64(max(0, c.droppedTotal - lane.lostReported))
        lane.lostReported = c.droppedTotal
        let now = Clock.monotonicNs()
        r.totalNs = now >= r.captureNs ? now - r.captureNs : 0
        r.realtimeNs = r.captureNs &+ (Clock.realtimeNs() &- now)
        if let stable = lane.stable {
            stable.apply(to: r)
            lane.stableCurrent.store(r.stableLabel, ordering: .relaxed)
        }
        if lane.frameWidth.load(ordering: .relaxed) != Int(r.width) || lane.frameHeight.load(ordering: .relaxed) != Int(r.height) {
            lane.frameWidth.store(Int(r.width), ordering: .relaxed)
            lane.frameHeight.store(Int(r.height), ordering: .relaxed)
        }
        if lane.stateRaw.load(ordering: .relaxed) != SourceState.streaming.rawValue {
            lane.stateRaw.store(SourceState.streaming.rawValue, ordering: .relaxed)
        }
        // An empty line did not fit the encoder (sized for the configuration, so never
        // expected): skipped, never published cut.
        let line = lane.encoder.classification(r)
        if !line.isEmpty {
            let record = PublishedRecord(kind: .classification, json: line, result: r, spans: lane.encoder.spans,
                                         source: lane.encoder.sourceName)
            for sink in sinks { sink.publish(record) }
        }
        if r.stableChanged {
            let json = lane.encoder.change(r)
            let change = PublishedRecord(kind: .change, json: json, result: r, source: lane.encoder.sourceName)
            if !json.isEmpty { for sink in sinks { sink.publish(change) } }
        }
        let publishedNs = Clock.monotonicNs()
        stageTimes.add(.publish, publishedNs - now)
        var sample = LatencyWindow.Sample()
        sample.timeNs = publishedNs
        sample.preprocessNs = r.preprocessNs
        sample.inferenceNs = r.inferenceNs
        sample.totalNs = r.totalNs
        sample.waitNs = r.totalNs &- min(r.totalNs, r.preprocessNs + r.inferenceNs)
        sample.publishNs = publishedNs - now
        sample.captured = c.captured
        lane.latency.record(sample)
        sample.captured = capturedTotal.load(ordering: .relaxed)
        latency.record(sample)
        onResult?(r)
        lane.published.add(1, ordering: .relaxed)
        let n = published.add(1, ordering: .relaxed).newValue
        if let limit = options.frameLimit, n >= limit {
            limitHit = true
            logger.info("frame limit reached", metadata: ["pipeline.frames": "\(limit)"])
            stop()
        }
    }
}
