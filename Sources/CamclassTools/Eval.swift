import Client
import CamclassDaemon
import WireFormat
import Capture
import Foundation
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Synchronization

/// One labelled image of an evaluation set.
public struct LabelledImage: Sendable, Equatable, Codable {
    public var path: String
    public var label: Int
    public init(path: String, label: Int) {
        self.path = path
        self.label = label
    }
}

public enum EvalError: Error, CustomStringConvertible, Equatable {
    case dataset(String)
    case reference(String)

    public var description: String {
        switch self {
        case .dataset(let s), .reference(let s): return s
        }
    }
}

/// Labelled folders and CSV files. A label is a class id (`281`, `0281`) or a WordNet id
/// (`n02123045`, looked up in `config/imagenet1k-wnids.txt`: line i is class i).
public enum EvalDataset {
    public static let imageExtensions = [".jpg", ".jpeg"]

    public static func isImage(_ name: String) -> Bool {
        let lower = name.lowercased()
        return imageExtensions.contains { lower.hasSuffix($0) }
    }

    /// WordNet id → class index, from a file with one id per line.
    public static func loadWnids(path: String) throws -> [String: Int] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw EvalError.dataset("cannot read the WordNet id list '\(path)' (one id per line, line i = class i; " +
                                    "the repository ships config/imagenet1k-wnids.txt; see --wnids)")
        }
        return parseWnids(text)
    }

    public static func parseWnids(_ text: String) -> [String: Int] {
        var map: [String: Int] = [:]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() {
            let id = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if !id.isEmpty && map[id] == nil { map[id] = i }
        }
        return map
    }

    /// A class id or WordNet id → class index; nil when it is neither (or out of range).
    public static func parseLabel(_ raw: String, wnids: [String: Int], classes: Int) -> Int? {
        let token = raw.trimmingCharacters(in: .whitespaces)
        if let n = Int(token), n >= 0, n < classes { return n }
        if let n = wnids[token], n < classes { return n }
        return nil
    }

    /// `dir/<label>/*.jpg`. Non-JPEG files are listed in `skipped` (the daemon path decodes JPEG).
    public static func folder(_ dir: String, wnids: [String: Int], classes: Int) throws -> (images: [LabelledImage], skipped: [String]) {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw EvalError.dataset("'\(dir)' is not a directory: give a folder with one sub-folder per class " +
                                    "(named by class id or WordNet id), or --csv FILE (build one with `make eval-photos`)")
        }
        var images: [LabelledImage] = [], skipped: [String] = []
        let subdirs = try fm.contentsOfDirectory(atPath: dir).sorted()
        for sub in subdirs where !sub.hasPrefix(".") {
            let path = dir + "/" + sub
            guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { continue }
            guard let label = parseLabel(sub, wnids: wnids, classes: classes) else {
                throw EvalError.dataset("folder '\(path)': '\(sub)' is neither a class id (0…\(classes - 1)) nor a known WordNet id")
            }
            for name in try fm.contentsOfDirectory(atPath: path).sorted() where !name.hasPrefix(".") {
                if isImage(name) { images.append(LabelledImage(path: path + "/" + name, label: label)) } else { skipped.append(path + "/" + name) }
            }
        }
        guard !images.isEmpty else {
            throw EvalError.dataset("no JPEG images in class folders under '\(dir)' (expected \(dir)/<class id or WordNet id>/*.jpg)")
        }
        return (images, skipped)
    }

    /// `path,label` per line; `#` comments and one header line (`path,label`) allowed; relative
    /// paths are relative to the CSV's folder. Quoted fields may contain commas.
    public static func csv(text: String, baseDir: String, wnids: [String: Int], classes: Int,
                           file: String = "CSV") throws -> [LabelledImage] {
        var out: [LabelledImage] = []
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = splitCSV(line)
            guard fields.count >= 2 else {
                throw EvalError.dataset("\(file):\(i + 1): expected 'path,label', got '\(line)'")
            }
            let path = fields[0], labelField = fields[1]
            guard let label = parseLabel(labelField, wnids: wnids, classes: classes) else {
                if out.isEmpty && i == firstDataLineIndex(text) { continue }  // a header line
                throw EvalError.dataset("\(file):\(i + 1): label '\(labelField)' is neither a class id (0…\(classes - 1)) nor a known WordNet id")
            }
            out.append(LabelledImage(path: path.hasPrefix("/") ? path : baseDir + "/" + path, label: label))
        }
        guard !out.isEmpty else { throw EvalError.dataset("\(file): no 'path,label' lines") }
        return out
    }

    public static func csv(path: String, wnids: [String: Int], classes: Int) throws -> [LabelledImage] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw EvalError.dataset("cannot read the CSV file '\(path)'")
        }
        let base = (path as NSString).deletingLastPathComponent
        return try csv(text: text, baseDir: base.isEmpty ? "." : base, wnids: wnids, classes: classes, file: path)
    }

    static func firstDataLineIndex(_ text: String) -> Int {
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = l.trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty && !t.hasPrefix("#") { return i }
        }
        return -1
    }

    /// Splits one CSV line: commas separate, double quotes group, `""` is a quote.
    public static func splitCSV(_ line: String) -> [String] {
        var fields: [String] = [], field = "", quoted = false
        var it = Array(line).makeIterator()
        var pending: Character? = nil
        while let c = pending ?? it.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    if let n = it.next() { if n == "\"" { field.append("\"") } else { quoted = false; pending = n } } else { quoted = false }
                } else { field.append(c) }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                fields.append(field.trimmingCharacters(in: .whitespaces)); field = ""
            } else { field.append(c) }
        }
        fields.append(field.trimmingCharacters(in: .whitespaces))
        return fields
    }
}

