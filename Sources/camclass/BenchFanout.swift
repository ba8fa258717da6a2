import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass bench-fanout`: what 1, 8 and 64 subscribers cost the daemon, and JSON encoding per record.
struct BenchFanout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "End-to-end FPS with 1, 8 and 64 subscribers in one run, and JSON bytes and CPU per record.")
    @OptionGroup var modelOption: ModelOption
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
        var c = try DaemonConfig.resolve(file: config, overrides: [ConfigOverride(flag: "--model", section: "model", key: "path", value: modelOption.model)], systemFile: false)
        var o = FanoutBenchmark.Options()
        o.subscribers = subscribers
        o.rounds = rounds
        o.secondsPerRun = seconds
        o.samplesDir = samples
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        let r = try FanoutBenchmark(config: c, options: o, logger: logger).run { Console.out($0 + "\n") }
        Console.out("engine: \(r.engine)\n")
        Console.out("subscribers  FPS (median)  vs first  daemon CPU/rec  own threads CPU/rec  socket thread CPU/rec  publish wall/rec  readers CPU/rec  lost  runs\n")
        let base = r.rows.first?.fpsMedian ?? 0
        for row in r.rows {
            Console.out(String(format: "%11d  %12.1f  %8.3f  %11.0f µs  %16.1f µs  %18.1f µs  %13.1f µs  %12.1f µs  %4d  [%@]\n", row.subscribers,
                               row.fpsMedian, base > 0 ? row.fpsMedian / base : 0, median(row.daemonCPUUs), median(row.ownCPUUs),
                               median(row.ioThreadUs), median(row.publishUs), median(row.readersCPUUs), row.dropped,
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
                                      "daemon_cpu_us_per_record": median($0.daemonCPUUs),
                                      "own_threads_cpu_us_per_record": median($0.ownCPUUs), "readers_cpu_us_per_record": median($0.readersCPUUs),
                                      "lost": $0.dropped] as [String: Any] },
            ]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            Console.out(String(decoding: data, as: UTF8.self) + "\n")
        }
    }
}
