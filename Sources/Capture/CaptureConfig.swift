import Support

/// The `source:` section: where frames come from and, for replay, how fast.
/// Several cameras (a list of sources) will be entries of this shape, each with its own `camera:`.
public struct SourceOptions: ConfigSection {
    public static let section = "source"
    /// `auto` (the first capture camera, else the sample photos), a camera node or by-id link, or a
    /// replay folder/file.
    public var path = "auto"
    /// Replay pace in frames per second; 0 = as fast as the pipeline takes them.
    public var fps = 30.0
    /// Replay: start again at the first photo after the last.
    public var loop = true
    /// Replay: photos whose header claims more pixels than this are skipped before decoding.
    public var maxPixels = 40_000_000

    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        path = try r.string("path", path, maxBytes: 4095, allowEmpty: false)
        fps = try r.double("fps", fps, 0.01...1000, unit: "frames per second", alsoZero: "unlimited")
        loop = try r.bool("loop", loop)
        maxPixels = try r.int("max_pixels", maxPixels, 1...400_000_000, unit: "pixels (width × height)")
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
