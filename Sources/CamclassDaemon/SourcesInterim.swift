import Capture

// INTERIM until the sources config lands: one source from `source:` + `camera:`.
public struct SourceSpec: Sendable, Equatable {
    public var name: String
    public var options: SourceOptions
    public var camera: CameraOptions
    public static func derivedName(path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let mapped = base.lowercased().map { c -> Character in
            (c.isASCII && (c.isLetter || c.isNumber)) || c == "-" || c == "_" ? c : "-"
        }
        let s = String(mapped.prefix(32))
        return s.isEmpty ? "source" : s
    }
}

extension DaemonConfig {
    public var sources: [SourceSpec] {
        [SourceSpec(name: SourceSpec.derivedName(path: source.path), options: source, camera: camera)]
    }
}

extension SourceSpec {
    public var weight: Int { 1 }
}
