import WireFormat
import Capture
import Glibc
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import ServiceLifecycle
import Support

/// Why the daemon cannot start or had to stop, with the exit status `main` ends with, so
/// `systemctl status` tells the cause.
public struct DaemonError: Error, CustomStringConvertible {
    public var message: String
    public var status: ExitStatus
    public init(message: String, status: ExitStatus) {
        self.message = message
        self.status = status
    }
    public var description: String { message }
}

/// The wired daemon: source → pipeline → socket + rolling log. Built by `buildDaemon(config:)`,
/// which `camclassd`'s `main` and the integration tests both call.
public final class Daemon: @unchecked Sendable {
    // What runs now: a SIGHUP reload may replace these (see Reload.swift).
    public var config: DaemonConfig { supervisor.current.config }
    public var model: ModelDescriptor { supervisor.current.parts.model }
    public var labels: LabelSet { supervisor.current.parts.labels }
    public var engine: any InferenceEngine { supervisor.current.parts.engine }
    /// The first source (the only one of a single-camera daemon).
    public var source: any FrameSource { supervisor.current.sources[0].inner }
    /// Every source, in configuration order.
    public var sources: [any FrameSource] { supervisor.current.sources.map(\.inner) }
    public var pipeline: ClassificationPipeline { supervisor.current.pipeline }
    // These stay for the daemon's life, so subscribers stay connected across reloads.
    public let socket: UnixSocketPublisher
    public let log: RollingLog
    public let supervisor: PipelineSupervisor
    let logger: Logger

    init(socket: UnixSocketPublisher, log: RollingLog, supervisor: PipelineSupervisor, logger: Logger) {
        self.socket = socket
        self.log = log
        self.supervisor = supervisor
        self.logger = logger
    }

    /// Starts log, socket and pipeline (in that order), runs until SIGTERM/SIGINT, the frame limit
    /// or the end of a non-looping replay, then stops them in reverse order, flushing everything.
    /// SIGHUP reloads the configuration; systemd hears READY/STATUS/WATCHDOG/STOPPING (Lifecycle.swift).
    /// - Parameter shutdownBoundSeconds: when set (the `camclassd` process), a graceful shutdown that
    ///   takes longer ends the process with EX_SOFTWARE; nil in-process (tests), which must not exit.
    /// - Throws: `DaemonError` when a stage cannot start or failed while running (its sysexits code).
    public func run(shutdownBoundSeconds: Int? = nil) async throws {
        let config = self.config
        let names = supervisor.current.sources.map(\.name).joined(separator: ",")
        do { try log.start() } catch {
            throw DaemonError(message: "cannot open the rolling log '\(config.log.path)': \(error)", status: .cantCreate)
        }
        do { try socket.start() } catch {
            log.stop()
            throw DaemonError(message: "\(error)", status: .cantCreate)
        }
        // READY=1 goes with the first classification published: the camera streams, the model runs.
        supervisor.notifier.armReady(status: supervisor.statusLine(state: "running"))
        do { try supervisor.start() } catch {
            socket.stop()
            log.stop()
            throw DaemonError(message: "cannot start the sources (\(names)): \(error)", status: .unavailable)
        }
        logger.info("camclassd running", metadata: [
            "sources": "\(names)", "model": "\(model.name)", "engine": "\(engine.info.summary)"])

        // ServiceGroup runs the graceful shutdown on signals and stops services in reverse order:
        // STOPPING=1, a reload in progress finishes, the pipeline drains and sends the final record,
        // the socket flushes and closes subscribers, the log flushes.
        let deadline = shutdownBoundSeconds.map { ShutdownDeadline(seconds: $0) }
        defer { deadline?.cancel() }
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: StageService(name: "log") { [log] in log.stop() }),
                .init(service: StageService(name: "socket") { [socket] in socket.stop() }),
                .init(service: SupervisedPipelineService(supervisor: supervisor), successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: ReloadService(supervisor: supervisor)),
                .init(service: NotifyService(supervisor: supervisor, deadline: deadline, logger: logger)),
                .init(service: LivenessWatchdogService(notifier: supervisor.notifier,
                                                       liveness: { [supervisor] in supervisor.liveness })),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        if let error = pipeline.error { throw DaemonError(message: "\(error)", status: error.exitStatus) }
        let c = supervisor.totalCounters
        logger.info("camclassd stopped", metadata: [
            "pipeline.captured": "\(c.captured)", "pipeline.published": "\(c.published)",
            "pipeline.dropped_queue_full": "\(c.droppedQueueFull)", "pipeline.dropped_source": "\(c.droppedSource)", "pipeline.inference_errors": "\(c.inferenceErrors)"])
    }
}

