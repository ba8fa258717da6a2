import Support
import Synchronization

/// How to open and negotiate a V4L2 camera (the daemon's `camera.*` settings).
public struct CameraOptions: Sendable, Equatable {
    /// /dev/videoN or a stable /dev/v4l/by-id|by-path link (re-resolved at every re-open).
    public var path: String
    public var width = 640
    public var height = 480
    public var fps = 30.0
    public var formats: [CameraPixelFormat] = [.nv12, .yuyv, .mjpeg]
    /// MMAP buffers requested from the driver.
    public var buffers = 4
    /// Plain open/ioctl/mmap instead of libv4l2.
    public var raw = false
    /// Re-open attempts after a loss: immediately, then after 100 ms, doubling up to this cap.
    public var backoffMaxMs = 2000
    /// No frame for this long is a stall (logged and counted); four times as long, the stream is
    /// restarted as if the camera had been unplugged.
    public var stallTimeoutMs = 2000
    /// The largest frame (width x height) accepted from the driver's S_FMT answer; it sizes the
    /// frame pool and the MJPEG decoder. 40 MP by default.
    public var maxPixels = 40_000_000

    public init(path: String) { self.path = path }

    public var request: CameraRequest {
        CameraRequest(width: width, height: height, fps: fps, formats: formats)
    }
}

/// What was negotiated with the driver (in the `streaming` event and the log).
public struct NegotiatedFormat: Sendable, Equatable {
    public var device: String
    public var driver: String
    public var card: String
    public var busInfo: String
    public var format: CameraPixelFormat
    public var fourcc: UInt32
    public var width: Int
    public var height: Int
    public var bytesPerLine: Int
    public var sizeImage: Int
    /// nil when the driver does not report its frame interval.
    public var fps: Double?
    public var buffers: Int
    /// Exactly the requested size and rate.
    public var exact: Bool

    public init(device: String, driver: String, card: String, busInfo: String, format: CameraPixelFormat, fourcc: UInt32,
                width: Int, height: Int, bytesPerLine: Int, sizeImage: Int, fps: Double?, buffers: Int, exact: Bool) {
        self.device = device; self.driver = driver; self.card = card; self.busInfo = busInfo
        self.format = format; self.fourcc = fourcc; self.width = width; self.height = height
        self.bytesPerLine = bytesPerLine; self.sizeImage = sizeImage; self.fps = fps; self.buffers = buffers; self.exact = exact
    }
}

/// A camera state change, published as a `{"type":"camera",…}` record.
public struct CameraStateChange: Sendable {
    public enum State: String, Sendable { case streaming, lost }
    public var state: State
    /// The configured path (a by-id link stays the same when the node number changes).
    public var source: String
    /// Why it was lost (lost only).
    public var reason: String?
    /// The negotiated format (streaming only).
    public var format: NegotiatedFormat?
    /// How long the camera was gone (streaming after a loss).
    public var downtimeNs: UInt64?
    /// CLOCK_MONOTONIC / CLOCK_REALTIME when it happened.
    public var monotonicNs: UInt64
    public var realtimeNs: UInt64

    public init(state: State, source: String, reason: String?, format: NegotiatedFormat?, downtimeNs: UInt64?,
                monotonicNs: UInt64, realtimeNs: UInt64) {
        self.state = state; self.source = source; self.reason = reason; self.format = format
        self.downtimeNs = downtimeNs; self.monotonicNs = monotonicNs; self.realtimeNs = realtimeNs
    }
}

/// The camera's per-cause counts since start (any thread may read them).
public struct CameraStats: Sendable, Equatable {
    /// Frames delivered to the pipeline.
    public var frames = 0
    /// Frames the driver skipped (gaps in the buffer sequence numbers).
    public var sequenceGaps = 0
    /// Buffers the driver flagged V4L2_BUF_FLAG_ERROR.
    public var errorBuffers = 0
    /// Buffers with bytesused == 0.
    public var emptyBuffers = 0
    /// Frames too short for their format, or MJPEG frames that did not decode.
    public var corruptFrames = 0
    /// Times no frame came for `stallTimeoutMs`.
    public var stalls = 0
    /// Times the camera was lost (unplug, stream error, long stall).
    public var losses = 0
    /// Times it streamed again after a loss.
    public var recoveries = 0
    /// All frames the source lost (what `FrameInfo.sourceDropped` added up).
    public var dropped: Int { sequenceGaps + errorBuffers + emptyBuffers + corruptFrames }

    public init() {}
}

/// Lock-free counters behind `CameraStats`.
final class CameraCounters: Sendable {
    let frames = Atomic<Int>(0)
    let sequenceGaps = Atomic<Int>(0)
    let errorBuffers = Atomic<Int>(0)
    let emptyBuffers = Atomic<Int>(0)
    let corruptFrames = Atomic<Int>(0)
    let stalls = Atomic<Int>(0)
    let losses = Atomic<Int>(0)
    let recoveries = Atomic<Int>(0)

    var snapshot: CameraStats {
        var s = CameraStats()
        s.frames = frames.load(ordering: .relaxed)
        s.sequenceGaps = sequenceGaps.load(ordering: .relaxed)
        s.errorBuffers = errorBuffers.load(ordering: .relaxed)
        s.emptyBuffers = emptyBuffers.load(ordering: .relaxed)
        s.corruptFrames = corruptFrames.load(ordering: .relaxed)
        s.stalls = stalls.load(ordering: .relaxed)
        s.losses = losses.load(ordering: .relaxed)
        s.recoveries = recoveries.load(ordering: .relaxed)
        return s
    }
}

/// The `camera:` section: what is asked of a V4L2 camera (the source's path says which).
extension CameraOptions: ConfigSection {
    public static let section = "camera"

    public init() { self.init(path: "") }

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        width = try r.int("width", width, 16...8192, unit: "pixels")
        height = try r.int("height", height, 16...8192, unit: "pixels")
        fps = try r.double("fps", fps, 0.1...1000, unit: "frames per second")
        formats = try r.list("formats", formats, expected: "a list of NV12, YUYV, MJPEG in order of preference",
                             maxCount: 3, CameraPixelFormat.init(configName:))
        buffers = try r.int("buffers", buffers, 2...32)
        raw = try r.bool("raw", raw)
        backoffMaxMs = try r.int("backoff_max_ms", backoffMaxMs, 100...600_000, unit: "ms")
        stallTimeoutMs = try r.int("stall_timeout_ms", stallTimeoutMs, 100...600_000, unit: "ms")
        maxPixels = try r.int("max_pixels", maxPixels, 1...400_000_000, unit: "pixels (width × height)")
    }

    /// These settings for the camera at `path`.
    public func at(path: String) -> CameraOptions {
        var o = self
        o.path = path
        return o
    }
}
