import Foundation

/// The bridge's topics, under `<prefix>/<robot>/`:
///
/// | topic | payload | QoS | retained |
/// |---|---|---|---|
/// | `<source>/classification` | the daemon's classification record, byte for byte | `topics.classification_qos` (0) | no |
/// | `<source>/change` | the daemon's change record | 1 | no |
/// | `<source>/camera` | the daemon's camera record (lost/streaming) | 1 | yes |
/// | `status` | the daemon's status reply, or `{"type":"status","daemon":"unreachable",…}` | 1 | yes |
/// | `availability` | `online`, `daemon_unreachable`, `offline` (also the Last Will) | 1 | yes |
public struct TopicMap: Sendable, Equatable {
    public let prefix: String
    public let robot: String

    public init(prefix: String, robot: String) {
        self.prefix = prefix
        self.robot = robot
    }

    public var base: String { "\(prefix)/\(robot)" }
    public var status: String { base + "/status" }
    public var availability: String { base + "/availability" }
    public func classification(source: String) -> String { "\(base)/\(Self.sourceLevel(source))/classification" }
    public func change(source: String) -> String { "\(base)/\(Self.sourceLevel(source))/change" }
    public func camera(source: String) -> String { "\(base)/\(Self.sourceLevel(source))/camera" }

    /// The source as one topic level: `/dev/video0` → `video0`, a replay folder or file → its last
    /// path component (`/srv/photos/` → `photos`); `/`, `+`, `#`, spaces and control characters
    /// become `_`; nothing left → `default`.
    public static func sourceLevel(_ source: String) -> String {
        var s = Substring(source)
        while s.hasSuffix("/") { s = s.dropLast() }
        if s.hasPrefix("/dev/") {
            s = s.dropFirst(5)
            if s.hasPrefix("v4l/by-id/") || s.hasPrefix("v4l/by-path/") { s = s[(s.lastIndex(of: "/").map { s.index(after: $0) } ?? s.startIndex)...] }
        } else if let slash = s.lastIndex(of: "/") {
            s = s[s.index(after: slash)...]
        }
        let level = String(s.map { c -> Character in
            if c == "/" || c == "+" || c == "#" || c.isWhitespace { return "_" }
            if let a = c.asciiValue, a < 0x20 || a == 0x7F { return "_" }
            return c
        })
        return level.isEmpty ? "default" : level
    }

    /// One topic level a publisher may use: non-empty, no `/`, `+`, `#` or NUL.
    public static func isValidLevel(_ s: String) -> Bool {
        !s.isEmpty && !s.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" || $0 == "\0" })
    }

    /// Levels separated by `/`, each valid (so `fleet/site-a` is fine, `/x`, `x/` and `a//b` are not).
    public static func isValidPrefix(_ s: String) -> Bool {
        !s.isEmpty && s.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { isValidLevel(String($0)) }
    }
}

