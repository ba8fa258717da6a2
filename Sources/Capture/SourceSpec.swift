import Glibc
import Support

/// One frame source of the daemon as configured: an entry of the `sources:` list, a `--source`
/// flag, or the single `source:` section when there is no list. The daemon's sources are
/// `DaemonConfig.sources`, never empty.
///
/// Equality compares the name and the settings (not where they were written), so a reload can
/// diff the old and new lists by name. Plain values: any thread.
public struct SourceSpec: Sendable, Equatable {
    /// Unique among the sources; what records, status and MQTT topics carry.
    public var name: String
    /// path, fps, loop, max_pixels, weight; `options.name` is `name`.
    public var options: SourceOptions
    /// The camera settings for this source: the top-level `camera:` section with the entry's own
    /// `camera:` keys over it. `camera.path` is "": use `camera.at(path:)` with the resolved path.
    public var camera: CameraOptions
    /// The key that names this source's path in messages (`source.path`, `sources[1].path`,
    /// `--source (sources[1].path)`), and whether it came from the command line.
    @NotCompared public var pathKey: String = "source.path"
    @NotCompared public var fromCommandLine = false

    public init(name: String, options: SourceOptions, camera: CameraOptions) {
        self.name = name
        var o = options
        o.name = name
        self.options = o
        self.camera = camera
    }

    /// At most this many sources (one engine's fair share gets thin, and each has a capture thread).
    public static let maxCount = 16
    public static let maxNameLength = 32

    /// 1…32 characters of `a-z 0-9 _ -`.
    public static func isValidName(_ s: String) -> Bool {
        let u = s.utf8
        return !u.isEmpty && u.count <= maxNameLength && u.allSatisfy(isNameByte)
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
    }

