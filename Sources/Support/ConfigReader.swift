/// A rejected setting: names the file (or the command-line flag), the key and the value, and says
/// what is expected.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
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

/// A parsed configuration document, independent of the YAML library: scalars keep the text the
/// user wrote (so `0660` is read as the octal mode it means, not as whatever a YAML schema makes of
/// it), mappings keep their keys.
public indirect enum ConfigNode: Sendable, Equatable {
    case scalar(String, quoted: Bool)
    case sequence([ConfigNode])
    case mapping([String: ConfigNode])
    case null

    /// The value as it would be written back, for error messages (bounded).
    public var text: String {
        let s: String
        switch self {
        case .scalar(let v, _): s = v
        case .sequence(let items): s = "[" + items.map(\.text).joined(separator: ", ") + "]"
        case .mapping(let m): s = "{" + m.keys.sorted().map { "\($0): \(m[$0]!.text)" }.joined(separator: ", ") + "}"
        case .null: s = "null"
        }
        return s.count > 200 ? String(s.prefix(200)) + "…" : s
    }
}

/// One component's configuration section, read from its YAML mapping. The type is the only place
/// that knows its keys: name, default (the property's initial value), range, validation and error.
/// Unknown keys are errors. Equatable, so a reload compares whole sections.
public protocol ConfigSection: Sendable, Equatable {
    /// The section's name in the file (`camera`, `log`, …).
    static var section: String { get }
    /// The defaults.
    init()
    /// Reads the keys present over the defaults (`self.init()` first, then one `reader` call per key).
    /// - Throws: `ConfigError` naming the file, the key and the value.
    init(reader: inout ConfigSectionReader) throws(ConfigError)
}

extension ConfigSection {
    /// Reads the section `Self.section` of `root` (absent or empty: the defaults), then rejects keys
    /// it did not read.
    public static func read(from root: [String: ConfigNode], file: String, overrides: [ConfigOverride] = []) throws(ConfigError) -> Self {
        var reader = try ConfigSectionReader(section: section, node: root[section], file: file,
                                             overrides: overrides.filter { $0.section == section })
        let value = try Self(reader: &reader)
        try reader.finish()
        return value
    }
}

/// A value given on the command line for `section.key` (a flag such as `--fps`), validated by the
/// same section type as the file's value and reported under the flag's name.
public struct ConfigOverride: Sendable, Equatable {
    public var flag: String
    public var section: String
    public var key: String
    public var value: String
    public init(flag: String, section: String, key: String, value: String) {
        self.flag = flag
        self.section = section
        self.key = key
        self.value = value
    }
}

/// Reads typed values from one section. Each accessor takes the key, the current (default) value and
/// the accepted range, and returns the value in the file (or on the command line), or the default.
public struct ConfigSectionReader {
    public let section: String
    public let file: String
    private let values: [String: ConfigNode]
    private let overrides: [String: ConfigOverride]
    /// Values a key falls back to when neither a flag nor this section sets it: another section
    /// already read by the same type (a `sources:` entry inherits the top-level `source:` keys),
    /// reported under that section's name.
    private let inherited: (section: String, values: [String: ConfigNode])?
    private var read: Set<String> = []

    /// The directory of the config file (for paths relative to it); nil for the command line.
    public var directory: String? {
        guard let slash = file.lastIndex(of: "/") else { return file.hasSuffix(".yaml") || file.hasSuffix(".yml") ? "." : nil }
        return String(file[..<slash])
    }

    /// - Parameter inheriting: keys of another section (`section`, its mapping) this one falls back
    ///   to, e.g. the top-level `camera:` for a `sources:` entry's `camera:`.
    public init(section: String, node: ConfigNode?, file: String, overrides: [ConfigOverride] = [],
                inheriting: (section: String, node: ConfigNode?)? = nil) throws(ConfigError) {
        self.section = section
        self.file = file
        if let inheriting, case .mapping(let m)? = inheriting.node {
            inherited = (inheriting.section, m)
        } else {
            inherited = nil
        }
        switch node {
        case .none, .null?: values = [:]
        case .mapping(let m)?: values = m
        case let other?:
            throw ConfigError(file: file, key: section, value: other.text, reason: "must be a mapping of keys (or empty)")
        }
        var o: [String: ConfigOverride] = [:]
        for override in overrides { o[override.key] = override }
        self.overrides = o
    }

