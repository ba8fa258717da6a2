import Glibc
import Support
import Yams

/// One model the catalogue knows (`config/models.yaml`): its board file and reference figures.
public struct CatalogueEntry: Sendable, Equatable {
    public var name: String
    public var family: String
    /// The timm model the seed exports to ONNX (the same network for the CPU backend).
    public var timm: String?
    /// The board file, e.g. `EfficientNet_B2_224x224_nv12.bin`.
    public var bin: String
    public var inputWidth: Int
    public var inputHeight: Int
    public var classes: Int
    public var paramsM: Double?
    public var top1Float: Double?
    public var top1Quantized: Double?
    /// RDK X5 reference: single-thread latency, latency with 4 threads, FPS with 4 threads.
    public var latencyMs: Double?
    public var latency4tMs: Double?
    public var fps4t: Double?

    /// "expected on RDK X5: 376.77 FPS with 4 threads, 3.31 ms single-thread (EfficientNet_B2, seed figures)".
    public func expectedText(board: String) -> String {
        var parts: [String] = []
        if let fps4t { parts.append(twoDecimals(fps4t) + " FPS with 4 threads") }
        if let latencyMs { parts.append(twoDecimals(latencyMs) + " ms single-thread latency") }
        if let latency4tMs { parts.append(twoDecimals(latency4tMs) + " ms with 4 threads") }
        return "expected on \(board): " + (parts.isEmpty ? "no figures" : parts.joined(separator: ", ")) + " (\(name), seed figures)"
    }
}

/// The model catalogue: the seed variants, their download URL pattern and reference figures.
/// Thread context: a value; load it anywhere.
public struct ModelCatalogue: Sendable, Equatable {
    public var file: String
    /// Download URL with `{bin}` where the file name goes.
    public var urlPattern: String
    /// The board the reference figures were measured on.
    public var board: String
    public var entries: [CatalogueEntry]

    public static let defaultPath = "config/models.yaml"
    /// Where an installed daemon's catalogue is looked for when the repo's is not there.
    public static let searchPaths = [defaultPath, "/etc/camclassd/models.yaml", "/usr/share/camclassd/models.yaml"]

    /// The first readable file of `searchPaths` (or `path` when given).
    /// - Throws: `InferenceError.modelMissing` / `.badModel` naming the file and the entry.
    public static func load(path: String? = nil) throws -> ModelCatalogue {
        let candidates = path.map { [$0] } ?? searchPaths
        guard let file = candidates.first(where: { access($0, R_OK) == 0 }) else {
            throw InferenceError.modelMissing("model catalogue not found (tried \(candidates.joined(separator: ", ")))")
        }
        return try parse(yaml: readText(file), file: file)
    }

    public static func parse(yaml: String, file: String) throws -> ModelCatalogue {
        func bad(_ why: String) -> InferenceError { .badModel("model catalogue '\(file)': \(why)") }
        let root: Any?
        do { root = try Yams.load(yaml: yaml) } catch { throw bad("not valid YAML: \(error)") }
        guard let top = root as? [String: Any] else { throw bad("the top level must be a mapping") }
        for key in top.keys where !["url_pattern", "board", "models"].contains(key) { throw bad("unknown key '\(key)'") }
        guard let pattern = top["url_pattern"] as? String, pattern.contains("{bin}") else {
            throw bad("'url_pattern' must be a URL containing {bin}")
        }
        guard let list = top["models"] as? [Any] else { throw bad("'models' must be a list") }
        let known: Set<String> = ["name", "family", "timm", "bin", "input", "classes", "params_m", "top1_float",
                                  "top1_quantized", "rdk_x5"]
        var entries: [CatalogueEntry] = []
        for (i, item) in list.enumerated() {
            guard let m = item as? [String: Any] else { throw bad("models[\(i)] must be a mapping") }
            let label = (m["name"] as? String).map { "model '\($0)'" } ?? "models[\(i)]"
            for key in m.keys where !known.contains(key) { throw bad("\(label): unknown key '\(key)'") }
            func string(_ k: String) throws -> String {
                guard let s = m[k] as? String, !s.isEmpty else { throw bad("\(label): '\(k)' is required") }
                return s
            }
            func number(_ v: Any?, _ k: String) throws -> Double? {
                guard let v else { return nil }
                if let d = v as? Double { return d }
                if let n = v as? Int { return Double(n) }
                throw bad("\(label): '\(k)' must be a number")
            }
            let input = m["input"] as? [String: Any] ?? [:]
            guard let w = input["width"] as? Int, let h = input["height"] as? Int, w > 0, h > 0 else {
                throw bad("\(label): 'input' needs width and height")
            }
            let x5 = m["rdk_x5"] as? [String: Any] ?? [:]
            let e = CatalogueEntry(
                name: try string("name"), family: try string("family"), timm: m["timm"] as? String, bin: try string("bin"),
                inputWidth: w, inputHeight: h, classes: m["classes"] as? Int ?? 1000,
                paramsM: try number(m["params_m"], "params_m"), top1Float: try number(m["top1_float"], "top1_float"),
                top1Quantized: try number(m["top1_quantized"], "top1_quantized"),
                latencyMs: try number(x5["latency_ms"], "rdk_x5.latency_ms"),
                latency4tMs: try number(x5["latency_4t_ms"], "rdk_x5.latency_4t_ms"),
                fps4t: try number(x5["fps_4t"], "rdk_x5.fps_4t"))
            if entries.contains(where: { $0.name == e.name }) { throw bad("\(label) is listed twice") }
            entries.append(e)
        }
        return ModelCatalogue(file: file, urlPattern: pattern, board: top["board"] as? String ?? "RDK X5", entries: entries)
    }

