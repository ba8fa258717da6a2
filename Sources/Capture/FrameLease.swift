import ImageOps

/// Whoever owns the memory a frame lease points to: a V4L2 stream (the driver's buffer, queued
/// again on release), a replay (its in-memory images; nothing to do), or a `FramePool`.
/// Thread context: `release` and `rejected` are called from whichever thread ends the lease (a
/// worker, the capture thread when the queue drops a frame) and must not block for long.
public protocol FrameBufferOwner: AnyObject, Sendable {
    /// The lease on `slot` ended: the memory is the owner's again.
    func release(slot: Int)
    /// A worker could not use the frame (a corrupt MJPEG frame): the owner counts it.
    func rejected(slot: Int, reason: FrameConversionError)
}

extension FrameBufferOwner {
    public func rejected(slot: Int, reason: FrameConversionError) {}
}

/// What the source says about a captured frame.
public struct FrameInfo: Sendable, Equatable {
    /// Per-source sequence number, starting at the source's first `seq`, +1 per frame it delivered.
    public var seq: UInt64 = 0
    /// Capture time, CLOCK_MONOTONIC nanoseconds (the driver's timestamp for cameras).
    public var captureNs: UInt64 = 0
    /// Visible size of this frame.
    public var width: Int = 0
    public var height: Int = 0
    /// Index of the replayed file (-1 for cameras).
    public var fileIndex: Int32 = -1
    /// Frames the source itself lost before this one (driver sequence gaps, bad buffers).
    public var sourceDropped: UInt32 = 0
    /// Dequeue order assigned by the pipeline's scheduler (restores order after parallel inference).
    public var ticket: UInt64 = 0
    /// Capture-thread time from the frame being ready (dequeued, due) to its lease (0 = not measured).
    public var handOverNs: UInt64 = 0

    public init() {}
}

/// A lease on one captured frame's memory: the payload stays valid, and the owner does not reuse
/// it, until the lease ends (goes out of scope), which hands the memory back (a V4L2 buffer is
/// queued to the driver again). The owners' fixed buffer counts are the pipeline's backpressure.
/// Thread context: owned by one thread at a time; move it between threads.
public struct FrameLease: ~Copyable, @unchecked Sendable {
    // A strong reference: a lease keeps its owner (and so the memory) alive; no allocation.
    private let owner: any FrameBufferOwner
    public let slot: Int
    public var info: FrameInfo
    public let payload: FramePayload
    private var detached = false

    public init(owner: any FrameBufferOwner, slot: Int, payload: FramePayload, info: FrameInfo = FrameInfo()) {
        self.owner = owner
        self.slot = slot
        self.payload = payload
        self.info = info
        let size = payload.size
        if self.info.width == 0 { self.info.width = size.width }
        if self.info.height == 0 { self.info.height = size.height }
    }

    deinit { if !detached { owner.release(slot: slot) } }

    /// The pixels when the payload is NV12 (replays, NV12 cameras, pools); nil otherwise.
    public var nv12: NV12ConstView? {
        if case .nv12(let v) = payload { return v }
        return nil
    }

    /// Tells the owner the frame was unusable (counted there); the lease still ends normally.
    public func reject(_ reason: FrameConversionError) { owner.rejected(slot: slot, reason: reason) }

    /// Turns the lease into a plain handle (for queue storage); `FrameHandle.adopt` turns it back.
    public consuming func detach() -> FrameHandle {
        let handle = FrameHandle(owner: owner, slot: slot, info: info, payload: payload)
        detached = true  // ownership moves to the handle; deinit must not release
        return handle
    }
}

/// A detached lease: copyable storage for queues. Exactly one holder must `adopt` it again.
public struct FrameHandle: @unchecked Sendable {
    let owner: any FrameBufferOwner
    public let slot: Int
    public var info: FrameInfo
    public let payload: FramePayload

    /// The lease again (which releases the memory when it ends).
    public func adopt() -> FrameLease {
        FrameLease(owner: owner, slot: slot, payload: payload, info: info)
    }
}
