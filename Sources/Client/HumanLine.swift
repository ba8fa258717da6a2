import Foundation

/// Human-readable rendering of a record line (falls back to the raw line).
public enum HumanLine {
    public static func format(jsonLine: String) -> String {
        guard let data = jsonLine.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let type = obj["type"] as? String else { return jsonLine }
        switch type {
        case "classification":
            let time = (obj["time"] as? String).map { String($0.prefix(23)) + "Z" } ?? "?"
            let seq = obj["seq"] as? Int ?? -1
            var s = "\(time) #\(seq)"
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
            return "\(time) -- stable: \(obj["previous"] ?? "?") -> \(obj["stable"] ?? "?") (\(obj["previous"] ?? "?") lasted \(lasted))"
        case "hello":
            let model = obj["model"] as? [String: Any]
            return "-- camclassd \(obj["version"] ?? "?") (protocol \(obj["protocol"] ?? "?")): model \(model?["id"] ?? "?"), source \(obj["source"] ?? "?")"
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