    /// The keys the section type asked for so far (all of them, once its `init(reader:)` ran).
    public var knownKeys: [String] { read.sorted() }

    /// Keys in the file that no accessor asked for: an error listing the known ones.
    public func finish() throws(ConfigError) {
        for key in values.keys.sorted() where !read.contains(key) {
            throw ConfigError(file: file, key: "\(section).\(key)", value: values[key]!.text,
                              reason: "unknown key (known in \(section): \(read.sorted().joined(separator: ", ")))")
        }
    }

    /// The raw node for `key` and where it came from, or nil when neither the file nor a flag sets it.
    private mutating func node(_ key: String) -> (node: ConfigNode, file: String, key: String)? {
        read.insert(key)
        if let o = overrides[key] { return (.scalar(o.value, quoted: false), "command line", "\(o.flag) (\(section).\(key))") }
        if let n = values[key] {
            if case .null = n { return nil }
            return (n, file, "\(section).\(key)")
        }
        guard let inherited, let n = inherited.values[key] else { return nil }
        if case .null = n { return nil }
        return (n, file, "\(inherited.section).\(key)")
    }

    /// Whether this section itself (or a flag) sets `key` — inherited values do not count.
    public func isSet(_ key: String) -> Bool {
        if overrides[key] != nil { return true }
        guard let n = values[key] else { return false }
        if case .null = n { return false }
        return true
    }

    private func error(_ at: (node: ConfigNode, file: String, key: String), _ reason: String) -> ConfigError {
        ConfigError(file: at.file, key: at.key, value: at.node.text, reason: reason)
    }

    private func scalar(_ at: (node: ConfigNode, file: String, key: String), expected: String) throws(ConfigError) -> String {
        guard case .scalar(let s, _) = at.node else { throw error(at, "expected \(expected)") }
        return s
    }

    /// An integer in `range` (decimal digits, optional sign and `_` separators).
    public mutating func int(_ key: String, _ current: Int, _ range: ClosedRange<Int>, unit: String = "") throws(ConfigError) -> Int {
        guard let at = node(key) else { return current }
        let what = "an integer \(range.lowerBound)…\(range.upperBound)\(unit.isEmpty ? "" : " " + unit)"
        let s = try scalar(at, expected: what).replacingOccurrences(of: "_", with: "")
        guard let v = Int(s), range.contains(v) else { throw error(at, "expected \(what)") }
        return v
    }

    /// A finite number in `range`; `alsoZero` accepts 0 as a special value below the range (e.g. unlimited).
    public mutating func double(_ key: String, _ current: Double, _ range: ClosedRange<Double>, unit: String = "",
                                alsoZero: String? = nil) throws(ConfigError) -> Double {
        guard let at = node(key) else { return current }
        var what = "a number \(Self.show(range.lowerBound))…\(Self.show(range.upperBound))\(unit.isEmpty ? "" : " " + unit)"
        if let alsoZero { what += ", or 0 (\(alsoZero))" }
        let s = try scalar(at, expected: what)
        guard let v = Double(s), v.isFinite, range.contains(v) || (alsoZero != nil && v == 0) else {
            throw error(at, "expected \(what)")
        }
        return v
    }

    public mutating func bool(_ key: String, _ current: Bool) throws(ConfigError) -> Bool {
        guard let at = node(key) else { return current }
        switch try scalar(at, expected: "true or false") {
        case "true", "True", "TRUE", "yes", "on": return true
        case "false", "False", "FALSE", "no", "off": return false
        default: throw error(at, "expected true or false")
        }
    }

    /// A string of at most `maxBytes` UTF-8 bytes; `allowEmpty` false rejects "".
    public mutating func string(_ key: String, _ current: String, maxBytes: Int = 4096, allowEmpty: Bool = true) throws(ConfigError) -> String {
        guard let at = node(key) else { return current }
        let s = try scalar(at, expected: "a string")
        if !allowEmpty && s.isEmpty { throw error(at, "expected a non-empty string") }
        if s.utf8.count > maxBytes { throw error(at, "expected at most \(maxBytes) bytes") }
        if s.utf8.contains(0) { throw error(at, "expected no NUL bytes") }
        return s
    }

