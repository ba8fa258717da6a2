import Foundation
import Glibc
import Support
import Yams

/// A rejected setting: names the file, the key and the value, and says what is expected.
public struct MQTTConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var value: String
    public var reason: String

    public init(file: String, key: String, value: String, reason: String) {
        self.file = file
        self.key = key
        self.value = value
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): key '\(key)': value '\(value)': \(reason)"
    }
}

/// One key of a section: its name, how a YAML value is checked and stored, and the allowed range
/// (for errors and `--help`). The default is the section's property initial value.
public struct Setting<Section>: Sendable {
    public let key: String
    /// What is allowed, as the error message says it ("an integer in 1…3600").
    public let expected: String
    let apply: @Sendable (Any, inout Section) -> Bool

    /// An integer within `range`.
    public static func int(_ key: String, _ path: WritableKeyPath<Section, Int> & Sendable, _ range: ClosedRange<Int>) -> Setting {
        Setting(key: key, expected: "an integer in \(range.lowerBound)…\(range.upperBound)") { v, s in
            guard let i = Self.integer(v), range.contains(i) else { return false }
            s[keyPath: path] = i
            return true
        }
    }

    /// A number within `range` (integers accepted).
    public static func number(_ key: String, _ path: WritableKeyPath<Section, Double> & Sendable, _ range: ClosedRange<Double>) -> Setting {
        Setting(key: key, expected: "a number in \(range.lowerBound)…\(range.upperBound)") { v, s in
            let d: Double? = (v as? Double) ?? Self.integer(v).map(Double.init)
            guard let d, d.isFinite, range.contains(d) else { return false }
            s[keyPath: path] = d
            return true
        }
    }

    public static func bool(_ key: String, _ path: WritableKeyPath<Section, Bool> & Sendable) -> Setting {
        Setting(key: key, expected: "true or false") { v, s in
            guard let b = v as? Bool else { return false }
            s[keyPath: path] = b
            return true
        }
    }

    /// A string; `check` returns nil when it is acceptable.
    public static func string(_ key: String, _ path: WritableKeyPath<Section, String> & Sendable, expected: String = "a string",
                              check: @escaping @Sendable (String) -> Bool = { _ in true }) -> Setting {
        Setting(key: key, expected: expected) { v, s in
            guard let str = v as? String, check(str) else { return false }
            s[keyPath: path] = str
            return true
        }
    }

    /// A list of strings (a single string is a list of one).
    public static func strings(_ key: String, _ path: WritableKeyPath<Section, [String]> & Sendable, expected: String) -> Setting {
        Setting(key: key, expected: expected) { v, s in
            if let one = v as? String, !one.isEmpty { s[keyPath: path] = [one]; return true }
            guard let list = v as? [Any] else { return false }
            let strs = list.compactMap { $0 as? String }
            guard strs.count == list.count, !strs.contains(where: \.isEmpty) else { return false }
            s[keyPath: path] = strs
            return true
        }
    }

    /// One of an enum's raw values.
    public static func choice<E: RawRepresentable & CaseIterable & Sendable>(_ key: String, _ path: WritableKeyPath<Section, E> & Sendable) -> Setting
    where E.RawValue == String {
        Setting(key: key, expected: "one of " + E.allCases.map(\.rawValue).joined(separator: ", ")) { v, s in
            let str = (v as? String) ?? Self.integer(v).map(String.init) ?? (v as? Double).map { "\($0)" }
            guard let str, let e = E(rawValue: str) else { return false }
            s[keyPath: path] = e
            return true
        }
    }

    /// Integers from YAML (Yams gives Int); a whole Double is not silently truncated elsewhere.
    static func integer(_ v: Any) -> Int? {
        if v is Bool { return nil }
        if let i = v as? Int { return i }
        if let d = v as? Double, let i = Int(exactly: d) { return i }
        return nil
    }
}

/// A section of mqtt.yaml: its name and its keys. Defaults are the properties' initial values.
public protocol ConfigSection: Sendable {
    static var name: String { get }
    static var settings: [Setting<Self>] { get }
    init()
}

