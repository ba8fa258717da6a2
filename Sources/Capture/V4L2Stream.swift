import CV4L2
import Glibc
import ImageOps
import Support
import Synchronization

/// A streaming camera's MMAP buffers, shared by the capture thread and the leases on them: a
/// dequeued buffer *is* the frame (no copy), and the lease's end queues it to the driver again.
/// When the camera is lost the stream is retired (STREAMOFF; later releases queue nothing), and
/// the device (fd and mappings) is closed only when the last lease on it has ended, so frames in
/// flight keep valid pixels across an unplug.
/// Thread context: `dequeue` on the capture thread; `release`/`rejected` on any thread (QBUF is
/// safe beside the capture thread's DQBUF: the kernel serialises them on the queue); the rest any.
final class V4L2Stream: FrameBufferOwner, @unchecked Sendable {
    private let device: V4L2Device
    let fd: Int32
    /// Buffers the driver granted.
    let bufferCount: Int
    private let counters: CameraCounters
    private let onRejected: @Sendable (FrameConversionError, Int) -> Void
    /// Guards `outstanding` and `retired`; `allReturned` waiters block on it.
    private let state = Condition()
    private var outstanding = 0
    private var retired = false
    private let requeueFailures = Atomic<Int>(0)

    /// Takes over `device`, which streams with `bufferCount` buffers queued.
    init(device: consuming V4L2Device, bufferCount: Int, counters: CameraCounters,
         onRejected: @escaping @Sendable (FrameConversionError, Int) -> Void) {
        fd = device.fd
        self.device = device
        self.bufferCount = bufferCount
        self.counters = counters
        self.onRejected = onRejected
    }

    /// Non-blocking DQBUF; 0, EAGAIN or the errno that ended the stream. Capture thread only.
    @inline(__always)
    func dequeue(_ buffer: inout v4l2_buffer) -> Int32 { device.dequeue(&buffer) }

    /// Queues a buffer that did not become a frame straight back. Capture thread only.
    func requeueUnleased(_ buffer: inout v4l2_buffer) -> Int32 { device.requeue(&buffer) }

    func mapping(_ index: Int) -> UnsafeRawBufferPointer? { device.mapping(index) }

    /// The frame in driver buffer `index` as a lease (the buffer returns to the driver when it ends).
    func lease(index: Int, payload: FramePayload, info: FrameInfo) -> FrameLease {
        state.locked { outstanding += 1 }
        return FrameLease(owner: self, slot: index, payload: payload, info: info)
    }

    /// Buffers currently leased (not in the driver).
    var leased: Int { state.locked { outstanding } }

    /// QBUF failures on release (a stream that ended meanwhile; the capture thread sees why).
    var requeueFailureCount: Int { requeueFailures.load(ordering: .relaxed) }

    func release(slot: Int) {
        let requeue = state.locked { () -> Bool in
            outstanding -= 1
            return !retired
        }
        if requeue {
            var b = v4l2_buffer()
            b.index = UInt32(truncatingIfNeeded: slot)
            b.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
            b.memory = CV4L2_MEMORY_MMAP
            if device.requeue(&b) != 0 { requeueFailures.add(1, ordering: .relaxed) }
        }
        state.broadcast()
    }

    func rejected(slot: Int, reason: FrameConversionError) {
        onRejected(reason, counters.corruptFrames.add(1, ordering: .relaxed).newValue)
    }

    /// Stops the stream (the camera is lost or closing): nothing is queued again; the device stays
    /// open until the last lease ends.
    func retire() {
        state.locked { retired = true }
        device.stopStreaming()
        state.broadcast()
    }

    /// Blocks until every lease has ended, `timeoutNs` passed, or `wake()`; true when none is out.
    func waitAllReturned(timeoutNs: UInt64, abandon: () -> Bool) -> Bool {
        state.wait(timeoutNs: timeoutNs, until: { outstanding == 0 || abandon() })
        return state.locked { outstanding == 0 }
    }

    /// Wakes `waitAllReturned` (stop requested).
    func wake() { state.broadcast() }
}