    public func url(for entry: CatalogueEntry) -> String {
        urlPattern.replacing("{bin}", with: entry.bin)
    }

    /// The entry a file or model name refers to: its catalogue name, its `.bin` (with or without
    /// directory, extension and `_224x224_nv12`), or its timm name. Case and punctuation are ignored.
    public func entry(matching name: String) -> CatalogueEntry? {
        let key = Self.normalised(name)
        guard !key.isEmpty else { return nil }
        return entries.first { e in
            Self.normalised(e.name) == key || Self.normalised(e.bin) == key || e.timm.map(Self.normalised) == key
        }
    }

    static func normalised(_ raw: String) -> String {
        var s = Substring(raw.split(separator: "/").last ?? Substring(raw)).lowercased()
        for ext in [".model.yaml", ".yaml", ".bin", ".onnx", ".xml", ".model"] where s.hasSuffix(ext) {
            s = String(s.dropLast(ext.count))
            break
        }
        // `_224x224_nv12`, `_224x224`: the board files' size/format suffix.
        if s.hasSuffix("_nv12") { s = String(s.dropLast(5)) }
        if let us = s.lastIndex(of: "_") {
            let tail = s[s.index(after: us)...].split(separator: "x")
            if tail.count == 2, tail.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { s = String(s[..<us]) }
        }
        return String(s.filter { $0.isLetter || $0.isNumber })
    }

    static func readText(_ path: String) -> String { readTextFile(path) ?? "" }
}

/// A model found on disk (a sidecar, a BPU `.bin` or an ONNX/IR network).
public struct LocalModel: Sendable, Equatable {
    public var path: String
    /// "sidecar", "bin" or "onnx"/"xml".
    public var kind: String
    /// "bpu" or "openvino".
    public var backend: String
    /// What the file amounts to (network, labels, problems).
    public var detail: String
    public var catalogueName: String?
}

