import Glibc
import Yams

/// The sidecar that travels with a model (`<name>.model.yaml`): input size, colour order,
/// mean/scale and labels. Pre-processing is `(x - mean) / scale` per channel on 0…255 values.
public struct ModelDescriptor: Sendable, Equatable {
    public var name: String
    /// Absolute or sidecar-relative path to the network (`.onnx`, `.xml`, or `.bin` for the BPU).
    public var modelPath: String
    public var sidecarPath: String?
    public var family: String?
    public var params: Int?
    public var inputWidth: Int
    public var inputHeight: Int
    public var color: String           // "RGB" or "BGR"
    public var mean: [Float]
    public var scale: [Float]
    public var outputsLogits: Bool
    public var labelsPath: String?
    public var sha256: String?

    public init(name: String, modelPath: String, inputWidth: Int = 224, inputHeight: Int = 224,
                color: String = "RGB", mean: [Float] = [0, 0, 0], scale: [Float] = [1, 1, 1],
                outputsLogits: Bool = true, labelsPath: String? = nil) {
        self.name = name
        self.modelPath = modelPath
        self.inputWidth = inputWidth
        self.inputHeight = inputHeight
        self.color = color
        self.mean = mean
        self.scale = scale
        self.outputsLogits = outputsLogits
        self.labelsPath = labelsPath
    }

    /// Loads a model given either its sidecar (`*.yaml`) or the network file, in which case the
    /// sidecar `<stem>.model.yaml` beside it is used when present.
    /// - Throws: `InferenceError.modelMissing` / `.badModel` naming the file and key.
    public static func load(path: String) throws -> ModelDescriptor {
        guard access(path, R_OK) == 0 else {
            throw InferenceError.modelMissing("model file '\(path)' not found (run `make models` to prepare the default model)")
        }
        if path.hasSuffix(".yaml") || path.hasSuffix(".yml") { return try parseSidecar(path) }
        let stem = path.split(separator: "/").last.map(String.init) ?? path
        let dot = stem.lastIndex(of: ".") ?? stem.endIndex
        let dir = directory(of: path)
        let candidate = dir + "/" + stem[..<dot] + ".model.yaml"
        if access(candidate, R_OK) == 0 { return try parseSidecar(candidate) }
        var d = ModelDescriptor(name: String(stem[..<dot]), modelPath: path)
        // A bare BPU .bin: the RDK zoo classifiers are ImageNet-1k (the BPU engine checks the model
        // really has that many classes and asks for a sidecar otherwise).
        d.labelsPath = path.hasSuffix(".bin") ? imageNetLabels(near: dir) : nil
        return d
    }

    /// ImageNet-1k labels for a bare `.bin`: beside it, else the repo's or the installed copy.
    static func imageNetLabels(near dir: String) -> String? {
        [dir + "/imagenet1k-labels.txt", "config/imagenet1k-labels.txt", "/etc/camclassd/imagenet1k-labels.txt",
         "/usr/share/camclassd/imagenet1k-labels.txt"].first { access($0, R_OK) == 0 }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return path[..<slash].isEmpty ? "/" : String(path[..<slash])
    }

    static func parseSidecar(_ path: String) throws -> ModelDescriptor {
        let text: String
        do {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw InferenceError.modelMissing("cannot read model sidecar '\(path)'") }
            defer { close(fd) }
            var bytes = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                bytes += buf[0..<n]
            }
            text = String(decoding: bytes, as: UTF8.self)
        }
        func bad(_ key: String, _ why: String) -> InferenceError {
            .badModel("model sidecar '\(path)': key '\(key)': \(why)")
        }
        guard let node = try? Yams.load(yaml: text) as? [String: Any] else {
            throw InferenceError.badModel("model sidecar '\(path)' is not a YAML mapping")
        }
        let known: Set<String> = ["name", "model", "family", "params", "input", "output", "labels", "sha256"]
        for key in node.keys where !known.contains(key) { throw bad(key, "unknown key") }
        guard let model = node["model"] as? String else { throw bad("model", "missing (the network file name)") }
        guard let input = node["input"] as? [String: Any] else { throw bad("input", "missing mapping") }
        let knownInput: Set<String> = ["width", "height", "layout", "color", "mean", "scale"]
        for key in input.keys where !knownInput.contains(key) { throw bad("input.\(key)", "unknown key") }
        guard let w = input["width"] as? Int, w > 0, w % 2 == 0 else { throw bad("input.width", "a positive even integer is required") }
        guard let h = input["height"] as? Int, h > 0, h % 2 == 0 else { throw bad("input.height", "a positive even integer is required") }
        func floats(_ key: String) throws -> [Float] {
            guard let raw = input[key] else { return key == "mean" ? [0, 0, 0] : [1, 1, 1] }
            let list: [Any] = (raw as? [Any]) ?? [raw]
            let values = list.compactMap { ($0 as? Double).map(Float.init) ?? ($0 as? Int).map(Float.init) }
            guard values.count == list.count, values.count == 1 || values.count == 3 else {
                throw bad("input.\(key)", "one number or three numbers are required, got \(raw)")
            }
            if key == "scale", values.contains(where: { $0 == 0 }) { throw bad("input.scale", "must not be zero") }
            return values.count == 1 ? [values[0], values[0], values[0]] : values
        }
        let color = (input["color"] as? String)?.uppercased() ?? "RGB"
        guard color == "RGB" || color == "BGR" else { throw bad("input.color", "RGB or BGR, got \(color)") }
        let output = (node["output"] as? String) ?? "logits"
        guard output == "logits" || output == "probabilities" else {
            throw bad("output", "logits or probabilities, got \(output)")
        }
        let dir = directory(of: path)
        func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : dir + "/" + p }
        var d = ModelDescriptor(name: (node["name"] as? String) ?? model, modelPath: resolve(model),
                                inputWidth: w, inputHeight: h, color: color,
                                mean: try floats("mean"), scale: try floats("scale"),
                                outputsLogits: output == "logits",
                                labelsPath: (node["labels"] as? String).map(resolve))
        d.sidecarPath = path
        d.family = node["family"] as? String
        d.params = node["params"] as? Int
        d.sha256 = node["sha256"] as? String
        guard access(d.modelPath, R_OK) == 0 else {
            throw InferenceError.modelMissing("model sidecar '\(path)' names '\(d.modelPath)', which does not exist (run `make models`)")
        }
        return d
    }
}

/// Class names, plus each name pre-escaped as JSON string bytes so records encode without allocating.
public final class LabelSet: Sendable {
    public let names: [String]
    public let jsonEscaped: [[UInt8]]

    public init(names: [String]) {
        self.names = names
        jsonEscaped = names.map(LabelSet.escape)
    }

    /// One label per line; line i is class i. Blank trailing lines are ignored.
    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw InferenceError.modelMissing("labels file '\(path)' not found") }
        defer { close(fd) }
        var bytes = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingSuffix("\r") }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        self.init(names: lines)
    }

    public var count: Int { names.count }

    public func name(_ index: Int) -> String { index >= 0 && index < names.count ? names[index] : "class \(index)" }

    static func escape(_ s: String) -> [UInt8] {
        var out = [UInt8]()
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [0x5C, 0x22]
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0..<0x20: out += Array("\\u00\(String(b, radix: 16).count == 1 ? "0" : "")\(String(b, radix: 16))".utf8)
            default: out.append(b)
            }
        }
        return out
    }
}

extension Substring {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : String(self)
    }
}
