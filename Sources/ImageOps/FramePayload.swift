/// Where a captured frame's pixels are, in the format the source delivered them: a view into memory
/// the frame's lease owns (a V4L2 driver buffer, a replayed image). Nothing is copied to make one,
/// and it is valid only while that lease is held. The worker turns it into the model input
/// (`ModelInputConverter`), so conversion and MJPEG decoding run on the workers, in parallel, and
/// only for frames that were not dropped.
/// Thread context: a value; the memory it points to belongs to whoever holds the lease.
public enum FramePayload: @unchecked Sendable {
    /// NV12 (Y plane, then interleaved UV), even visible size, strides honoured.
    case nv12(NV12ConstView)
    /// Packed YUYV (YUY2) 4:2:2: `width` x `height` visible (even), `stride` bytes per row.
    case yuyv(UnsafePointer<UInt8>, stride: Int, width: Int, height: Int)
    /// One compressed (M)JPEG frame (the `bytesused` part of the buffer). `width` x `height` is the
    /// negotiated size, which the frame's header must match.
    case mjpeg(UnsafeRawBufferPointer, width: Int, height: Int)

    /// The visible size the payload decodes to (even; an odd JPEG size is cropped by one).
    public var size: (width: Int, height: Int) {
        switch self {
        case .nv12(let v): return (v.layout.width, v.layout.height)
        case .yuyv(_, _, let w, let h): return (w, h)
        case .mjpeg(_, let w, let h): return (w & ~1, h & ~1)
        }
    }
}
