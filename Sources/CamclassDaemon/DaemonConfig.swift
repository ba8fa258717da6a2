import Capture
import Foundation
import Glibc
import Support
import Yams

/// Every setting of the daemon, with the defaults that apply when neither the config file nor
/// a flag says otherwise. `config/camclassd.yaml` documents each key.
public struct DaemonConfig: Sendable, Equatable {
    public var sourcePath = "auto"
    public var sourceFPS = 30.0
    public var sourceLoop = true

    /// V4L2 camera (source.path /dev/videoN or a /dev/v4l/by-id link, or auto finding one).
    public var cameraWidth = 640
    public var cameraHeight = 480
    public var cameraFPS = 30.0
    public var cameraFormats = ["NV12", "YUYV", "MJPEG"]
    public var cameraBuffers = 4
    public var cameraRaw = false
    public var cameraBackoffMaxMs = 2000
    public var cameraStallTimeoutMs = 2000

    public var modelPath = "models/efficientnet_lite0.model.yaml"
    public var topK = 5
    public var resize = "crop"

    public var backend = "openvino"
    public var device = "CPU"
    public var precision = "auto"
    public var performanceHint = "throughput"
    public var workers = 0
    public var openVINOLibrary = ""
    public var bpuLibrary = "libdnn.so"
    public var bpuModelName = ""
    public var bpuTimeoutMs = 1000
    public var bpuPriority = 0

    public var queueCapacity = 2
    public var maxConsecutiveFailures = 50
    /// Seconds of per-stage latencies `status` reports percentiles over.
    public var latencyWindowSeconds = 10.0

    public var socketPath = "/run/camclassd/camclassd.sock"
    public var socketMode: UInt32 = 0o660
    public var subscriberBufferBytes = 256 * 1024
    public var maxSubscribers = 64
    public var maxRequestBytes = 4096
    public var maxRequestsPerSecond = 20

    public var logPath = "/var/log/camclassd/classifications.log"
    public var logMaxBytes = 10 * 1024 * 1024
    public var logKeep = 5
    public var logBufferBytes = 4 * 1024 * 1024
    public var logRotateDaily = false
    public var logGzip = false
    /// never, rotation, interval (every `logFsyncIntervalMs`), always.
    public var logFsync = "rotation"
    public var logFsyncIntervalMs = 1000
    /// json or text.
    public var logFormat = "json"

    public var stableEnabled = true
    public var stableSmoothing = 5
    public var stableEnter = 0.5
    public var stableLeave = 0.3
    public var stableMinDwellMs = 500
    /// Coarse-groups mapping file ("" = stable labels are classes); relative paths are resolved
    /// against the config file's directory when read from a file.
    public var stableGroups = ""

    public var daemonLogLevel = "info"

    /// Stop after this many published classifications (flag only).
    public var frameLimit: Int?

    /// Test hook (hidden flag `--debug-stall-after`): the source delivers this many frames, then
    /// nothing, like a camera that stopped streaming (the systemd watchdog test).
    public var debugStallAfterFrames: Int?

    /// The file the settings came from (for error messages); nil = built-in defaults.
    public var file: String?

    public init() {}

    /// The system-wide file used when `--config` is not given and it exists.
    public static let systemFile = "/etc/camclassd/camclassd.yaml"
}

/// A rejected setting: names the file, the key and the value, and says what is expected.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var value: String
    public var reason: String

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): key '\(key)': value '\(value)': \(reason)"
    }
}

extension DaemonConfig {
    /// Reads a YAML config file over the defaults. Unknown keys and bad values are errors.
    /// - Throws: `ConfigError` naming the file, key and value.
    public static func load(file: String) throws -> DaemonConfig {
        guard let text = readText(file) else {
            throw ConfigError(file: file, key: "", value: "", reason: "cannot read the config file (\(String(cString: strerror(errno))))")
        }
        return try parse(yaml: text, file: file)
    }

