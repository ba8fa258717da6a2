import Foundation

/// Human-readable rendering of a record line (falls back to the raw line).
public enum HumanLine {
    /// Renders a stream of lines, naming each record's source once there is more than one: the
    /// `hello` lists several, or records of two different sources have been seen (the log).
    /// Thread context: one stream, one thread.
    public final class Renderer {
        public private(set) var showSource: Bool
        private var firstSource: String?

        public init(showSource: Bool = false) { self.showSource = showSource }

        /// Learns from `hello` (a parsed hello object) whether several sources are configured.
        public func learn(hello: [String: Any]) {
            if let sources = hello["sources"] as? [Any], sources.count > 1 { showSource = true }
        }

        public func format(jsonLine: String) -> String {
            guard let data = jsonLine.data(using: .utf8),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return jsonLine }
            if obj["type"] as? String == "hello" { learn(hello: obj) }
            if !showSource, obj["type"] as? String != "hello", let source = obj["source"] as? String, !source.isEmpty {
                if let first = firstSource { showSource = first != source } else { firstSource = source }
            }
            return HumanLine.format(obj, jsonLine: jsonLine, showSource: showSource)
        }
    }

    /// - Parameter showSource: put the record's source name after its time (several sources).
    public static func format(jsonLine: String, showSource: Bool = false) -> String {
        guard let data = jsonLine.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return jsonLine }
        return format(obj, jsonLine: jsonLine, showSource: showSource)
    }

    static func format(_ obj: [String: Any], jsonLine: String, showSource: Bool) -> String {
        guard let type = obj["type"] as? String else { return jsonLine }
        let from = showSource ? (obj["source"] as? String).map { " " + $0 } ?? "" : ""
        switch type {
        case "classification":
            let time = (obj["time"] as? String).map { String($0.prefix(23)) + "Z" } ?? "?"
            let seq = obj["seq"] as? Int ?? -1
            var s = "\(time)\(from) #\(seq)"
            if let top = (obj["top"] as? [[String: Any]])?.first {
                let label = top["label"] as? String ?? "class \(top["class"] ?? "?")"
                s += " \(label) \(String(format: "%.2f", top["score"] as? Double ?? 0))"
            }
            if let lat = obj["latency_ms"] as? [String: Any], let total = lat["total"] as? Double {
                s += String(format: " %.1f ms", total)
            }
            if let stable = obj["stable"] as? String { s += " (stable: \(stable))" }
            if let file = obj["file"] as? String { s += " [\(file)]" }
            if let d = obj["dropped"] as? Int, d > 0 { s += " (dropped \(d))" }
            return s
        case "dropped":
            return "-- this subscriber missed \(obj["count"] ?? "?") records (too slow)"
        case "change":
            let time = (obj["time"] as? String).map { String($0.prefix(23)) + "Z" } ?? "?"
            let lasted = (obj["previous_ms"] as? Double).map { String(format: "%.1f s", $0 / 1000) } ?? "?"
            return "\(time)\(from) -- stable: \(obj["previous"] ?? "?") -> \(obj["stable"] ?? "?") (\(obj["previous"] ?? "?") lasted \(lasted))"
        case "hello":
            let model = obj["model"] as? [String: Any]
            let sources = (obj["sources"] as? [[String: Any]] ?? []).compactMap { s -> String? in
                guard let name = s["name"] as? String else { return nil }
                return "\(name) (\(s["path"] as? String ?? "?"), \(s["state"] as? String ?? "?"))"
            }
            let what = sources.count > 1 ? "sources " + sources.joined(separator: ", ") : "source \(obj["source"] ?? "?")"
            return "-- camclassd \(obj["version"] ?? "?") (protocol \(obj["protocol"] ?? "?")): model \(model?["id"] ?? "?"), \(what)"
        case "subscribed":
            let data = (try? JSONSerialization.data(withJSONObject: obj["filter"] ?? [:], options: [.sortedKeys])) ?? Data()
            return "-- filter: \(String(decoding: data, as: UTF8.self))"
        case "error":
            return "-- error \(obj["code"] ?? "?"): \(obj["error"] ?? "?")"
        case "camera":
            let state = obj["state"] as? String ?? "?"
            if state == "streaming" {
                let fps = (obj["fps"] as? Double).map { String(format: " @ %.1f fps", $0) } ?? ""
                return "-- camera \(obj["source"] ?? "?") streaming \(obj["format"] ?? "?") \(obj["width"] ?? "?")x\(obj["height"] ?? "?")\(fps)"
            }
            return "-- camera \(obj["source"] ?? "?") \(state): \(obj["reason"] ?? "")"
        default:
            return jsonLine
        }
    }
}
