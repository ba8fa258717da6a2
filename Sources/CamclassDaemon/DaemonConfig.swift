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
    public var source = SourceOptions()
    public var camera = CameraOptions()
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
    /// The file the settings came from (for error messages); nil = built-in defaults.
    public var file: String?
    /// `section.key` → the value as written, for every key the file or a flag sets (what a reload
    /// reports as changed).
    @NotCompared public var written: [String: String] = [:]

    public init() {}

    /// The `model:` section.
    public var model: ModelOptions {
        get { pipeline.model }
        set { pipeline.model = newValue }
    }

    /// The system-wide file used when `--config` is not given and it exists.
    public static let systemFile = "/etc/camclassd/camclassd.yaml"
    /// Larger files are refused before parsing (a config is a few KiB).
    public static let maxFileBytes = 1 << 20

    /// Every section name, in the order the file documents them.
    static let sections = [SourceOptions.section, CameraOptions.section, ModelOptions.section, InferenceOptions.section,
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
        for o in overrides { c.written["\(o.section).\(o.key)"] = o.value }
        c.source = try .read(from: root, file: name, overrides: overrides)
        c.camera = try .read(from: root, file: name, overrides: overrides)
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
        let s = source.path
        if s != "auto" && !s.hasPrefix("/dev/") { try readable("source.path", s, what: "the replay folder or file") }
        let dir = log.path.contains("/") ? String(log.path[..<log.path.lastIndex(of: "/")!]) : "."
        var st = stat()
        if stat(dir.isEmpty ? "/" : dir, &st) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
            throw ConfigError(file: f, key: "log.path", value: log.path, reason: "its directory '\(dir)' does not exist")
        }
    }

}

