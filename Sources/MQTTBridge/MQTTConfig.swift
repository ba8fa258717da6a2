import Foundation
import Glibc
import Support

/// Which MQTT version the bridge speaks.
public enum MQTTProtocolVersion: String, ConfigEnum {
    case v311 = "3.1.1"
    case v5 = "5"
}

public enum BridgeLogLevel: String, ConfigEnum {
    case trace, debug, info, notice, warning, error, critical
}

/// `broker:` — where to publish and how to stay connected.
public struct BrokerSection: ConfigSection {
    public static let section = "broker"
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

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        url = try r.string("url", url, maxBytes: 1024)
        if !url.isEmpty, (try? BrokerURL.parse(url)) == nil { throw r.invalid("url", url, "expected mqtt://HOST:PORT or mqtts://HOST:PORT") }
        clientID = try r.string("client_id", clientID, maxBytes: 23)
        if !clientID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) {
            throw r.invalid("client_id", clientID, "expected at most 23 characters of A-Z a-z 0-9 _ - (or empty: camclass-<robot>)")
        }
        protocolVersion = try r.choice("protocol", protocolVersion)
        keepaliveS = try r.int("keepalive_s", keepaliveS, 5...3600, unit: "seconds")
        backoffInitialMs = try r.int("backoff_initial_ms", backoffInitialMs, 10...60_000, unit: "ms")
        backoffMaxMs = try r.int("backoff_max_ms", backoffMaxMs, 100...3_600_000, unit: "ms")
        bufferMessages = try r.int("buffer_messages", bufferMessages, 1...1_000_000, unit: "messages")
    }
}

/// `tls:` — used with mqtts:// URLs.
public struct TLSSection: ConfigSection {
    public static let section = "tls"
    /// CA certificates (PEM); "" = the system's (/etc/ssl/certs).
    public var caFile = ""
    public var certFile = ""
    public var keyFile = ""
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        caFile = try r.path("ca_file", caFile, relativeToFile: true)
        certFile = try r.path("cert_file", certFile, relativeToFile: true)
        keyFile = try r.path("key_file", keyFile, relativeToFile: true)
    }
}

/// `auth:` — credentials. The password never comes from the command line or this file.
public struct AuthSection: ConfigSection {
    public static let section = "auth"
    public var username = ""
    /// A file holding the password (first line). "" = `$CREDENTIALS_DIRECTORY/mqtt-password` when
    /// systemd passes it (`LoadCredential=mqtt-password:…`).
    public var passwordFile = ""
    /// Allows sending the password over plain TCP (mqtt://).
    public var allowInsecure = false
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        username = try r.string("username", username, maxBytes: 1024)
        passwordFile = try r.path("password_file", passwordFile, relativeToFile: true)
        allowInsecure = try r.bool("allow_insecure", allowInsecure)
    }
}

/// `topics:` — naming and the status cadence.
public struct TopicsSection: ConfigSection {
    public static let section = "topics"
    public var prefix = "camclass"
    /// "" = the host name.
    public var robot = ""
    public var classificationQoS = 0
    public var statusIntervalS = 10
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        prefix = try r.string("prefix", prefix, maxBytes: 256)
        if !TopicMap.isValidPrefix(prefix) { throw r.invalid("prefix", prefix, "expected topic levels without + # or a leading/trailing /") }
        robot = try r.string("robot", robot, maxBytes: 128)
        if !robot.isEmpty && !TopicMap.isValidLevel(robot) {
            throw r.invalid("robot", robot, "expected one topic level: no / + # (or empty: the host name)")
        }
        classificationQoS = try r.int("classification_qos", classificationQoS, 0...1)
        statusIntervalS = try r.int("status_interval_s", statusIntervalS, 1...3600, unit: "seconds")
    }
}

/// `classification:` — what reaches `<prefix>/<robot>/<source>/classification`; the daemon applies
/// it (the `subscribe` request, docs/protocol.md), so nothing unwanted crosses the socket.
public struct ClassificationSection: ConfigSection {
    public static let section = "classification"
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

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        enabled = try r.bool("enabled", enabled)
        minScore = try r.double("min_score", minScore, 0...1)
        labels = try r.list("labels", labels, expected: "a list of labels or coarse groups", minCount: 0, maxCount: 1000) { $0.utf8.count <= 256 ? $0 : nil }
        topK = try r.int("top_k", topK, 0...1000, unit: "(0 = the daemon's top_k)")
        everyN = try r.int("every_n", everyN, 1...1_000_000)
        maxRateHz = try r.double("max_rate_hz", maxRateHz, 0.001...1000, unit: "per second", alsoZero: "every classification")
    }
}