/// Plays the evaluation images into the pipeline one by one, decoding each JPEG into the pool
/// buffer exactly as the replay source does at load (`decodeExact`: BT.601 limited-range NV12).
/// Not live, so the pipeline waits for room and classifies every image. An image that fails to
/// decode is recorded and skipped.
/// Thread context: `FrameSource` (capture thread only, except `requestStop`).
final class EvalSource: FrameSource, @unchecked Sendable {
    let images: [LabelledImage]
    let fileNames: [String]
    let maxFrameSize: (width: Int, height: Int)
    private var next = 0
    private var decoder: JPEGDecoder
    private let stopRequested = Atomic<Bool>(false)
    /// Index → why it could not be decoded (read after the pipeline finished).
    let failures = Mutex<[Int: String]>([:])

    init(images: [LabelledImage]) throws {
        self.images = images
        fileNames = images.map(\.path)
        // The pool is sized once: find the largest image from the headers.
        let probe = JPEGDecoder(maxWidth: 16, maxHeight: 16)
        var w = 2, h = 2
        for image in images {
            guard let bytes = FileManager.default.contents(atPath: image.path) else {
                throw EvalError.dataset("cannot read image '\(image.path)'")
            }
            if let hd = try? bytes.withUnsafeBytes({ try probe.header($0) }) {
                w = max(w, hd.width & ~1)
                h = max(h, hd.height & ~1)
            }
        }
        maxFrameSize = (w, h)
        decoder = JPEGDecoder(maxWidth: w + 1, maxHeight: h + 1)
    }

    var name: String { "eval" }
    var isLive: Bool { false }
    /// Decoded images are written into these (the pipeline holds at most `reserveLeases` at once).
    private var pool: FramePool?
    func reserveLeases(_ count: Int) {
        pool = FramePool(count: count + 1, width: maxFrameSize.width, height: maxFrameSize.height)
    }
    func open() { next = 0 }
    func requestStop() { stopRequested.store(true, ordering: .relaxed) }
    func close() {}

    func nextFrame() throws -> FrameLease? {
        if pool == nil { reserveLeases(1) }
        while next < images.count {
            if stopRequested.load(ordering: .relaxed) { return nil }
            guard let pool, let lease = pool.acquire() else { return nil }  // sized so it never runs dry
            let buffer = pool.buffer(lease.slot)
            let index = next
            next += 1
            let start = Clock.monotonicNs()
            do {
                guard let bytes = FileManager.default.contents(atPath: images[index].path) else {
                    throw EvalError.dataset("cannot read")
                }
                let size: (width: Int, height: Int) = try bytes.withUnsafeBytes { raw in
                    let hd = try decoder.header(raw)
                    guard hd.width >= 2, hd.height >= 2 else { throw EvalError.dataset("image too small") }
                    let dst = buffer.cropped(width: hd.width & ~1, height: hd.height & ~1)
                    try decoder.decodeExact(raw, into: dst)
                    return (hd.width & ~1, hd.height & ~1)
                }
                var frame = pool.cropped(lease, width: size.width, height: size.height)
                frame.info.fileIndex = Int32(index)
                frame.info.captureNs = Clock.monotonicNs()
                frame.info.handOverNs = frame.info.captureNs - start
                return frame
            } catch {
                failures.withLock { $0[index] = "\(error)" }
                // A failed decode can leave the turbojpeg handle unusable (the next header reads 0x0).
                decoder = JPEGDecoder(maxWidth: maxFrameSize.width + 1, maxHeight: maxFrameSize.height + 1)
                continue
            }
        }
        return nil
    }
}

/// What the NV12 path (and optionally the float reference) made of one image.
public struct EvalImageResult: Sendable, Codable, Equatable {
    public var path: String
    public var label: Int
    public var top: [Int] = []
    public var scores: [Float] = []
    public var referenceTop: [Int]?
    public var error: String?

    public init(path: String, label: Int) {
        self.path = path
        self.label = label
    }

