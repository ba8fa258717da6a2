import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The seed-style row for a model (or --all: the table): latency, FPS with 1…N in flight, raw engine vs daemon FPS, per-stage split.")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineFlags
    @Flag(name: .long, help: "Every *.model.yaml in --models-dir: the whole table.")
    var all = false
    @Option(name: .long, help: "Where --all looks for sidecars.")
    var modelsDir = "models"
    @Option(name: .long, help: "Largest number in flight for the throughput curve.")
    var inFlight = 4
    @Option(name: .long, help: "Alternating rounds (raw, pipeline).")
    var rounds = 3
    @Option(name: .long, help: "Seconds per raw/pipeline measurement.")
    var seconds = 3.0
    @Option(name: .long, help: "Seconds of the single-stream latency run.")
    var latencySeconds = 2.0
    @Option(name: .long, help: "Seconds per point of the 1…N in-flight curve.")
    var curveSeconds = 1.5
    @Option(name: .long, help: "Photos or *_WxH.nv12 frames to replay (scaled to 640x480); default ./samples.")
    var samples = "samples"
    @Option(name: .long, help: "Replay rate of the latency measurement (a camera's rate).")
    var latencyFps = 30.0
    @Option(name: .long, help: "Model catalogue for the RDK X5 figures (default: config/models.yaml or the installed one).")
    var catalogue: String?
    @Option(name: .long, help: "Write the rows as JSON to FILE ('-' = stdout, last).")
    var json: String?
    @Option(name: .long, help: "Write the table as markdown to FILE.")
    var markdown: String?
    @Option(name: .long, help: ArgumentHelp(
        "Several sources on one engine instead of the model row: aggregate FPS and per-source share with each listed number of unpaced replays of the samples (e.g. 1,2,4), in alternating rounds.",
        valueName: "N,N,..."))
    var sources: String?

    func run() throws {
        let config = try engine.config(model: modelOption.model)
        if let sources {
            guard !all else { throw ValidationError("--sources measures one model: drop --all (or --sources)") }
            let counts: [Int]
            do { counts = try SourcesBenchmark.parseCounts(sources) } catch { throw ValidationError(error.description) }
            return try runSources(config: config, counts: counts)
        }
        let model = modelOption.model
        var options = ModelBenchmark.Options()
        options.maxInFlight = inFlight
        options.latencySeconds = latencySeconds
        options.curveSeconds = curveSeconds
        options.pipeline.rounds = rounds
        options.pipeline.secondsPerRun = seconds
        options.pipeline.samplesDir = samples
        options.pipeline.latencyFPS = latencyFps
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        // The catalogue only adds the board's figures: without one the table is still complete.
        let cat: ModelCatalogue?
        do { cat = try ModelCatalogue.load(path: catalogue) } catch {
            if catalogue != nil { throw ValidationError("\(error)") }
            Console.err("camclass bench: no model catalogue (\(error)); the RDK X5 column stays empty\n")
            cat = nil
        }
        // BPU: theoretical maximum (stand-in), its counters, RDK X5 figures; opened before any engine.
        let bpuReport = config.inference.backend == .bpu && !all ? BPUBenchReport(config: config, catalogue: cat) : nil
        var bpuSummary: String?
        let bench = ModelBenchmark(config: config, options: options, logger: logger)
        let rows: [ModelTableRow]
        if all {
            let sidecars: [String]
            do { sidecars = try ModelTable.sidecars(in: modelsDir, catalogue: cat) } catch {
                Console.err("camclass bench: \(error)\n")
                throw ExitCode(ExitStatus.noInput)
            }
            var done: [ModelTableRow] = []
            for (i, path) in sidecars.enumerated() {
                Console.out("[\(i + 1)/\(sidecars.count)] \(path)\n")
                let row = bench.row(sidecar: path, catalogue: cat) { Console.out("  " + $0 + "\n") }
                if let e = row.error { Console.out("  failed: \(e)\n") }
                done.append(row)
            }
            rows = done
        } else {
            let (row, r) = try bench.measure(sidecar: model, catalogue: cat) { Console.out($0 + "\n") }
            rows = [row]
            Console.out("engine: \(r.engine)\n")
            Console.out(String(format: "raw engine FPS (median of %d): %.1f   [%@]\n", r.rawFPS.count, r.rawMedian,
                               r.rawFPS.map { String(format: "%.1f", $0) }.joined(separator: ", ")))
            Console.out(String(format: "daemon pipeline FPS (median of %d): %.1f   [%@]\n", r.pipelineFPS.count, r.pipelineMedian,
                               r.pipelineFPS.map { String(format: "%.1f", $0) }.joined(separator: ", ")))
            Console.out(String(format: "ratio pipeline/raw: %.3f, paired (median of the rounds' ratios) %.3f (target >= 0.97)\n",
                               r.ratio, r.pairedRatio))
            Console.out(String(format: "added latency at %.0f FPS (capture→publish minus inference): p50 %.3f ms, p99 %.3f ms (target <= 1 / 3 ms)\n",
                               latencyFps, r.addedP50, r.addedP99))
            Console.out(String(format: "added latency when saturated (includes queueing): p50 %.3f ms\n", r.saturatedP50))
            Console.out(String(format: "per-frame medians: preprocess %.3f ms, inference %.3f ms, total %.3f ms\n",
                               r.stageMs["preprocess"] ?? 0, r.stageMs["inference"] ?? 0, r.stageMs["total"] ?? 0))
            Console.out("per-stage means at camera rate: " + ModelTable.stageOrder.map {
                String(format: "%@ %.3f ms", $0, r.stageMs[$0] ?? .nan) }.joined(separator: ", ") + "\n")
            if let e = cat?.entry(matching: row.model), let cat { Console.out(e.expectedText(board: cat.board) + "\n") }
            if let bpuReport {
                let known = cat?.entry(matching: row.model) != nil
                for line in bpuReport.lines(result: r, includeExpected: !known) { Console.out(line + "\n") }
                bpuSummary = try bpuReport.summaryJSON(result: r, fpsInFlight: row.fpsInFlight)
            }
        }
        let notes = [
            "measured on this machine (\(ProcessInfo.processInfo.activeProcessorCount) cores); \(rows.first { $0.error == nil }?.engine ?? "")",
            "latency: one request in flight, latency hint; FPS 1…N: N requests in flight, throughput hint",
            "raw engine vs daemon: same engine and requests in flight, \(rounds) alternating rounds of \(seconds) s, medians; " +
                "stage split: mean per frame at \(Int(latencyFps)) FPS replay of 640x480 NV12",
            "RDK X5 column: the seed documents' figures (catalogue), not measured here",
        ]
        let table = ModelTable.markdown(rows, notes: notes)
        Console.out("\n" + table)
        if let markdown {
            do { try table.write(toFile: markdown, atomically: true, encoding: .utf8) } catch {
                throw ValidationError("cannot write --markdown \(markdown): \(error.localizedDescription)")
            }
        }
        if let json {
            let meta = ["cores": "\(ProcessInfo.processInfo.activeProcessorCount)", "engine": rows.first { $0.error == nil }?.engine ?? "",
                        "rounds": "\(rounds)", "seconds": "\(seconds)", "latency_fps": "\(latencyFps)",
                        "catalogue": cat?.file ?? ""]
            let data = try ModelTable.json(rows, meta: meta)
            if json == "-" {
                Console.out(String(decoding: data, as: UTF8.self) + "\n")
            } else {
                do { try data.write(to: URL(fileURLWithPath: json)) } catch {
                    throw ValidationError("cannot write --json \(json): \(error.localizedDescription)")
                }
            }
        }
        // BPU: the last line is one JSON object (fps, theoretical_fps, ratio, …) for make bench-bpu.
        if let bpuSummary { Console.out(bpuSummary + "\n") }
        if rows.contains(where: { $0.error != nil }) { throw ExitCode(ExitStatus.failure) }
    }
}

