import CamclassTestSupport
import CamclassDaemon
import Foundation
import PropertyBased
import Support
import Testing

/// Property-based checks of every config key (issue 11): whatever value a user (or a generator)
/// writes for a key, `DaemonConfig.parse` either accepts the file or throws a `ConfigError` naming
/// the file and that key — never a trap, never another error. Unit tests: text in, no files.
@Suite("Config values, generated")
struct ConfigPropertyTests {
    static let file = "prop.yaml"

    /// Every key of config/camclassd.yaml, by section (the shipped file documents them all).
    static let keys: [String] = [
        "source.path", "source.name", "source.fps", "source.loop", "source.max_pixels",
        "camera.width", "camera.height", "camera.fps", "camera.formats", "camera.buffers", "camera.raw",
        "camera.backoff_max_ms", "camera.stall_timeout_ms", "camera.max_pixels",
        "model.path", "model.top_k", "model.resize",
        "inference.backend", "inference.device", "inference.precision", "inference.performance_hint",
        "inference.workers", "inference.openvino_library", "inference.bpu_library", "inference.bpu_model_name",
        "inference.bpu_timeout_ms", "inference.bpu_priority",
        "pipeline.queue_capacity", "pipeline.max_consecutive_failures", "pipeline.latency_window_s",
        "publish.socket", "publish.socket_mode", "publish.subscriber_buffer_bytes", "publish.max_subscribers",
        "publish.evict_after_ms", "publish.max_request_bytes", "publish.max_requests_per_second",
        "log.path", "log.format", "log.max_bytes", "log.rotate_daily", "log.keep", "log.gzip", "log.fsync",
        "log.fsync_interval_ms", "log.buffer_bytes",
        "stable.enabled", "stable.smoothing", "stable.enter", "stable.leave", "stable.min_dwell_ms", "stable.groups",
        "daemon.log_level", "daemon.stop_timeout_s",
    ]

    /// Keys whose value is checked against another key's default: the error names the other key.
    /// (`stable.enter` below the default `leave` 0.3 is reported as `stable.leave`.)
    static let alsoNamed: [String: Set<String>] = ["stable.enter": ["stable.leave"]]

    static func document(_ key: String, _ value: String) -> String {
        let parts = key.split(separator: ".", maxSplits: 1)
        return "\(parts[0]):\n  \(parts[1]): \(value)\n"
    }

    /// The property for one key and one value (YAML text that is a valid flow value).
    static func check(_ key: String, _ value: String) {
        let text = document(key, value)
        do {
            _ = try DaemonConfig.parse(yaml: text, file: file)
        } catch {
            #expect(error.file == file, "\(key): \(value) → \(error)")
            #expect(error.key == key || alsoNamed[key, default: []].contains(error.key), "\(key): \(value) → \(error)")
            #expect(!error.reason.isEmpty)
        }
    }

    @Test("the shipped config's keys are all here")
    func keysCoverShippedConfig() throws {
        // The shipped file parses, and each of its keys is one of ours (no key left unchecked).
        var section = ""
        var seen: [String] = []
        let text = try String(contentsOfFile: TestEnv.repoRoot + "/config/camclassd.yaml", encoding: .utf8)
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            if !line.hasPrefix(" "), line.hasSuffix(":") { section = String(line.dropLast()); continue }
            let t = line.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("  "), let colon = t.firstIndex(of: ":") { seen.append("\(section).\(t[..<colon])") }
        }
        #expect(seen.count == Self.keys.count)
        #expect(Set(seen) == Set(Self.keys))
        _ = try DaemonConfig.parse(yaml: text, file: "camclassd.yaml")
    }

    @Test("every key: a generated value parses or names the key", arguments: keys)
    func everyKey(_ key: String) async {
        await propertyCheck(count: 200, input: ConfigValueGen.value) { value in
            Self.check(key, value)
        }
    }

    @Test("every key: edge values parse or name the key", arguments: keys)
    func everyKeyEdges(_ key: String) {
        for value in ConfigValueGen.edges { Self.check(key, value) }
    }

    @Test("whole generated files: accepted, or the error names one of the keys written")
    func wholeFiles() async {
        let entry = zip(Gen.element(of: Self.keys), ConfigValueGen.value).map { k, v in (k!, v) }
        await propertyCheck(count: 300, input: entry.array(of: 1...12)) { entries in
            var bySection: [String: [(String, String)]] = [:]
            var written = Set<String>()
            for (k, v) in entries where !written.contains(k) {
                written.insert(k)
                let parts = k.split(separator: ".", maxSplits: 1)
                bySection[String(parts[0]), default: []].append((String(parts[1]), v))
            }
            var text = ""
            for (section, items) in bySection.sorted(by: { $0.key < $1.key }) {
                text += "\(section):\n" + items.map { "  \($0.0): \($0.1)\n" }.joined()
            }
            do throws(ConfigError) {
                let config = try DaemonConfig.parse(yaml: text, file: Self.file)
                // Parsing is a function of the text: the same file gives the same configuration.
                let again = try DaemonConfig.parse(yaml: text, file: Self.file)
                #expect(again == config)
            } catch {
                #expect(error.file == Self.file)
                let named = written.union(written.flatMap { Self.alsoNamed[$0, default: []] })
                #expect(named.contains(error.key), "\(error) for\n\(text)")
            }
        }
    }
}

