import ArgumentParser
import CamclassDaemon
import Glibc
import Inference
import Logging
import WireFormat
import Support

/// camclassd: parses flags, loads the config, calls `buildDaemon(config:)` and runs it.
@main
struct CamclassDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camclassd",
        abstract: "Live camera classification daemon: V4L2/replay → NV12 → BPU/OpenVINO → Unix socket + rolling log.")

    @Option(name: .long, help: "Config file (default: \(DaemonConfig.systemFile) if present, else built-in defaults).")
    var config: String?
    // Flags that set a config key are read as text and validated by that key's section type,
    // exactly like the file's value (errors name the flag).
    @Option(name: .long, help: ArgumentHelp(
        "Frame source: a folder or file to replay (JPEG, <name>_<W>x<H>.nv12), a camera, or 'auto' (source.path). Repeat as NAME=PATH for several sources (replaces the config's sources list).",
        valueName: "[NAME=]PATH"))
    var source: [String] = []
    @Option(name: .long, help: "Model sidecar (.model.yaml) or network file (model.path).")
    var model: String?
    @Option(name: .long, help: "Unix socket path subscribers connect to (publish.socket).")
    var socket: String?
    @Option(name: .long, help: "Rolling log file (log.path).")
    var log: String?
    @Option(name: .long, help: "Stop after N published classifications (flushes everything first).")
    var frames: Int?
    @Option(name: .long, help: "Replay rate in frames per second, 0 = unlimited (source.fps).")
    var fps: String?
    @Option(name: .long, help: "Inference backend: openvino or bpu (inference.backend).")
    var backend: String?
    @Option(name: .long, help: "OpenVINO device: CPU, GPU, NPU, AUTO (inference.device).")
    var device: String?
    @Option(name: .long, help: "Inference requests in flight, 0 = the engine's optimum (inference.workers).")
    var workers: String?
    @Option(name: .long, help: "Inference precision: auto, bf16, f16, f32 (inference.precision).")
    var precision: String?
    @Option(name: .long, help: "Daemon log level: trace, debug, info, notice, warning, error, critical (daemon.log_level).")
    var logLevel: String?
    @Flag(name: .long, help: "Replay once instead of looping (source.loop: false).")
    var once = false
    @Flag(name: .long, help: "Print each classification as a human-readable line on stdout.")
    var print = false
    @Flag(name: .long, help: "Validate the configuration and flags, check that the files they name exist, and exit.")
    var checkConfig = false
    // A test hook, not for users: the source goes silent after N frames (the watchdog test).
    @Option(name: .customLong("debug-stall-after"), help: ArgumentHelp("Test hook: the source stops after N frames.", visibility: .hidden))
    var debugStallAfter: Int?
    @Flag(name: .customLong("debug-replay-mjpeg"), help: ArgumentHelp("Test hook: replayed JPEGs are handed over compressed and decoded by the workers, as an MJPEG camera's frames are.", visibility: .hidden))
    var debugReplayMJPEG = false

    /// The flags that stand for config keys.
    var overrides: [ConfigOverride] {
        let flags: [(String, String, String, String?)] = [
            ("--fps", "source", "fps", fps), ("--once", "source", "loop", once ? "false" : nil),
            ("--model", "model", "path", model), ("--backend", "inference", "backend", backend),
            ("--device", "inference", "device", device), ("--workers", "inference", "workers", workers),
            ("--precision", "inference", "precision", precision), ("--socket", "publish", "socket", socket),
            ("--log", "log", "path", log), ("--log-level", "daemon", "log_level", logLevel),
        ]
        return flags.compactMap { f in f.3.map { ConfigOverride(flag: f.0, section: f.1, key: f.2, value: $0) } }
    }

    func resolvedConfig() throws(ConfigError) -> DaemonConfig {
        var c = try DaemonConfig.resolve(file: config, overrides: try DaemonConfig.sourceFlags(source) + overrides)
        if let frames {
            guard frames > 0 else { throw ConfigError(file: "command line", key: "--frames", value: "\(frames)", reason: "expected a positive number") }
            c.frameLimit = frames
        }
        if let debugStallAfter { c.debugStallAfterFrames = max(0, debugStallAfter) }
        c.debugReplayMJPEG = debugReplayMJPEG
        return c
    }

    func run() async throws {
        // A closed pipe (stdout of `--print | head`, stderr to a reader that left, a stray
        // `kill -PIPE`) must not end the daemon: writes fail with EPIPE instead (issue 11 F8).
        signal(SIGPIPE, SIG_IGN)
        // Journal-friendly stderr under systemd (priority prefixes, no timestamps); the level is
        // the configured one once the configuration is read, and a reload may change it.
        let style = DaemonLogging.bootstrap(level: .info)
        let config: DaemonConfig
        do { config = try resolvedConfig() } catch {
            Console.err((style == .journal ? "<3>" : "") + "camclassd: \(error)\n")
            throw ExitCode(ExitStatus.config.code)
        }
        if checkConfig {
            do { try config.checkFiles() } catch {
                Console.err((style == .journal ? "<3>" : "") + "camclassd: \(error)\n")
                throw ExitCode(ExitStatus.config.code)
            }
            Swift.print("configuration OK (\(config.file ?? "built-in defaults"))")
            return
        }
        LogLevelControl.shared.set(config.daemon.logLevel)
        let logger = Logger(label: "camclassd")
        var observer: (@Sendable (ClassificationResult, LabelSet) -> Void)?
        if print {
            // A closed stdout ends the printed lines, not the daemon.
            let stdoutGone = AtomicFlag()
            observer = ConsoleLine.observer { line in
                guard !stdoutGone.isSet else { return }
                if !Console.tryOut(line.text + "\n") { stdoutGone.set() }
            }
        }
        do {
            // Model loading and compilation block for seconds: keep them off the cooperative pool.
            let onResult = observer
            // SIGHUP re-reads the file and re-applies these flags, exactly as at start-up.
            let reload: @Sendable () throws -> DaemonConfig = { [self] in try self.resolvedConfig() }
            let daemon = try await onDedicatedThread("camclass-load") {
                try buildDaemon(config: config, logger: logger, onResult: onResult, reloadConfig: reload)
            }
            try await daemon.run(shutdownBoundSeconds: config.daemon.stopTimeoutSeconds)
        } catch let e as DaemonError {
            logger.critical("\(e.message)")
            throw ExitCode(e.status.code)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(ExitStatus.software.code)
        }
    }
}