extension ConfigSection {
    /// Applies one YAML mapping over the defaults. Unknown keys and bad values are errors.
    mutating func apply(_ fields: [String: Any], file: String) throws(MQTTConfigError) {
        let known = Self.settings
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            let name = "\(Self.name).\(key)"
            guard let s = known.first(where: { $0.key == key }) else {
                throw MQTTConfigError(file: file, key: name, value: "\(value)",
                                      reason: "unknown key (known in \(Self.name): \(known.map(\.key).sorted().joined(separator: ", ")))")
            }
            if value is NSNull { continue }  // `key:` with no value: the default
            guard s.apply(value, &self) else {
                throw MQTTConfigError(file: file, key: name, value: "\(value)", reason: "expected \(s.expected)")
            }
        }
    }
}

/// Which MQTT version the bridge speaks.
public enum MQTTProtocolVersion: String, CaseIterable, Sendable {
    case v311 = "3.1.1"
    case v5 = "5"
}

public enum BridgeLogLevel: String, CaseIterable, Sendable {
    case trace, debug, info, notice, warning, error, critical
}

/// `broker:` — where to publish and how to stay connected.
public struct BrokerSection: ConfigSection, Equatable {
    public static let name = "broker"
    /// mqtt://HOST:PORT or mqtts://HOST:PORT (`--broker` overrides).
    public var url = ""
    /// "" = camclass-<robot>.
    public var clientID = ""
    public var protocolVersion = MQTTProtocolVersion.v311
    public var keepaliveS = 30
    public var backoffInitialMs = 500
    public var backoffMaxMs = 30_000
    /// QoS 1 messages (changes, camera events) kept while the broker is unreachable.
    public var bufferMessages = 1000
    public init() {}
    public static let settings: [Setting<BrokerSection>] = [
        .string("url", \.url, expected: "mqtt://HOST:PORT or mqtts://HOST:PORT") { $0.isEmpty || (try? BrokerURL.parse($0)) != nil },
        .string("client_id", \.clientID, expected: "at most 23 characters of A-Z a-z 0-9 _ - (or empty: camclass-<robot>)") {
            $0.count <= 23 && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
        },
        .choice("protocol", \.protocolVersion),
        .int("keepalive_s", \.keepaliveS, 5...3600),
        .int("backoff_initial_ms", \.backoffInitialMs, 10...60_000),
        .int("backoff_max_ms", \.backoffMaxMs, 100...3_600_000),
        .int("buffer_messages", \.bufferMessages, 1...1_000_000),
    ]
}

/// `tls:` — used with mqtts:// URLs.
public struct TLSSection: ConfigSection, Equatable {
    public static let name = "tls"
    /// CA certificates (PEM); "" = the system's (/etc/ssl/certs).
    public var caFile = ""
    public var certFile = ""
    public var keyFile = ""
    public init() {}
    public static let settings: [Setting<TLSSection>] = [
        .string("ca_file", \.caFile, expected: "a PEM file path"),
        .string("cert_file", \.certFile, expected: "a PEM file path (with key_file)"),
        .string("key_file", \.keyFile, expected: "a PEM file path (with cert_file)"),
    ]
}

/// `auth:` — credentials. The password never comes from the command line or this file.
public struct AuthSection: ConfigSection, Equatable {
    public static let name = "auth"
    public var username = ""
    /// A file holding the password (first line). "" = `$CREDENTIALS_DIRECTORY/mqtt-password` when
    /// systemd passes it (`LoadCredential=mqtt-password:…`).
    public var passwordFile = ""
    /// Allows sending the password over plain TCP (mqtt://).
    public var allowInsecure = false
    public init() {}
    public static let settings: [Setting<AuthSection>] = [
        .string("username", \.username, expected: "a string without NUL"),
        .string("password_file", \.passwordFile, expected: "a file path"),
        .bool("allow_insecure", \.allowInsecure),
    ]
}