extension Bench {
    /// `--sources N,N,...`: N replays on one engine per count, alternating rounds; the table, the
    /// targets and (BPU stand-in) the theoretical maximum.
    func runSources(config: DaemonConfig, counts: [Int]) throws {
        var options = SourcesBenchmark.Options()
        options.counts = counts
        options.rounds = rounds
        options.secondsPerRun = seconds
        options.samplesDir = samples
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        let bpuReport = config.inference.backend == .bpu ? BPUBenchReport(config: config, catalogue: nil) : nil
        let r: SourcesBenchResult
        do {
            r = try SourcesBenchmark(config: config, options: options, logger: logger).run { Console.out($0 + "\n") }
        } catch {
            Console.err("camclass bench --sources: \(error)\n")
            throw ExitCode(ExitStatus.failure)
        }
        let base = r.baseline?.sources ?? 1
        Console.out("engine: \(r.engine)\n")
        for row in r.rows {
            Console.out(String(format: "%d source%@: aggregate %.1f FPS (median of %d), ratio to %d source%@ %.3f (paired %.3f; target >= %.2f), " +
                               "per-source share min/max %.3f (worst round %.3f; target >= %.2f), dropped %d\n",
                               row.sources, row.sources == 1 ? "" : "s", row.fpsMedian, row.fps.count, base, base == 1 ? "" : "s",
                               r.ratio(row), r.pairedRatio(row), SourcesBenchResult.fpsTarget, row.shareMedian, row.shareWorst,
                               SourcesBenchResult.shareTarget, row.dropped))
        }
        if let bpuReport {
            Console.out("theoretical max FPS: \(bpuReport.theoreticalText)\n")
            if let t = bpuReport.theoreticalFPS {
                for row in r.rows {
                    Console.out(String(format: "%d source%@: %.1f%% of theoretical\n", row.sources, row.sources == 1 ? "" : "s",
                                       100 * row.fpsMedian / t))
                }
            }
        }
        let table = r.markdown() + "\n" + [
            "measured on this machine (\(ProcessInfo.processInfo.activeProcessorCount) cores); \(r.engine)",
            "N unpaced 640x480 NV12 replays of the samples on one engine (equal weights); \(rounds) alternating rounds of \(seconds) s, medians",
            "ratio: aggregate FPS over \(base) source\(base == 1 ? "" : "s")'s (target >= \(SourcesBenchResult.fpsTarget)); " +
                "paired: median of the same ratio within each round",
            "share: fewest over most records published per source in the window (target >= \(SourcesBenchResult.shareTarget)); " +
                "worst round: its lowest round",
        ].map { "- " + $0 }.joined(separator: "\n") + "\n"
        Console.out("\n" + table)
        if let markdown {
            do { try table.write(toFile: markdown, atomically: true, encoding: .utf8) } catch {
                throw ValidationError("cannot write --markdown \(markdown): \(error.localizedDescription)")
            }
        }
        if let json {
            let meta = ["cores": "\(ProcessInfo.processInfo.activeProcessorCount)", "rounds": "\(rounds)", "seconds": "\(seconds)",
                        "model": modelOption.model]
            let data = try r.json(meta: meta)
            if json == "-" {
                Console.out(String(decoding: data, as: UTF8.self) + "\n")
            } else {
                do { try data.write(to: URL(fileURLWithPath: json)) } catch {
                    throw ValidationError("cannot write --json \(json): \(error.localizedDescription)")
                }
            }
        }
    }
}