    public var correct1: Bool { top.first == label }
    public var correct5: Bool { top.prefix(5).contains(label) }
    public var referenceCorrect1: Bool? { referenceTop.map { $0.first == label } }
    public var referenceCorrect5: Bool? { referenceTop.map { $0.prefix(5).contains(label) } }
    /// Top-1 of the NV12 path equals top-1 of the float reference.
    public var agrees: Bool? {
        guard let r = referenceTop?.first, let t = top.first else { return nil }
        return r == t
    }
}

/// Accuracy and agreement over a set of results (images that failed count in neither).
public struct EvalMetrics: Sendable, Codable, Equatable {
    public var images: Int
    public var evaluated: Int
    public var failed: Int
    public var top1: Double
    public var top5: Double
    public var referenceEvaluated: Int
    public var referenceTop1: Double?
    public var referenceTop5: Double?
    /// Fraction of images where the NV12 path's top-1 equals the reference's, in [0, 1].
    public var agreement: Double?

    public init(_ results: [EvalImageResult]) {
        images = results.count
        let ok = results.filter { $0.error == nil && !$0.top.isEmpty }
        evaluated = ok.count
        failed = images - evaluated
        top1 = Self.fraction(ok.filter(\.correct1).count, ok.count)
        top5 = Self.fraction(ok.filter(\.correct5).count, ok.count)
        let withRef = ok.filter { $0.referenceTop?.isEmpty == false }
        referenceEvaluated = withRef.count
        if withRef.isEmpty {
            referenceTop1 = nil; referenceTop5 = nil; agreement = nil
        } else {
            referenceTop1 = Self.fraction(withRef.filter { $0.referenceCorrect1 == true }.count, withRef.count)
            referenceTop5 = Self.fraction(withRef.filter { $0.referenceCorrect5 == true }.count, withRef.count)
            agreement = Self.fraction(withRef.filter { $0.agrees == true }.count, withRef.count)
        }
    }

    public static func fraction(_ n: Int, _ d: Int) -> Double { d > 0 ? Double(n) / Double(d) : 0 }
}

/// `camclass eval`: runs the images through the daemon's pipeline (decode → NV12 pool buffer →
/// crop/scale into the engine's input → engine → softmax/top-k) and collects top-5 per image.
/// Thread context: blocking; call from a command-line main or a dedicated thread.
public struct EvalRunner {
    public struct Options: Sendable {
        public var topK = 5
        public init() {}
    }

    let config: DaemonConfig
    let options: Options
    let logger: Logger

    public init(config: DaemonConfig, options: Options = Options(), logger: Logger) {
        self.config = config
        self.options = options
        self.logger = logger
    }

    /// The model's class count (to validate labels before loading the engine).
    public static func classes(modelPath: String) throws -> (model: ModelDescriptor, labels: LabelSet) {
        try ModelDescriptor.loadWithLabels(path: modelPath)
    }

    /// - Parameter progress: called about ten times a second with (done, total) from this thread.
    /// - Returns: one result per image, in input order, and the engine's one-line summary.
    public func run(images: [LabelledImage], progress: (Int, Int) -> Void) throws -> (results: [EvalImageResult], engine: String, seconds: Double) {
        let (model, labels) = try Self.classes(modelPath: config.model.path)
        let engine = try makeEngine(config: config, model: model, labels: labels, logger: logger)
        let source = try EvalSource(images: images)
        let collected = Mutex<[EvalImageResult]>(images.map { EvalImageResult(path: $0.path, label: $0.label) })
        let done = Atomic<Int>(0)
        var options = config.pipeline
        options.model.topK = self.options.topK
        let pipeline = ClassificationPipeline(
            source: source, engine: engine, labels: labels, modelName: model.name, sinks: [], options: options,
            logger: logger, onResult: { r in
                let i = Int(r.fileIndex)
                let top = (0..<r.topCount).map { Int(r.topClasses[$0]) }
                let scores = (0..<r.topCount).map { r.topScores[$0] }
                collected.withLock { guard i >= 0 && i < $0.count else { return }; $0[i].top = top; $0[i].scores = scores }
                done.add(1, ordering: .relaxed)
            })
        let start = Clock.monotonicNs()
        try pipeline.start()
        while !pipeline.waitFinished(timeoutNs: 100_000_000) {
            progress(done.load(ordering: .relaxed) + source.failures.withLock { $0.count }, images.count)
        }
        pipeline.wait()
        let seconds = Double(Clock.monotonicNs() - start) / 1e9
        if let error = pipeline.error { throw error }
        var results = collected.withLock { $0 }
        for (i, why) in source.failures.withLock({ $0 }) { results[i].error = why }
        for i in results.indices where results[i].error == nil && results[i].top.isEmpty { results[i].error = "inference failed" }
        progress(images.count, images.count)
        return (results, engine.info.summary, seconds)
    }
}
