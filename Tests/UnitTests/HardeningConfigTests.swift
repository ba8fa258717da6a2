import CamclassTestSupport
import Client
import CamclassDaemon
import Foundation
import Support
import Testing
import WireFormat

/// Issue 11, the configuration cases (F3, F4, F5, F11, F16, F17): every value from outside is in a
/// documented range or refused with file, key, value and range; nothing traps or allocates without
/// bound. Unit tests: no environment.
@Suite struct HardeningConfigTests {
    /// The error for `yaml`, or a recorded issue when it was accepted.
    func refusal(_ yaml: String, file: String = "c.yaml", sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        do {
            _ = try DaemonConfig.parse(yaml: yaml, file: file)
            Issue.record("accepted: \(yaml)", sourceLocation: sourceLocation)
        } catch {
            return error
        }
        return nil
    }

    func refusal(flag: String, section: String, key: String, value: String,
                 sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        do {
            _ = try DaemonConfig.resolve(file: nil, overrides: [ConfigOverride(flag: flag, section: section, key: key, value: value)],
                                         systemFile: false)
            Issue.record("accepted \(flag) \(value)", sourceLocation: sourceLocation)
        } catch {
            return error
        }
        return nil
    }

    // F3, F11: values that passed --check-config and then trapped, aborted or took gigabytes.
    @Test(arguments: [
        ("source", "fps", "1e-11"), ("source", "fps", "1e300"), ("model", "top_k", "9223372036854775807"),
        ("model", "top_k", "1000000000"), ("model", "top_k", "350"),
        ("pipeline", "queue_capacity", "9223372036854775807"), ("pipeline", "queue_capacity", "100000"),
        ("inference", "workers", "1000000000"), ("stable", "min_dwell_ms", "9223372036854775807"),
        ("log", "fsync_interval_ms", "9223372036854775807"), ("log", "buffer_bytes", "9223372036854775807"),
        ("publish", "subscriber_buffer_bytes", "9223372036854775807"), ("publish", "max_request_bytes", "9223372036854775807"),
        ("log", "max_bytes", "9223372036854775807"), ("camera", "width", "99999999"), ("inference", "bpu_timeout_ms", "9223372036854775807"),
        ("publish", "max_subscribers", "5000"), ("source", "max_pixels", "9223372036854775807"),
        ("pipeline", "latency_window_s", "1e308"), ("camera", "fps", "1e-11"), ("stable", "smoothing", "-9223372036854775808"),
    ])
    func outOfRangeNumbersAreRefusedWithTheRange(section: String, key: String, value: String) throws {
        let e = try #require(refusal("\(section):\n  \(key): \(value)\n"))
        #expect(e.file == "c.yaml" && e.key == "\(section).\(key)" && e.value == value, "\(e)")
        #expect(e.reason.contains("…"), "the reason names the range: \(e)")
    }

    // F3: every numeric key of the shipped file has a documented range that the parser enforces:
    // its maximum plus one, and its minimum minus one, are refused.
    @Test func everyNumericKeyHasARange() throws {
        let root = try YAMLConfigDocumentProbe.sections(of: TestEnv.repoRoot + "/config/camclassd.yaml")
        var checked = 0
        for (section, keys) in root {
            for (key, value) in keys where Int(value) != nil || Double(value) != nil {
                let huge = refusal("\(section):\n  \(key): 1e300\n")
                let tiny = refusal("\(section):\n  \(key): -1e300\n")
                #expect(huge?.key == "\(section).\(key)" && tiny?.key == "\(section).\(key)")
                checked += 1
            }
        }
        #expect(checked >= 25, "numeric keys found in config/camclassd.yaml: \(checked)")
    }

    // F5: `socket_mode: 0660` unquoted was read as decimal 432 and made mode 0432.
    @Test func socketModeIsReadAsTheOctalTheUserWrote() throws {
        for text in ["0660", "\"0660\"", "660", "0o660", "'0o660'"] {
            let c = try DaemonConfig.parse(yaml: "publish:\n  socket_mode: \(text)\n", file: "c.yaml")
            #expect(c.publish.mode == 0o660, "\(text) → \(String(c.publish.mode, radix: 8))")
        }
        #expect(try DaemonConfig.parse(yaml: "publish:\n  socket_mode: 0600\n", file: "c.yaml").publish.mode == 0o600)
        for bad in ["0999", "1777", "rw-rw----", "-1", "0x1b0"] {
            #expect(refusal("publish:\n  socket_mode: \(bad)\n")?.key == "publish.socket_mode", "\(bad)")
        }
    }

