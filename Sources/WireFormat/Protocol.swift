/// Protocol v1 of camclassd's socket (docs/protocol.md): newline-delimited JSON both ways.
public enum CamclassProtocol {
    public static let version = 1
    /// The daemon's version, reported in `hello` and `status`.
    public static let daemonVersion = "0.1.0"
    public static let requests = ["subscribe", "status", "last"]
}

/// One frame source as `hello` lists it: `{"name":…,"path":…,"state":…}`.
public struct HelloSource: Sendable, Equatable {
    /// The configured name (`[a-z0-9_-]+`), as records carry it in `source`.
    public var name: String
    /// The configured path: a device (`/dev/video0`, a by-id link), `auto`, or a replay folder/file.
    public var path: String
    public var state: SourceState

    public init(name: String, path: String, state: SourceState) {
        self.name = name
        self.path = path
        self.state = state
    }
}

/// Source names as configured, as records carry them and as `subscribe.sources` and
/// `last.source` accept them.
public enum SourceName {
    public static let maxBytes = 32

    /// True for 1…32 bytes of `a-z`, `0-9`, `_`, `-`.
    public static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        guard !u.isEmpty && u.count <= maxBytes else { return false }
        return u.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D }
    }

    /// Why `name` is not a source name (for error messages).
    static func problem(_ name: String) -> String {
        let shown = name.utf8.count > 40 ? String(name.prefix(40)) + "…" : name
        return "'\(shown)' is not a source name (1 to \(maxBytes) bytes of a-z, 0-9, '_' and '-')"
    }
}

/// What the server says first on every connection.
public struct ProtocolHello: Sendable, Equatable {
    public var modelID = ""
    /// SHA-256 (hex) of the model file: from the sidecar's `sha256`, or computed once at start.
    public var modelSHA256 = ""
    public var modelFile = ""
    public var engine = ""
    /// The first source's name: kept for clients written before `sources` (one source); when
    /// empty, `sources`' first name is sent.
    public var source = ""
    /// Every configured source, in configuration order; `[]` encodes as `"sources":[]`.
    public var sources: [HelloSource] = []
    public var labels = 0
    public var topK = 0
    /// The stable-label stage is on; `stableGroups` coarse groups are configured.
    public var stable = false
    public var stableGroups = 0

    public init() {}

    public func encode() -> [UInt8] {
        let sourcesBytes = sources.reduce(0) { $0 + 64 + 6 * ($1.name.utf8.count + $1.path.utf8.count) }
        return ByteWriter.whole(capacity: 4096 + 6 * (modelID.utf8.count + modelFile.utf8.count + source.utf8.count + engine.utf8.count)
                                + sourcesBytes) { w in
            w.ascii("{\"type\":\"hello\",\"protocol\":")
            w.uint(UInt64(CamclassProtocol.version))
            w.ascii(",\"daemon\":\"camclassd\",\"version\":")
            w.jsonString(CamclassProtocol.daemonVersion)
            w.ascii(",\"model\":{\"id\":")
            w.jsonString(modelID)
            w.ascii(",\"sha256\":")
            if modelSHA256.isEmpty { w.ascii("null") } else { w.jsonString(modelSHA256) }
            w.ascii(",\"file\":")
            w.jsonString(modelFile)
            w.ascii("},\"engine\":")
            w.jsonString(engine)
            w.ascii(",\"source\":")
            w.jsonString(source.isEmpty ? sources.first?.name ?? "" : source)
            w.ascii(",\"sources\":[")
            for (i, s) in sources.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.ascii("{\"name\":")
                w.jsonString(s.name)
                w.ascii(",\"path\":")
                w.jsonString(s.path)
                w.ascii(",\"state\":")
                w.jsonString(s.state.name)
                w.byte(UInt8(ascii: "}"))
            }
            w.ascii("],\"labels\":")
            w.uint(UInt64(labels))
            w.ascii(",\"top_k\":")
            w.uint(UInt64(topK))
            w.ascii(",\"stable\":")
            w.ascii(stable ? "true" : "false")
            w.ascii(",\"stable_groups\":")
            w.uint(UInt64(stableGroups))
            w.ascii(",\"requests\":[\"subscribe\",\"status\",\"last\"]}\n")
        }
    }
}

