import ImageOps
import Synchronization

/// A fixed set of NV12 buffers allocated at start-up. Frames are leases on these buffers: the
/// pool is the backpressure (as in libcamera's `cam`), and nothing is allocated per frame.
/// Thread context: `acquire` and buffer return are lock-protected and may be called from any thread.
public final class FramePool: Sendable {
    public let buffers: [NV12Buffer]
    private let free: Mutex<FreeList>
    private let exhausted = Atomic<Int>(0)

    private struct FreeList: ~Copyable {
        var indices: [Int]
    }

    /// - Parameters: `count` buffers of `width` x `height` (the largest frame the source delivers).
    public init(count: Int, width: Int, height: Int) {
        precondition(count > 0)
        buffers = (0..<count).map { _ in NV12Buffer(width: width, height: height) }
        var list = [Int]()
        list.reserveCapacity(count)
        list.append(contentsOf: (0..<count).reversed())
        free = Mutex(FreeList(indices: list))
    }

    public var capacity: Int { buffers.count }
    public var layout: NV12Layout { buffers[0].layout }
    public var available: Int { free.withLock { $0.indices.count } }
    /// How often `acquire` found no free buffer.
    public var exhaustedCount: Int { exhausted.load(ordering: .relaxed) }

    /// Takes a free buffer, or nil (counted) when every buffer is leased.
    public func acquire() -> NV12Frame? {
        let index: Int? = free.withLock { $0.indices.popLast() }
        guard let index else {
            exhausted.add(1, ordering: .relaxed)
            return nil
        }
        return NV12Frame(pool: self, index: index)
    }

    fileprivate func giveBack(_ index: Int) {
        free.withLock { $0.indices.append(index) }  // capacity reserved: never reallocates
    }

    /// Re-creates the lease that `NV12Frame.detach()` turned into a handle.
    public func adopt(_ handle: FrameHandle) -> NV12Frame {
        var frame = NV12Frame(pool: self, index: handle.index)
        frame.info = handle.info
        return frame
    }
}

/// What the source says about a captured frame.
public struct FrameInfo: Sendable, Equatable {
    /// Pipeline sequence number, starting at 0, +1 per frame the source delivered.
    public var seq: UInt64 = 0
    /// Capture time, CLOCK_MONOTONIC nanoseconds (the driver's timestamp for cameras).
    public var captureNs: UInt64 = 0
    /// Visible size of this frame (≤ the pool's buffer size).
    public var width: Int = 0
    public var height: Int = 0
    /// Index of the replayed file (-1 for cameras).
    public var fileIndex: Int32 = -1
    /// Frames the source itself lost before this one (driver sequence gaps).
    public var sourceDropped: UInt32 = 0
    /// Dequeue order assigned by the pipeline's queue (restores order after parallel inference).
    public var ticket: UInt64 = 0
    /// Time the source spent copying/converting this frame into the pool buffer (0 = not measured).
    public var convertNs: UInt64 = 0

    public init() {}
}

/// A lease on one pool buffer. Releasing the lease (it going out of scope) returns the buffer.
/// Thread context: owned by one thread at a time; move it between threads.
public struct NV12Frame: ~Copyable, @unchecked Sendable {
    // A strong reference: a lease keeps its pool alive (no allocation, just a retain).
    private let pool: FramePool
    public let index: Int
    public var info = FrameInfo()
    private var detached = false

    fileprivate init(pool: FramePool, index: Int) {
        self.pool = pool
        self.index = index
    }

    deinit { if !detached { pool.giveBack(index) } }

    /// The whole buffer, for the source to write into.
    public var buffer: NV12MutableView { pool.buffers[index].view }

    /// The frame's visible pixels.
    public var pixels: NV12ConstView { buffer.cropped(width: info.width, height: info.height).readOnly }

    /// Turns the lease into a plain handle (for queue storage); `FramePool.adopt` turns it back.
    public consuming func detach() -> FrameHandle {
        let handle = FrameHandle(index: index, info: info)
        detached = true  // ownership moves to the handle; deinit must not return the buffer
        return handle
    }
}

/// A detached lease: copyable storage for queues. Exactly one owner must `adopt` it again.
public struct FrameHandle: Sendable {
    public let index: Int
    public let info: FrameInfo
}