/// A started stage that only needs stopping: waits for graceful shutdown, then runs `stop` (on a
/// dedicated thread, since stopping joins threads).
struct StageService: Service {
    let name: String
    let stop: @Sendable () -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await runBlocking(stop)
    }
}

/// Runs blocking work off Swift's cooperative pool.
func runBlocking(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        DedicatedThread.detach(name: "camclass-stop") {
            body()
            c.resume()
        }
    }
}

/// Builds the daemon from `config`: loads the model and labels, the engine, the source, and wires
/// the pipeline to the socket and the rolling log. Nothing is started.
/// - Parameters:
///   - onResult: optional observer on the publishing worker (the `--print` console output).
///   - reloadConfig: how SIGHUP re-reads the configuration (`main` re-reads the file and re-applies
///     the flags); nil = reloads are refused.
/// - Throws: `DaemonError` with a message that says exactly what is missing and an exit code.
public func buildDaemon(config: DaemonConfig, logger: Logger,
                        onResult: (@Sendable (ClassificationResult, LabelSet) -> Void)? = nil,
                        reloadConfig: (@Sendable () throws -> DaemonConfig)? = nil) throws -> Daemon {
    let socket = UnixSocketPublisher(options: config.publish, logger: logger)
    let log = RollingLog(options: config.log, logger: logger)

    // The sources first: a busy or inaccessible camera is reported before a long model compile.
    var handles: [SourceHandle] = []
    do {
        for spec in config.sources {
            handles.append(SourceHandle(inner: try makeWiredSource(spec: spec, logger: logger, eventSinks: [socket, log],
                                                                   replayMJPEG: config.debugReplayMJPEG),
                                        spec: spec, stallAfterFrames: config.debugStallAfterFrames))
        }
    } catch {
        for h in handles { h.shutdown() }
        throw error
    }
    let parts = try loadEngineParts(config: config, logger: logger)
    _ = try config.recordVocabulary(labels: parts.labels)  // a bad stable.groups file stops start-up here

    let notifier = ProgressNotifier(notifier: .fromEnvironment())
    let sinks: [any RecordSink] = [socket, log, notifier]
    let pipeline = makePipeline(config: config, parts: parts, sources: handles, seqs: [:], sinks: sinks, logger: logger, onResult: onResult)
    let supervisor = PipelineSupervisor(config: config, parts: parts, sources: handles, pipeline: pipeline, notifier: notifier,
                                        recordSinks: [socket, log], pipelineSinks: sinks, onResult: onResult,
                                        configProvider: reloadConfig, logger: logger)
    let daemon = Daemon(socket: socket, log: log, supervisor: supervisor, logger: logger)
    socket.configure(provider: { [weak daemon] in daemon?.protocolContext() ?? ProtocolContext() })
    return daemon
}