extension ModelCatalogue {
    /// The models in `directory`: every `*.model.yaml`, and every `*.bin`/`*.onnx`/`*.xml` that no
    /// sidecar there names. Unreadable sidecars are listed with the reason.
    public func localModels(in directory: String) -> [LocalModel] {
        guard let d = opendir(directory) else { return [] }
        var names: [String] = []
        while let e = readdir(d) {
            names.append(withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
        }
        closedir(d)
        names.sort()
        var out: [LocalModel] = []
        var covered = Set<String>()
        for name in names where name.hasSuffix(".model.yaml") {
            let path = directory + "/" + name
            do {
                let m = try ModelDescriptor.load(path: path)
                let network = m.modelPath.split(separator: "/").last.map(String.init) ?? m.modelPath
                covered.insert(network)
                let backend = network.hasSuffix(".bin") && !names.contains(String(network.dropLast(4)) + ".xml") ? "bpu" : "openvino"
                let labels = m.labelsPath.map { "labels " + ($0.split(separator: "/").last.map(String.init) ?? $0) } ?? "no labels"
                out.append(LocalModel(path: path, kind: "sidecar", backend: backend,
                                      detail: "→ \(network), \(m.inputWidth)x\(m.inputHeight), \(labels), output \(m.outputsLogits ? "logits" : "probabilities")",
                                      catalogueName: (entry(matching: network) ?? entry(matching: m.name))?.name))
            } catch {
                out.append(LocalModel(path: path, kind: "sidecar", backend: "?", detail: "unusable: \(error)", catalogueName: nil))
            }
        }
        for name in names where !covered.contains(name) {
            let path = directory + "/" + name
            if name.hasSuffix(".bin") {
                // An OpenVINO IR's weights sit beside its .xml; that pair is listed as the .xml.
                if names.contains(String(name.dropLast(4)) + ".xml") { continue }
                out.append(LocalModel(path: path, kind: "bin", backend: "bpu",
                                      detail: "no sidecar: ImageNet-1k labels assumed", catalogueName: entry(matching: name)?.name))
            } else if name.hasSuffix(".onnx") || name.hasSuffix(".xml") {
                out.append(LocalModel(path: path, kind: String(name.split(separator: ".").last!), backend: "openvino",
                                      detail: "no sidecar: defaults (224x224 RGB, no mean/scale)", catalogueName: entry(matching: name)?.name))
            }
        }
        return out
    }

    /// The `camclass models` listing: the catalogue as a table (with download URLs when `urls`),
    /// then what `directory` holds.
    public func report(directory: String, urls: Bool) -> [String] {
        let local = localModels(in: directory)
        var lines = ["Catalogue \(file): \(entries.count) models (\(board) reference figures from the seed documents)"]
        func col(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
        func num(_ v: Double?, _ unit: String = "") -> String { v.map { twoDecimals($0) + unit } ?? "-" }
        lines.append(col("model", 22) + col("input", 9) + col("params", 8) + col("top1 float/quant", 18) +
                     col("X5 1-thread", 12) + col("X5 4-thread", 22) + "local")
        for e in entries {
            let here = local.filter { $0.catalogueName == e.name }.map { $0.path.split(separator: "/").last.map(String.init)! }
            lines.append(col(e.name, 22) + col("\(e.inputWidth)x\(e.inputHeight)", 9) + col(num(e.paramsM, "M"), 8) +
                         col(num(e.top1Float) + " / " + num(e.top1Quantized), 18) + col(num(e.latencyMs, " ms"), 12) +
                         col(num(e.fps4t, " FPS") + " (" + num(e.latency4tMs, " ms") + ")", 22) +
                         (here.isEmpty ? "-" : here.joined(separator: ", ")))
            if urls { lines.append("    " + url(for: e)) }
        }
        lines.append("")
        if local.isEmpty {
            lines.append("No models in \(directory)/ (*.model.yaml, *.bin, *.onnx). Download a board model with e.g.")
        } else {
            lines.append("In \(directory)/:")
            for m in local {
                let cat = m.catalogueName.map { " [catalogue: \($0)]" } ?? ""
                lines.append("  \(m.path.split(separator: "/").last!)  (\(m.backend)) \(m.detail)\(cat)")
            }
            lines.append("")
            lines.append("Download a board model with e.g.")
        }
        if let first = entries.first(where: { $0.name == "EfficientNet_B2" }) ?? entries.first {
            lines.append("  wget -P \(directory) \(url(for: first))")
        }
        return lines
    }
}

/// Two decimals, trailing zeros kept (as the seed tables print figures).
func twoDecimals(_ v: Double) -> String {
    let scaled = (v * 100).rounded()
    // Catalogue figures are outside input: NaN or 1e300 prints as Swift does, never traps.
    guard let n = Int(exactly: scaled) else { return "\(v)" }
    let whole = n / 100, frac = abs(n % 100)
    return "\(scaled < 0 && whole == 0 ? "-" : "")\(whole)." + (frac < 10 ? "0" : "") + "\(frac)"
}
