import Support

/// The `source:` section: where frames come from and, for replay, how fast. The entries of a
/// `sources:` list have the same keys (their defaults are this section's values) plus `weight`
/// and a nested `camera:`; see `SourceSpec`.
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
    /// The name records, status and MQTT topics carry: 1…32 of `a-z 0-9 _ -`; "" = derived from
    /// the path (`SourceSpec.derivedName(path:)`). In `SourceSpec.options` it is the resolved name.
    public var name = ""
    /// The share of the engine this source gets when several sources have frames waiting
    /// (weighted round-robin), 1…100. Only in the entries of a `sources:` list: alone, a source
    /// has the whole engine.
    public var weight = 1

    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        path = try r.string("path", path, maxBytes: 4095, allowEmpty: false)
        fps = try r.double("fps", fps, 0.01...1000, unit: "frames per second", alsoZero: "unlimited")
        loop = try r.bool("loop", loop)
        maxPixels = try r.int("max_pixels", maxPixels, 1...400_000_000, unit: "pixels (width × height)")
        name = try r.string("name", name, maxBytes: 256)
        if !name.isEmpty && !SourceSpec.isValidName(name) {
            throw r.invalid("name", name, "expected 1…\(SourceSpec.maxNameLength) characters of a-z, 0-9, _ and - (or \"\" for a name derived from the path)")
        }
        weight = try r.int("weight", weight, 1...100)
        if r.section == Self.section && r.isSet("weight") {
            throw r.invalid("weight", String(weight), "weight belongs to the entries of a sources: list (the share of the engine when several sources compete); a single source has the whole engine")
        }
    }
}

