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

