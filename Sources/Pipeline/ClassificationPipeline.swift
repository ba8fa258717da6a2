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
    /// Stable labels (smoothing, hysteresis, dwell) on the result thread; nil = off.
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

/// Counters for every stage; every drop has a cause.
public struct PipelineCounters: Sendable, Equatable {
    public var captured = 0
    public var published = 0
    public var droppedQueueFull = 0
    public var droppedPoolExhausted = 0
    public var droppedSource = 0
    public var inferenceErrors = 0
    public var queueDepth = 0
    public var droppedTotal: Int { droppedQueueFull + droppedPoolExhausted + droppedSource + inferenceErrors }
}

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

/// capture thread → drop-oldest `FrameQueue` → N inference workers (one engine slot each) →
/// result thread (restores frame order) → record sinks.
/// The frame pool, engine slots, result ring and encoder buffer are all sized at start-up, so the
/// steady state allocates nothing per frame.
/// Thread context: `start`, `stop`, `wait` from the owner; everything else on dedicated threads.
public final class ClassificationPipeline: @unchecked Sendable {
    public let source: any FrameSource
    public let engine: any InferenceEngine
    public let options: PipelineOptions
    public let pool: FramePool
    public let queue: FrameQueue
    /// Time per stage (convert, scale, infer, post-process, publish), for `camclass bench`.
    public let stageTimes = StageTimes()
    private let sinks: [any RecordSink]
    private let encoder: RecordEncoder
    private let logger: Logger
    private let onResult: (@Sendable (ClassificationResult) -> Void)?
    /// Names used in records (class labels, stable labels).
    public let vocabulary: RecordVocabulary
    /// Per-stage latencies of the last `latencyWindowSeconds`, for `status`.
    public let latency: LatencyWindow
    private let stable: StableLabel?
    private let stableCurrent = Atomic<Int32>(-1)
    private let stateRaw = Atomic<UInt8>(SourceState.starting.rawValue)
    private let frameWidth = Atomic<Int>(0)
    private let frameHeight = Atomic<Int>(0)
    private let sourceEnded = Atomic<Bool>(false)

    // Result ring: ticket t lives in results[t % count]; `ready` marks completed tickets.
    private let results: [ClassificationResult]
    private let resultCond = Condition()
    private var ready: [Bool]
    private var nextToEmit: UInt64 = 0
    private var workersRunning = 0
    private var finished = false
    /// Called once when the pipeline finishes (see `whenFinished`); guarded by `resultCond`.
    private var finishObservers: [@Sendable () -> Void] = []

    private let captured = Atomic<Int>(0)
    private let sourceDropped = Atomic<Int>(0)
    private let inferenceErrors = Atomic<Int>(0)
    /// Inference failures are logged at most once per 10 s, with a count of those not logged.
    private let inferenceFailureLog = SharedLogRateLimiter()
    private let published = Atomic<Int>(0)
    private let consecutiveFailures = Atomic<Int>(0)
    private let stopRequested = Atomic<Bool>(false)
    private let failure = Mutex<PipelineError?>(nil)
    private var threads: [DedicatedThread] = []

    /// - Parameters:
    ///   - sinks: receive every record's JSON line on the result thread (must not block).
    ///   - onResult: optional observer on the result thread (e.g. console printing).
    public init(source: any FrameSource, engine: any InferenceEngine, labels: LabelSet, modelName: String,
                sinks: [any RecordSink], options: PipelineOptions, logger: Logger,
                onResult: (@Sendable (ClassificationResult) -> Void)? = nil) {
        self.source = source
        self.engine = engine
        self.options = options
        self.sinks = sinks
        self.logger = logger
        self.onResult = onResult
        let workers = engine.slots.count
        let size = source.maxFrameSize
        // Enough buffers that the capture thread always finds one: queue + one per worker + the
        // frame being captured + one spare.
        pool = FramePool(count: options.queueCapacity + workers + 2, width: size.width, height: size.height)
        queue = FrameQueue(capacity: options.queueCapacity, pool: pool, policy: source.isLive ? .dropOldest : .block)
        let ringSize = max(2, workers * 2)
        // The stable-label stage needs every class's probability; otherwise only the top-k is kept.
        let allClasses = options.stable == nil ? 0 : engine.info.classes
        results = (0..<ringSize).map { _ in ClassificationResult(maxTopK: max(1, options.model.topK), classes: allClasses) }
        ready = Array(repeating: false, count: ringSize)
        let vocabulary = options.vocabulary ?? RecordVocabulary(labels: labels.names)
        self.vocabulary = vocabulary
        encoder = RecordEncoder(source: source.name, model: modelName, vocabulary: vocabulary,
                                fileNames: source.fileNames, maxTopK: max(1, options.model.topK))
        stable = options.stable.map { StableLabel(vocabulary: vocabulary, options: $0) }
        latency = LatencyWindow(seconds: options.latencyWindowSeconds)
    }

