import Support
import Foundation
import Glibc
import Yams

/// The coarse-groups mapping file (`stable.groups`, e.g. config/coarse-groups.yaml): group name →
/// class ids and inclusive ranges ("281-285"). Groups come back sorted by name.
public enum CoarseGroups {
    /// - Parameter classes: the model's class count (ids must be below it).
    /// - Throws: `ConfigError` naming the file, the group and the bad entry.
    /// A missing file is also looked for in the installed data directory
    /// (`<bin>/../share/camclassd/`, where `make install` puts config/coarse-groups.yaml).
    public static func load(path: String, classes: Int) throws -> [(name: String, classes: [Int])] {
        var tried = [path]
        if access(path, R_OK) != 0, let data = installedDataDirectory() {
            tried.append(data + "/" + (path.split(separator: "/").last.map(String.init) ?? path))
        }
        for candidate in tried {
            if let text = readTextFile(candidate) { return try parse(yaml: text, file: candidate, classes: classes) }
        }
        throw ConfigError(file: path, key: "stable.groups", value: path,
                          reason: "cannot read the coarse-groups file (tried \(tried.joined(separator: ", "))); fix stable.groups or set it to \"\"")
    }

    static func installedDataDirectory() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = exe.lastIndex(of: "/") else { return nil }
        return String(exe[..<slash]) + "/../share/camclassd"
    }

    public static func parse(yaml text: String, file: String, classes: Int) throws -> [(name: String, classes: [Int])] {
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw ConfigError(file: file, key: "", value: "", reason: "not valid YAML: \(error)")
        }
        guard let top = root as? [String: Any], let groups = top["groups"] as? [String: Any] else {
            throw ConfigError(file: file, key: "groups", value: "", reason: "expected a mapping `groups:` of group name → list of class ids or \"first-last\" ranges")
        }
        if let extra = top.keys.first(where: { $0 != "groups" }) {
            throw ConfigError(file: file, key: extra, value: "", reason: "unknown key (the file has one key, groups)")
        }
        var owner = [String?](repeating: nil, count: classes)
        var out: [(name: String, classes: [Int])] = []
        for name in groups.keys.sorted() {
            let key = "groups.\(name)"
            guard !name.isEmpty, name.lowercased() != "unknown" else {
                throw ConfigError(file: file, key: key, value: name, reason: "a group needs a name other than 'unknown'")
            }
            guard let items = groups[name] as? [Any], !items.isEmpty else {
                throw ConfigError(file: file, key: key, value: "\(groups[name] ?? "")", reason: "expected a non-empty list of class ids or \"first-last\" ranges")
            }
            var ids: [Int] = []
            for item in items {
                var range: ClosedRange<Int>?
                if let i = item as? Int {
                    range = i...i
                } else if let s = item as? String {
                    let parts = s.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                    if parts.count == 1, let a = parts[0] { range = a...a }
                    if parts.count == 2, let a = parts[0], let b = parts[1], a <= b { range = a...b }
                }
                guard let r = range else {
                    throw ConfigError(file: file, key: key, value: "\(item)", reason: "expected a class id or a range \"first-last\" (first ≤ last)")
                }
                guard r.lowerBound >= 0 && r.upperBound < classes else {
                    throw ConfigError(file: file, key: key, value: "\(item)", reason: "class ids must be 0…\(classes - 1) (the model's labels)")
                }
                for c in r {
                    if let other = owner[c] {
                        throw ConfigError(file: file, key: key, value: "\(item)",
                                          reason: "class \(c) is already in group '\(other)'; a class belongs to at most one group")
                    }
                    owner[c] = name
                    ids.append(c)
                }
            }
            out.append((name, ids))
        }
        return out
    }
}