    /// A file path; a relative one in a config file is taken relative to the file's directory when
    /// `relativeToFile` (so a shipped pair of files moves together).
    public mutating func path(_ key: String, _ current: String, relativeToFile: Bool = false, maxBytes: Int = 4095) throws(ConfigError) -> String {
        let before = current
        let p = try string(key, current, maxBytes: maxBytes)
        guard relativeToFile, p != before, !p.isEmpty, !p.hasPrefix("/"), overrides[key] == nil, let dir = directory else { return p }
        return dir == "." ? p : dir + "/" + p
    }

    /// One of a closed set of names.
    public mutating func choice<E: ConfigEnum>(_ key: String, _ current: E) throws(ConfigError) -> E {
        guard let at = node(key) else { return current }
        let names = E.allCases.map(\.rawValue)
        let s = try scalar(at, expected: "one of: \(names.joined(separator: ", "))")
        guard let v = E(rawValue: s) ?? E.allCases.first(where: { $0.rawValue.lowercased() == s.lowercased() }) else {
            throw error(at, "expected one of: \(names.joined(separator: ", "))")
        }
        return v
    }

    /// A list of strings: a YAML sequence or a comma-separated string, each checked by `accept`.
    public mutating func list<T>(_ key: String, _ current: [T], expected: String, minCount: Int = 1, maxCount: Int = 64,
                                 _ accept: (String) -> T?) throws(ConfigError) -> [T] {
        guard let at = node(key) else { return current }
        var items: [String] = []
        switch at.node {
        case .sequence(let nodes):
            for n in nodes {
                guard case .scalar(let s, _) = n else { throw error(at, "expected \(expected)") }
                items.append(s)
            }
        case .scalar(let s, _): items = s.split(separator: ",").map(String.init)
        default: throw error(at, "expected \(expected)")
        }
        let trimmed = items.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var out: [T] = []
        for item in trimmed {
            guard let v = accept(item) else { throw error(at, "expected \(expected)") }
            out.append(v)
        }
        guard out.count >= minCount, out.count <= maxCount else { throw error(at, "expected \(expected)") }
        return out
    }

    /// A file mode written in octal, as in `chmod`: `0660`, `660`, `0o660` or `"0660"` all mean
    /// rw-rw----. The text the user wrote is read, never a YAML schema's reading of it.
    public mutating func fileMode(_ key: String, _ current: UInt32) throws(ConfigError) -> UInt32 {
        guard let at = node(key) else { return current }
        let what = "an octal file mode such as 0660 (at most 0777)"
        var s = try scalar(at, expected: what)
        if s.hasPrefix("0o") || s.hasPrefix("0O") { s.removeFirst(2) }
        guard !s.isEmpty, s.count <= 4, let m = UInt32(s, radix: 8), m <= 0o777 else { throw error(at, "expected \(what)") }
        return m
    }

    /// Fails with `reason` for the value of `key` as read (for rules across keys, after reading them).
    public func invalid(_ key: String, _ value: String, _ reason: String) -> ConfigError {
        if let o = overrides[key] { return ConfigError(file: "command line", key: "\(o.flag) (\(section).\(key))", value: o.value, reason: reason) }
        return ConfigError(file: file, key: "\(section).\(key)", value: value, reason: reason)
    }

    private static func show(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : "\(v)"
    }
}

/// A closed set of names a key accepts (an enum with `String` raw values).
public protocol ConfigEnum: RawRepresentable, CaseIterable, Sendable, Equatable where RawValue == String {}

extension String {
    fileprivate func trimmingCharacters(in _: Whitespace) -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
    fileprivate func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}

fileprivate enum Whitespace { case whitespaces }

/// A stored property that equality ignores: hooks and derived state (closures, a vocabulary) in a
/// section type, so that comparing sections compares only what the configuration says.
@propertyWrapper
public struct NotCompared<Value: Sendable>: Sendable, Equatable {
    public var wrappedValue: Value
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }
    public static func == (_: Self, _: Self) -> Bool { true }
}