/// `topics:` — naming and the status cadence.
public struct TopicsSection: ConfigSection, Equatable {
    public static let name = "topics"
    public var prefix = "camclass"
    /// "" = the host name.
    public var robot = ""
    public var classificationQoS = 0
    public var statusIntervalS = 10
    public init() {}
    public static let settings: [Setting<TopicsSection>] = [
        .string("prefix", \.prefix, expected: "topic levels without + # or a leading/trailing /") { TopicMap.isValidPrefix($0) },
        .string("robot", \.robot, expected: "one topic level: no / + # (or empty: the host name)") { $0.isEmpty || TopicMap.isValidLevel($0) },
        .int("classification_qos", \.classificationQoS, 0...1),
        .int("status_interval_s", \.statusIntervalS, 1...3600),
    ]
}

/// `classification:` — what reaches `<prefix>/<robot>/<source>/classification`; the daemon applies
/// it (the `subscribe` request, docs/protocol.md), so nothing unwanted crosses the socket.
public struct ClassificationSection: ConfigSection, Equatable {
    public static let name = "classification"
    public var enabled = true
    /// 0 = no threshold.
    public var minScore = 0.0
    public var labels: [String] = []
    /// 0 = the daemon's top_k.
    public var topK = 0
    public var everyN = 1
    /// 0 = every classification (no rate limit).
    public var maxRateHz = 1.0
    public init() {}
    public static let settings: [Setting<ClassificationSection>] = [
        .bool("enabled", \.enabled),
        .number("min_score", \.minScore, 0...1),
        .strings("labels", \.labels, expected: "a list of labels or coarse groups"),
        .int("top_k", \.topK, 0...1000),
        .int("every_n", \.everyN, 1...1_000_000),
        .number("max_rate_hz", \.maxRateHz, 0...1000),
    ]
}

/// `daemon:` — the camclassd socket the bridge reads.
public struct DaemonSection: ConfigSection, Equatable {
    public static let name = "daemon"
    public var socket = "/run/camclassd/camclassd.sock"
    public var backoffInitialMs = 200
    public var backoffMaxMs = 10_000
    public init() {}
    public static let settings: [Setting<DaemonSection>] = [
        .string("socket", \.socket, expected: "a socket path") { !$0.isEmpty && $0.utf8.count < 108 },
        .int("backoff_initial_ms", \.backoffInitialMs, 10...60_000),
        .int("backoff_max_ms", \.backoffMaxMs, 100...3_600_000),
    ]
}

/// `log:` — the bridge's own log on stderr (the journal under systemd).
public struct LogSection: ConfigSection, Equatable {
    public static let name = "log"
    public var level = BridgeLogLevel.info
    public init() {}
    public static let settings: [Setting<LogSection>] = [.choice("level", \.level)]
}

/// Every setting of `camclass mqtt` (and the broker/tls/auth of `camclass fleet`).
public struct MQTTConfig: Sendable, Equatable {
    public var broker = BrokerSection()
    public var tls = TLSSection()
    public var auth = AuthSection()
    public var topics = TopicsSection()
    public var classification = ClassificationSection()
    public var daemon = DaemonSection()
    public var log = LogSection()
    /// Where the settings came from (for errors); nil = defaults and flags.
    public var file: String?

    public init() {}

    public static let systemFile = "/etc/camclassd/mqtt.yaml"
    static let sectionNames = [BrokerSection.name, TLSSection.name, AuthSection.name, TopicsSection.name,
                               ClassificationSection.name, DaemonSection.name, LogSection.name]

    /// Reads a YAML file over the defaults.
    /// - Throws: `MQTTConfigError` naming the file, key and value.
    public static func load(file: String) throws(MQTTConfigError) -> MQTTConfig {
        guard let text = readTextFile(file) else {
            throw MQTTConfigError(file: file, key: "", value: "", reason: "cannot read the config file (\(String(cString: strerror(errno))))")
        }
        return try parse(yaml: text, file: file)
    }

