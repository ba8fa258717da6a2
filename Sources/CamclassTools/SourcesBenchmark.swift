import CamclassDaemon
import Capture
import Client
import Foundation
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import Support

/// `camclass bench --sources 1,2,4`: several sources on one engine. For each count N, N unpaced
/// in-memory replays of the sample frames feed one pipeline (one engine, its slots shared by the
/// fair scheduler), so the engine is saturated whatever N is. The counts are measured in
/// alternating rounds of one run (forward, then reversed), so a drift in machine load hits every
/// N alike. Figures: aggregate FPS, its ratio to the smallest N's (target >= 0.95), and the
/// per-source share: min/max of the frames each source had published in the window (target >= 0.9
/// with equal weights).
/// Thread context: blocking; call from a command-line main or a dedicated thread.
public struct SourcesBenchmark: SetUpBenchmark {
    public struct Options: Sendable {
        public var counts = [1, 2, 4]
        public var rounds = 3
        public var secondsPerRun = 3.0
        public var samplesDir: String?
        public init() {}
    }

    let setup: BenchmarkSetup
    let options: Options

    public init(config: DaemonConfig, options: Options, logger: Logger) {
        (setup, self.options) = (BenchmarkSetup(config: config, logger: logger), options)
    }

    /// Builds the engine from the configuration and measures every count `rounds` times.
    /// - Throws: what loading the model or building the engine throws, or a source's `open`.
    public func run(progress: (String) -> Void) throws -> SourcesBenchResult {
        let (model, labels, engine) = try setup.engine()
        var frameOptions = PipelineBenchmark.Options()
        frameOptions.samplesDir = options.samplesDir
        let frames = try PipelineBenchmark(config: config, options: frameOptions, logger: logger).benchFrames()
        var rows = options.counts.map { SourcesBenchRow(sources: $0) }
        for round in 1...max(1, options.rounds) {
            // Alternate the order so a drift in machine load does not favour one count.
            let order = round % 2 == 1 ? Array(rows.indices) : Array(rows.indices.reversed())
            for i in order {
                let r = try measure(sources: rows[i].sources, engine: engine, model: model, labels: labels, frames: frames)
                rows[i].fps.append(r.fps)
                rows[i].published.append(r.published)
                rows[i].dropped += r.dropped
                progress(String(format: "round %d: %d source%@: %.1f FPS, per source %@ frames (min/max %.3f)", round,
                                rows[i].sources, rows[i].sources == 1 ? "" : "s", r.fps,
                                r.published.map(String.init).joined(separator: "/"), SourcesBenchRow.share(r.published)))
            }
        }
        return SourcesBenchResult(engine: engine.info.summary, workers: engine.slots.count, rows: rows)
    }

    /// One pipeline with `sources` unpaced replays (the same frames each, equal weights): warm-up,
    /// then each source's published records over the window.
    func measure(sources: Int, engine: any InferenceEngine, model: ModelDescriptor, labels: LabelSet,
                 frames: [NV12Buffer]) throws -> (fps: Double, published: [Int], dropped: Int) {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let socket = UnixSocketPublisher(options: SocketOptions(path: dir + "/bench.sock"), logger: quiet)
        let log = RollingLog(options: RollingLogOptions(path: dir + "/bench.log"), logger: quiet)
        var options = PipelineOptions()
        options.queueCapacity = config.pipeline.queueCapacity
        let pipeline = ClassificationPipeline(engine: engine, labels: labels, modelName: model.name,
                                              sinks: [socket, log], options: options, logger: quiet)
        let fileNames = frames.indices.map { "frame\($0).nv12" }
        for i in 0..<sources {
            // Unpaced (fps 0): a file job, so the scheduler applies backpressure instead of dropping.
            let replay = ReplaySource(name: "bench\(i)", images: frames, fileNames: fileNames, fps: 0, loop: true)
            try pipeline.addSource(replay, spec: LaneSpec(name: "bench\(i)"))
        }
        try log.start()
        try socket.start()
        let reader = SubscriberConnection.drainInBackground(path: dir + "/bench.sock")
        try pipeline.start()
        Clock.sleep(untilMonotonicNs: Clock.monotonicNs() + 300_000_000)  // warm-up: steady state only
        let lanes = pipeline.lanes
        let before = lanes.map { pipeline.counters(of: $0).published }
        let start = Clock.monotonicNs()
        Clock.sleep(untilMonotonicNs: start + UInt64(self.options.secondsPerRun * 1e9))
        let after = lanes.map { pipeline.counters(of: $0).published }
        let elapsed = Double(Clock.monotonicNs() - start) / 1e9
        pipeline.stop()
        pipeline.wait()
        socket.stop()
        log.stop()
        reader.stop()
        let published = zip(after, before).map { $0 - $1 }
        return (Double(published.reduce(0, +)) / elapsed, published, pipeline.counters.droppedTotal)
    }

