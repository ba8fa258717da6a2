import Client
import CamclassDaemon
import WireFormat
import Foundation
import Inference

/// The float RGB reference of `camclass eval --reference`: the same ONNX run by onnxruntime in
/// f32 on RGB decoded by Pillow (centre crop, bilinear resize, (x - mean) / scale), through
/// `tools/evaltool.py reference`. An independent decoder, resizer, colour path, runtime and
/// precision: the difference to the NV12 path is what the NV12 path itself costs.
public struct FloatReference {
    public var python: String
    public var script: String

    public init(python: String, script: String) {
        self.python = python
        self.script = script
    }

    /// The venv's Python: $CAMCLASS_PYTHON, then $CAMCLASS_TEST_VENV/bin/python3, then ./.venv.
    public static func defaultPython() -> String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["CAMCLASS_PYTHON"], !p.isEmpty { return p }
        if let v = env["CAMCLASS_TEST_VENV"], !v.isEmpty { return v + "/bin/python3" }
        return FileManager.default.isExecutableFile(atPath: ".venv/bin/python3") ? ".venv/bin/python3" : "python3"
    }

    public struct Output: Decodable {
        public var engine: String
        public var results: [Entry]
        public struct Entry: Decodable {
            public var path: String
            public var top: [Int]?
            public var error: String?
        }
    }

    /// Runs the reference on `paths` with the model of `sidecar`; top-5 per path (nil = failed).
    /// - Throws: `EvalError.reference` saying how to provide Python, onnxruntime and Pillow.
    public func run(sidecar: String, paths: [String]) throws -> (engine: String, top: [String: [Int]]) {
        let dir = NSTemporaryDirectory() + "camclass-ref-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let list = dir + "/images.txt", out = dir + "/reference.json"
        try (paths.joined(separator: "\n") + "\n").write(toFile: list, atomically: true, encoding: .utf8)
        let hint = "the float reference needs Python with onnxruntime, numpy and pillow (`make deps` builds .venv); " +
            "point --python (or CAMCLASS_PYTHON) at it, and --reference-script at tools/evaltool.py"
        guard FileManager.default.fileExists(atPath: script) else {
            throw EvalError.reference("reference script '\(script)' not found: \(hint)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python, script, "reference", "--sidecar", sidecar, "--list", list, "--json", out]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { throw EvalError.reference("cannot start '\(python)': \(error.localizedDescription); \(hint)") }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let msg = String(decoding: errData, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " / ")
            throw EvalError.reference("\(python) \(script) reference failed (exit \(p.terminationStatus)): \(msg); \(hint)")
        }
        guard let data = FileManager.default.contents(atPath: out),
              let parsed = try? JSONDecoder().decode(Output.self, from: data) else {
            throw EvalError.reference("the reference script wrote no readable \(out); \(hint)")
        }
        var top: [String: [Int]] = [:]
        for e in parsed.results { if let t = e.top { top[e.path] = t } }
        return (parsed.engine, top)
    }
}

/// The summary `camclass eval` prints and the JSON it writes with `--json`.
public struct EvalReport: Sendable, Codable {
    public var model: String
    public var engine: String
    public var referenceEngine: String?
    public var seconds: Double
    public var metrics: EvalMetrics
    public var results: [EvalImageResult]

    public init(model: String, engine: String, referenceEngine: String?, seconds: Double, results: [EvalImageResult]) {
        self.model = model
        self.engine = engine
        self.referenceEngine = referenceEngine
        self.seconds = seconds
        self.results = results
        metrics = EvalMetrics(results)
    }

    static func pct(_ v: Double?) -> String { v.map { String(format: "%5.1f %%", $0 * 100) } ?? "    -  " }

    /// The summary table; per-image lines too when `perImage` (small sets).
    public func text(labels: LabelSet, perImage: Bool) -> String {
        var out: [String] = []
        let m = metrics
        out.append("model \(model): \(m.images) images, \(m.evaluated) classified, \(m.failed) failed, " +
                   String(format: "%.1f s (%.1f images/s)", seconds, seconds > 0 ? Double(m.evaluated) / seconds : 0))
        out.append("engine: \(engine)")
        if perImage {
            out.append("")
            for r in results {
                let name = r.path.split(separator: "/").suffix(2).joined(separator: "/")
                if let e = r.error { out.append("  \(name): failed: \(e)"); continue }
                let mark = r.correct1 ? "top-1" : r.correct5 ? "top-5" : "miss "
                let t = r.top.first.map { "\($0) \(labels.name($0))" } ?? "-"
                var line = "  [\(mark)] \(name): label \(r.label) \(labels.name(r.label)); got \(t)" +
                    (r.scores.first.map { String(format: " %.2f", $0) } ?? "")
                if let ref = r.referenceTop?.first { line += (r.agrees == true ? "; float agrees" : "; float says \(ref) \(labels.name(ref))") }
                out.append(line)
            }
        }
        out.append("")
        out.append("                          top-1     top-5")
        out.append("camclassd NV12 path     \(Self.pct(m.top1))   \(Self.pct(m.top5))")
        if let referenceEngine {
            out.append("float RGB reference     \(Self.pct(m.referenceTop1))   \(Self.pct(m.referenceTop5))   (\(referenceEngine))")
            if let a = m.agreement {
                let n = Int((a * Double(m.referenceEvaluated)).rounded())
                out.append(String(format: "top-1 agreement NV12 path vs float reference: %.1f %% (%d of %d images)",
                                  a * 100, n, m.referenceEvaluated))
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }
}

/// A one-line progress bar on a terminal (`\r`-redrawn); silent when stderr is not a terminal.
public struct ProgressBar {
    public let enabled: Bool
    let width = 30

    public init(enabled: Bool = isatty(STDERR_FILENO) == 1) { self.enabled = enabled }

    public static func line(done: Int, total: Int, width: Int = 30) -> String {
        let f = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let filled = Int((f * Double(width)).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total)"
    }

    public func update(done: Int, total: Int) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(("\r" + Self.line(done: done, total: total, width: width)).utf8))
    }

    public func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