/// An error line sent to a client: `{"type":"error","code":…,"error":…}`.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case malformedJSON = "malformed_json"
        case badRequest = "bad_request"
        case unknownRequest = "unknown_request"
        case unknownKey = "unknown_key"
        case badValue = "bad_value"
        case noResultYet = "no_result_yet"
        case requestTooLong = "request_too_long"
        case flood = "flood"
        case tooManySubscribers = "too_many_subscribers"
        case unavailable = "unavailable"
        /// Disconnected to make room at the subscriber limit: it had been losing records longest.
        case evicted = "evicted"
        /// `last` named a source the daemon does not know (the message lists the known ones).
        case unknownSource = "unknown_source"
    }

    public var code: Code
    public var message: String
    /// The request the error is about, when known.
    public var request: String?
    /// The server closes the connection after this error.
    public var disconnect = false

    public init(_ code: Code, _ message: String, request: String? = nil, disconnect: Bool = false) {
        self.code = code
        self.message = message
        self.request = request
        self.disconnect = disconnect
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public func encode() -> [UInt8] {
        ByteWriter.whole(capacity: 512 + message.utf8.count * 6) { w in
            w.ascii("{\"type\":\"error\",\"code\":")
            w.jsonString(code.rawValue)
            w.ascii(",\"error\":")
            w.jsonString(message)
            if let request {
                w.ascii(",\"request\":")
                w.jsonString(request)
            }
            if disconnect { w.ascii(",\"disconnect\":true") }
            w.ascii("}\n")
        }
    }
}

/// A client's request line, parsed and validated.
public enum ProtocolRequest: Equatable, Sendable {
    case subscribe(SubscriptionFilter)
    case status
    /// The latest classification of `source`, or of any source when nil.
    case last(source: String?)

    /// Parses one line (without its newline).
    /// - Throws: `ProtocolError` saying what is wrong and what is expected.
    public static func parse(_ line: UnsafeRawBufferPointer, vocabulary: RecordVocabulary?,
                             maxTopK: Int) throws(ProtocolError) -> ProtocolRequest {
        let value: JSONValue
        do { value = try JSONParser.parse(line) } catch {
            throw ProtocolError(.malformedJSON, "request is not valid JSON: \(error); send one JSON object per line, e.g. {\"status\":{}}")
        }
        guard case .object(let top) = value else {
            throw ProtocolError(.badRequest, "a request is a JSON object with one key (subscribe, status or last), got \(value.kindName)")
        }
        guard top.count == 1, let (name, body) = top.first else {
            throw ProtocolError(.badRequest, "a request has exactly one key (subscribe, status or last), got \(top.count): \(top.keys.sorted().joined(separator: ", "))")
        }
        let fields: [String: JSONValue]
        switch body {
        case .object(let o): fields = o
        case .null: fields = [:]
        default:
            throw ProtocolError(.badRequest, "the value of '\(name)' must be an object (e.g. {\"\(name)\":{}}), got \(body.kindName)", request: name)
        }
        switch name {
        case "subscribe":
            return .subscribe(try SubscriptionFilter(fields: fields, vocabulary: vocabulary, maxTopK: maxTopK))
        case "status":
            if let k = fields.keys.sorted().first { throw ProtocolError(.unknownKey, "status takes no options, got '\(k)'", request: name) }
            return .status
        case "last":
            for k in fields.keys.sorted() where k != "source" {
                throw ProtocolError(.unknownKey, "last: unknown key '\(k)' (known: source)", request: name)
            }
            guard let v = fields["source"], v != .null else { return .last(source: nil) }
            guard case .string(let source) = v else {
                throw ProtocolError(.badValue, "last.source: expected a source name (a string), got \(v.kindName)", request: name)
            }
            guard SourceName.isValid(source) else { throw ProtocolError(.badValue, "last.source: \(SourceName.problem(source))", request: name) }
            return .last(source: source)
        default:
            throw ProtocolError(.unknownRequest, "unknown request '\(name)' (known: subscribe, status, last)", request: nil)
        }
    }
}