    public static func parse(yaml text: String, file: String) throws(MQTTConfigError) -> MQTTConfig {
        var c = MQTTConfig()
        c.file = file
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw MQTTConfigError(file: file, key: "", value: "", reason: "not valid YAML: \(error)")
        }
        guard let root else { return c }
        guard let top = root as? [String: Any] else {
            throw MQTTConfigError(file: file, key: "", value: "\(root)", reason: "the top level must be a mapping of sections")
        }
        for (section, body) in top.sorted(by: { $0.key < $1.key }) {
            if body is NSNull { continue }
            guard let fields = body as? [String: Any] else {
                if sectionNames.contains(section) {
                    throw MQTTConfigError(file: file, key: section, value: "\(body)", reason: "must be a mapping")
                }
                throw MQTTConfigError(file: file, key: section, value: "", reason: "unknown section (known: \(sectionNames.sorted().joined(separator: ", ")))")
            }
            switch section {
            case BrokerSection.name: try c.broker.apply(fields, file: file)
            case TLSSection.name: try c.tls.apply(fields, file: file)
            case AuthSection.name: try c.auth.apply(fields, file: file)
            case TopicsSection.name: try c.topics.apply(fields, file: file)
            case ClassificationSection.name: try c.classification.apply(fields, file: file)
            case DaemonSection.name: try c.daemon.apply(fields, file: file)
            case LogSection.name: try c.log.apply(fields, file: file)
            default:
                throw MQTTConfigError(file: file, key: section, value: "", reason: "unknown section (known: \(sectionNames.sorted().joined(separator: ", ")))")
            }
        }
        return c
    }

    /// Cross-key rules, after the file and the flags. `needsBroker`: the URL must be set.
    public func validate(needsBroker: Bool = true) throws(MQTTConfigError) {
        let f = file ?? "command line"
        if needsBroker && broker.url.isEmpty {
            throw MQTTConfigError(file: f, key: "broker.url", value: "", reason: "no broker: set broker.url or --broker mqtt://HOST:PORT")
        }
        if !broker.url.isEmpty {
            do { _ = try BrokerURL.parse(broker.url) } catch {
                throw MQTTConfigError(file: f, key: "broker.url", value: broker.url, reason: error.reason)
            }
        }
        if broker.backoffInitialMs > broker.backoffMaxMs {
            throw MQTTConfigError(file: f, key: "broker.backoff_initial_ms", value: "\(broker.backoffInitialMs)",
                                  reason: "must not exceed broker.backoff_max_ms (\(broker.backoffMaxMs))")
        }
        if daemon.backoffInitialMs > daemon.backoffMaxMs {
            throw MQTTConfigError(file: f, key: "daemon.backoff_initial_ms", value: "\(daemon.backoffInitialMs)",
                                  reason: "must not exceed daemon.backoff_max_ms (\(daemon.backoffMaxMs))")
        }
        if tls.certFile.isEmpty != tls.keyFile.isEmpty {
            throw MQTTConfigError(file: f, key: tls.certFile.isEmpty ? "tls.key_file" : "tls.cert_file",
                                  value: tls.certFile.isEmpty ? tls.keyFile : tls.certFile,
                                  reason: "a client certificate needs both tls.cert_file and tls.key_file")
        }
        if !topics.robot.isEmpty && !TopicMap.isValidLevel(topics.robot) {
            throw MQTTConfigError(file: f, key: "topics.robot", value: topics.robot, reason: "expected one topic level: no / + #")
        }
        if !TopicMap.isValidPrefix(topics.prefix) {
            throw MQTTConfigError(file: f, key: "topics.prefix", value: topics.prefix,
                                  reason: "expected topic levels without + # or a leading/trailing /")
        }
    }

    /// The robot id: `topics.robot`, else the host name.
    public var robotID: String {
        if !topics.robot.isEmpty { return topics.robot }
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "robot" }
        let host = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let level = String(host.map { "/+#".contains($0) ? "_" : $0 })
        return level.isEmpty ? "robot" : level
    }

    /// The MQTT client id: `broker.client_id`, else camclass-<robot> (cut to MQTT 3.1's 23 characters).
    public func clientID(tool: String = "camclass") -> String {
        if !broker.clientID.isEmpty { return broker.clientID }
        let safe = robotID.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" }
        return String((tool + "-" + String(safe)).prefix(23))
    }
}