/// One message for the broker.
public struct OutgoingMessage: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case classification, change, camera, status, availability
    }
    public var kind: Kind
    public var topic: String
    public var payload: [UInt8]
    public var qos: Int32
    public var retain: Bool

    public init(kind: Kind, topic: String, payload: [UInt8], qos: Int32, retain: Bool) {
        self.kind = kind
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// Maps the daemon's lines to broker messages. Thread context: one thread (the socket reader).
public struct RecordRouter: Sendable {
    public let topics: TopicMap
    public let classificationQoS: Int32
    /// The source named by the latest `hello` (change records carry none).
    public private(set) var source = "default"

    public init(topics: TopicMap, classificationQoS: Int32) {
        self.topics = topics
        self.classificationQoS = classificationQoS
    }

    /// What to do with one line from the daemon.
    public enum Route: Sendable, Equatable {
        case publish(OutgoingMessage)
        /// The daemon's `dropped` record: this many records never reached the bridge.
        case missed(Int)
        /// The daemon is shutting down (its `shutdown` record).
        case shutdown(String)
        case ignore
    }

    /// Remembers the source from a `hello` line.
    public mutating func hello(_ line: String) {
        if let o = Self.object(line), let s = o["source"] as? String, !s.isEmpty { source = s }
    }

    /// Routes one line (without its newline). Classifications are recognised by their prefix and
    /// republished unchanged, without parsing the whole record.
    public func route(_ line: String) -> Route {
        let bytes = Array(line.utf8)
        if line.hasPrefix("{\"type\":\"classification\"") {
            let src = Self.topLevelString(bytes, key: "source") ?? source
            return .publish(OutgoingMessage(kind: .classification, topic: topics.classification(source: src), payload: bytes,
                                            qos: classificationQoS, retain: false))
        }
        guard let o = Self.object(line), let type = o["type"] as? String else { return .ignore }
        switch type {
        case "change":
            let src = o["source"] as? String ?? source
            return .publish(OutgoingMessage(kind: .change, topic: topics.change(source: src), payload: bytes, qos: 1, retain: false))
        case "camera":
            let src = o["source"] as? String ?? source
            return .publish(OutgoingMessage(kind: .camera, topic: topics.camera(source: src), payload: bytes, qos: 1, retain: true))
        case "status":
            return .publish(OutgoingMessage(kind: .status, topic: topics.status, payload: bytes, qos: 1, retain: true))
        case "dropped":
            return .missed((o["count"] as? Int) ?? 0)
        case "shutdown":
            return .shutdown(o["reason"] as? String ?? "")
        default:
            return .ignore
        }
    }

    /// The retained status that replaces the daemon's while its socket is gone.
    public func unreachableStatus(reason: String, sinceRealtimeNs: UInt64) -> OutgoingMessage {
        let o: [String: Any] = ["type": "status", "daemon": "unreachable", "error": reason,
                                "since": Self.rfc3339(sinceRealtimeNs), "source": ["name": source, "state": "unknown"]]
        let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return OutgoingMessage(kind: .status, topic: topics.status, payload: Array(data), qos: 1, retain: true)
    }

    public func availability(_ state: Availability) -> OutgoingMessage {
        OutgoingMessage(kind: .availability, topic: topics.availability, payload: Array(state.rawValue.utf8), qos: 1, retain: true)
    }

    static func object(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    /// A top-level string field of a flat-prefixed record (`"key":"value"` at nesting depth 1),
    /// unescaped; nil when absent. Enough for the daemon's records; not a general JSON reader.
    static func topLevelString(_ b: [UInt8], key: String) -> String? {
        let pattern = Array("\"\(key)\":\"".utf8)
        var depth = 0, i = 0, inString = false
        while i < b.count {
            let c = b[i]
            if inString {
                if c == UInt8(ascii: "\\") { i += 2; continue }
                if c == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: "\""):
                if depth == 1, i + pattern.count <= b.count, b[i..<(i + pattern.count)].elementsEqual(pattern) {
                    var j = i + pattern.count
                    let start = j
                    var escaped = false
                    while j < b.count && b[j] != UInt8(ascii: "\"") { if b[j] == UInt8(ascii: "\\") { escaped = true; j += 1 }; j += 1 }
                    guard j < b.count else { return nil }
                    if !escaped { return String(decoding: b[start..<j], as: UTF8.self) }
                    return (try? JSONSerialization.jsonObject(with: Data(b[(start - 1)...j]), options: [.fragmentsAllowed])) as? String
                }
                inString = true
            default: break
            }
            i += 1
        }
        return nil
    }

    static func rfc3339(_ ns: UInt64) -> String {
        let secs = time_t(ns / 1_000_000_000)
        var t = tm()
        var s = secs
        gmtime_r(&s, &t)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                      t.tm_hour, t.tm_min, t.tm_sec, Int32((ns % 1_000_000_000) / 1000))
    }
}

/// What `<prefix>/<robot>/availability` says.
public enum Availability: String, Sendable, CaseIterable {
    /// The bridge is connected to the broker and reads the daemon.
    case online
    /// The bridge is connected to the broker but the daemon's socket is gone (stopped, restarting).
    case daemonUnreachable = "daemon_unreachable"
    /// The bridge stopped cleanly, or (as its Last Will) lost the broker connection.
    case offline
}

/// A bounded FIFO that drops its oldest element when full and counts what it dropped — the QoS 1
/// messages kept while the broker is unreachable. Thread context: the owner serializes access.
public struct OutageBuffer<Element: Sendable>: Sendable {
    public let capacity: Int
    private var ring: [Element?]
    private var head = 0
    public private(set) var count = 0
    /// Elements dropped (oldest first) because the buffer was full, since creation.
    public private(set) var dropped = 0

    public init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
        ring = []
    }

    public var isEmpty: Bool { count == 0 }

    /// Appends; when full, the oldest element is dropped (and counted) first. Returns whether one was dropped.
    @discardableResult
    public mutating func append(_ e: Element) -> Bool {
        if ring.isEmpty { ring = Array(repeating: nil, count: min(capacity, 64)) }
        var droppedOne = false
        if count == capacity {
            ring[head] = nil
            head = (head + 1) % ring.count
            count -= 1
            dropped += 1
            droppedOne = true
        } else if count == ring.count {
            // Grow lazily up to the capacity (a large bound costs nothing until an outage fills it).
            let newSize = min(capacity, ring.count * 2)
            var grown: [Element?] = Array(repeating: nil, count: newSize)
            for i in 0..<count { grown[i] = ring[(head + i) % ring.count] }
            ring = grown
            head = 0
        }
        ring[(head + count) % ring.count] = e
        count += 1
        return droppedOne
    }

    /// Removes and returns every element, oldest first.
    public mutating func removeAll() -> [Element] {
        var out: [Element] = []
        out.reserveCapacity(count)
        for i in 0..<count { out.append(ring[(head + i) % ring.count]!) }
        ring = []
        head = 0
        count = 0
        return out
    }
}
