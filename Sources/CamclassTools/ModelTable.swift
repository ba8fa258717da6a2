import Client
import CamclassDaemon
import WireFormat
import Foundation
import Inference

/// One row of the seed-style table `camclass bench` prints: what a user picks a model by.
/// Every figure is measured on this machine except `expected*`, which come from the catalogue
/// (the seed documents' RDK X5 measurements).
public struct ModelTableRow: Sendable, Codable, Equatable {
    public var model: String
    public var family: String?
    public var sidecar: String
    public var input: String
    /// Parameters counted by the exporter (sidecar `params`), and the seed table's figure.
    public var paramsM: Double?
    public var seedParamsM: Double?
    /// Backend, device and the precision that actually runs.
    public var engine: String = ""
    public var precision: String = ""
    /// Single stream: one request in flight, latency hint (all cores on one frame).
    public var latencyP50Ms: Double = 0
    public var latencyP99Ms: Double = 0
    /// Throughput with 1…N requests in flight (throughput hint): index k-1 holds k in flight.
    public var fpsInFlight: [Double] = []
    /// Raw engine FPS and the daemon's end-to-end FPS on the same engine (medians of alternating rounds).
    public var rawFPS: Double = 0
    public var daemonFPS: Double = 0
    public var workers: Int = 0
    /// Mean milliseconds per frame of each daemon stage at camera rate: convert, scale, infer,
    /// postprocess, publish.
    public var stageMs: [String: Double] = [:]
    /// capture→publish minus inference at camera rate, p50.
    public var addedLatencyP50Ms: Double = 0
    /// capture→publish (the whole daemon path) at camera rate, p50.
    public var daemonLatencyP50Ms: Double = 0
    /// Catalogue figures for the board (nil when the catalogue does not know the model).
    public var expectedBoard: String?
    public var expectedLatencyMs: Double?
    public var expectedFPS4t: Double?
    /// Why the model could not be measured (the row then has no figures).
    public var error: String?

    public init(model: String, family: String?, sidecar: String, input: String, paramsM: Double?) {
        self.model = model
        self.family = family
        self.sidecar = sidecar
        self.input = input
        self.paramsM = paramsM
    }

    /// Daemon end-to-end FPS / raw engine FPS (the acceptance target is ≥ 0.97).
    public var ratio: Double { ModelTable.ratio(daemonFPS, rawFPS) }
    /// The best throughput over 1…N in flight, and at how many in flight it was reached.
    public var bestFPS: (fps: Double, inFlight: Int) { ModelTable.best(fpsInFlight) }
    /// Sum of the stage means: the per-frame work of the daemon path.
    public var stageSumMs: Double { ModelTable.stageOrder.compactMap { stageMs[$0] }.reduce(0, +) }
}

/// Table arithmetic and rendering (markdown for people, JSON for tools).
public enum ModelTable {
    public static let stageOrder = ["capture", "convert", "infer", "postprocess", "publish"]
    public static let ratioTarget = 0.97

    public static func ratio(_ numerator: Double, _ denominator: Double) -> Double {
        denominator > 0 && numerator.isFinite ? numerator / denominator : 0
    }

    public static func fps(count: Int, elapsedNs: UInt64) -> Double {
        elapsedNs > 0 ? Double(count) / (Double(elapsedNs) / 1e9) : 0
    }

    public static func best(_ curve: [Double]) -> (fps: Double, inFlight: Int) {
        var bestFPS = 0.0, at = 0
        for (i, f) in curve.enumerated() where f > bestFPS { bestFPS = f; at = i + 1 }
        return (bestFPS, at)
    }

    /// Parameters in millions from a sidecar count.
    public static func millions(_ params: Int?) -> Double? { params.map { Double($0) / 1e6 } }

    /// Relative deviation of our parameter count from the seed's, e.g. 0.06 for +6 %.
    public static func paramsDeviation(_ ours: Double?, seed: Double?) -> Double? {
        guard let ours, let seed, seed > 0 else { return nil }
        return ours / seed - 1
    }

    static func f(_ v: Double?, _ decimals: Int) -> String {
        guard let v, v.isFinite else { return "-" }
        return String(format: "%.\(decimals)f", v)
    }

