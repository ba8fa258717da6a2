import Glibc
import Yams

/// Configuration files: YAML text → `ConfigNode`, keeping each scalar's text, with bounds: a document that expands to
/// more than `maxNodes` values (aliases nested into a "billion laughs") or nests deeper than
/// `maxDepth` is refused instead of exhausting memory.
public enum ConfigFile {
    /// Reads a config file: regular files only (not a directory, device or FIFO), at most
    /// `maxBytes`, valid UTF-8.
    public static func read(_ path: String, maxBytes maxFileBytes: Int = 1 << 20) throws(ConfigError) -> String {
        func fail(_ why: String) -> ConfigError { ConfigError(file: path, key: "", value: "", reason: why) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file (a config file is a YAML file)") }
        guard st.st_size <= maxFileBytes else { throw fail("\(st.st_size) bytes; a config file has at most \(maxFileBytes)") }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
        var used = 0
        while used < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw fail("cannot read the config file (\(String(cString: strerror(errno))))") }
            if n == 0 { break }
            used += n
        }
        guard used <= maxFileBytes else { throw fail("more than \(maxFileBytes) bytes; a config file has at most that") }
        guard let text = String(validating: bytes[0..<used], as: UTF8.self) else { throw fail("not UTF-8 text") }
        return text
    }

    static let maxNodes = 100_000
    static let maxDepth = 32

    /// The document's top-level mapping (sections); an empty document is an empty mapping.
    public static func parse(yaml text: String, file: String) throws(ConfigError) -> [String: ConfigNode] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw ConfigError(file: file, key: "", value: "", reason: "not valid YAML: \(error)")
        }
        guard let node else { return [:] }  // empty file: all defaults
        var budget = maxNodes
        let root = try convert(node, file: file, depth: 0, budget: &budget)
        switch root {
        case .mapping(let m): return m
        case .null: return [:]
        default: throw ConfigError(file: file, key: "", value: root.text, reason: "the top level must be a mapping of sections")
        }
    }

    private static func convert(_ node: Node, file: String, depth: Int, budget: inout Int) throws(ConfigError) -> ConfigNode {
        budget -= 1
        guard budget >= 0, depth <= maxDepth else {
            throw ConfigError(file: file, key: "", value: "",
                              reason: "the document expands to more than \(maxNodes) values or nests deeper than \(maxDepth) (nested aliases?)")
        }
        switch node {
        case .scalar(let s):
            if s.style == .plain && (s.string.isEmpty || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL") {
                return .null
            }
            return .scalar(s.string, quoted: s.style != .plain)
        case .sequence(let seq):
            var items: [ConfigNode] = []
            for n in seq { items.append(try convert(n, file: file, depth: depth + 1, budget: &budget)) }
            return .sequence(items)
        case .mapping(let map):
            var m: [String: ConfigNode] = [:]
            for (k, v) in map {
                guard case .scalar(let key) = k else {
                    throw ConfigError(file: file, key: "", value: "", reason: "a key must be a plain name, not a list or mapping")
                }
                guard m[key.string] == nil else {
                    throw ConfigError(file: file, key: key.string, value: "", reason: "the key appears twice in the same mapping")
                }
                m[key.string] = try convert(v, file: file, depth: depth + 1, budget: &budget)
            }
            return .mapping(m)
        case .alias:
            throw ConfigError(file: file, key: "", value: "", reason: "unresolved YAML alias")
        }
    }
}
