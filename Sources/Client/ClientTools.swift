import Foundation
import Glibc
import WireFormat
import Support

/// A failed client command: what to print and the exit status (sysexits).
public struct ClientError: Error, CustomStringConvertible {
    public var message: String
    public var status: ExitStatus
    public var description: String { message }
}

/// The client side of protocol v1 for `camclass status`, `last`, `tail` and `subscribe`.
public enum CamclassClient {
    /// A session for one-shot requests: connected, greeted, and quiet (no records, only replies).
    public struct Session {
        public let connection: SubscriberConnection
        public let hello: [String: Any]

        public static func open(socket: String, quiet: Bool = true) throws(ClientError) -> Session {
            let connection: SubscriberConnection
            do { connection = try SubscriberConnection(path: socket) } catch {
                throw ClientError(message: "cannot connect to camclassd at \(socket): \(error) (is the daemon running? see --socket)", status: .unavailable)
            }
            let first: String?
            do { first = try connection.readLine(timeoutMs: 5000) } catch {
                throw ClientError(message: "reading from \(socket): \(error)", status: .ioError)
            }
            guard let line = first, let hello = object(line), hello["type"] as? String == "hello" else {
                throw ClientError(message: "\(socket) did not greet with a protocol v1 hello within 5 s (an older camclassd?)", status: .protocolError)
            }
            if quiet {
                do { try connection.send(line: #"{"subscribe":{"classifications":false,"events":[]}}"#) } catch {
                    throw ClientError(message: "writing to \(socket): \(error)", status: .ioError)
                }
            }
            return Session(connection: connection, hello: hello)
        }

        /// Sends `request`; returns the first reply whose type is in `types` and that `accept`
        /// takes (an `error` reply throws unless `types` has it), raw and parsed.
        public func request(_ request: String, expect types: Set<String>, timeoutMs: Int = 5000,
                            accept: ([String: Any]) -> Bool = { _ in true }) throws(ClientError) -> (String, [String: Any]) {
            do {
                try connection.send(line: request)
                let deadline = Clock.monotonicNs() + UInt64(timeoutMs) * 1_000_000
                while Clock.monotonicNs() < deadline {
                    guard let line = try connection.readLine(timeoutMs: 200) else {
                        if connection.atEOF { break }
                        continue
                    }
                    guard let o = object(line), let t = o["type"] as? String else { continue }
                    if types.contains(t) && accept(o) { return (line, o) }
                    if t == "error" {
                        // A request the daemon refused as asked (a bad or unknown name) is a usage error;
                        // a result not there yet may come with a retry.
                        let code = o["code"] as? String ?? ""
                        let status: ExitStatus = ["bad_value", "unknown_key", "unknown_source"].contains(code) ? .usage
                            : code == "no_result_yet" ? .tempFail : .failure
                        throw ClientError(message: "camclassd answered: \(o["error"] as? String ?? line)", status: status)
                    }
                }
            } catch let e as ClientError { throw e } catch {
                throw ClientError(message: "talking to camclassd: \(error)", status: .ioError)
            }
            throw ClientError(message: "no answer to \(request) within \(timeoutMs / 1000) s", status: .tempFail)
        }
    }