/// The model, its labels and the engine for `config` (at start-up, and on a reload that changes them).
/// - Throws: `DaemonError`: 66 for a missing model or labels file, 78 for a sidecar or labels file
///   that is there but wrong (bad YAML, missing key, out-of-range value: restarting cannot help),
///   69 for a missing library, 70 for a network OpenVINO/hbDNN cannot use.
func loadEngineParts(config: DaemonConfig, logger: Logger) throws -> EngineParts {
    func modelError(_ error: any Error) -> DaemonError {
        if case InferenceError.badModel = error { return DaemonError(message: "\(error)", status: .config) }
        return DaemonError(message: "\(error)", status: .noInput)
    }
    let model: ModelDescriptor
    do { model = try ModelDescriptor.load(path: config.model.path) } catch { throw modelError(error) }
    let labels: LabelSet
    do {
        labels = try LabelSet.of(model)
    } catch { throw modelError(error) }
    if labels.truncated > 0, let first = labels.firstTruncated {
        logger.warning("labels longer than \(LabelSet.maxLabelBytes) bytes are truncated (ending in \(LabelSet.truncationMarker))", metadata: [
            "model.labels": "\(model.labelsPath ?? "")", "labels.truncated": "\(labels.truncated)", "labels.first_line": "\(first + 1)"])
    }

    let engine: any InferenceEngine
    do {
        engine = try makeEngine(config: config, model: model, labels: labels, logger: logger)
    } catch let e as InferenceError {
        if case .libraryMissing = e { throw DaemonError(message: "\(e)", status: .unavailable) }
        if case .modelMissing = e { throw DaemonError(message: "\(e)", status: .noInput) }
        var message = "\(e)"
        if case .call(let name, _, _) = e, name.hasPrefix("ov_core_compile_model"), getenv("INVOCATION_ID") != nil {
            // Measured: OpenVINO's CPU plugin cannot compile without writable+executable memory.
            message += " (under systemd: OpenVINO's JIT needs MemoryDenyWriteExecute=no, which the drop-in " +
                "camclassd.service.d/openvino.conf sets; check `systemctl cat camclassd`)"
        }
        throw DaemonError(message: message, status: .software)
    }
    logger.info("engine ready", metadata: ["inference.summary": "\(engine.info.summary)"])
    return EngineParts(model: model, labels: labels, engine: engine, logger: logger)
}

/// The frame source for `spec`, its camera events going to `eventSinks` (at start-up, and on a
/// reload that adds or changes it).
func makeWiredSource(spec: SourceSpec, logger: Logger, eventSinks: [any RecordSink], replayMJPEG: Bool = false) throws -> any FrameSource {
    let source: any FrameSource
    do { source = try makeSource(spec: spec, logger: logger, replayMJPEG: replayMJPEG) } catch let e as DaemonError { throw e } catch {
        throw DaemonError(message: "source '\(spec.name)': \(error)", status: .noInput)
    }
    if let camera = source as? V4L2Camera {
        camera.setEventHandler(CameraEventRecord.publisher(to: eventSinks, sourceName: name(spec, source)))
    }
    return source
}

/// The name a source's records carry: its configured name; an unnamed `auto` source is named after
/// what it resolved to (a camera, the samples folder).
func name(_ spec: SourceSpec, _ source: any FrameSource) -> String {
    let unnamedAuto = spec.options.path == "auto" && spec.name == SourceSpec.derivedName(path: "auto")
    return unnamedAuto ? SourceSpec.derivedName(path: source.name) : spec.name
}

/// A pipeline for `config` over `parts` and `sources`, publishing to `sinks`. Nothing is started.
/// - Parameter seqs: each source's first `seq` by name (sources carried over a reload); 0 otherwise.
func makePipeline(config: DaemonConfig, parts: EngineParts, sources: [SourceHandle], seqs: [String: UInt64],
                  sinks: [any RecordSink], logger: Logger,
                  onResult: (@Sendable (ClassificationResult, LabelSet) -> Void)?) -> ClassificationPipeline {
    var options = config.pipeline
    options.frameLimit = config.frameLimit
    options.stable = config.stable.enabled ? config.stable : nil
    do { options.vocabulary = try config.recordVocabulary(labels: parts.labels) } catch {
        logger.error("stable.groups unusable; stable labels are classes", metadata: ["error": "\(error)"])
    }
    for case let log as RollingLog in sinks { log.setVocabulary(options.vocabulary ?? RecordVocabulary(labels: parts.labels.names)) }
    let labels = parts.labels
    let observer = onResult.map { f in { @Sendable (r: ClassificationResult) in f(r, labels) } }
    let pipeline = ClassificationPipeline(engine: parts.engine, labels: labels, modelName: parts.model.name,
                                          sinks: sinks, options: options, logger: logger, onResult: observer)
    for h in sources {
        // Not started yet: adding only sizes and wires the source (nothing opens, nothing throws).
        _ = try? pipeline.addSource(h, spec: LaneSpec(name: h.name, weight: h.spec.options.weight, firstSeq: seqs[h.name] ?? 0))
    }
    return pipeline
}

