import Client
import CamclassDaemon
import WireFormat
import Foundation
import Glibc
import Inference

/// What `camclass bench --backend bpu` prints beside the measured figures:
/// - the theoretical maximum FPS when the library is the stand-in libdnn.so (Tests/StandIns): its
///   model file is text (`key = value`), and `cores * 1e6 / latency_us` is the most its simulated
///   BPU can do. The keys are read from that file with the STANDIN_DNN_LATENCY_US/_CORES environment
///   overrides applied, exactly as the stand-in itself applies them at load. A real `.bin` has no
///   such figure (the line says so);
/// - the stand-in's own counters (peak tasks in flight, errors), through its `standin_dnn_stats`
///   export: the library is opened here before the run, so the counters span every engine the
///   bench builds;
/// - "expected on RDK X5" from the model catalogue (matched by sidecar/file name or the stand-in
///   model's `name`).
/// Thread context: create, use and drop on the bench's thread.
public final class BPUBenchReport: @unchecked Sendable {
    public let theoreticalFPS: Double?
    /// Where the theoretical figure comes from, or why there is none.
    public let theoreticalText: String
    public let expected: CatalogueEntry?
    public let board: String
    private let standIn: UnsafeMutableRawPointer?
    private let statsFn: (@convention(c) (UnsafeMutablePointer<CChar>?, Int) -> Int32)?

    /// Reads the model file and opens the library (if it is the stand-in); resets its counters.
    public init(config: DaemonConfig, catalogue: ModelCatalogue?) {
        let network = (try? ModelDescriptor.load(path: config.model.path))?.modelPath ?? config.model.path
        let keys = Self.standInKeys(file: network)
        if let keys {
            let latency = Double(keys["latency_us"] ?? "0") ?? 0
            let cores = Double(keys["cores"] ?? "1") ?? 1
            if latency > 0 {
                theoreticalFPS = cores * 1e6 / latency
                theoreticalText = String(format: "%.1f FPS = cores %.0f x 1e6 / latency_us %.0f (stand-in model %@)",
                                         cores * 1e6 / latency, cores, latency, network)
            } else {
                theoreticalFPS = nil
                theoreticalText = "unbounded (stand-in model \(network) has latency_us = 0)"
            }
        } else {
            theoreticalFPS = nil
            theoreticalText = "n/a (a real BPU model: see the RDK X5 figures)"
        }
        board = catalogue?.board ?? "RDK X5"
        let candidates = [config.model.path, network] + (keys?["name"].map { [$0] } ?? [])
        expected = candidates.lazy.compactMap { catalogue?.entry(matching: $0) }.first

        // Only the stand-in exports standin_dnn_stats; anything else is closed again at once.
        var handle = dlopen(config.inference.bpuLibrary, RTLD_NOW | RTLD_LOCAL)
        var fn: (@convention(c) (UnsafeMutablePointer<CChar>?, Int) -> Int32)?
        if let h = handle, let s = dlsym(h, "standin_dnn_stats") {
            fn = unsafeBitCast(s, to: (@convention(c) (UnsafeMutablePointer<CChar>?, Int) -> Int32).self)
            if let r = dlsym(h, "standin_dnn_reset_stats") { unsafeBitCast(r, to: (@convention(c) () -> Void).self)() }
        } else if let h = handle {
            dlclose(h)
            handle = nil
        }
        standIn = handle
        statsFn = fn
    }

    deinit { if let standIn { dlclose(standIn) } }

    /// The stand-in model file's keys (`key = value` lines, `#` comments) with the stand-in's
    /// environment overrides; nil when the file is not such a text file (a real `.bin`).
    static func standInKeys(file: String) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: file), data.count < 1 << 20, !data.contains(0),
              let text = String(data: data, encoding: .utf8) else { return nil }
        var keys: [String: String] = [:]
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else { return nil }
            keys[trimmed[..<eq].trimmingCharacters(in: .whitespaces)] = trimmed[trimmed.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        for (name, value) in ProcessInfo.processInfo.environment where name.hasPrefix("STANDIN_DNN_") {
            keys[name.dropFirst("STANDIN_DNN_".count).lowercased()] = value
        }
        return keys
    }

    /// The stand-in's counters now (nil with a real libdnn).
    public func standInStats() -> [String: Int]? {
        guard let statsFn else { return nil }
        var buf = [CChar](repeating: 0, count: 8192)
        guard statsFn(&buf, buf.count) > 0 else { return nil }
        let json = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let obj = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
        return obj?.compactMapValues { $0 as? Int }
    }

    /// Human-readable lines: theoretical maximum and how close the measurements came, the stand-in's
    /// counters, and (unless the caller prints it already) the catalogue's figures.
    public func lines(result r: PipelineBenchmark.Result, includeExpected: Bool = true) -> [String] {
        var out = ["theoretical max FPS: \(theoreticalText)"]
        if let t = theoreticalFPS {
            out.append(String(format: "daemon pipeline %.1f FPS = %.1f%% of theoretical, raw engine %.1f FPS = %.1f%% (%d in flight; target >= 97%%)",
                              r.pipelineMedian, 100 * r.pipelineMedian / t, r.rawMedian, 100 * r.rawMedian / t, r.workers))
        }
        if let s = standInStats() {
            out.append("stand-in counters: max_in_flight \(s["max_in_flight"] ?? -1), max_active \(s["max_active"] ?? -1), " +
                       "tasks \(s["tasks_created"] ?? -1), infer errors \(s["infer_errors"] ?? -1), " +
                       "unflushed inputs \(s["unflushed_inputs"] ?? -1), uninvalidated outputs \(s["uninvalidated_outputs"] ?? -1)")
        }
        if includeExpected {
            out.append(expected.map { $0.expectedText(board: board) } ?? "expected on \(board): not in the model catalogue")
        }
        return out
    }

    /// One JSON object (one line): `fps` (the daemon pipeline's median), `theoretical_fps`, `ratio`
    /// (fps / theoretical_fps, null without a theoretical figure), the raw engine figures, the
    /// stand-in's peak in flight, the catalogue's RDK X5 figures, and the per-stage split.
    public func summaryJSON(result r: PipelineBenchmark.Result, fpsInFlight: [Double] = []) throws -> String {
        let t: Any = theoreticalFPS ?? NSNull()
        var obj: [String: Any] = [
            "backend": "bpu", "fps": r.pipelineMedian, "theoretical_fps": t,
            "ratio": theoreticalFPS.map { r.pipelineMedian / $0 } ?? NSNull(),
            "raw_fps": r.rawMedian, "raw_ratio": theoreticalFPS.map { r.rawMedian / $0 } ?? NSNull(),
            "pipeline_raw_ratio": r.ratio, "workers": r.workers, "stage_ms": r.stageMs,
            "fps_runs": r.pipelineFPS, "raw_fps_runs": r.rawFPS,
            "expected_rdk_x5_fps_4t": expected?.fps4t ?? NSNull(), "expected_rdk_x5_latency_ms": expected?.latencyMs ?? NSNull(),
            "expected_model": expected?.name ?? NSNull(),
        ]
        if !fpsInFlight.isEmpty { obj["fps_in_flight"] = fpsInFlight }
        if let s = standInStats() {
            obj["standin_max_in_flight"] = s["max_in_flight"] ?? -1
            obj["standin_max_active"] = s["max_active"] ?? -1
        }
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