/// A subscriber's choice of records. The default (no `subscribe` sent) is everything: every
/// classification with all its `top` entries, and every event.
/// Thread context: value type, evaluated on the socket's I/O thread.
public struct SubscriptionFilter: Equatable, Sendable {
    /// `top` entries scoring below this are removed; a classification with none left is not sent.
    public var minScore: Double = 0
    /// Only these classes (from `classes` and `labels`); empty = all.
    public var classes: [Int] = []
    /// At most this many `top` entries (nil = as many as the daemon computes, `model.top_k`).
    public var topK: Int?
    /// Every n-th classification that passes the score/class filters.
    public var everyN = 1
    /// At most this many classifications per second (nil = no limit), on capture time.
    public var maxRateHz: Double?
    /// Event records wanted besides classifications.
    public var events: Set<RecordKind> = [.change, .camera]
    /// Whether classification records are sent at all (false: events only).
    public var classifications = true
    /// Only records of these sources (sorted, unique); empty = every source. Records about no
    /// source (`reload`, `shutdown`) always go.
    public var sources: [String] = []

    public init() {}

    /// Accepted `max_rate_hz`: one record per 1000 s up to a million per second.
    public static let maxRateRange: ClosedRange<Double> = 0.001...1_000_000
    /// Accepted `every_n` and `top_k` (whole numbers; `top_k` is then capped at the daemon's).
    public static let countRange: ClosedRange<Int> = 1...1_000_000

    /// Nanoseconds between records for `max_rate_hz` (the range keeps it well inside UInt64).
    public var maxRateIntervalNs: UInt64? {
        guard let hz = maxRateHz, hz >= Self.maxRateRange.lowerBound else { return nil }
        return UInt64(exactly: (1e9 / hz).rounded()) ?? UInt64.max
    }

    public static let knownKeys = ["classes", "classifications", "events", "every_n", "labels", "max_rate_hz", "min_score", "sources", "top_k"]
    /// At most this many names in `sources`.
    public static let maxSources = 64
    public static let eventNames = ["change", "camera"]