    /// "1,2,4" → [1, 2, 4]: each a whole number of sources in 1...`maxSources`, no repeats.
    /// - Throws: `SourcesBenchError` naming the offending item.
    public static func parseCounts(_ text: String, maxSources: Int = 32) throws(SourcesBenchError) -> [Int] {
        var counts: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let s = item.trimmingCharacters(in: .whitespaces)
            guard let n = Int(s), (1...maxSources).contains(n) else { throw .badCount(s, max: maxSources) }
            guard !counts.contains(n) else { throw .repeated(n) }
            counts.append(n)
        }
        return counts
    }
}

public enum SourcesBenchError: Error, CustomStringConvertible, Equatable {
    case badCount(String, max: Int)
    case repeated(Int)

    public var description: String {
        switch self {
        case .badCount(let s, let max): return "--sources: '\(s)' is not a number of sources in 1...\(max) (e.g. --sources 1,2,4)"
        case .repeated(let n): return "--sources: \(n) is listed twice (e.g. --sources 1,2,4)"
        }
    }
}

/// One source count's measurements, one entry per round.
public struct SourcesBenchRow: Sendable, Equatable {
    public var sources: Int
    /// Aggregate published records per second over every source.
    public var fps: [Double] = []
    /// Records each source published in the window (one array of `sources` counts per round).
    public var published: [[Int]] = []
    /// Frames dropped for any cause (0 expected: unpaced replays get backpressure, not drops).
    public var dropped = 0

    public init(sources: Int, fps: [Double] = [], published: [[Int]] = [], dropped: Int = 0) {
        (self.sources, self.fps, self.published, self.dropped) = (sources, fps, published, dropped)
    }

    public var fpsMedian: Double { median(fps) }
    /// min/max of the per-source counts in each round.
    public var shares: [Double] { published.map(Self.share) }
    public var shareMedian: Double { median(shares) }
    /// The least fair round.
    public var shareWorst: Double { shares.min() ?? 0 }

    /// The fewest records any source published over the most any did: 1 = perfectly even (and
    /// for a single source); 0 when a source published nothing or there is no count.
    public static func share(_ counts: [Int]) -> Double {
        guard let lo = counts.min(), let hi = counts.max(), hi > 0 else { return 0 }
        return Double(lo) / Double(hi)
    }
}

/// Every count's row and the figures derived from them.
public struct SourcesBenchResult: Sendable {
    public var engine: String
    public var workers: Int
    public var rows: [SourcesBenchRow]

    public init(engine: String, workers: Int, rows: [SourcesBenchRow]) {
        (self.engine, self.workers, self.rows) = (engine, workers, rows)
    }

    public static let fpsTarget = 0.95
    public static let shareTarget = 0.9

    /// The reference the ratios are taken against: the smallest count (one source when measured).
    public var baseline: SourcesBenchRow? { rows.min { $0.sources < $1.sources } }

    /// Median aggregate FPS of `row` over the baseline's (1 for the baseline itself; 0 without one).
    public func ratio(_ row: SourcesBenchRow) -> Double {
        guard let b = baseline?.fpsMedian, b > 0 else { return 0 }
        return row.fpsMedian / b
    }

    /// Median over rounds of `row`'s FPS over the baseline's in the same round: robust to slow
    /// drifts in machine load.
    public func pairedRatio(_ row: SourcesBenchRow) -> Double {
        guard let b = baseline else { return 0 }
        return median(zip(row.fps, b.fps).map { $0.1 > 0 ? $0.0 / $0.1 : 0 })
    }

    public static let markdownHeader = "| sources | aggregate FPS | ratio | paired ratio | min/max share | worst round | FPS per source |"

    /// The table: one line per count, in the order measured.
    public func markdown() -> String {
        var lines = [Self.markdownHeader, "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows {
            lines.append(String(format: "| %d | %.1f | %.3f | %.3f | %.3f | %.3f | %.1f |", r.sources, r.fpsMedian, ratio(r),
                                pairedRatio(r), r.shareMedian, r.shareWorst, r.fpsMedian / Double(max(1, r.sources))))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Whether every row meets the targets (ratio >= 0.95 on medians, median share >= 0.9).
    public var meetsTargets: Bool {
        rows.allSatisfy { ratio($0) >= Self.fpsTarget && $0.shareMedian >= Self.shareTarget }
    }

    /// Rows and derived figures as JSON, `meta` added as given.
    public func json(meta: [String: String]) throws -> Data {
        struct RowJSON: Encodable {
            var sources: Int, fps: [Double], fpsMedian: Double, ratio: Double, pairedRatio: Double
            var published: [[Int]], shareMedian: Double, shareWorst: Double, dropped: Int
        }
        struct Document: Encodable {
            var meta: [String: String]
            var engine: String
            var workers: Int
            var fpsTarget: Double
            var shareTarget: Double
            var rows: [RowJSON]
        }
        let doc = Document(meta: meta, engine: engine, workers: workers, fpsTarget: Self.fpsTarget, shareTarget: Self.shareTarget,
                           rows: rows.map {
                               RowJSON(sources: $0.sources, fps: $0.fps, fpsMedian: $0.fpsMedian, ratio: ratio($0),
                                       pairedRatio: pairedRatio($0), published: $0.published, shareMedian: $0.shareMedian,
                                       shareWorst: $0.shareWorst, dropped: $0.dropped)
                           })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(doc)
    }
}
