import ArgumentParser
import CamclassTools
import Foundation
import Support

/// `camclass bench-cpu`: CPU per frame, per thread, wake-ups per second and RSS of the real
/// `camclassd` at 1 FPS, 30 FPS and unpaced, on the BPU stand-in and on OpenVINO.
struct BenchCPU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-cpu",
        abstract: "What camclassd costs: CPU ms per frame (whole process and per thread), wake-ups per second and RSS, at 1 FPS, 30 FPS and unpaced.")
    @Option(name: .long, help: "The camclassd binary to measure (the release build).")
    var camclassd = ".build/release/camclassd"
    @Option(name: .long, parsing: .upToNextOption, help: "Backends: bpu (the stand-in libdnn.so), openvino.")
    var backends: [String] = ["bpu", "openvino"]
    @Option(name: .long, parsing: .upToNextOption, help: "Replay rates in FPS; 0 = unpaced.")
    var rates: [Double] = [1, 30, 0]
    @Option(name: .long, help: "Seconds measured per backend and rate.")
    var seconds = 20.0
    @Option(name: .long, help: "Seconds of warm-up before measuring.")
    var warmup = 3.0
    @Option(name: .long, help: "The stand-in libdnn.so for the bpu backend (make standin builds it).")
    var bpuLibrary = "Tests/StandIns/libdnn.so"
    @Option(name: .long, help: "The stand-in's model file for the bpu backend.")
    var bpuModel = "Tests/StandIns/bench_b2.model"
    @Option(name: .long, help: "The model for the openvino backend.")
    var model = "models/efficientnet_lite0.model.yaml"
    @Option(name: .long, help: "Photos to replay (cropped and scaled to 640x480).")
    var samples = "samples"

    func validate() throws {
        for b in backends where b != "bpu" && b != "openvino" {
            throw ValidationError("--backends: '\(b)' is not bpu or openvino")
        }
        guard seconds > 0, warmup >= 0 else { throw ValidationError("--seconds must be > 0 and --warmup >= 0") }
        for r in rates where !(r >= 0 && r <= 1000) { throw ValidationError("--rates: \(r) is not within 0...1000") }
    }

    func run() throws {
        var o = CPUBenchmark.Options(camclassd: camclassd)
        o.rates = rates
        o.seconds = seconds
        o.warmupSeconds = warmup
        o.samples = samples
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : cwd + "/" + p }
        for b in backends {
            switch b {
            case "bpu":
                o.backends.append(CPUBenchmark.Backend(
                    name: "bpu", model: absolute(bpuModel), arguments: ["--backend", "bpu"],
                    configYAML: "inference:\n  backend: bpu\n  bpu_library: \(absolute(bpuLibrary))\n"))
            default:
                o.backends.append(CPUBenchmark.Backend(name: "openvino", model: absolute(model), configYAML: ""))
            }
        }
        let rows = try CPUBenchmark.run(o) { Console.err($0 + "\n") }
        Console.out("camclassd: \(camclassd); \(Int(seconds)) s per row after \(Int(warmup)) s warm-up; CPU = time on a CPU " +
                    "(/proc/PID/task/*/schedstat), wakeups = voluntary + involuntary context switches (/proc/PID/task/*/status)\n")
        Console.out(CPUBenchmark.report(rows))
    }
}
