import Capture
import Glibc
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Yams

/// The `daemon:` section: the daemon's own logging.
public struct DaemonOptions: ConfigSection {
    public static let section = "daemon"
    public var logLevel: Logger.Level = .info
    /// A graceful stop (drain, final record, flush) that takes longer ends the process with
    /// EX_SOFTWARE; keep it below the unit's TimeoutStopSec.
    public var stopTimeoutSeconds = 10
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        logLevel = try r.choice("log_level", logLevel)
        stopTimeoutSeconds = try r.int("stop_timeout_s", stopTimeoutSeconds, 1...3600, unit: "seconds")
    }
}

extension Logger.Level: ConfigEnum {}

/// Every setting of the daemon: one section per component, each the component's own options type,
/// which alone knows its keys, defaults, ranges and errors (see `ConfigSection`). The defaults apply
/// when neither the config file nor a flag says otherwise; `config/camclassd.yaml` documents each key.
public struct DaemonConfig: Sendable, Equatable {
    /// The `source:` section: the single source when there is no `sources:` list, else the defaults
    /// of the list's entries (its path and name unused). See `sources`.
    public var source = SourceOptions()
    /// The `camera:` section: every source's camera defaults (an entry's `camera:` overrides them).
    public var camera = CameraOptions()
    /// The `sources:` list or the `--source NAME=PATH` flags, when given (see `sources`).
    var sourceList: [SourceSpec]?
    /// The `model:` and `pipeline:` sections (the pipeline applies top_k and resize).
    public var pipeline = PipelineOptions()
    public var inference = InferenceOptions()
    public var publish = SocketOptions()
    public var log = RollingLogOptions()
    public var stable = StableLabelOptions()
    public var daemon = DaemonOptions()

    /// Stop after this many published classifications (flag only).
    public var frameLimit: Int?
    /// Test hook (hidden flag `--debug-stall-after`): the source delivers this many frames, then
    /// nothing, like a camera that stopped streaming (the systemd watchdog test).
    public var debugStallAfterFrames: Int?
    /// Test hook (hidden flag `--debug-replay-mjpeg`): replays hand JPEG files over compressed, so
    /// the workers decode them per frame like an MJPEG camera's (the allocation test, benchmarks).
    public var debugReplayMJPEG = false
    /// The file the settings came from (for error messages); nil = built-in defaults.
    public var file: String?
    /// `section.key` → the value as written, for every key the file or a flag sets (what a reload
    /// reports as changed).
    @NotCompared public var written: [String: String] = [:]

    public init() {}

    /// Every frame source, never empty, names unique, in file (or flag) order: the `sources:` list
    /// or the repeated `--source NAME=PATH` flags; without them, one source from `source:` and
    /// `camera:` named by `source.name` or after its path. Setting it replaces the list.
    public var sources: [SourceSpec] {
        get { sourceList ?? [SourceSpec.single(source: source, camera: camera)] }
        set { sourceList = newValue }
    }

    /// The `model:` section.
    public var model: ModelOptions {
        get { pipeline.model }
        set { pipeline.model = newValue }
    }

    /// The system-wide file used when `--config` is not given and it exists.
    public static let systemFile = "/etc/camclassd/camclassd.yaml"
    /// Larger files are refused before parsing (a config is a few KiB).
    public static let maxFileBytes = 1 << 20

    /// The top-level key of the list of sources.
    public static let sourcesKey = "sources"

    /// Every section name, in the order the file documents them.
    static let sections = [SourceOptions.section, sourcesKey, CameraOptions.section, ModelOptions.section, InferenceOptions.section,
                           PipelineOptions.section, SocketOptions.section, RollingLogOptions.section,
                           StableLabelOptions.section, DaemonOptions.section]
}

extension DaemonConfig {
    /// The configuration `camclassd` reads: `file`, else the system file when present, else the
    /// defaults; then the command-line `overrides`, validated like the file's values.
    /// - Throws: `ConfigError` naming the file (or flag), the key and the value.
    /// - Parameter systemFile: false = the defaults when `file` is nil (tools that take flags only).
    public static func resolve(file: String?, overrides: [ConfigOverride] = [], systemFile readSystemFile: Bool = true) throws(ConfigError) -> DaemonConfig {
        if let file { return try load(file: file, overrides: overrides) }
        if readSystemFile && access(systemFile, R_OK) == 0 { return try load(file: systemFile, overrides: overrides) }
        return try parse(root: [:], file: nil, overrides: overrides)
    }

