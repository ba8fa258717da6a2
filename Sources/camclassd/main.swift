import ArgumentParser
import CamclassDaemon
import Glibc
import Inference
import Logging
import Publishing
import Support

/// camclassd: parses flags, loads the config, calls `buildDaemon(config:)` and runs it.
@main
struct CamclassDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camclassd",
        abstract: "Live camera classification daemon: V4L2/replay → NV12 → BPU/OpenVINO → Unix socket + rolling log.")

    @Option(name: .long, help: "Config file (default: \(DaemonConfig.systemFile) if present, else built-in defaults).")
    var config: String?
    @Option(name: .long, help: "Frame source: a folder or file to replay (JPEG, <name>_<W>x<H>.nv12), or 'auto'.")
    var source: String?
    @Option(name: .long, help: "Model sidecar (.model.yaml) or network file.")
    var model: String?
    @Option(name: .long, help: "Unix socket path subscribers connect to.")
    var socket: String?
    @Option(name: .long, help: "Rolling log file (JSON Lines).")
    var log: String?
    @Option(name: .long, help: "Stop after N published classifications (flushes everything first).")
    var frames: Int?
    @Option(name: .long, help: "Replay rate in frames per second (0 = unlimited).")
    var fps: Double?
    @Option(name: .long, help: "Inference backend: openvino or bpu.")
    var backend: String?
    @Option(name: .long, help: "OpenVINO device (CPU, GPU, NPU, AUTO).")
    var device: String?
    @Option(name: .long, help: "Inference requests in flight (0 = the engine's optimum).")
    var workers: Int?
    @Option(name: .long, help: "Inference precision: auto, bf16, f16, f32.")
    var precision: String?
    @Option(name: .long, help: "Daemon log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?
    @Flag(name: .long, help: "Replay once instead of looping.")
    var once = false
    @Flag(name: .long, help: "Print each classification as a human-readable line on stdout.")
    var print = false
    @Flag(name: .long, help: "Validate the configuration (and flags) and exit.")
    var checkConfig = false
    // A test hook, not for users: the source goes silent after N frames (the watchdog test).
    @Option(name: .customLong("debug-stall-after"), help: ArgumentHelp("Test hook: the source stops after N frames.", visibility: .hidden))
    var debugStallAfter: Int?

    func resolvedConfig() throws -> DaemonConfig {
        var c: DaemonConfig
        if let config {
            c = try DaemonConfig.load(file: config)
        } else if access(DaemonConfig.systemFile, R_OK) == 0 {
            c = try DaemonConfig.load(file: DaemonConfig.systemFile)
        } else {
            c = DaemonConfig()
        }
        if let source { c.sourcePath = source }
        if let model { c.modelPath = model }
        if let socket { c.socketPath = socket }
        if let log { c.logPath = log }
        if let frames { c.frameLimit = frames }
        if let fps { c.sourceFPS = fps }
        if let backend { c.backend = backend }
        if let device { c.device = device }
        if let workers { c.workers = workers }
        if let precision { c.precision = precision }
        if let logLevel { c.daemonLogLevel = logLevel }
        if once { c.sourceLoop = false }
        if let debugStallAfter { c.debugStallAfterFrames = debugStallAfter }
        try c.validate()
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
            throw ExitCode(StartupError.configError)
        }
        if checkConfig {
            Swift.print("configuration OK (\(config.file ?? "built-in defaults"))")
            return
        }
        LogLevelControl.shared.set(Logger.Level(rawValue: config.daemonLogLevel) ?? .info)
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
            try await daemon.run(shutdownBoundSeconds: ShutdownDeadline.defaultSeconds)
        } catch let e as StartupError {
            logger.critical("\(e.message)")
            throw ExitCode(e.exitCode)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(StartupError.software)
        }
    }
}
