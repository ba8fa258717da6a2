import ArgumentParser
import CamclassDaemon
import Inference
import Pipeline
import Publishing
import Support

/// `--socket`: the daemon's socket (default: the daemon's own default, `publish.socket`).
struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The daemon's socket.")
    var socket = SocketOptions().path
}

/// `--model`: the model sidecar or network file (default: the daemon's `model.path`).
struct ModelOption: ParsableArguments {
    @Option(name: .long, help: "Model sidecar (.model.yaml) or network file.")
    var model = ModelOptions().path
}

/// The engine flags of the tools that load a model, validated by the `inference:` section type
/// like the daemon's flags.
struct EngineFlags: ParsableArguments {
    @Option(name: .long, help: "Backend: openvino or bpu.")
    var backend: String?
    @Option(name: .long, help: "Precision: auto, bf16, f16, f32.")
    var precision: String?
    @Option(name: .long, help: "Inference requests in flight (0 = the engine's optimum).")
    var workers: String?
    @Option(name: .long, help: "BPU: the libdnn.so to load (a path, or a name for the loader's search).")
    var bpuLibrary: String?

    /// The daemon's configuration for `model` with these flags.
    /// - Throws: `ConfigError` naming the flag, as the daemon does.
    func config(model: String) throws(ConfigError) -> DaemonConfig {
        let flags: [(String, String, String, String?)] = [
            ("--model", "model", "path", model), ("--backend", "inference", "backend", backend),
            ("--precision", "inference", "precision", precision), ("--workers", "inference", "workers", workers),
            ("--bpu-library", "inference", "bpu_library", bpuLibrary),
        ]
        let overrides = flags.compactMap { f in f.3.map { ConfigOverride(flag: f.0, section: f.1, key: f.2, value: $0) } }
        return try DaemonConfig.resolve(file: nil, overrides: overrides, systemFile: false)
    }
}

extension ExitCode {
    init(_ status: ExitStatus) { self.init(status.code) }
}
