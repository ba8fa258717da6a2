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
        subcommands: [Subscribe.self, Bench.self, Models.self])
}

struct Subscribe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print classifications as they are published.")

    @Option(name: .long, help: "The daemon's socket.")
    var socket = "/run/camclassd/camclassd.sock"
    @Flag(name: .long, help: "Raw JSON Lines instead of human-readable lines.")
    var json = false
    @Option(name: .long, help: "Exit after N classification records.")
    var count: Int?

    func run() throws {
        let connection: SubscriberConnection
        do { connection = try SubscriberConnection(path: socket) } catch {
            Console.err("camclass: cannot connect to camclassd at \(socket): \(error) (is the daemon running? see --socket)\n")
            throw ExitCode(69)
        }
        var seen = 0
        while let line = try connection.readLine() {
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
            if let file = obj["file"] as? String { s += " [\(file)]" }
            if let d = obj["dropped"] as? Int, d > 0 { s += " (dropped \(d))" }
            return s
        case "dropped":
            return "-- this subscriber missed \(obj["count"] ?? "?") records (too slow)"
        default:
            return jsonLine
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Raw engine FPS vs the daemon's end-to-end FPS on 640x480 NV12 replay, in one run.")

    @Option(name: .long, help: "Model sidecar or network file.")
    var model = "models/efficientnet_lite0.model.yaml"
    @Option(name: .long, help: "Backend: openvino or bpu.")
    var backend = "openvino"
    @Option(name: .long, help: "Inference requests in flight (0 = engine optimum).")
    var workers = 0
    @Option(name: .long, help: "Precision: auto, bf16, f16, f32.")
    var precision = "auto"
    @Option(name: .long, help: "Alternating rounds (raw, pipeline).")
    var rounds = 3
    @Option(name: .long, help: "Seconds per measurement.")
    var seconds = 3.0
    @Option(name: .long, help: "Photos to replay (scaled to 640x480); default ./samples.")
    var samples = "samples"
    @Option(name: .long, help: "Replay rate of the latency measurement (a camera's rate).")
    var latencyFps = 30.0
    @Flag(name: .long, help: "End with one JSON object on the last line.")
    var json = false

    func run() throws {
        var config = DaemonConfig()
        config.modelPath = model
        config.backend = backend
        config.workers = workers
        config.precision = precision
        var options = PipelineBenchmark.Options()
        options.rounds = rounds
        options.secondsPerRun = seconds
        options.samplesDir = samples
        options.latencyFPS = latencyFps
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        let r = try PipelineBenchmark(config: config, options: options, logger: logger).run { Console.out($0 + "\n") }
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
        if json {
            let obj: [String: Any] = ["raw_fps": r.rawMedian, "pipeline_fps": r.pipelineMedian, "ratio": r.ratio,
                                      "added_latency_ms_p50": r.addedP50, "added_latency_ms_p99": r.addedP99,
                                      "workers": r.workers, "saturated_added_latency_ms_p50": r.saturatedP50, "raw_fps_runs": r.rawFPS, "pipeline_fps_runs": r.pipelineFPS]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            Console.out(String(decoding: data, as: UTF8.self) + "\n")
        }
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

/// `camclass cameras`: what V4L2 capture cameras are present and what they can do.
