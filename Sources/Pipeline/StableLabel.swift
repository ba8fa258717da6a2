import Support
import WireFormat

public struct StableLabelOptions: ConfigSection {
    public static let section = "stable"
    /// Off: no stable labels, no `change` records.
    public var enabled = true
    /// EWMA span in frames: each frame moves a label's smoothed score by α = 2 / (N + 1) towards
    /// its new score (1 = no smoothing).
    public var smoothingFrames = 5
    /// A label becomes the candidate when its smoothed score reaches this (and it is the best).
    public var enter = 0.5
    /// The stable label holds while its smoothed score stays at or above this; below it, and with
    /// no other label at `enter`, the candidate is `unknown`. `leave` ≤ `enter` gives hysteresis.
    public var leave = 0.3
    /// A candidate must stay the candidate this long (capture time) before it becomes stable.
    public var minDwellMs = 500
    /// Coarse-groups file ("" = stable labels are the model's classes); a relative path in a config
    /// file is taken relative to that file (the shipped pair moves together).
    public var groups = ""

    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        enabled = try r.bool("enabled", enabled)
        smoothingFrames = try r.int("smoothing", smoothingFrames, 1...1000, unit: "frames")
        enter = try r.double("enter", enter, 0.001...1, unit: "(score)")
        leave = try r.double("leave", leave, 0.001...1, unit: "(score)")
        minDwellMs = try r.int("min_dwell_ms", minDwellMs, 0...3_600_000, unit: "ms")
        groups = try r.path("groups", groups, relativeToFile: true)
        if leave > enter {
            throw r.invalid("leave", "\(leave)", "must not exceed stable.enter (\(enter)): a label is entered at `enter` and held down to `leave`")
        }
    }
}

/// The outcome of one frame.
public struct StableUpdate: Sendable, Equatable {
    /// Index into `RecordVocabulary.stableNames`; -1 = `unknown`.
    public var label: Int32
    /// Smoothed score of `label`; for `unknown`, of the best label (which is below the thresholds).
    public var score: Float
    /// This frame confirmed a new stable label.
    public var changed: Bool
    public var previous: Int32
    /// How long `previous` was the stable label (capture time).
    public var previousDurationNs: UInt64
}

/// Turns per-frame scores into a stable label: per-label EWMA smoothing, hysteresis between the
/// `enter` and `leave` thresholds, and a minimum dwell time before a change is confirmed. Labels
/// are the vocabulary's stable space: coarse groups (a group's score is the sum of its classes'
/// probabilities) and the classes no group covers.
///
/// Per frame: the candidate is the current label while its smoothed score ≥ `leave`, unless
/// another label has ≥ `enter` and a higher smoothed score; with no current label (or it fell
/// below `leave`) the best label if ≥ `enter`, else `unknown`. A candidate different from the
/// stable label becomes stable once it has been the candidate for `minDwellMs`.
/// Thread context: the pipeline's publishing worker (one thread at a time). Allocates nothing after `init`.
public final class StableLabel: @unchecked Sendable {
    public let options: StableLabelOptions
    public let vocabulary: RecordVocabulary
    private let alpha: Float
    private let enter: Float
    private let leave: Float
    private let dwellNs: UInt64
    private let classToLabel: UnsafeMutableBufferPointer<Int32>
    private let frame: UnsafeMutableBufferPointer<Float>
    private let smoothed: UnsafeMutableBufferPointer<Float>
    private var started = false
    private var current: Int32 = -1
    private var currentSince: UInt64 = 0
    private var hasPending = false
    private var pending: Int32 = -1
    private var pendingSince: UInt64 = 0

    public init(vocabulary: RecordVocabulary, options: StableLabelOptions) {
        self.vocabulary = vocabulary
        self.options = options
        alpha = 2 / Float(max(1, options.smoothingFrames) + 1)
        enter = Float(options.enter)
        leave = Float(options.leave)
        dwellNs = UInt64(max(0, options.minDwellMs)) * 1_000_000
        classToLabel = .allocate(capacity: vocabulary.classToStable.count)
        _ = classToLabel.initialize(from: vocabulary.classToStable)
        frame = .allocate(capacity: max(1, vocabulary.stableNames.count))
        frame.initialize(repeating: 0)
        smoothed = .allocate(capacity: max(1, vocabulary.stableNames.count))
        smoothed.initialize(repeating: 0)
    }

    deinit {
        classToLabel.deallocate()
        frame.deallocate()
        smoothed.deallocate()
    }

    /// The current stable label's name (`unknown` before any).
    public var currentName: String { current >= 0 ? vocabulary.stableNames[Int(current)] : "unknown" }

    /// Forgets everything (a new scene, a reconnected camera): the next frame starts afresh.
    public func reset() {
        started = false
        current = -1
        hasPending = false
    }

    /// Feeds one frame: `scores` are probabilities of every class, `timeNs` its capture time.
    public func update(scores: UnsafeBufferPointer<Float>, timeNs: UInt64) -> StableUpdate {
        let labels = vocabulary.stableNames.count
        for l in 0..<labels { frame[l] = 0 }
        let n = min(scores.count, classToLabel.count)
        for c in 0..<n {
            let s = scores[c]
            if s.isFinite { frame[Int(classToLabel[c])] += s }
        }
        var best = 0
        if !started {
            for l in 0..<labels { smoothed[l] = frame[l] }
            started = true
            currentSince = timeNs
        } else {
            for l in 0..<labels { smoothed[l] += alpha * (frame[l] - smoothed[l]) }
        }
        for l in 1..<max(1, labels) where smoothed[l] > smoothed[best] { best = l }
        let bestScore = labels > 0 ? smoothed[best] : 0

        var candidate: Int32 = -1
        if current >= 0 && smoothed[Int(current)] >= leave {
            candidate = current
            if Int32(best) != current && bestScore >= enter && bestScore > smoothed[Int(current)] { candidate = Int32(best) }
        } else if bestScore >= enter {
            candidate = Int32(best)
        }

        var out = StableUpdate(label: current, score: 0, changed: false, previous: current, previousDurationNs: 0)
        if candidate == current {
            hasPending = false
        } else {
            if !hasPending || pending != candidate {
                hasPending = true
                pending = candidate
                pendingSince = timeNs
            }
            if timeNs &- pendingSince >= dwellNs {
                out.changed = true
                out.previous = current
                out.previousDurationNs = timeNs &- currentSince
                current = candidate
                currentSince = timeNs
                hasPending = false
            }
        }
        out.label = current
        out.score = current >= 0 ? smoothed[Int(current)] : bestScore
        return out
    }

    /// Updates from the result's full score vector and stores the outcome in its stable fields.
    public func apply(to r: ClassificationResult) {
        let u = update(scores: UnsafeBufferPointer(r.allScores), timeNs: r.captureNs)
        r.hasStable = true
        r.stableLabel = u.label
        r.stableScore = u.score
        r.stableChanged = u.changed
        r.previousStable = u.previous
        r.previousStableNs = u.previousDurationNs
    }
}
