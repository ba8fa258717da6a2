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

    /// The largest input side a sidecar may state (the BPU's limit; far above any classifier).
    public static let maxInputSide = 8192
    /// A sidecar is a few hundred bytes; anything past this is not one (checked before parsing).
    static let maxSidecarBytes = 1 << 20

    /// Reads a small regular file, refusing anything else (a FIFO, /dev/zero) or anything larger
    /// than `maxBytes`. - Throws: `.modelMissing` when it cannot be opened, `.badModel` otherwise.
    static func readSmallFile(_ path: String, what: String, maxBytes: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw InferenceError.modelMissing("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw InferenceError.badModel("\(what) '\(path)' is not a regular file")
        }
        guard st.st_size <= maxBytes else {
            throw InferenceError.badModel("\(what) '\(path)' is \(st.st_size) bytes; at most \(maxBytes) are accepted")
        }
        var bytes = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw InferenceError.modelMissing("cannot read \(what) '\(path)': \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            guard bytes.count + n <= maxBytes else {
                throw InferenceError.badModel("\(what) '\(path)' grew past \(maxBytes) bytes while read")
            }
            bytes += buf[0..<n]
        }
        return bytes
    }

    /// - Throws: `.modelMissing` when the sidecar or the network it names cannot be found (exit 66),
    ///   `.badModel` naming the file, key and value for everything else (a configuration error, 78).
    static func parseSidecar(_ path: String) throws -> ModelDescriptor {
        let text = String(decoding: try readSmallFile(path, what: "model sidecar", maxBytes: maxSidecarBytes), as: UTF8.self)
        func bad(_ key: String, _ why: String) -> InferenceError {
            .badModel("model sidecar '\(path)': key '\(key)': \(why)")
        }
        let parsed: Any?
        do { parsed = try Yams.load(yaml: text) } catch {
            let first = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            throw InferenceError.badModel("model sidecar '\(path)' is not valid YAML: \(first)")
        }
        guard let node = parsed as? [String: Any] else {
            throw InferenceError.badModel("model sidecar '\(path)' is not a YAML mapping")
        }
        let known: Set<String> = ["name", "model", "family", "params", "input", "output", "labels", "sha256"]
        for key in node.keys where !known.contains(key) { throw bad(key, "unknown key") }
        guard let model = node["model"] as? String, !model.isEmpty else { throw bad("model", "missing (the network file name)") }
        guard let input = node["input"] as? [String: Any] else { throw bad("input", "missing mapping") }
        let knownInput: Set<String> = ["width", "height", "layout", "color", "mean", "scale"]
        for key in input.keys where !knownInput.contains(key) { throw bad("input.\(key)", "unknown key") }
        func side(_ key: String) throws -> Int {
            guard let v = input[key] as? Int, v >= 2, v <= maxInputSide, v % 2 == 0 else {
                throw bad("input.\(key)", "an even integer from 2 to \(maxInputSide) is required, got \(input[key].map { "\($0)" } ?? "nothing")")
            }
            return v
        }
        let w = try side("width"), h = try side("height")
        func floats(_ key: String) throws -> [Float] {
            guard let raw = input[key] else { return key == "mean" ? [0, 0, 0] : [1, 1, 1] }
            let list: [Any] = (raw as? [Any]) ?? [raw]
            let values = list.compactMap { ($0 as? Double).map(Float.init) ?? ($0 as? Int).map(Float.init) }
            guard values.count == list.count, values.count == 1 || values.count == 3 else {
                throw bad("input.\(key)", "one number or three numbers are required, got \(raw)")
            }
            // Pixel values are 0…255: a mean or scale far outside that is a typo, and Float(1e300)
            // is infinity, which would turn every input into NaN.
            guard values.allSatisfy({ $0.isFinite && abs($0) <= 1e6 }) else {
                throw bad("input.\(key)", "numbers from -1000000 to 1000000 are required, got \(raw)")
            }
            if key == "scale", values.contains(where: { abs($0) < 1e-6 }) { throw bad("input.scale", "must not be zero, got \(raw)") }
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
        if let raw = node["params"] {
            guard let p = raw as? Int, p >= 0 else { throw bad("params", "a non-negative integer is required, got \(raw)") }
            d.params = p
        }
        d.sha256 = node["sha256"] as? String
        guard access(d.modelPath, R_OK) == 0 else {
            throw InferenceError.modelMissing("model sidecar '\(path)' names '\(d.modelPath)', which does not exist (run `make models`)")
        }
        return d
    }
}

/// Class names, plus each name pre-escaped as JSON string bytes so records encode without allocating.
/// Labels longer than `maxLabelBytes` are truncated (at a UTF-8 character boundary, ending in
/// `truncationMarker`) rather than refused: one absurd line should not stop a model, and a record
/// must stay a bounded, valid JSON line. `truncated` counts them; the daemon logs it once.
public final class LabelSet: Sendable {
    public let names: [String]
    public let jsonEscaped: [[UInt8]]
    /// How many labels were cut to `maxLabelBytes`, and the first of them (0-based line).
    public let truncated: Int
    public let firstTruncated: Int?

    /// The longest label published, in UTF-8 bytes, marker included.
    public static let maxLabelBytes = 256
    public static let truncationMarker = "…"
    /// A labels file is a few KB to a few MB (ImageNet-21k); past this it is not one.
    static let maxFileBytes = 64 << 20

    public init(names: [String]) {
        var cut = 0
        var first: Int?
        self.names = names.enumerated().map { i, name in
            guard name.utf8.count > LabelSet.maxLabelBytes else { return name }
            cut += 1
            if first == nil { first = i }
            return LabelSet.truncate(name)
        }
        truncated = cut
        firstTruncated = first
        jsonEscaped = self.names.map(LabelSet.escape)
    }

    /// `name` cut to at most `maxLabelBytes` UTF-8 bytes including the marker, never inside a character.
    static func truncate(_ name: String) -> String {
        let budget = maxLabelBytes - truncationMarker.utf8.count
        var end = name.utf8.startIndex
        var used = 0
        for ch in name.unicodeScalars {
            let n = String(ch).utf8.count
            if used + n > budget { break }
            used += n
            end = name.utf8.index(end, offsetBy: n)
        }
        return String(name.utf8[..<end])! + truncationMarker
    }

    /// One label per line; line i is class i. Blank trailing lines are ignored.
    /// - Throws: `.modelMissing` when it cannot be opened, `.badModel` when it is not a regular file
    ///   or larger than 64 MiB.
    public convenience init(path: String) throws {
        let bytes: [UInt8]
        do { bytes = try ModelDescriptor.readSmallFile(path, what: "labels file", maxBytes: LabelSet.maxFileBytes) } catch InferenceError.modelMissing {
            throw InferenceError.modelMissing("labels file '\(path)' not found")
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