/// YAML flow values of every kind a user could write: integers across Int64 and beyond, doubles
/// with NaN/inf/subnormals/huge, octal/hex/binary-looking numbers, booleans in YAML 1.1 spellings,
/// nulls, quoted strings with any Unicode (escaped), plain words, lists and nested maps.
enum ConfigValueGen {
    static let edges: [String] = [
        "0", "-0", "1", "-1", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "99999999999999999999999999999",
        "1e-11", "1e-300", "5e-324", "-5e-324", "1e308", "1.7976931348623157e308", "1e400", "-1e400",
        ".nan", ".NaN", "nan", "NaN", ".inf", "-.inf", "+.inf", "inf", "-inf", "Infinity",
        "0660", "0o660", "0777", "0o7777777", "0x1F", "0xFFFFFFFFFFFFFFFF", "0b101", "+5", "1_000", "1e3", "0.5e1",
        "\"0660\"", "'0660'", "\"\"", "''", "~", "null", "", "[]", "{}", "[[]]", "{a: {b: {c: 1}}}",
        "true", "false", "yes", "no", "on", "off", "True", "FALSE", "y", "n",
        "\"\\0\"", "\"\\u0000\"", "\"a\\nb\"", "\"\\x7f\"", "\"\\uFFFF\"", "\"\\U0001F600\"",
        "\"" + String(repeating: "x", count: 5000) + "\"", String(repeating: "y", count: 5000),
        "[" + Array(repeating: "NV12", count: 100).joined(separator: ", ") + "]",
        "!!binary aGVsbG8=", "!!str 5", "!!int 0x10", "!!float 1", "&a 5",
    ]

    static let value = Generator<String, Shrink.None<String>>(run: { rng in make(&rng, depth: 0) })

    static func make(_ rng: inout any SeededRandomNumberGenerator, depth: Int) -> String {
        switch Int.random(in: 0..<(depth < 2 ? 12 : 10), using: &rng) {
        case 0: return String(Int64.random(in: .min ... .max, using: &rng))
        case 1: return String(Int.random(in: -100_000...100_000, using: &rng))
        case 2:
            let d = Double(bitPattern: rng.next())
            return d.isNaN ? ".nan" : d.isInfinite ? (d < 0 ? "-.inf" : ".inf") : "\(d)"
        case 3: return "\(Double.random(in: -1e6...1e6, using: &rng))"
        case 4: return "\(Double.random(in: 0...1, using: &rng))"
        case 5:
            let digits = (0..<Int.random(in: 1...24, using: &rng)).map { _ in String(Int.random(in: 0...7, using: &rng)) }.joined()
            return ["0", "0o", "-0", "0x", "+0", ""].randomElement(using: &rng)! + digits
        case 6: return edges.randomElement(using: &rng)!
        case 7: return quoted(&rng)
        case 8:
            let words = ["auto", "CPU", "NV12", "mjpeg", "json", "crop", "debug", "rotation", "/tmp/x.log", "models/m.yaml",
                         "openvino", "bpu", "f16", "latency", "info", "loud", "fit", "a b c", "x:y", "0660"]
            return words.randomElement(using: &rng)!
        case 9: return ["true", "false", "yes", "no", "on", "off", "~", "null", ""].randomElement(using: &rng)!
        case 10:
            let n = Int.random(in: 0...5, using: &rng)
            return "[" + (0..<n).map { _ in make(&rng, depth: depth + 1) }.map { $0.isEmpty ? "~" : $0 }.joined(separator: ", ") + "]"
        default:
            let n = Int.random(in: 0...4, using: &rng)
            let pairs = (0..<n).map { i -> String in
                let v = make(&rng, depth: depth + 1)
                return "k\(i): \(v.isEmpty ? "~" : v)"
            }
            return "{" + pairs.joined(separator: ", ") + "}"
        }
    }

    /// A double-quoted YAML string of random scalars (control characters and quotes escaped).
    static func quoted(_ rng: inout any SeededRandomNumberGenerator) -> String {
        var s = "\""
        for _ in 0..<Int.random(in: 0...40, using: &rng) {
            let v: UInt32
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: v = UInt32.random(in: 0...0x7F, using: &rng)
            case 1: v = UInt32.random(in: 0x80...0xD7FF, using: &rng)
            case 2: v = UInt32.random(in: 0xE000...0x10FFFF, using: &rng)
            default: v = UInt32(Array("0123456789.-_/ ".unicodeScalars).randomElement(using: &rng)!.value)
            }
            guard let u = Unicode.Scalar(v) else { continue }
            switch u {
            case "\"": s += "\\\""
            case "\\": s += "\\\\"
            case _ where v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) || v == 0xFEFF || (0xFFFE...0xFFFF).contains(v & 0xFFFF):
                s += "\\U" + String(repeating: "0", count: 8 - String(v, radix: 16).count) + String(v, radix: 16)
            default: s.unicodeScalars.append(u)
            }
        }
        return s + "\""
    }
}