package func makeEngine(config: DaemonConfig, model: ModelDescriptor, labels: LabelSet, logger: Logger) throws -> any InferenceEngine {
    switch config.inference.backend {
    case .openvino:
        return try OpenVINOEngine(model: model, classes: labels.count, options: config.inference.openVINO, logger: logger)
    case .bpu:
        // Placeholder "class N" labels (no labels file) say nothing about the model's class count.
        return try BPUEngine(model: model, classes: model.labelsPath == nil ? nil : labels.count, options: config.inference.bpu, logger: logger)
    }
}

func makeSource(spec: SourceSpec, logger: Logger, replayMJPEG: Bool = false) throws -> any FrameSource {
    var path = spec.options.path
    if path == "auto" {
        // The first capture camera present, else the sample photos `make run` prepares.
        let found = V4L2Discovery.firstCamera()
        for problem in found.skipped {
            logger.warning("source auto: video node skipped", metadata: ["source.reason": "\(problem)"])
        }
        path = autoSourcePath(found: found.path, samples: "samples")
        if found.path == nil && path == autoDefaultCamera {
            logger.warning("source auto: no camera present and no ./samples folder; waiting for \(autoDefaultCamera) (set source.path to a camera or a folder to replay)")
        }
        logger.info("source auto", metadata: ["source.path": "\(path)"])
    }
    if isCameraPath(path) { return try makeCamera(path: path, options: spec.camera, logger: logger) }
    let o = spec.options
    let source = try ReplaySource(path: path, fps: o.fps, loop: o.loop, maxPixels: o.maxPixels, logger: logger,
                                  compressed: replayMJPEG)
    logger.info("replay source loaded", metadata: [
        "source": "\(spec.name)", "source.path": "\(path)", "source.files": "\(source.fileNames.count)",
        "source.skipped": "\(source.skipped.count)",
        "source.fps": "\(o.fps == 0 ? "unlimited" : String(o.fps))", "source.loop": "\(o.loop)"])
    return source
}

/// The camera `source: auto` waits for when none is present.
let autoDefaultCamera = "/dev/video0"

/// What `source: auto` resolves to: the camera found; else the `samples` folder when it exists
/// (a developer's `make run` in the source tree); else the default camera, waited for — the
/// installed service has no samples folder, and a relative path would depend on its working
/// directory.
func autoSourcePath(found: String?, samples: String) -> String {
    if let found { return found }
    var st = stat()
    if stat(samples, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return samples }
    return autoDefaultCamera
}

/// A character device, or a path under /dev that is absent now (a camera plugged in later).
func isCameraPath(_ path: String) -> Bool {
    var st = stat()
    if stat(path, &st) == 0 { return (st.st_mode & S_IFMT) == S_IFCHR }
    return path.hasPrefix("/dev/")
}

/// Opens and negotiates the camera now, so the pipeline's pool gets the negotiated frame size.
func makeCamera(path: String, options: CameraOptions, logger: Logger) throws -> V4L2Camera {
    let camera = V4L2Camera(options: options.at(path: path), logger: logger)
    do { try camera.prepare() } catch {
        if case .permissionDenied = error { throw DaemonError(message: "\(error)", status: .noPermission) }
        throw DaemonError(message: "\(error)", status: .unavailable)
    }
    return camera
}