    public static func parse(yaml text: String, file: String) throws -> DaemonConfig {
        var config = DaemonConfig()
        config.file = file
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw ConfigError(file: file, key: "", value: "", reason: "not valid YAML: \(error)")
        }
        guard let root else { return config }  // empty file: all defaults
        guard let top = root as? [String: Any] else {
            throw ConfigError(file: file, key: "", value: "\(root)", reason: "the top level must be a mapping of sections")
        }
        var p = Parser(file: file)
        for (section, body) in top {
            guard let fields = body as? [String: Any] else {
                if body is NSNull { continue }  // an empty section: defaults
                throw ConfigError(file: file, key: section, value: "\(body)", reason: "must be a mapping")
            }
            for (key, value) in fields {
                try p.apply(section: section, key: key, value: value, to: &config)
            }
            if Parser.sections[section] == nil {
                throw ConfigError(file: file, key: section, value: "", reason: "unknown section (known: \(Parser.sections.keys.sorted().joined(separator: ", ")))")
            }
        }
        try config.validate()
        return config
    }

    /// Checks cross-field rules; called after the file and again after flags are applied.
    public func validate() throws {
        let f = file ?? "command line"
        if !["openvino", "bpu"].contains(backend) {
            throw ConfigError(file: f, key: "inference.backend", value: backend, reason: "expected openvino or bpu")
        }
        if !["crop", "stretch"].contains(resize) {
            throw ConfigError(file: f, key: "model.resize", value: resize, reason: "expected crop or stretch")
        }
        if cameraFormats.isEmpty || cameraFormats.contains(where: { CameraPixelFormat(configName: $0) == nil }) {
            throw ConfigError(file: f, key: "camera.formats", value: cameraFormats.joined(separator: ","),
                              reason: "expected a list of NV12, YUYV, MJPEG in order of preference")
        }
        if stableLeave > stableEnter {
            throw ConfigError(file: f, key: "stable.leave", value: "\(stableLeave)",
                              reason: "must not exceed stable.enter (\(stableEnter)): a label is entered at `enter` and held down to `leave`")
        }
        if frameLimit.map({ $0 <= 0 }) ?? false {
            throw ConfigError(file: f, key: "--frames", value: "\(frameLimit!)", reason: "expected a positive number")
        }
    }

    static func readText(_ path: String) -> String? { readTextFile(path) }
}

private struct Parser {
    let file: String

    enum Kind { case string, positiveInt, nonNegativeInt, number, bool, mode, choice([String]) }