    /// The name of a source that is not given one: the last component of `path` (a device node,
    /// by-id link, folder or file), lowercased, every character outside `a-z 0-9 _ -` replaced by
    /// `-`, cut to 32 characters. `/dev/video0` → `video0`, `/dev/v4l/by-id/usb-Logi_C920-video-index0`
    /// → `usb-logi_c920-video-index0`, `auto` → `auto` (rename once auto has chosen), `/` → `source`.
    public static func derivedName(path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? ""
        guard !base.isEmpty, base != ".", base != ".." else { return "source" }
        var bytes: [UInt8] = []
        for scalar in base.lowercased().unicodeScalars {
            if scalar.isASCII, isNameByte(UInt8(scalar.value)) { bytes.append(UInt8(scalar.value)) } else { bytes.append(0x2D) }
            if bytes.count == maxNameLength { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The one source of a configuration without a `sources:` list: the `source:` and `camera:`
    /// sections, named by `source.name` or after the path.
    public static func single(source: SourceOptions, camera: CameraOptions) -> SourceSpec {
        SourceSpec(name: source.name.isEmpty ? derivedName(path: source.path) : source.name, options: source, camera: camera)
    }

    /// A folder or file to replay (not `auto`, not under /dev).
    public var isReplay: Bool { options.path != "auto" && !options.path.hasPrefix("/dev/") }
}

extension SourceSpec {
    /// The `sources:` list of a config file. Each entry is read by `SourceOptions` and (its nested
    /// `camera:`) `CameraOptions` over the top-level `source:` and `camera:` sections (their keys are
    /// the entries' defaults, except `path` and `name`), with the flags of those sections (`--fps`,
    /// `--once`) over every entry. Keys are reported as `sources[I].key` and `sources[I].camera.key`,
    /// I counted from 0 in file order.
    /// - Throws: `ConfigError` naming `file`, the key and the value: a bad entry or value, a missing
    ///   path, an empty list or more than `maxCount` entries, a duplicate name, one device twice.
    public static func readList(_ node: ConfigNode?, file: String, sourceSection: ConfigNode?, cameraSection: ConfigNode?,
                                overrides: [ConfigOverride]) throws(ConfigError) -> [SourceSpec] {
        let expected = "a list of 1…\(maxCount) sources, each a mapping with path (and name, weight, fps, loop, max_pixels, camera)"
        guard case .sequence(let items)? = node else {
            throw ConfigError(file: file, key: "sources", value: node?.text ?? "", reason: "expected \(expected)")
        }
        guard !items.isEmpty, items.count <= maxCount else {
            throw ConfigError(file: file, key: "sources", value: items.isEmpty ? "[]" : "\(items.count) entries", reason: "expected \(expected)")
        }
        var specs: [SourceSpec] = []
        for (i, item) in items.enumerated() {
            let key = "sources[\(i)]"
            guard case .mapping(var keys) = item else {
                throw ConfigError(file: file, key: key, value: item.text, reason: "expected a mapping with path (and name, weight, fps, loop, max_pixels, camera)")
            }
            let camera = keys.removeValue(forKey: "camera")
            guard let path = keys["path"], path != ConfigNode.null else {
                throw ConfigError(file: file, key: key + ".path", value: "", reason: "required: each source names its camera, by-id link, 'auto' or replay folder")
            }
            var spec = try entry(key: key, node: .mapping(keys), camera: camera, file: file, sourceSection: sourceSection,
                                 cameraSection: cameraSection, overrides: overrides)
            spec.pathKey = key + ".path"
            specs.append(spec)
        }
        try checkDistinct(specs, file: file)
        return specs
    }

    /// The sources named by repeated `--source [NAME=]PATH` flags (`flags`: name, "" for one named
    /// after its path, and path), which replace the file's list. Defaults as for `readList`.
    /// - Throws: `ConfigError` from "command line" naming `--source` and its value.
    public static func readFlags(_ flags: [(name: String, path: String)], file: String, sourceSection: ConfigNode?,
                                 cameraSection: ConfigNode?, overrides: [ConfigOverride]) throws(ConfigError) -> [SourceSpec] {
        guard flags.count <= maxCount else {
            throw ConfigError(file: "command line", key: "--source", value: "\(flags.count) sources", reason: "expected at most \(maxCount) sources")
        }
        var specs: [SourceSpec] = []
        for (i, flag) in flags.enumerated() {
            let key = "sources[\(i)]"
            var o = [ConfigOverride(flag: "--source", section: key, key: "path", value: flag.path)]
            if !flag.name.isEmpty { o.append(ConfigOverride(flag: "--source", section: key, key: "name", value: flag.name)) }
            var spec = try entry(key: key, node: nil, camera: nil, file: file, sourceSection: sourceSection,
                                 cameraSection: cameraSection, overrides: overrides, entryFlags: o)
            spec.pathKey = "--source (\(key).path)"
            spec.fromCommandLine = true
            specs.append(spec)
        }
        try checkDistinct(specs, file: "command line", flagValues: flags.map { $0.name.isEmpty ? $0.path : "\($0.name)=\($0.path)" })
        return specs
    }

    private static func entry(key: String, node: ConfigNode?, camera: ConfigNode?, file: String, sourceSection: ConfigNode?,
                              cameraSection: ConfigNode?, overrides: [ConfigOverride],
                              entryFlags: [ConfigOverride] = []) throws(ConfigError) -> SourceSpec {
        // An entry's path and name are its own; the top-level section gives every other default.
        var inherited = sourceSection
        if case .mapping(var m)? = sourceSection {
            m["path"] = nil
            m["name"] = nil
            inherited = .mapping(m)
        }
        let sourceFlags = overrides.filter { $0.section == SourceOptions.section && $0.key != "path" && $0.key != "name" }
        var r = try ConfigSectionReader(section: key, node: node, file: file, overrides: sourceFlags + entryFlags,
                                        inheriting: (SourceOptions.section, inherited))
        let options = try SourceOptions(reader: &r)
        try r.finish()
        var c = try ConfigSectionReader(section: key + "." + CameraOptions.section, node: camera, file: file,
                                        overrides: overrides.filter { $0.section == CameraOptions.section },
                                        inheriting: (CameraOptions.section, cameraSection))
        let cam = try CameraOptions(reader: &c)
        try c.finish()
        return SourceSpec(name: options.name.isEmpty ? derivedName(path: options.path) : options.name, options: options, camera: cam)
    }

    /// Names unique; no camera in two entries (links resolved when the node exists; `auto` counts as
    /// one device). Replay paths may repeat (read-only) under different names.
    /// - Parameter flagValues: the `--source` values the specs came from (errors quote them).
    private static func checkDistinct(_ specs: [SourceSpec], file: String, flagValues: [String]? = nil) throws(ConfigError) {
        var names: [String: Int] = [:]
        var devices: [String: Int] = [:]
        for (i, s) in specs.enumerated() {
            let commandLine = flagValues != nil
            func fail(_ key: String, _ value: String, _ reason: String) -> ConfigError {
                if let flagValues { return ConfigError(file: "command line", key: "--source", value: flagValues[i], reason: reason) }
                return ConfigError(file: file, key: key, value: value, reason: reason)
            }
            let other = { (j: Int) in commandLine ? "--source #\(j + 1)" : "sources[\(j)]" }
            if let j = names[s.name] {
                throw fail("sources[\(i)].name", s.name, "the name '\(s.name)' is also \(other(j))'s (a source without a name is named after its path): give each source its own name")
            }
            names[s.name] = i
            if let device = deviceIdentity(s.options.path) {
                if let j = devices[device] {
                    let shown = device == s.options.path ? "" : " (\(device))"
                    throw fail("sources[\(i)].path", s.options.path, "the same camera\(shown) as \(other(j)): a camera streams to one source only")
                }
                devices[device] = i
            }
        }
    }

    /// The camera a path names, comparable between entries: `auto`; the resolved node of a
    /// character device that exists (so a by-id link and /dev/videoN match); a /dev path that does
    /// not exist yet, as written. nil for a replay folder or file.
    static func deviceIdentity(_ path: String) -> String? {
        if path == "auto" { return path }
        var st = stat()
        guard stat(path, &st) == 0 else { return path.hasPrefix("/dev/") ? path : nil }
        guard (st.st_mode & S_IFMT) == S_IFCHR else { return nil }
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