    /// Reads a YAML config file over the defaults. Only a regular file of at most 1 MiB is read.
    /// - Throws: `ConfigError` naming the file, key and value.
    public static func load(file: String, overrides: [ConfigOverride] = []) throws(ConfigError) -> DaemonConfig {
        let text = try ConfigFile.read(file, maxBytes: maxFileBytes)
        return try parse(yaml: text, file: file, overrides: overrides)
    }

    public static func parse(yaml text: String, file: String, overrides: [ConfigOverride] = []) throws(ConfigError) -> DaemonConfig {
        try parse(root: try ConfigFile.parse(yaml: text, file: file), file: file, overrides: overrides)
    }

    static func parse(root: [String: ConfigNode], file: String?, overrides: [ConfigOverride]) throws(ConfigError) -> DaemonConfig {
        let name = file ?? "built-in defaults"
        for section in root.keys.sorted() where !sections.contains(section) {
            // Even an empty one: a misspelt section (`stabel:`) would otherwise be silently ignored.
            throw ConfigError(file: name, key: section, value: "",
                              reason: "unknown section (known: \(sections.sorted().joined(separator: ", ")))")
        }
        var c = DaemonConfig()
        c.file = file
        for (section, node) in root {
            guard case .mapping(let keys) = node else { continue }
            for (key, value) in keys { c.written["\(section).\(key)"] = value.text }
        }
        for o in overrides where o.section != sourcesKey { c.written["\(o.section).\(o.key)"] = o.value }
        c.source = try .read(from: root, file: name, overrides: overrides)
        c.camera = try .read(from: root, file: name, overrides: overrides)
        try c.readSources(root: root, file: name, overrides: overrides)
        c.model = try .read(from: root, file: name, overrides: overrides)
        c.inference = try .read(from: root, file: name, overrides: overrides)
        let model = c.model
        c.pipeline = try .read(from: root, file: name, overrides: overrides)
        c.pipeline.model = model
        c.publish = try .read(from: root, file: name, overrides: overrides)
        c.log = try .read(from: root, file: name, overrides: overrides)
        c.stable = try .read(from: root, file: name, overrides: overrides)
        c.daemon = try .read(from: root, file: name, overrides: overrides)
        return c
    }

