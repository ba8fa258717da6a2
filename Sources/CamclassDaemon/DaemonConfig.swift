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
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        logLevel = try r.choice("log_level", logLevel)
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
        let text = try readConfigFile(file)
        return try parse(yaml: text, file: file, overrides: overrides)
    }

    public static func parse(yaml text: String, file: String, overrides: [ConfigOverride] = []) throws(ConfigError) -> DaemonConfig {
        try parse(root: try YAMLConfigDocument.parse(text, file: file), file: file, overrides: overrides)
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

    /// Reads a config file: regular files only, at most `maxFileBytes`, valid UTF-8.
    static func readConfigFile(_ path: String) throws(ConfigError) -> String {
        func fail(_ why: String) -> ConfigError { ConfigError(file: path, key: "", value: "", reason: why) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file (a config file is a YAML file)") }
        guard st.st_size <= maxFileBytes else { throw fail("\(st.st_size) bytes; a config file has at most \(maxFileBytes)") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var used = 0
        while used < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            used += n
        }
        guard used <= maxFileBytes else { throw fail("more than \(maxFileBytes) bytes; a config file has at most that") }
        guard let text = String(validating: bytes[0..<used], as: UTF8.self) else { throw fail("not UTF-8 text") }
        return text
    }
}

/// YAML text → `ConfigNode`, keeping each scalar's text, with bounds: a document that expands to
/// more than `maxNodes` values (aliases nested into a "billion laughs") or nests deeper than
/// `maxDepth` is refused instead of exhausting memory.
enum YAMLConfigDocument {
    static let maxNodes = 100_000
    static let maxDepth = 32

    static func parse(_ text: String, file: String) throws(ConfigError) -> [String: ConfigNode] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw ConfigError(file: file, key: "", value: "", reason: "not valid YAML: \(error)")
        }
        guard let node else { return [:] }  // empty file: all defaults
        var budget = maxNodes
        let root = try convert(node, file: file, depth: 0, budget: &budget)
        switch root {
        case .mapping(let m): return m
        case .null: return [:]
        default: throw ConfigError(file: file, key: "", value: root.text, reason: "the top level must be a mapping of sections")
        }
    }

    private static func convert(_ node: Node, file: String, depth: Int, budget: inout Int) throws(ConfigError) -> ConfigNode {
        budget -= 1
        guard budget >= 0, depth <= maxDepth else {
            throw ConfigError(file: file, key: "", value: "",
                              reason: "the document expands to more than \(maxNodes) values or nests deeper than \(maxDepth) (nested aliases?)")
        }
        switch node {
        case .scalar(let s):
            if s.style == .plain && (s.string.isEmpty || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL") {
                return .null
            }
            return .scalar(s.string, quoted: s.style != .plain)
        case .sequence(let seq):
            var items: [ConfigNode] = []
            for n in seq { items.append(try convert(n, file: file, depth: depth + 1, budget: &budget)) }
            return .sequence(items)
        case .mapping(let map):
            var m: [String: ConfigNode] = [:]
            for (k, v) in map {
                guard case .scalar(let key) = k else {
                    throw ConfigError(file: file, key: "", value: "", reason: "a key must be a plain name, not a list or mapping")
                }
                guard m[key.string] == nil else {
                    throw ConfigError(file: file, key: key.string, value: "", reason: "the key appears twice in the same mapping")
                }
                m[key.string] = try convert(v, file: file, depth: depth + 1, budget: &budget)
            }
            return .mapping(m)
        case .alias:
            throw ConfigError(file: file, key: "", value: "", reason: "unresolved YAML alias")
        }
    }
}
