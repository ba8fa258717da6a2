import CV4L2
import ImageOps

/// Why a dequeued buffer did not become a frame, or frames the driver skipped.
public enum CameraDropKind: String, Sendable {
    case sequenceGap = "sequence gap"
    case errorFlag = "error flag"
    case empty = "empty buffer"
    case corrupt = "corrupt frame"
}

/// What became of one dequeued driver buffer.
public struct IntakeOutcome: Sendable {
    /// The frame is good to hand over (as `payload`).
    public var delivered = false
    /// The frame's pixels, in the driver buffer (delivered only).
    public var payload: FramePayload?
    /// Why it was not (nil when delivered).
    public var dropped: CameraDropKind?
    public var reason: FrameDropReason?
    /// Frames the driver skipped just before this buffer (its sequence number jumped).
    public var gap = 0
    /// Running totals (for rate-limited logging): of `dropped`'s kind, and of skipped frames.
    public var droppedTotal = 0
    public var gapTotal = 0
    /// For a delivered frame: every frame lost since the previous delivered one (gaps, error
    /// buffers, empty and corrupt ones), i.e. `FrameInfo.sourceDropped`.
    public var sourceDropped: UInt32 = 0
}

/// The capture loop's per-buffer bookkeeping, apart from the device so that it can be tested with
/// plain bytes: sequence gaps, the error flag, empty buffers, short raw frames (dropped, never
/// fatal) and the counts of each. Nothing is converted here: a delivered frame's payload points
/// into the driver buffer, and the worker converts it.
/// Thread context: the capture thread only; `stats` from any thread.
public final class CameraFrameIntake {
    let counters = CameraCounters()
    /// Set at each negotiation.
    public var converter: CameraFrameConverter?
    private var lastSequence: UInt32?
    private var pendingDropped: UInt32 = 0

    public init(converter: CameraFrameConverter? = nil) { self.converter = converter }

    public var stats: CameraStats { counters.snapshot }

    /// A new stream starts its sequence numbers afresh: the first buffer is not a gap.
    public func streamRestarted() { lastSequence = nil }

    /// Handles one buffer: `mapped` is the driver buffer, `bytesUsed`/`flags`/`sequence` what
    /// DQBUF said. A delivered frame's payload views `mapped` (valid while the buffer is leased).
    public func take(_ mapped: UnsafeRawBufferPointer, bytesUsed: UInt32, flags: UInt32, sequence: UInt32) -> IntakeOutcome {
        var out = IntakeOutcome()
        if let last = lastSequence {
            let gap = sequence &- last &- 1
            // A restart or vivid's wrap control can make it jump backwards: not a loss.
            if gap > 0 && gap < 1 << 20 {
                out.gap = Int(gap)
                pendingDropped &+= gap
                out.gapTotal = counters.sequenceGaps.add(Int(gap), ordering: .relaxed).newValue
            }
        }
        lastSequence = sequence
        if flags & CV4L2_BUF_FLAG_ERROR != 0 {
            return dropped(out, .errorFlag, counters.errorBuffers.add(1, ordering: .relaxed).newValue)
        }
        if bytesUsed == 0 {
            return dropped(out, .empty, counters.emptyBuffers.add(1, ordering: .relaxed).newValue)
        }
        guard let converter else {
            return dropped(out, .corrupt, counters.corruptFrames.add(1, ordering: .relaxed).newValue)
        }
        let used = UnsafeRawBufferPointer(rebasing: mapped[0..<min(Int(bytesUsed), mapped.count)])
        do throws(FrameDropReason) {
            out.payload = try converter.payload(used)
        } catch {
            out.reason = error
            return dropped(out, .corrupt, counters.corruptFrames.add(1, ordering: .relaxed).newValue)
        }
        out.delivered = true
        out.sourceDropped = pendingDropped
        pendingDropped = 0
        counters.frames.add(1, ordering: .relaxed)
        return out
    }

    private func dropped(_ o: IntakeOutcome, _ kind: CameraDropKind, _ total: Int) -> IntakeOutcome {
        var o = o
        o.dropped = kind
        o.droppedTotal = total
        pendingDropped &+= 1
        return o
    }
}