    /// The overrides for the values of repeated `--source` flags. `NAME=PATH` when the text before
    /// the first `=` is made of `a-z 0-9 _ -` (so `./a=b` is a path); otherwise the whole value is
    /// a path. One bare PATH sets `source.path` (one source named after it, as before sources
    /// lists); several bare PATHs are sources named after their paths; NAME=PATH flags are named
    /// sources. Either way they replace the config file's `sources:` list and `source.path`.
    /// - Throws: `ConfigError` ("command line", `--source`) for bare and named forms mixed or a bad name.
    public static func sourceFlags(_ values: [String]) throws(ConfigError) -> [ConfigOverride] {
        var named: [(name: String, path: String)] = []
        var bare: [String] = []
        for v in values {
            if let eq = v.firstIndex(of: "="), v[..<eq].utf8.allSatisfy({ b in
                (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D }), eq != v.startIndex {
                let name = String(v[..<eq])
                guard SourceSpec.isValidName(name) else {
                    throw ConfigError(file: "command line", key: "--source", value: v,
                                      reason: "the name '\(name)' is longer than \(SourceSpec.maxNameLength) characters")
                }
                named.append((name, String(v[v.index(after: eq)...])))
            } else {
                bare.append(v)
            }
        }
        if !named.isEmpty && !bare.isEmpty {
            throw ConfigError(file: "command line", key: "--source", value: bare[0],
                              reason: "give every --source as NAME=PATH when one is (here \(named[0].name)=\(named[0].path)), or all as bare paths")
        }
        if bare.count == 1 { return [ConfigOverride(flag: "--source", section: SourceOptions.section, key: "path", value: bare[0])] }
        return named.map { ConfigOverride(flag: "--source", section: sourcesKey, key: $0.name, value: $0.path) }
            + bare.map { ConfigOverride(flag: "--source", section: sourcesKey, key: "", value: $0) }
    }

    /// The `sources:` list, or the `--source NAME=PATH` flags (overrides of section `sources`: key
    /// the name, "" = after the path; value the path), which replace it, as a bare `--source PATH`
    /// (an override of `source.path`) does. Records `sources.<name>.<key>` in `written`.
    mutating func readSources(root: [String: ConfigNode], file: String, overrides: [ConfigOverride]) throws(ConfigError) {
        let flags = overrides.filter { $0.section == Self.sourcesKey }
        if !flags.isEmpty {
            let specs = try SourceSpec.readFlags(flags.map { ($0.key, $0.value) }, file: file, sourceSection: root[SourceOptions.section],
                                                 cameraSection: root[CameraOptions.section], overrides: overrides)
            for s in specs { written["\(Self.sourcesKey).\(s.name).path"] = s.options.path }
            sourceList = specs
            return
        }
        if overrides.contains(where: { $0.section == SourceOptions.section && $0.key == "path" }) { return }
        guard let list = root[Self.sourcesKey] else { return }
        if case .mapping(let top)? = root[SourceOptions.section] {
            for key in ["path", "name"] {
                guard let v = top[key], v != .null else { continue }
                throw ConfigError(file: file, key: "\(SourceOptions.section).\(key)", value: v.text,
                                  reason: "use either source.\(key) (one source) or a sources list (source: then holds the entries' defaults)")
            }
        }
        let specs = try SourceSpec.readList(list, file: file, sourceSection: root[SourceOptions.section],
                                            cameraSection: root[CameraOptions.section], overrides: overrides)
        if case .sequence(let items) = list {
            for (spec, item) in zip(specs, items) {
                guard case .mapping(let keys) = item else { continue }
                let prefix = "\(Self.sourcesKey).\(spec.name)."
                for (key, value) in keys {
                    if key == CameraOptions.section, case .mapping(let cam) = value {
                        for (k, v) in cam { written[prefix + "camera." + k] = v.text }
                    } else {
                        written[prefix + key] = value.text
                    }
                }
            }
        }
        sourceList = specs
    }

    /// The keys of `section` written differently (or only) in one of two configurations, sorted.
    static func differingKeys(_ a: DaemonConfig, _ b: DaemonConfig, section: String) -> [String] {
        let prefix = section + "."
        let keys = Set(a.written.keys.filter { $0.hasPrefix(prefix) }).union(b.written.keys.filter { $0.hasPrefix(prefix) })
        return keys.filter { a.written[$0] != b.written[$0] }.sorted()
    }

    /// What `--check-config` can check beyond the values without opening the camera or loading the
    /// model: the files named exist and are readable.
    /// - Throws: `ConfigError` naming the key and the file.
    public func checkFiles() throws(ConfigError) {
        let f = file ?? "built-in defaults"
        func readable(_ key: String, _ path: String, what: String) throws(ConfigError) {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw ConfigError(file: f, key: key, value: path, reason: "\(what) does not exist (\(String(cString: strerror(errno))))")
            }
            guard access(path, R_OK) == 0 else { throw ConfigError(file: f, key: key, value: path, reason: "\(what) is not readable") }
        }
        try readable("model.path", model.path, what: "the model file")
        if stable.enabled && !stable.groups.isEmpty { try readable("stable.groups", stable.groups, what: "the coarse-groups file") }
        for s in sources where s.isReplay {
            if s.fromCommandLine {
                do { try readable(s.pathKey, s.options.path, what: "the replay folder or file") } catch {
                    throw ConfigError(file: "command line", key: error.key, value: error.value, reason: error.reason)
                }
            } else {
                try readable(s.pathKey, s.options.path, what: "the replay folder or file")
            }
        }
        let dir = log.path.contains("/") ? String(log.path[..<log.path.lastIndex(of: "/")!]) : "."
        var st = stat()
        if stat(dir.isEmpty ? "/" : dir, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
            throw ConfigError(file: f, key: "log.path", value: log.path, reason: "its directory '\(dir)' does not exist")
        }
    }

}

