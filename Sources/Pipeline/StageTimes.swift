import Synchronization

/// The stages of the daemon's path that `camclass bench` reports separately.
public enum PipelineStage: Int, Sendable, CaseIterable {
    /// The source's hand-over of a frame on its capture thread (a dequeued V4L2 buffer made a
    /// lease; a replay's image): no pixel is touched here any more.
    case capture
    /// On the worker: the frame as delivered (NV12, YUYV, MJPEG) → the engine's input memory:
    /// format conversion or JPEG decoding, crop and scale, in one pass where possible.
    case convert
    case infer
    /// Softmax and top-k.
    case postprocess
    /// Record encoding and hand-off to every sink.
    case publish

    public var name: String {
        switch self {
        case .capture: return "capture"
        case .convert: return "convert"
        case .infer: return "infer"
        case .postprocess: return "postprocess"
        case .publish: return "publish"
        }
    }
}

/// Running totals of time spent per stage, kept with relaxed atomics so the hot path only adds
/// (no allocation, no lock). Readers take two snapshots and divide the difference.
/// Thread context: `add` from any pipeline thread; `snapshot` from anywhere.
public final class StageTimes: Sendable {
    private let captureNs = Atomic<UInt64>(0), captureCount = Atomic<UInt64>(0)
    private let convertNs = Atomic<UInt64>(0), convertCount = Atomic<UInt64>(0)
    private let inferNs = Atomic<UInt64>(0), inferCount = Atomic<UInt64>(0)
    private let postNs = Atomic<UInt64>(0), postCount = Atomic<UInt64>(0)
    private let publishNs = Atomic<UInt64>(0), publishCount = Atomic<UInt64>(0)

    public init() {}

    @inline(__always)
    public func add(_ stage: PipelineStage, _ ns: UInt64) {
        switch stage {
        case .capture: captureNs.add(ns, ordering: .relaxed); captureCount.add(1, ordering: .relaxed)
        case .convert: convertNs.add(ns, ordering: .relaxed); convertCount.add(1, ordering: .relaxed)
        case .infer: inferNs.add(ns, ordering: .relaxed); inferCount.add(1, ordering: .relaxed)
        case .postprocess: postNs.add(ns, ordering: .relaxed); postCount.add(1, ordering: .relaxed)
        case .publish: publishNs.add(ns, ordering: .relaxed); publishCount.add(1, ordering: .relaxed)
        }
    }

    public func snapshot() -> StageSnapshot {
        StageSnapshot(
            ns: (captureNs.load(ordering: .relaxed), convertNs.load(ordering: .relaxed), inferNs.load(ordering: .relaxed),
                 postNs.load(ordering: .relaxed), publishNs.load(ordering: .relaxed)),
            counts: (captureCount.load(ordering: .relaxed), convertCount.load(ordering: .relaxed),
                     inferCount.load(ordering: .relaxed), postCount.load(ordering: .relaxed),
                     publishCount.load(ordering: .relaxed)))
    }
}

/// Totals at one instant; `meanMs(_:since:)` gives the mean per frame between two snapshots.
public struct StageSnapshot: Sendable {
    public typealias Five = (UInt64, UInt64, UInt64, UInt64, UInt64)
    public var ns: Five
    public var counts: Five

    public init(ns: Five = (0, 0, 0, 0, 0), counts: Five = (0, 0, 0, 0, 0)) {
        self.ns = ns
        self.counts = counts
    }

    static func pick(_ t: Five, _ stage: PipelineStage) -> UInt64 {
        switch stage {
        case .capture: return t.0
        case .convert: return t.1
        case .infer: return t.2
        case .postprocess: return t.3
        case .publish: return t.4
        }
    }

    public func totalNs(_ stage: PipelineStage) -> UInt64 { Self.pick(ns, stage) }
    public func count(_ stage: PipelineStage) -> UInt64 { Self.pick(counts, stage) }

    /// Mean milliseconds per frame of `stage` since `earlier`; nil when no frame passed it.
    public func meanMs(_ stage: PipelineStage, since earlier: StageSnapshot = StageSnapshot()) -> Double? {
        let n = count(stage) &- earlier.count(stage)
        guard n > 0 else { return nil }
        return Double(totalNs(stage) &- earlier.totalNs(stage)) / Double(n) / 1e6
    }
}