/// mqtt://HOST:PORT or mqtts://HOST:PORT (the port defaults to 1883 / 8883).
public struct BrokerURL: Sendable, Equatable, CustomStringConvertible {
    public var tls: Bool
    public var host: String
    public var port: Int

    public struct Invalid: Error { public let reason: String }

    public init(tls: Bool, host: String, port: Int) {
        self.tls = tls
        self.host = host
        self.port = port
    }

    public static func parse(_ s: String) throws(Invalid) -> BrokerURL {
        let tls: Bool
        var rest: Substring
        if s.hasPrefix("mqtt://") { tls = false; rest = s.dropFirst(7) } else if s.hasPrefix("mqtts://") { tls = true; rest = s.dropFirst(8) } else {
            throw Invalid(reason: "expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var host = String(rest)
        var port = tls ? 8883 : 1883
        if rest.hasPrefix("[") {  // [IPv6]:port
            guard let close = rest.firstIndex(of: "]") else { throw Invalid(reason: "unterminated [IPv6 address]") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()) else { throw Invalid(reason: "expected [ADDRESS]:PORT") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let p = Int(rest[rest.index(after: colon)...]) else { throw Invalid(reason: "the port must be a number in 1…65535") }
            port = p
        }
        guard (1...65535).contains(port) else { throw Invalid(reason: "the port must be a number in 1…65535") }
        guard !host.isEmpty, !host.contains("/"), !host.contains("@") else {
            throw Invalid(reason: "expected mqtt://HOST:PORT (credentials go in auth.username and auth.password_file, never in the URL)")
        }
        return BrokerURL(tls: tls, host: host, port: port)
    }

    public var description: String { "\(tls ? "mqtts" : "mqtt")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// The username and password to send, read when the bridge starts.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var password: String?

    public init(username: String, password: String?) {
        self.username = username
        self.password = password
    }

    /// Reads the password (`auth.password_file`, else `$CREDENTIALS_DIRECTORY/mqtt-password`)
    /// and refuses plain TCP with a password unless `auth.allow_insecure`.
    /// - Returns: nil when no username is configured and no password found.
    /// - Throws: `MQTTConfigError` naming the key (an unreadable file, an insecure transport).
    public static func resolve(_ c: MQTTConfig, environment: [String: String] = ProcessInfo.processInfo.environment) throws(MQTTConfigError) -> Credentials? {
        let f = c.file ?? "command line"
        var passwordPath = c.auth.passwordFile
        var key = "auth.password_file"
        if passwordPath.isEmpty, let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty, access(dir + "/mqtt-password", F_OK) == 0 {
            passwordPath = dir + "/mqtt-password"
            key = "$CREDENTIALS_DIRECTORY/mqtt-password"
        }
        var password: String?
        if !passwordPath.isEmpty {
            guard let text = readTextFile(passwordPath) else {
                throw MQTTConfigError(file: f, key: key, value: passwordPath,
                                      reason: "cannot read the password file (\(String(cString: strerror(errno))))")
            }
            let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            password = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if password!.isEmpty {
                throw MQTTConfigError(file: f, key: key, value: passwordPath, reason: "the password file is empty")
            }
        }
        if password != nil && c.auth.username.isEmpty {
            throw MQTTConfigError(file: f, key: "auth.username", value: "", reason: "a password needs a username (MQTT sends none without)")
        }
        if password != nil, let url = try? BrokerURL.parse(c.broker.url), !url.tls, !c.auth.allowInsecure {
            throw MQTTConfigError(file: f, key: "broker.url", value: c.broker.url,
                                  reason: "refusing to send the password in clear text over plain TCP: use mqtts:// (with tls.ca_file), or set auth.allow_insecure: true if the network is trusted")
        }
        if c.auth.username.isEmpty { return nil }
        return Credentials(username: c.auth.username, password: password)
    }
}