    /// Two significant figures for small values, fewer decimals for large ones (FPS, ms).
    static func g(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "-" }
        if v >= 100 { return String(format: "%.0f", v) }
        if v >= 10 { return String(format: "%.1f", v) }
        if v >= 0.1 { return String(format: "%.2f", v) }
        return String(format: "%.3f", v)
    }

    public static let markdownHeader =
        "| model | params M (seed) | latency p50 / p99 ms | FPS with 1…N in flight | raw engine FPS | daemon FPS | daemon / raw " +
        "| capture / convert / infer / post / publish ms | expected on RDK X5 (1-thread ms, 4-thread FPS) |"

    public static func markdownRow(_ r: ModelTableRow) -> String {
        if let error = r.error {
            return "| \(r.model) | \(f(r.paramsM, 2)) | failed: \(error.replacingOccurrences(of: "|", with: "/")) | | | | | | |"
        }
        let params = f(r.paramsM, 2) + (r.seedParamsM.map { " (\(f($0, 2)))" } ?? "")
        let curve = r.fpsInFlight.map { g($0) }.joined(separator: " / ")
        let stages = stageOrder.map { g(r.stageMs[$0]) }.joined(separator: " / ")
        let mark = r.ratio >= ratioTarget ? "" : " ⚠"
        var expected = "-"
        if r.expectedLatencyMs != nil || r.expectedFPS4t != nil {
            expected = "\(f(r.expectedLatencyMs, 2)) ms, \(f(r.expectedFPS4t, 1)) FPS"
        }
        return "| \(r.model) | \(params) | \(g(r.latencyP50Ms)) / \(g(r.latencyP99Ms)) | \(curve) | \(g(r.rawFPS)) " +
            "| \(g(r.daemonFPS)) | \(f(r.ratio, 3))\(mark) | \(stages) | \(expected) |"
    }

    public static func markdown(_ rows: [ModelTableRow], title: String? = nil, notes: [String] = []) -> String {
        var out: [String] = []
        if let title { out.append(title); out.append("") }
        out.append(markdownHeader)
        out.append("|" + String(repeating: "---|", count: 9))
        out += rows.map(markdownRow)
        if !notes.isEmpty { out.append(""); out += notes.map { "- " + $0 } }
        return out.joined(separator: "\n") + "\n"
    }

    /// The whole table as one JSON document (rows plus how they were measured).
    public static func json(_ rows: [ModelTableRow], meta: [String: String]) throws -> Data {
        struct Document: Encodable {
            var meta: [String: String]
            var rows: [RowJSON]
        }
        struct RowJSON: Encodable {
            var row: ModelTableRow
            func encode(to encoder: Encoder) throws {
                try row.encode(to: encoder)
                var c = encoder.container(keyedBy: Extra.self)
                try c.encode(row.ratio, forKey: .ratio)
                try c.encode(row.bestFPS.fps, forKey: .bestFPS)
                try c.encode(row.bestFPS.inFlight, forKey: .bestInFlight)
            }
            enum Extra: String, CodingKey { case ratio, bestFPS, bestInFlight }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(Document(meta: meta, rows: rows.map(RowJSON.init)))
    }

    /// Fills the catalogue columns of `row` from the entry matching the model (by timm or file name).
    public static func applyCatalogue(_ catalogue: ModelCatalogue?, to row: inout ModelTableRow) {
        guard let catalogue, let e = catalogue.entry(matching: row.model) ?? catalogue.entry(matching: row.sidecar) else { return }
        row.seedParamsM = e.paramsM
        row.expectedBoard = catalogue.board
        row.expectedLatencyMs = e.latencyMs
        row.expectedFPS4t = e.fps4t
    }

    /// The sidecars (`*.model.yaml`) in `directory`, in catalogue order first (the seed table's
    /// order), then by name.
    public static func sidecars(in directory: String, catalogue: ModelCatalogue?) throws -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw BenchError.noModels("cannot list the models directory '\(directory)': \(error.localizedDescription)")
        }
        let sidecars = names.filter { $0.hasSuffix(".model.yaml") }.sorted()
        guard !sidecars.isEmpty else {
            throw BenchError.noModels("no *.model.yaml in '\(directory)': run `make models` for the default model, and " +
                                      "`tools/export_timm.py --all --out \(directory)` (needs torch + timm) for the 15 seed models")
        }
        func rank(_ name: String) -> Int {
            guard let catalogue, let e = catalogue.entry(matching: name) else { return Int.max }
            return catalogue.entries.firstIndex(of: e) ?? Int.max
        }
        return sidecars.enumerated().sorted { a, b in
            let ra = rank(a.element), rb = rank(b.element)
            return ra != rb ? ra < rb : a.offset < b.offset
        }.map { directory + "/" + $0.element }
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case noModels(String)
    case badOption(String)

    public var description: String {
        switch self {
        case .noModels(let s), .badOption(let s): return s
        }
    }
}