    /// What the source is doing, as far as the pipeline can tell (frames flowing, ended, failed…).
    public var sourceState: SourceState { SourceState(rawValue: stateRaw.load(ordering: .relaxed)) ?? .starting }
    /// Size of the frames last classified (the negotiated format's size); 0 before the first.
    public var frameSize: (width: Int, height: Int) { (frameWidth.load(ordering: .relaxed), frameHeight.load(ordering: .relaxed)) }
    /// The current stable label's name (nil when the stage is off).
    public var stableLabelName: String? {
        guard stable != nil else { return nil }
        let i = Int(stableCurrent.load(ordering: .relaxed))
        return i >= 0 && i < vocabulary.stableNames.count ? vocabulary.stableNames[i] : "unknown"
    }

    public var counters: PipelineCounters {
        let q = queue.counters
        return PipelineCounters(captured: captured.load(ordering: .relaxed), published: published.load(ordering: .relaxed),
                                droppedQueueFull: q.droppedOldest, droppedPoolExhausted: pool.exhaustedCount,
                                droppedSource: sourceDropped.load(ordering: .relaxed),
                                inferenceErrors: inferenceErrors.load(ordering: .relaxed), queueDepth: q.depth)
    }

    /// Why the pipeline stopped on its own (source failure, unhealthy engine), if it did.
    public var error: PipelineError? { failure.withLock { $0 } }

    /// Opens the source and starts all threads.
    /// - Throws: whatever the source's `open` throws (missing camera, busy device…).
    public func start() throws {
        try source.open()
        let slots = engine.slots
        resultCond.locked { workersRunning = slots.count }
        threads.append(DedicatedThread(name: "camclass-result") { [self] in resultLoop() })
        for (i, slot) in slots.enumerated() {
            threads.append(DedicatedThread(name: "camclass-infer\(i)") { [self] in workerLoop(slot) })
        }
        threads.append(DedicatedThread(name: "camclass-capture") { [self] in captureLoop() })
        logger.info("pipeline started", metadata: [
            "pipeline.workers": "\(slots.count)", "pipeline.queue": "\(options.queueCapacity)",
            "pipeline.pool": "\(pool.capacity)", "pipeline.resize": "\(options.model.resize.rawValue)"])
    }

