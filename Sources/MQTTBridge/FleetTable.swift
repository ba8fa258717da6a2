import Foundation

/// `camclass fleet`: the robots seen on `<prefix>/+/status` and `<prefix>/+/availability`, as a table.
/// Thread context: a value type; the owner serializes access.
public struct FleetTable: Sendable {
    public struct Robot: Sendable, Equatable {
        public var availability = "?"
        /// (name, state) per source.
        public var sources: [(name: String, state: String)] = []
        public var fps: Double?
        public var stable: String?
        public var daemonUnreachable = false
        public var statusTime: String?

        public static func == (a: Robot, b: Robot) -> Bool {
            a.availability == b.availability && a.sources.map(\.name) == b.sources.map(\.name)
                && a.sources.map(\.state) == b.sources.map(\.state) && a.fps == b.fps && a.stable == b.stable
                && a.daemonUnreachable == b.daemonUnreachable && a.statusTime == b.statusTime
        }
    }

    public let prefix: String
    public private(set) var robots: [String: Robot] = [:]

    public init(prefix: String) { self.prefix = prefix }

    /// The subscriptions the table needs.
    public var patterns: [String] { ["\(prefix)/+/status", "\(prefix)/+/availability"] }

    /// Takes one message; returns whether the table changed. Other topics and unreadable payloads are ignored.
    @discardableResult
    public mutating func apply(topic: String, payload: [UInt8]) -> Bool {
        guard topic.hasPrefix(prefix + "/") else { return false }
        let rest = topic.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == 2 else { return false }
        let id = String(rest[0])
        var r = robots[id] ?? Robot()
        let before = robots[id]
        switch rest[1] {
        case "availability":
            r.availability = String(decoding: payload, as: UTF8.self)
        case "status":
            guard let o = (try? JSONSerialization.jsonObject(with: Data(payload))) as? [String: Any] else { return false }
            r.daemonUnreachable = o["daemon"] as? String == "unreachable"
            var sources: [(String, String)] = []
            // A daemon that lists its sources reports each; an older one only `source` (the first
            // source repeats it in the list, so never both).
            let listed = o["sources"] as? [[String: Any]] ?? []
            for s in listed.isEmpty ? [(o["source"] as? [String: Any])].compactMap({ $0 }) : listed {
                sources.append((s["name"] as? String ?? "?", s["state"] as? String ?? "?"))
            }
            r.sources = sources
            let fps = o["fps"] as? [String: Any]
            r.fps = (fps?["out"] as? Double) ?? (fps?["out"] as? Int).map(Double.init)
            r.stable = o["stable"] as? String
            r.statusTime = (o["time"] as? String) ?? (o["since"] as? String)
        default:
            return false
        }
        robots[id] = r
        return before != r
    }

    /// A fixed-width table, one line per robot and source, sorted by robot.
    public func render() -> String {
        var rows: [[String]] = [["ROBOT", "AVAILABILITY", "SOURCE", "STATE", "FPS", "STABLE", "STATUS TIME"]]
        for id in robots.keys.sorted() {
            let r = robots[id]!
            let fps = r.daemonUnreachable ? "-" : r.fps.map { String(format: "%.1f", $0) } ?? "-"
            let stable = r.daemonUnreachable ? "-" : r.stable ?? "-"
            let sources = r.sources.isEmpty ? [(name: "-", state: r.daemonUnreachable ? "unknown" : "-")] : r.sources
            for (i, s) in sources.enumerated() {
                rows.append([i == 0 ? id : "", i == 0 ? r.availability : "", s.name, r.daemonUnreachable ? "daemon unreachable" : s.state,
                             i == 0 ? fps : "", i == 0 ? stable : "", i == 0 ? (r.statusTime ?? "-") : ""])
            }
        }
        var widths = [Int](repeating: 0, count: rows[0].count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { row in
            row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
