import Capture
import Logging
import Support
import Synchronization
import WireFormat

/// One source's share of a pipeline: its capture thread, its ring in the scheduler (capacity,
/// drop policy, weight), its sequence numbers, drop counters, stable-label state, record encoder,
/// latency window and state. Frames of different lanes share the engine's slots; nothing else.
/// Thread context: built and started by the pipeline's owner; the capture thread writes the
/// capture-side counters, the publishing worker the result-side ones; readers anywhere (atomics).
public final class SourceLane: @unchecked Sendable {
    /// The name records, status and subscriptions use.
    public let name: String
    public let source: any FrameSource
    /// Share of the engine when sources compete (smooth weighted round-robin).
    public let weight: Int
    public let queueCapacity: Int
    public let policy: FrameScheduler.Policy
    /// Index in the scheduler's arrays; guarded by the scheduler's lock.
    var schedulerIndex = 0

    let encoder: RecordEncoder
    let stable: StableLabel?
    /// Per-stage latencies of this source's frames, for `status`.
    public let latency: LatencyWindow
    public let firstSeq: UInt64

    // Capture thread.
    var nextSeq: UInt64
    var captureThread: DedicatedThread?
    let stopRequested = Atomic<Bool>(false)
    // Result thread.
    var lostReported = 0

    let captured = Atomic<Int>(0)
    let sourceDropped = Atomic<Int>(0)
    let corrupt = Atomic<Int>(0)
    let inferenceErrors = Atomic<Int>(0)
    let published = Atomic<Int>(0)
    let stableCurrent = Atomic<Int32>(-1)
    let stateRaw = Atomic<UInt8>(SourceState.starting.rawValue)
    let frameWidth = Atomic<Int>(0)
    let frameHeight = Atomic<Int>(0)
    let ended = Atomic<Bool>(false)
    let failure = Mutex<String?>(nil)
    /// The scheduler's counters for this lane once it is removed (kept for the totals).
    let finalQueue = Mutex<FrameScheduler.LaneCounters?>(nil)

    init(name: String, source: any FrameSource, weight: Int, queueCapacity: Int, firstSeq: UInt64,
         encoder: RecordEncoder, stable: StableLabel?, latencyWindowSeconds: Double) {
        self.name = name
        self.source = source
        self.weight = max(1, weight)
        self.queueCapacity = max(1, queueCapacity)
        policy = source.isLive ? .dropOldest : .block
        self.firstSeq = firstSeq
        nextSeq = firstSeq
        self.encoder = encoder
        self.stable = stable
        latency = LatencyWindow(seconds: latencyWindowSeconds)
    }

    /// What the source is doing as far as the pipeline can tell.
    public var state: SourceState { SourceState(rawValue: stateRaw.load(ordering: .relaxed)) ?? .starting }
    /// Size of the frames last classified; 0 before the first.
    public var frameSize: (width: Int, height: Int) { (frameWidth.load(ordering: .relaxed), frameHeight.load(ordering: .relaxed)) }
    /// The `seq` the next frame gets (a source carried over a reload continues from here).
    public var nextSequence: UInt64 { firstSeq + UInt64(captured.load(ordering: .relaxed)) }
    /// Why the source failed, if it did.
    public var error: String? { failure.withLock { $0 } }

    /// The current stable label's name (nil when the stage is off).
    public var stableLabelName: String? {
        guard let stable else { return nil }
        let i = Int(stableCurrent.load(ordering: .relaxed))
        let names = stable.vocabulary.stableNames
        return i >= 0 && i < names.count ? names[i] : "unknown"
    }
}

/// Counters for every stage; every drop has a cause. Per source, and summed for the pipeline.
public struct PipelineCounters: Sendable, Equatable {
    public var captured = 0
    public var published = 0
    public var droppedQueueFull = 0
    public var droppedPoolExhausted = 0
    public var droppedSource = 0
    /// Frames a worker could not convert (corrupt MJPEG).
    public var droppedCorrupt = 0
    public var inferenceErrors = 0
    public var queueDepth = 0
    public var droppedTotal: Int { droppedQueueFull + droppedPoolExhausted + droppedSource + droppedCorrupt + inferenceErrors }

    public init() {}

    /// Two sets added up (the queue depth too: depths of different sources add).
    public func adding(_ o: PipelineCounters) -> PipelineCounters {
        var c = self
        c.captured += o.captured
        c.published += o.published
        c.droppedQueueFull += o.droppedQueueFull
        c.droppedPoolExhausted += o.droppedPoolExhausted
        c.droppedSource += o.droppedSource
        c.droppedCorrupt += o.droppedCorrupt
        c.inferenceErrors += o.inferenceErrors
        c.queueDepth += o.queueDepth
        return c
    }
}