    // F16: a directory, a device, a huge file, an alias bomb, a misspelt empty section.
    @Test func onlyBoundedRegularFilesAreRead() throws {
        let dir = TestEnv.tempDir("cfg")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for path in [dir, "/dev/zero", "/dev/null"] {
            #expect { _ = try DaemonConfig.load(file: path) } throws: { error in
                "\(error)".contains(path) && "\(error)".contains("not a regular file")
            }
        }
        let big = dir + "/big.yaml"
        try String(repeating: "# padding\n", count: 120_000).write(toFile: big, atomically: true, encoding: .utf8)
        #expect { _ = try DaemonConfig.load(file: big) } throws: { "\($0)".contains("at most 1048576") }
    }

    @Test func aliasBombIsRefusedQuickly() throws {
        var yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for level in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            yaml += "\(level): &\(level) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = level
        }
        let started = Date()
        let e = try #require(refusal(yaml))
        #expect(e.reason.contains("more than 100000 values"), "\(e)")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func unknownSectionsAreErrorsEvenWhenEmpty() {
        #expect(refusal("stabel:\n")?.key == "stabel")
        #expect(refusal("stabel:\n  enter: 0.5\n")?.key == "stabel")
        let duplicate = refusal("model:\n  path: a\nmodel:\n  path: b\n")
        #expect(duplicate?.reason.contains("twice") == true || duplicate?.reason.lowercased().contains("duplicate") == true, "\(String(describing: duplicate))")
    }

    // F17: flags are validated like config keys, and errors name the flag.
    @Test(arguments: [
        ("--precision", "inference", "precision", "f64"), ("--device", "inference", "device", "FOO"),
        ("--log-level", "daemon", "log_level", "loud"), ("--fps", "source", "fps", "nan"), ("--fps", "source", "fps", "-5"),
        ("--fps", "source", "fps", "1e-11"), ("--workers", "inference", "workers", "-1"), ("--backend", "inference", "backend", "tpu"),
        ("--socket", "publish", "socket", "/tmp/" + String(repeating: "s", count: 120) + ".sock"),
    ])
    func badFlagsNameTheFlag(flag: String, section: String, key: String, value: String) throws {
        let e = try #require(refusal(flag: flag, section: section, key: key, value: value))
        #expect(e.file == "command line" && e.key.hasPrefix(flag) && e.value == value, "\(e)")
    }

    @Test func goodFlagsOverrideTheFile() throws {
        let c = try DaemonConfig.resolve(file: nil, overrides: [
            ConfigOverride(flag: "--fps", section: "source", key: "fps", value: "0"),
            ConfigOverride(flag: "--device", section: "inference", key: "device", value: "GPU.1"),
            ConfigOverride(flag: "--log-level", section: "daemon", key: "log_level", value: "debug"),
        ], systemFile: false)
        #expect(c.source.fps == 0 && c.inference.device == "GPU.1" && c.daemon.logLevel == .debug)
    }

    // F17: --check-config checks the files the configuration names, without loading them.
    @Test func checkFilesNamesTheMissingFile() throws {
        let dir = TestEnv.tempDir("chk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/m.model.yaml"
        try "model: m.onnx\n".write(toFile: model, atomically: true, encoding: .utf8)
        func yaml(model m: String = model, source: String = dir, log: String = dir + "/x.log", extra: String = "") -> String {
            "model:\n  path: \(m)\nsource:\n  path: \(source)\nlog:\n  path: \(log)\n" + extra
        }
        try DaemonConfig.parse(yaml: yaml(), file: dir + "/c.yaml").checkFiles()
        let cases = [(yaml(extra: "stable:\n  groups: missing-groups.yaml\n"), "stable.groups"),
                     (yaml(model: dir + "/nope.model.yaml"), "model.path"),
                     (yaml(log: dir + "/no/such/dir/x.log"), "log.path"),
                     (yaml(source: dir + "/no-photos"), "source.path")]
        for (text, key) in cases {
            let c = try DaemonConfig.parse(yaml: text, file: dir + "/c.yaml")
            #expect { try c.checkFiles() } throws: { ($0 as? ConfigError)?.key == key }
        }
    }
}

/// Reads a YAML file's `section: {key: scalar}` pairs (the shipped config's numeric keys).
enum YAMLConfigDocumentProbe {
    static func sections(of path: String) throws -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var section: String?
        for line in try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n") {
            if line.hasPrefix("#") || line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if !line.hasPrefix(" "), line.hasSuffix(":") { section = String(line.dropLast()); continue }
            let t = line.trimmingCharacters(in: .whitespaces)
            guard let section, !t.hasPrefix("#"), let colon = t.firstIndex(of: ":") else { continue }
            out[section, default: [:]][String(t[..<colon])] = t[t.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