    public static func object(_ line: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    /// The `subscribe` request for `camclass subscribe`'s filter flags; nil when none is given.
    public static func subscribeRequest(minScore: Double?, classes: [Int], labels: [String], topK: Int?, everyN: Int?,
                                        maxRateHz: Double?, events: String?, eventsOnly: Bool, sources: [String] = []) -> String? {
        var f: [String: Any] = [:]
        if !sources.isEmpty { f["sources"] = sources }
        if let minScore { f["min_score"] = minScore }
        if !classes.isEmpty { f["classes"] = classes }
        if !labels.isEmpty { f["labels"] = labels }
        if let topK { f["top_k"] = topK }
        if let everyN { f["every_n"] = everyN }
        if let maxRateHz { f["max_rate_hz"] = maxRateHz }
        if let events {
            f["events"] = events == "none" ? [String]() : events.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        if eventsOnly { f["classifications"] = false }
        guard !f.isEmpty, let data = try? JSONSerialization.data(withJSONObject: ["subscribe": f], options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// `camclass status`: the status record, raw or as a summary.
    public static func status(socket: String, json: Bool) throws(ClientError) -> String {
        let session = try Session.open(socket: socket)
        let (line, s) = try session.request(#"{"status":{}}"#, expect: ["status"])
        return json ? line + "\n" : renderStatus(s, hello: session.hello)
    }

    /// `camclass last`: the latest classification line, of `source` when given (else of any
    /// source); also the hello, to tell whether several sources are configured.
    public static func last(socket: String, source: String? = nil) throws(ClientError) -> (line: String, hello: [String: Any]) {
        let session = try Session.open(socket: socket)
        // The reply is marked: a record broadcast before the session's quiet subscribe took effect
        // is a classification too, and must not be taken for it.
        return (try session.request(lastRequest(source: source), expect: ["classification"],
                                    accept: { $0["reply"] as? String == "last" }).0, session.hello)
    }

    /// `{"last":{}}`, or `{"last":{"source":"rear"}}`.
    public static func lastRequest(source: String?) -> String {
        guard let source, let data = try? JSONSerialization.data(withJSONObject: ["last": ["source": source]], options: [.sortedKeys]) else {
            return #"{"last":{}}"#
        }
        return String(decoding: data, as: UTF8.self)
    }

    public static func renderStatus(_ s: [String: Any], hello: [String: Any]) -> String {
        func d(_ o: [String: Any]?, _ k: String) -> Double { (o?[k] as? Double) ?? Double(o?[k] as? Int ?? 0) }
        func i(_ o: [String: Any]?, _ k: String) -> Int { o?[k] as? Int ?? 0 }
        func f(_ v: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", v) }
        func bytes(_ n: Int) -> String {
            n >= 1 << 20 ? f(Double(n) / 1048576) + " MiB" : n >= 1024 ? f(Double(n) / 1024) + " KiB" : "\(n) B"
        }
        func duration(_ secs: Double) -> String {
            let t = Int(secs)
            return t >= 3600 ? "\(t / 3600)h \(t % 3600 / 60)m \(t % 60)s" : t >= 60 ? "\(t / 60)m \(t % 60)s" : f(secs) + " s"
        }
        let source = s["source"] as? [String: Any], model = s["model"] as? [String: Any], fps = s["fps"] as? [String: Any]
        let queue = s["queue"] as? [String: Any], frames = s["frames"] as? [String: Any], drops = s["drops"] as? [String: Any]
        let log = s["log"] as? [String: Any]
        var out = "camclassd \(s["version"] as? String ?? "?") (protocol \(hello["protocol"] ?? "?")), up \(duration(d(s, "uptime_s")))\n"
        out += "source       \(source?["name"] ?? "?"): \(source?["state"] ?? "?")"
        if i(source, "width") > 0 { out += " \(source?["format"] ?? "?") \(i(source, "width"))x\(i(source, "height"))" }
        if let detail = source?["detail"] as? String { out += " (\(detail))" }
        out += "\n"
        let sha = (hello["model"] as? [String: Any])?["sha256"] as? String
        out += "model        \(model?["id"] ?? "?") on \(model?["engine"] ?? "?")\(sha.map { " (sha256 \($0.prefix(12))…)" } ?? "")\n"
        out += "fps          in \(f(d(fps, "in")))  out \(f(d(fps, "out")))  (last \(f(d(fps, "window_s"), 0)) s)\n"
        out += "latency ms   p50 / p95 / p99\n"
        if let lat = s["latency_ms"] as? [String: Any] {
            for stage in ["preprocess", "inference", "wait", "publish", "total"] {
                guard let p = lat[stage] as? [String: Any] else { continue }
                out += "  " + stage.padding(toLength: 11, withPad: " ", startingAt: 0)
                out += "\(f(d(p, "p50"), 2)) / \(f(d(p, "p95"), 2)) / \(f(d(p, "p99"), 2))\n"
            }
        }
        out += "queue        \(i(queue, "depth")) of \(i(queue, "capacity"))\n"
        out += "frames       captured \(i(frames, "captured")), published \(i(frames, "published"))\n"
        out += "drops        queue full \(i(drops, "queue_full")), corrupt frame \(i(drops, "corrupt_frame")), driver gap \(i(drops, "driver_gap")), "
        out += "inference error \(i(drops, "inference_error")), pool exhausted \(i(drops, "pool_exhausted")), subscriber overflow \(i(drops, "subscriber_overflow"))\n"
        if let stable = s["stable"] as? String { out += "stable       \(stable)\n" }
        if let sources = s["sources"] as? [[String: Any]], !sources.isEmpty {
            // One line per source: name, state, format/size, fps in/out, frames, p50 total latency.
            let width = min(32, sources.map { ($0["name"] as? String ?? "?").count }.max() ?? 1)
            out += "sources      \(sources.count)\n"
            for src in sources {
                let fps = src["fps"] as? [String: Any], frames = src["frames"] as? [String: Any]
                let drops = src["drops"] as? [String: Any]
                let dropped = ["queue_full", "corrupt_frame", "driver_gap", "inference_error", "pool_exhausted"].reduce(0) { $0 + i(drops, $1) }
                var line = "  " + (src["name"] as? String ?? "?").padding(toLength: width, withPad: " ", startingAt: 0)
                line += "  " + (src["state"] as? String ?? "?")
                if let format = src["format"] as? String, i(src, "width") > 0 { line += " \(format) \(i(src, "width"))x\(i(src, "height"))" }
                line += "  fps \(f(d(fps, "in")))/\(f(d(fps, "out")))"
                line += "  captured \(i(frames, "captured")) published \(i(frames, "published")) dropped \(dropped)"
                if let total = (src["latency_ms"] as? [String: Any])?["total"] as? [String: Any] {
                    line += "  p50 \(f(d(total, "p50"), 2)) ms"
                }
                if let detail = src["detail"] as? String { line += " (\(detail))" }
                out += line + "\n"
            }
        }
        let subs = s["subscribers"] as? [[String: Any]] ?? []
        out += "subscribers  \(subs.count)\n"
        for sub in subs {
            out += "  #\(i(sub, "id"))  delivered \(i(sub, "delivered"))  dropped \(i(sub, "dropped"))  filtered \(i(sub, "filtered"))"
            out += "  buffered \(bytes(i(sub, "buffered_bytes")))  connected \(duration(d(sub, "connected_s")))\n"
        }
        out += "log          \(log?["path"] ?? "?") (\(log?["format"] ?? "?")): \(bytes(i(log, "bytes_written"))) written, "
        out += "\(i(log, "records_written")) records, current file \(bytes(i(log, "current_file_bytes"))), \(i(log, "rotations")) rotations, "
        out += "lost \(i(log, "lost_records")), write errors \(i(log, "write_errors"))"
        if log?["failing"] as? Bool == true { out += "  FAILING: \(log?["last_error"] as? String ?? "?")" }
        out += "\n"
        return out
    }
}