    /// Asks the source to stop; frames already captured are still classified and published.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        source.requestStop()
    }

    /// Blocks until every thread has finished (after `stop`, the end of a replay, or the frame limit).
    public func wait() {
        for t in threads { t.join() }
        threads.removeAll()
        source.close()
    }

    /// Blocks until the pipeline finished on its own or `timeoutNs` passed; true when finished.
    public func waitFinished(timeoutNs: UInt64) -> Bool {
        resultCond.wait(timeoutNs: timeoutNs, until: { finished })
    }

    /// Whether every thread's work is done (stopped, end of a replay, frame limit, failure). Never blocks.
    public var isFinished: Bool { resultCond.locked { finished } }

    /// Runs `body` once when the pipeline finishes: on the result thread as it ends, or at once on
    /// the caller's thread when it already has. Lets an owner await the end instead of polling it.
    /// `body` must not block (it runs on the result thread, after the last record).
    public func whenFinished(_ body: @escaping @Sendable () -> Void) {
        let already = resultCond.locked { () -> Bool in
            if finished { return true }
            finishObservers.append(body)
            return false
        }
        if already { body() }
    }

    // MARK: threads

    private func captureLoop() {
        var seq = options.firstSeq
        defer { queue.close() }
        while !stopRequested.load(ordering: .relaxed) {
            guard var frame = pool.acquire() else {
                // Cannot happen with the pool sized as above; counted, and we back off briefly
                // (a sleep, not a wait: no event would say a buffer came back, and it never idles here).
                usleep(500)
                continue
            }
            do {
                guard try source.nextFrame(into: &frame) else {
                    if !stopRequested.load(ordering: .relaxed) { sourceEnded.store(true, ordering: .relaxed) }
                    break
                }
            } catch {
                failure.withLock { $0 = .source("\(error)") }
                logger.error("frame source failed", metadata: ["source": "\(source.name)", "error": "\(error)"])
                break
            }
            frame.info.seq = seq
            seq += 1
            if frame.info.convertNs > 0 { stageTimes.add(.convert, frame.info.convertNs) }
            if frame.info.sourceDropped > 0 { sourceDropped.add(Int(frame.info.sourceDropped), ordering: .relaxed) }
            captured.add(1, ordering: .relaxed)
            queue.push(frame)
        }
    }

    private func workerLoop(_ slot: any InferenceSlot) {
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: engine.info.classes)
        scores.initialize(repeating: 0)
        defer {
            scores.deallocate()
            resultCond.locked { workersRunning -= 1 }
            resultCond.broadcast()
        }
        let logits = engine.info.outputsLogits
        while true {
            guard let frame = queue.pop() else { break }
            let ticket = frame.info.ticket
            let t0 = Clock.monotonicNs()
            NV12Ops.scale(frame.pixels, into: slot.input, mode: options.model.resize)
            let info = frame.info
            _ = consume frame  // the buffer goes back to the pool as soon as it is scaled
            let t1 = Clock.monotonicNs()
            var ok = true
            do {
                try slot.infer(scores: scores)
                consecutiveFailures.store(0, ordering: .relaxed)
            } catch {
                ok = false
                inferenceErrors.add(1, ordering: .relaxed)
                let n = consecutiveFailures.add(1, ordering: .relaxed).newValue
                // Rate-limited, not per consecutive run: an engine failing every other frame
                // would otherwise log a line per failure (issue 11 F19).
                if let suppressed = inferenceFailureLog.admit() {
                    logger.warning("inference failed; frame dropped", metadata: [
                        "error": "\(error)", "inference.consecutive_failures": "\(n)",
                        "inference.errors_total": "\(inferenceErrors.load(ordering: .relaxed))", "log.suppressed": "\(suppressed)"])
                }
                if n >= options.maxConsecutiveFailures {
                    failure.withLock { $0 = $0 ?? .engineUnhealthy("\(n) consecutive failures, last: \(error)") }
                    stop()
                }
            }
            let t2 = Clock.monotonicNs()
            stageTimes.add(.scale, t1 - t0)
            stageTimes.add(.infer, t2 - t1)
            // Wait for this ticket's result slot to be free (the result thread lags ≤ ring size).
            let index = Int(ticket % UInt64(results.count))
            resultCond.wait(until: { ticket < nextToEmit + UInt64(results.count) && !ready[index] })
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
            resultCond.locked { ready[index] = true }
            resultCond.broadcast()
        }
    }

    private func resultLoop() {
        var lostReported = 0
        var limitHit = false
        defer {
            let end: SourceState = error != nil ? .failed : (limitHit || sourceEnded.load(ordering: .relaxed)) ? .ended : .stopped
            stateRaw.store(end.rawValue, ordering: .relaxed)
            let observers = resultCond.locked { () -> [@Sendable () -> Void] in
                finished = true
                defer { finishObservers = [] }
                return finishObservers
            }
            resultCond.broadcast()
            for observe in observers { observe() }
        }
        while true {
            var index = -1
            var done = false
            resultCond.wait(until: {
                let i = Int(nextToEmit % UInt64(results.count))
                if ready[i] { index = i; return true }
                if workersRunning == 0 { done = true; return true }
                return false
            })
            if done { break }
            let r = results[index]
            let limitReached = options.frameLimit.map { published.load(ordering: .relaxed) >= $0 } ?? false
            if r.ok && !limitReached {
                let c = counters
                r.dropped = UInt64(max(0, c.droppedTotal - lostReported))
                lostReported = c.droppedTotal
                let now = Clock.monotonicNs()
                r.totalNs = now >= r.captureNs ? now - r.captureNs : 0
                r.realtimeNs = r.captureNs &+ (Clock.realtimeNs() &- now)
                if let stable {
                    stable.apply(to: r)
                    stableCurrent.store(r.stableLabel, ordering: .relaxed)
                }
                if frameWidth.load(ordering: .relaxed) != Int(r.width) || frameHeight.load(ordering: .relaxed) != Int(r.height) {
                    frameWidth.store(Int(r.width), ordering: .relaxed)
                    frameHeight.store(Int(r.height), ordering: .relaxed)
                }
                if stateRaw.load(ordering: .relaxed) != SourceState.streaming.rawValue {
                    stateRaw.store(SourceState.streaming.rawValue, ordering: .relaxed)
                }
                // An empty line did not fit the encoder (sized for the configuration, so never
                // expected): skipped, never published cut.
                let line = encoder.classification(r)
                if !line.isEmpty {
                    let record = PublishedRecord(kind: .classification, json: line, result: r, spans: encoder.spans)
                    for sink in sinks { sink.publish(record) }
                }
                if r.stableChanged {
                    let json = encoder.change(r)
                    let change = PublishedRecord(kind: .change, json: json, result: r)
                    if !json.isEmpty { for sink in sinks { sink.publish(change) } }
                }
                let published = Clock.monotonicNs()
                stageTimes.add(.publish, published - now)
                var sample = LatencyWindow.Sample()
                sample.timeNs = published
                sample.preprocessNs = r.preprocessNs
                sample.inferenceNs = r.inferenceNs
                sample.totalNs = r.totalNs
                sample.waitNs = r.totalNs &- min(r.totalNs, r.preprocessNs + r.inferenceNs)
                sample.publishNs = published - now
                sample.captured = c.captured
                latency.record(sample)
                onResult?(r)
                let n = self.published.add(1, ordering: .relaxed).newValue
                if let limit = options.frameLimit, n >= limit {
                    limitHit = true
                    logger.info("frame limit reached", metadata: ["pipeline.frames": "\(limit)"])
                    stop()
                }
            }
            resultCond.locked {
                ready[index] = false
                nextToEmit += 1
            }
            resultCond.broadcast()
        }
    }
}
