import WireFormat
import Glibc
import Logging
import Publishing
import Support
import Synchronization

/// The daemon's own log lines on stderr, shaped for where stderr goes:
/// - the journal (`$JOURNAL_STREAM` names stderr's device:inode): `<6>message key=value`, the
///   `<N>` prefix being the syslog priority journald reads, and no timestamp (journald adds one);
/// - another systemd-managed stream (`$INVOCATION_ID` set): `info: message key=value`, no timestamp;
/// - a terminal or file: `2026-11-23T09:20:00.123Z info camclassd: message key=value`.
/// Nothing per frame is logged at info or above (the pipeline logs per-frame events at debug/trace).
public struct DaemonLogHandler: LogHandler {
    public enum Style: String, Sendable {
        case journal, systemd, terminal
    }

    public let label: String
    public let style: Style
    private let control: LogLevelControl
    private var localLevel: Logger.Level?
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String, style: Style, control: LogLevelControl = .shared) {
        self.label = label
        self.style = style
        self.control = control
    }

    /// The shared level (`daemon.log_level`, changed by a reload) unless this logger set its own.
    public var logLevel: Logger.Level {
        get { localLevel ?? control.level }
        set { localLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let m = event.metadata { merged.merge(m) { _, new in new } }
        Console.err(Self.format(level: event.level, message: "\(event.message)", metadata: merged, label: label,
                                style: style, realtimeNs: Clock.realtimeNs()))
    }

    /// One line, newline-terminated. Embedded newlines are escaped so that the journal keeps one
    /// entry (and one priority) per message.
    public static func format(level: Logger.Level, message: String, metadata: Logger.Metadata, label: String,
                              style: Style, realtimeNs: UInt64) -> String {
        var line = ""
        switch style {
        case .journal: line = "<\(syslogPriority(level))>"
        case .systemd: line = "\(level.rawValue): "
        case .terminal:
            var w = ByteWriter(capacity: 40)
            w.rfc3339Millis(realtimeNs: realtimeNs)
            line = String(decoding: w.bytes, as: UTF8.self) + " \(level.rawValue) \(label): "
        }
        if style != .terminal && label != "camclassd" { line += "[\(label)] " }
        line += escaped(message)
        for key in metadata.keys.sorted() {
            let value = escaped("\(metadata[key]!)")
            line += value.contains(" ") || value.isEmpty ? " \(key)=\"\(value)\"" : " \(key)=\(value)"
        }
        return line + "\n"
    }

    /// RFC 5424 severities, as sd-daemon(3) prefixes: trace and debug share 7.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func escaped(_ s: String) -> String {
        s.contains(where: \.isNewline) ? s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).joined(separator: "\\n") : s
    }

    /// Where stderr goes, from the variables systemd sets. `JOURNAL_STREAM` counts only when it
    /// names stderr itself (a redirected stderr inherits the variable but not the stream).
    public static func detectStyle(journalStream: String?, invocationID: String?, stderrFD: Int32 = STDERR_FILENO) -> Style {
        if let js = journalStream, !js.isEmpty {
            let parts = js.split(separator: ":")
            var st = stat()
            if parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]), fstat(stderrFD, &st) == 0,
               UInt64(st.st_dev) == dev, UInt64(st.st_ino) == ino {
                return .journal
            }
        }
        if let id = invocationID, !id.isEmpty { return .systemd }
        return .terminal
    }
}

/// The daemon-wide log level, shared by every `DaemonLogHandler`, so that a reload can change it.
public final class LogLevelControl: Sendable {
    public static let shared = LogLevelControl()
    private let raw = Atomic<Int>(LogLevelControl.index(.info))

    public init() {}

    public var level: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
    }

    public func set(_ level: Logger.Level) { raw.store(Self.index(level), ordering: .relaxed) }

    static func index(_ level: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: level)! }
}

public enum DaemonLogging {
    /// Installs `DaemonLogHandler` for every logger, in the style stderr calls for.
    /// Call once, before the first logger is made.
    public static func bootstrap(level: Logger.Level) -> DaemonLogHandler.Style {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        let style = DaemonLogHandler.detectStyle(journalStream: env("JOURNAL_STREAM"), invocationID: env("INVOCATION_ID"))
        LogLevelControl.shared.set(level)
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, style: style) }
        return style
    }
}