    static let sections: [String: [String: Kind]] = [
        "source": ["path": .string, "fps": .number, "loop": .bool],
        "camera": ["width": .positiveInt, "height": .positiveInt, "fps": .number, "formats": .string,
                   "buffers": .positiveInt, "raw": .bool, "backoff_max_ms": .positiveInt, "stall_timeout_ms": .positiveInt],
        "model": ["path": .string, "top_k": .positiveInt, "resize": .choice(["crop", "stretch"])],
        "inference": ["backend": .choice(["openvino", "bpu"]), "device": .string,
                      "precision": .choice(["auto", "bf16", "f16", "f32"]),
                      "performance_hint": .choice(["throughput", "latency"]), "workers": .nonNegativeInt,
                      "openvino_library": .string, "bpu_library": .string, "bpu_model_name": .string,
                      "bpu_timeout_ms": .positiveInt, "bpu_priority": .nonNegativeInt],
        "pipeline": ["queue_capacity": .positiveInt, "max_consecutive_failures": .positiveInt, "latency_window_s": .number],
        "publish": ["socket": .string, "socket_mode": .mode, "subscriber_buffer_bytes": .positiveInt,
                    "max_subscribers": .positiveInt, "max_request_bytes": .positiveInt, "max_requests_per_second": .positiveInt],
        "log": ["path": .string, "max_bytes": .nonNegativeInt, "keep": .nonNegativeInt, "buffer_bytes": .positiveInt,
                "rotate_daily": .bool, "gzip": .bool, "fsync": .choice(["never", "rotation", "interval", "always"]),
                "fsync_interval_ms": .positiveInt, "format": .choice(["json", "text"])],
        "stable": ["enabled": .bool, "smoothing": .positiveInt, "enter": .number, "leave": .number,
                   "min_dwell_ms": .nonNegativeInt, "groups": .string],
        "daemon": ["log_level": .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"])],
    ]

    mutating func apply(section: String, key: String, value: Any, to c: inout DaemonConfig) throws {
        let name = "\(section).\(key)"
        guard let keys = Self.sections[section] else {
            throw ConfigError(file: file, key: section, value: "", reason: "unknown section (known: \(Self.sections.keys.sorted().joined(separator: ", ")))")
        }
        guard let kind = keys[key] else {
            throw ConfigError(file: file, key: name, value: "\(value)", reason: "unknown key (known in \(section): \(keys.keys.sorted().joined(separator: ", ")))")
        }
        func fail(_ why: String) -> ConfigError { ConfigError(file: file, key: name, value: "\(value)", reason: why) }
        func str() throws -> String {
            if let s = value as? String { return s }
            if let i = value as? Int { return String(i) }
            throw fail("expected a string")
        }
        func int() throws -> Int {
            guard let i = value as? Int else { throw fail("expected an integer") }
            if case .positiveInt = kind, i <= 0 { throw fail("expected a positive integer") }
            if i < 0 { throw fail("expected a non-negative integer") }
            return i
        }
        func number() throws -> Double {
            if let d = value as? Double, d >= 0, d.isFinite { return d }
            if let i = value as? Int, i >= 0 { return Double(i) }
            throw fail("expected a non-negative number")
        }
        func bool() throws -> Bool {
            guard let b = value as? Bool else { throw fail("expected true or false") }
            return b
        }
        func choice() throws -> String {
            let s = try str()
            if case .choice(let options) = kind, !options.contains(s) {
                throw fail("expected one of: \(options.joined(separator: ", "))")
            }
            return s
        }
        switch name {
        case "source.path": c.sourcePath = try str()
        case "source.fps": c.sourceFPS = try number()
        case "source.loop": c.sourceLoop = try bool()
        case "camera.width": c.cameraWidth = try int()
        case "camera.height": c.cameraHeight = try int()
        case "camera.fps":
            let fps = try number()
            guard fps > 0 else { throw fail("expected a positive number") }
            c.cameraFPS = fps
        case "camera.formats":
            // A YAML list or a comma-separated string, in order of preference.
            let names: [String]
            if let list = value as? [Any] { names = list.map { "\($0)" } } else { names = try str().split(separator: ",").map(String.init) }
            let trimmed = names.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !trimmed.isEmpty, trimmed.allSatisfy({ CameraPixelFormat(configName: $0) != nil }) else {
                throw fail("expected a list of NV12, YUYV, MJPEG in order of preference")
            }
            c.cameraFormats = trimmed
        case "camera.buffers":
            let n = try int()
            guard n >= 2 && n <= 32 else { throw fail("expected 2…32") }
            c.cameraBuffers = n
        case "camera.raw": c.cameraRaw = try bool()
        case "camera.backoff_max_ms": c.cameraBackoffMaxMs = try int()
        case "camera.stall_timeout_ms":
            let n = try int()
            guard n >= 100 else { throw fail("expected at least 100") }
            c.cameraStallTimeoutMs = n
        case "model.path": c.modelPath = try str()
        case "model.top_k": c.topK = try int()
        case "model.resize": c.resize = try choice()
        case "inference.backend": c.backend = try choice()
        case "inference.device": c.device = try str()
        case "inference.precision": c.precision = try choice()
        case "inference.performance_hint": c.performanceHint = try choice()
        case "inference.workers": c.workers = try int()
        case "inference.openvino_library": c.openVINOLibrary = try str()
        case "inference.bpu_library": c.bpuLibrary = try str()
        case "inference.bpu_model_name": c.bpuModelName = try str()
        case "inference.bpu_timeout_ms": c.bpuTimeoutMs = try int()
        case "inference.bpu_priority":
            let p = try int()
            guard p <= 255 else { throw fail("expected 0…255") }
            c.bpuPriority = p
        case "pipeline.queue_capacity": c.queueCapacity = try int()
        case "pipeline.max_consecutive_failures": c.maxConsecutiveFailures = try int()
        case "pipeline.latency_window_s":
            let w = try number()
            guard w >= 1 && w <= 3600 else { throw fail("expected 1…3600 seconds") }
            c.latencyWindowSeconds = w
        case "publish.socket": c.socketPath = try str()
        case "publish.socket_mode":
            // YAML reads 0660 as octal 432 or decimal 660 depending on the parser; accept a quoted string.
            let s = try str()
            guard let m = UInt32(s.hasPrefix("0o") ? String(s.dropFirst(2)) : s, radix: 8), m <= 0o777 else {
                throw fail("expected an octal file mode such as \"0660\"")
            }
            c.socketMode = m
        case "publish.subscriber_buffer_bytes":
            let n = try int()
            guard n >= 4096 else { throw fail("expected at least 4096") }
            c.subscriberBufferBytes = n
        case "publish.max_subscribers": c.maxSubscribers = try int()
        case "publish.max_request_bytes":
            let n = try int()
            guard n >= 256 else { throw fail("expected at least 256 (a subscribe request with filters needs room)") }
            c.maxRequestBytes = n
        case "publish.max_requests_per_second": c.maxRequestsPerSecond = try int()
        case "log.path": c.logPath = try str()
        case "log.max_bytes":
            let n = try int()
            guard n == 0 || n >= 1024 else { throw fail("expected 0 (no size rotation) or at least 1024") }
            c.logMaxBytes = n
        case "log.keep": c.logKeep = try int()
        case "log.buffer_bytes":
            let n = try int()
            guard n >= 65536 else { throw fail("expected at least 65536") }
            c.logBufferBytes = n
        case "log.rotate_daily": c.logRotateDaily = try bool()
        case "log.gzip": c.logGzip = try bool()
        case "log.fsync": c.logFsync = try choice()
        case "log.fsync_interval_ms": c.logFsyncIntervalMs = try int()
        case "log.format": c.logFormat = try choice()
        case "stable.enabled": c.stableEnabled = try bool()
        case "stable.smoothing":
            let n = try int()
            guard n <= 1000 else { throw fail("expected 1…1000 frames") }
            c.stableSmoothing = n
        case "stable.enter", "stable.leave":
            let v = try number()
            guard v > 0 && v <= 1 else { throw fail("expected a score above 0 and at most 1") }
            if key == "enter" { c.stableEnter = v } else { c.stableLeave = v }
        case "stable.min_dwell_ms": c.stableMinDwellMs = try int()
        case "stable.groups":
            let path = try str()
            // Relative to the config file, so the shipped pair (camclassd.yaml + coarse-groups.yaml) moves together.
            if path.isEmpty || path.hasPrefix("/") || !file.contains("/") {
                c.stableGroups = path
            } else {
                c.stableGroups = String(file[..<file.lastIndex(of: "/")!]) + "/" + path
            }
        case "daemon.log_level": c.daemonLogLevel = try choice()
        default: throw fail("unknown key")
        }
    }
}

extension DaemonConfig {
    /// The configuration `camclassd` reads: `file`, else the system file when present, else defaults.
    public static func resolve(file: String?) throws -> DaemonConfig {
        if let file { return try load(file: file) }
        if access(systemFile, R_OK) == 0 { return try load(file: systemFile) }
        return DaemonConfig()
    }
}