/// `daemon:` — the camclassd socket the bridge reads.
public struct DaemonSection: ConfigSection {
    public static let section = "daemon"
    public var socket = "/run/camclassd/camclassd.sock"
    public var backoffInitialMs = 200
    public var backoffMaxMs = 10_000
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        socket = try r.string("socket", socket, maxBytes: 107, allowEmpty: false)
        backoffInitialMs = try r.int("backoff_initial_ms", backoffInitialMs, 10...60_000, unit: "ms")
        backoffMaxMs = try r.int("backoff_max_ms", backoffMaxMs, 100...3_600_000, unit: "ms")
    }
}

/// `log:` — the bridge's own log on stderr (the journal under systemd).
public struct LogSection: ConfigSection {
    public static let section = "log"
    public var level = BridgeLogLevel.info
    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        level = try r.choice("level", level)
    }
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
    static let sectionNames = [BrokerSection.section, TLSSection.section, AuthSection.section, TopicsSection.section,
                               ClassificationSection.section, DaemonSection.section, LogSection.section]

    /// Reads a YAML file over the defaults (a regular file of at most 1 MiB).
    /// - Throws: `ConfigError` naming the file, key and value.
    public static func load(file: String) throws(ConfigError) -> MQTTConfig {
        try parse(yaml: try ConfigFile.read(file), file: file)
    }

    public static func parse(yaml text: String, file: String) throws(ConfigError) -> MQTTConfig {
        let root = try ConfigFile.parse(yaml: text, file: file)
        for section in root.keys.sorted() where !sectionNames.contains(section) {
            throw ConfigError(file: file, key: section, value: "", reason: "unknown section (known: \(sectionNames.sorted().joined(separator: ", ")))")
        }
        var c = MQTTConfig()
        c.file = file
        c.broker = try .read(from: root, file: file)
        c.tls = try .read(from: root, file: file)
        c.auth = try .read(from: root, file: file)
        c.topics = try .read(from: root, file: file)
        c.classification = try .read(from: root, file: file)
        c.daemon = try .read(from: root, file: file)
        c.log = try .read(from: root, file: file)
        return c
    }

    /// Cross-key rules, after the file and the flags. `needsBroker`: the URL must be set.
    public func validate(needsBroker: Bool = true) throws(ConfigError) {
        let f = file ?? "command line"
        if needsBroker && broker.url.isEmpty {
            throw ConfigError(file: f, key: "broker.url", value: "", reason: "no broker: set broker.url or --broker mqtt://HOST:PORT")
        }
        if !broker.url.isEmpty {
            do { _ = try BrokerURL.parse(broker.url) } catch {
                throw ConfigError(file: f, key: "broker.url", value: broker.url, reason: error.reason)
            }
        }
        if broker.backoffInitialMs > broker.backoffMaxMs {
            throw ConfigError(file: f, key: "broker.backoff_initial_ms", value: "\(broker.backoffInitialMs)",
                                  reason: "must not exceed broker.backoff_max_ms (\(broker.backoffMaxMs))")
        }
        if daemon.backoffInitialMs > daemon.backoffMaxMs {
            throw ConfigError(file: f, key: "daemon.backoff_initial_ms", value: "\(daemon.backoffInitialMs)",
                                  reason: "must not exceed daemon.backoff_max_ms (\(daemon.backoffMaxMs))")
        }
        if tls.certFile.isEmpty != tls.keyFile.isEmpty {
            throw ConfigError(file: f, key: tls.certFile.isEmpty ? "tls.key_file" : "tls.cert_file",
                                  value: tls.certFile.isEmpty ? tls.keyFile : tls.certFile,
                                  reason: "a client certificate needs both tls.cert_file and tls.key_file")
        }
        if !topics.robot.isEmpty && !TopicMap.isValidLevel(topics.robot) {
            throw ConfigError(file: f, key: "topics.robot", value: topics.robot, reason: "expected one topic level: no / + #")
        }
        if !TopicMap.isValidPrefix(topics.prefix) {
            throw ConfigError(file: f, key: "topics.prefix", value: topics.prefix,
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
    /// - Throws: `ConfigError` naming the key (an unreadable file, an insecure transport).
    public static func resolve(_ c: MQTTConfig, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> Credentials? {
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
                throw ConfigError(file: f, key: key, value: passwordPath,
                                      reason: "cannot read the password file (\(String(cString: strerror(errno))))")
            }
            let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            password = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if password!.isEmpty {
                throw ConfigError(file: f, key: key, value: passwordPath, reason: "the password file is empty")
            }
        }
        if password != nil && c.auth.username.isEmpty {
            throw ConfigError(file: f, key: "auth.username", value: "", reason: "a password needs a username (MQTT sends none without)")
        }
        if password != nil, let url = try? BrokerURL.parse(c.broker.url), !url.tls, !c.auth.allowInsecure {
            throw ConfigError(file: f, key: "broker.url", value: c.broker.url,
                                  reason: "refusing to send the password in clear text over plain TCP: use mqtts:// (with tls.ca_file), or set auth.allow_insecure: true if the network is trusted")
        }
        if c.auth.username.isEmpty { return nil }
        return Credentials(username: c.auth.username, password: password)
    }
}