    /// Validates a `subscribe` body. Labels are resolved to class ids (a label or a coarse group name).
    public init(fields: [String: JSONValue], vocabulary: RecordVocabulary?, maxTopK: Int) throws(ProtocolError) {
        func bad(_ key: String, _ why: String) -> ProtocolError {
            ProtocolError(.badValue, "subscribe.\(key): \(why)", request: "subscribe")
        }
        for key in fields.keys.sorted() where !Self.knownKeys.contains(key) {
            throw ProtocolError(.unknownKey, "subscribe: unknown key '\(key)' (known: \(Self.knownKeys.joined(separator: ", ")))",
                                request: "subscribe")
        }
        func integer(_ key: String, _ v: JSONValue) throws(ProtocolError) -> Int {
            guard case .number(let d) = v, d == d.rounded(), abs(d) < 1e15, let i = Int(exactly: d) else {
                throw bad(key, "expected an integer, got \(v.kindName == "a number" ? "a fraction or a number too large" : v.kindName)")
            }
            return i
        }
        let labelCount = vocabulary?.labels.count ?? Int.max
        var classSet = Set<Int>()
        for (key, v) in fields {
            switch key {
            case "min_score":
                guard case .number(let d) = v, d >= 0, d <= 1 else { throw bad(key, "expected a number from 0 to 1") }
                minScore = d
            case "classes":
                guard case .array(let items) = v else { throw bad(key, "expected an array of class ids, e.g. [281, 285]") }
                for item in items {
                    let c = try integer(key, item)
                    guard c >= 0 && c < labelCount else { throw bad(key, "class id \(c) is out of range (0…\(labelCount - 1))") }
                    classSet.insert(c)
                }
            case "labels":
                guard case .array(let items) = v else { throw bad(key, "expected an array of label names, e.g. [\"espresso\"]") }
                for item in items {
                    guard case .string(let name) = item else { throw bad(key, "expected label names (strings), got \(item.kindName)") }
                    guard let vocabulary else { throw bad(key, "this daemon has no label names; use classes") }
                    let ids = vocabulary.classes(named: name)
                    guard !ids.isEmpty else {
                        throw bad(key, "no class or coarse group is named '\(name)' (names are the model's labels, case-insensitive)")
                    }
                    classSet.formUnion(ids)
                }
            case "top_k":
                let k = try integer(key, v)
                guard Self.countRange.contains(k) else { throw bad(key, "expected an integer from 1 to \(Self.countRange.upperBound)") }
                topK = min(k, max(1, maxTopK))
            case "every_n":
                let n = try integer(key, v)
                guard Self.countRange.contains(n) else { throw bad(key, "expected an integer from 1 to \(Self.countRange.upperBound)") }
                everyN = n
            case "max_rate_hz":
                // The publisher turns the rate into a whole-nanosecond interval (1e9 / rate): a rate
                // that tiny would overflow it (issue 11 F1), so the range is bounded at both ends.
                let range = "a number of records per second from 0.001 to 1000000"
                guard case .number(let d) = v else { throw bad(key, "expected \(range), got \(v.kindName)") }
                guard Self.maxRateRange.contains(d) else { throw bad(key, "expected \(range), got \(d)") }
                maxRateHz = d
            case "events":
                guard case .array(let items) = v else { throw bad(key, "expected an array of event types (change, camera)") }
                var set = Set<RecordKind>()
                for item in items {
                    guard case .string(let name) = item else { throw bad(key, "expected event type names, got \(item.kindName)") }
                    switch name {
                    case "change": set.insert(.change)
                    case "camera": set.insert(.camera)
                    default: throw bad(key, "unknown event type '\(name)' (known: \(Self.eventNames.joined(separator: ", ")))")
                    }
                }
                events = set
            case "classifications":
                guard case .bool(let b) = v else { throw bad(key, "expected true or false") }
                classifications = b
            case "sources":
                // Names are checked for form only: a source unknown now may appear after a reload
                // (the `subscribed` reply lists the ones not configured at the moment).
                guard case .array(let items) = v else { throw bad(key, "expected an array of source names, e.g. [\"front\"]") }
                guard items.count <= Self.maxSources else { throw bad(key, "at most \(Self.maxSources) source names, got \(items.count)") }
                var names = Set<String>()
                for item in items {
                    guard case .string(let name) = item else { throw bad(key, "expected source names (strings), got \(item.kindName)") }
                    guard SourceName.isValid(name) else { throw bad(key, SourceName.problem(name)) }
                    names.insert(name)
                }
                sources = names.sorted()
            default: break
            }
        }
        classes = classSet.sorted()
    }

    /// True when classifications need their `top` entries examined (score, class or count filters).
    public var filtersEntries: Bool { minScore > 0 || !classes.isEmpty || topK != nil }

    /// `{"type":"subscribed","filter":{…},"unknown_sources":[…]}\n`: the filter as the server
    /// understood it, and which of its `sources` are not configured now (`unknownSources`).
    public func encodeAck(unknownSources: [String] = []) -> [UInt8] {
        ByteWriter.whole(capacity: 1024 + classes.count * 8 + (sources.count + unknownSources.count) * (SourceName.maxBytes * 6 + 4)) { w in
            w.ascii("{\"type\":\"subscribed\",\"filter\":{\"min_score\":")
            w.fixed(minScore, decimals: 4)
            w.ascii(",\"classes\":[")
            for (i, c) in classes.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.uint(UInt64(c))
            }
            w.ascii("],\"top_k\":")
            if let topK { w.uint(UInt64(topK)) } else { w.ascii("null") }
            w.ascii(",\"every_n\":")
            w.uint(UInt64(everyN))
            w.ascii(",\"max_rate_hz\":")
            if let maxRateHz { w.fixed(maxRateHz, decimals: 3) } else { w.ascii("null") }
            w.ascii(",\"events\":[")
            var first = true
            for e in [RecordKind.change, .camera] where events.contains(e) {
                if !first { w.byte(UInt8(ascii: ",")) }
                first = false
                w.jsonString(e.name)
            }
            w.ascii("],\"classifications\":")
            w.ascii(classifications ? "true" : "false")
            w.ascii(",\"sources\":[")
            for (i, s) in sources.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.jsonString(s)
            }
            w.ascii("]},\"unknown_sources\":[")
            for (i, s) in unknownSources.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.jsonString(s)
            }
            w.ascii("]}\n")
        }
    }
}
