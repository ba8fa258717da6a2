import ImageOps
import Synchronization

/// A fixed set of NV12 buffers allocated at start-up, leased out one frame at a time: for sources
/// that must write their frames somewhere (synthetic sources, tests, tools), where a camera's
/// driver buffers or a replay's images are leased directly. Nothing is allocated per frame.
/// Thread context: `acquire` and release are lock-protected and may be called from any thread.
public final class FramePool: FrameBufferOwner {
    public let buffers: [NV12Buffer]
    private let free: Mutex<FreeList>
    private let exhausted = Atomic<Int>(0)

    private struct FreeList: ~Copyable {
        var indices: [Int]
    }

    /// - Parameters: `count` buffers of `width` x `height` (the largest frame to be written).
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

    /// Takes a free buffer for a `width` x `height` frame (≤ the buffers' size; the whole buffer
    /// when 0), or nil (counted) when every buffer is leased. Write the pixels through `buffer(_:)`.
    public func acquire(width: Int = 0, height: Int = 0) -> FrameLease? {
        let index: Int? = free.withLock { $0.indices.popLast() }
        guard let index else {
            exhausted.add(1, ordering: .relaxed)
            return nil
        }
        let full = buffers[index].view
        let w = width > 0 ? min(width, full.layout.width) : full.layout.width
        let h = height > 0 ? min(height, full.layout.height) : full.layout.height
        return FrameLease(owner: self, slot: index, payload: .nv12(full.cropped(width: w, height: h).readOnly))
    }

    /// The same lease, its frame now the top-left `width` x `height` of the buffer (after the
    /// holder wrote a frame of that size).
    public func cropped(_ lease: consuming FrameLease, width: Int, height: Int) -> FrameLease {
        let slot = lease.slot
        var info = lease.info
        _ = lease.detach()  // the slot stays leased: the new lease below takes it over
        let full = buffers[slot].view
        let view = full.cropped(width: min(width, full.layout.width), height: min(height, full.layout.height))
        info.width = view.layout.width
        info.height = view.layout.height
        return FrameLease(owner: self, slot: slot, payload: .nv12(view.readOnly), info: info)
    }

    /// The writable memory behind a lease's slot (for whoever holds the lease).
    public func buffer(_ slot: Int) -> NV12MutableView { buffers[slot].view }

    public func release(slot: Int) {
        free.withLock { $0.indices.append(slot) }  // capacity reserved: never reallocates
    }
}
