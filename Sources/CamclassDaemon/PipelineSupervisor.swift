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
import Synchronization
import UnixSignals

/// The model, its labels and the loaded engine: what a reload rebuilds when the model file or an
/// inference setting changes, and keeps otherwise.
struct EngineParts: Sendable {
    let model: ModelDescriptor
    let labels: LabelSet
    let engine: any InferenceEngine
    /// Identity of the files the engine was loaded from (a model replaced in place is reloaded).
    let files: [FileStamp]
    /// The model file's SHA-256 for `hello`: the sidecar's, else computed here, as the model loads
    /// (never on the socket's I/O thread); "" when the file cannot be read.
    let modelSHA256: String

    init(model: ModelDescriptor, labels: LabelSet, engine: any InferenceEngine, logger: Logger) {
        self.model = model
        self.labels = labels
        self.engine = engine
        files = FileStamp.of(model)
        if let s = model.sha256, !s.isEmpty {
            modelSHA256 = s.lowercased()
        } else {
            do {
                modelSHA256 = try ModelDigest.sha256(file: model.modelPath)
                logger.info("model file hashed", metadata: ["model.path": "\(model.modelPath)", "model.sha256": "\(modelSHA256)"])
            } catch {
                logger.warning("cannot hash the model file; hello reports sha256 null", metadata: ["model.path": "\(model.modelPath)", "error": "\(error)"])
                modelSHA256 = ""
            }
        }
    }
}

/// Device, inode, size and modification time of a file, to notice a file replaced in place.
struct FileStamp: Sendable, Equatable {
    var path: String
    var device: UInt64 = 0
    var inode: UInt64 = 0
    var size: Int64 = -1
    var mtimeNs: Int64 = 0

    init(_ path: String) {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    static func of(_ model: ModelDescriptor) -> [FileStamp] {
        ([model.sidecarPath, model.modelPath, model.labelsPath] as [String?]).compactMap { $0 }.map(FileStamp.init)
    }
}

/// Keeps one frame source open across pipeline generations, so a reload that keeps the source
/// does not close and reopen the camera: the old pipeline's capture thread is detached from it
/// (`beginHandOver`, then the pipeline's own stop/close, which become no-ops for the source), and
/// the next pipeline's capture thread carries on reading the same stream.
/// Also the test hook `--debug-stall-after N`: after N frames it delivers nothing more, like a
/// camera that stopped streaming, until stopped.
/// Thread context: as `FrameSource` (one capture thread at a time; generations are sequential,
/// joined in between); the hand-over calls come from the reload thread.
final class SourceHandle: FrameSource, @unchecked Sendable {
    let inner: any FrameSource
    let stallAfterFrames: Int?
    private struct State {
        var isOpen = false
        var handingOver = false
        var forced = false
    }
    private let state = Mutex(State())
    private let detached = Atomic<Bool>(false)
    /// Wakes the stall hook's wait when the capture thread is detached or stopped.
    private let detachedWake = Condition()
    private var delivered = 0   // capture thread only (generations are joined in between)

    init(inner: any FrameSource, stallAfterFrames: Int?) {
        self.inner = inner
        self.stallAfterFrames = stallAfterFrames
    }

    var name: String { inner.name }
    var maxFrameSize: (width: Int, height: Int) { inner.maxFrameSize }
    var fileNames: [String] { inner.fileNames }
    var isLive: Bool { inner.isLive }
    var liveness: SourceLiveness? { inner.liveness }

    func open() throws {
        detached.store(false, ordering: .releasing)
        guard !state.withLock({ $0.isOpen }) else { return }
        try inner.open()
        state.withLock { $0.isOpen = true }
    }

    func nextFrame(into frame: inout NV12Frame) throws -> Bool {
        if detached.load(ordering: .acquiring) { return false }
        if let limit = stallAfterFrames, delivered >= limit {
            // Like a camera that stopped streaming: block (no wake-ups) until stopped or detached.
            detachedWake.wait(until: { detached.load(ordering: .acquiring) })
            return false
        }
        guard try inner.nextFrame(into: &frame) else { return false }
        delivered += 1
        return true
    }

    func requestStop() {
        detached.store(true, ordering: .releasing)
        detachedWake.broadcast()
        if !state.withLock({ $0.handingOver }) { inner.requestStop() }
    }

    func close() {
        let closeInner = state.withLock { s -> Bool in
            guard s.isOpen, !s.handingOver || s.forced else { return false }
            s.isOpen = false
            s.forced = false
            return true
        }
        if closeInner { inner.close() }
    }

    /// The next stop detaches the pipeline without stopping or closing the source.
    func beginHandOver() { state.withLock { $0.handingOver = true } }
    func endHandOver() { state.withLock { $0.handingOver = false } }

    /// The capture thread did not return within the hand-over time (a read that blocks): stop the
    /// source for real; the next `open` reopens it.
    func forceStop() {
        state.withLock { $0.forced = true }
        inner.requestStop()
    }

    /// Stops and closes the source for good (it is being replaced, or the daemon stops).
    func shutdown() {
        inner.requestStop()
        let wasOpen = state.withLock { s -> Bool in defer { s.isOpen = false }; return s.isOpen }
        if wasOpen { inner.close() }
    }
}

extension PipelineCounters {
    /// Counters of two pipeline generations added up (the queue depth is the later one's).
    func adding(_ o: PipelineCounters) -> PipelineCounters {
        var c = self
        c.captured += o.captured
        c.published += o.published
        c.droppedQueueFull += o.droppedQueueFull
        c.droppedPoolExhausted += o.droppedPoolExhausted
        c.droppedSource += o.droppedSource
        c.inferenceErrors += o.inferenceErrors
        c.queueDepth = o.queueDepth
        return c
    }
}

/// What a SIGHUP did.
public enum ReloadOutcome: Sendable, Equatable {
    /// The new configuration runs. `changed` lists the keys that took effect.
    case applied(changed: [String], engineReloaded: Bool, modelLoadMs: Double, gapMs: Double?)
    /// Nothing that can change at run time differs.
    case unchanged
    /// The new configuration was refused; the previous one keeps running.
    case rejected(String)
}

/// Owns the running pipeline generation (engine, source, pipeline) and replaces it on reload.
///
/// A reload builds what changed off to the side while the current pipeline keeps classifying and
/// publishing (so the watchdog stays fed during a model load), then swaps: the old pipeline is
/// stopped and drained, and a new one starts on the same socket and rolling log, so subscribers
/// stay connected and see no gap longer than one drain plus one frame. An invalid configuration,
/// a model that does not load, or a source that does not open leave the old generation running.
/// Settings bound to the socket and the log (paths, sizes) need a restart; a reload keeps them
/// and says so.
/// Thread context: `start`, `stop`, `reload` on dedicated threads (they block); the rest anywhere.
public final class PipelineSupervisor: @unchecked Sendable {
    struct Generation: Sendable {
        let config: DaemonConfig
        let parts: EngineParts
        let source: SourceHandle
        let pipeline: ClassificationPipeline
    }

    private struct State {
        var current: Generation
        var finishedCounters: PipelineCounters?   // generations replaced so far
        var currentRetired = false                // `current`'s counters are already in finishedCounters
        var swapping = false
        var shuttingDown = false
        var reloads = 0
        var lastReload: ReloadOutcome?
    }

    private let state: Mutex<State>
    /// Held for a swap, and by `stop` so that it never stops a half-swapped daemon.
    private let swapLock = Condition()
    let notifier: ProgressNotifier
    /// Receive lifecycle records (`reload`, `shutdown`): the socket and the rolling log.
    let recordSinks: [any RecordSink]
    /// What every pipeline publishes to: `recordSinks` plus the progress notifier.
    let pipelineSinks: [any RecordSink]
    let onResult: (@Sendable (ClassificationResult, LabelSet) -> Void)?
    let configProvider: (@Sendable () throws -> DaemonConfig)?
    let logger: Logger
    /// How long a hand-over waits for the old capture thread before stopping the source for real.
    var handOverTimeoutNs: UInt64 = 2_000_000_000
    /// Runs once when the current generation ends on its own (see `whenEndedOnItsOwn`).
    private let ended = Mutex<(fired: Bool, observers: [@Sendable () -> Void])>((false, []))
    /// Wakes `waitFirstRecord` (a record sent READY=1, or shutdown began).
    private let readyWake = Condition()

    init(config: DaemonConfig, parts: EngineParts, source: SourceHandle, pipeline: ClassificationPipeline,
         notifier: ProgressNotifier, recordSinks: [any RecordSink], pipelineSinks: [any RecordSink],
         onResult: (@Sendable (ClassificationResult, LabelSet) -> Void)?,
         configProvider: (@Sendable () throws -> DaemonConfig)?, logger: Logger) {
        state = Mutex(State(current: Generation(config: config, parts: parts, source: source, pipeline: pipeline)))
        self.notifier = notifier
        self.recordSinks = recordSinks
        self.pipelineSinks = pipelineSinks
        self.onResult = onResult
        self.configProvider = configProvider
        self.logger = logger
        watch(pipeline)
        notifier.whenReady { [readyWake] in readyWake.broadcast() }
    }

    /// Hears when `pipeline` finishes; it counts as the daemon's end only while it is the current
    /// generation and no swap is replacing it (a swap re-checks when it is done).
    private func watch(_ pipeline: ClassificationPipeline) {
        pipeline.whenFinished { [weak self, weak pipeline] in
            guard let self, let pipeline else { return }
            if self.state.withLock({ !$0.swapping && $0.current.pipeline === pipeline }) { self.fireEnded() }
        }
    }

    private func fireEnded() {
        let observers = ended.withLock { e -> [@Sendable () -> Void] in
            if e.fired { return [] }
            e.fired = true
            defer { e.observers = [] }
            return e.observers
        }
        for observe in observers { observe() }
    }

    /// Runs `body` once when the current pipeline ends on its own (frame limit, end of a replay,
    /// failure), not because a reload is replacing it: at once when it already has. `body` runs on
    /// the pipeline's result thread or the reload thread and must not block.
    func whenEndedOnItsOwn(_ body: @escaping @Sendable () -> Void) {
        let already = ended.withLock { e -> Bool in
            if e.fired { return true }
            e.observers.append(body)
            return false
        }
        if already { body() }
    }

    var current: Generation { state.withLock { $0.current } }

    /// Counters over every generation since start-up.
    public var totalCounters: PipelineCounters {
        state.withLock { s in
            let c = s.current.pipeline.counters
            if s.currentRetired, let f = s.finishedCounters { return f }
            return s.finishedCounters.map { $0.adding(c) } ?? c
        }
    }

    public var reloadCount: Int { state.withLock { $0.reloads } }
    public var lastReloadOutcome: ReloadOutcome? { state.withLock { $0.lastReload } }

    func start() throws { try current.pipeline.start() }

    /// True when the current pipeline ended on its own (frame limit, end of a replay, failure),
    /// not because a reload is replacing it.
    func finishedOnItsOwn() -> Bool {
        state.withLock { s in !s.swapping && s.current.pipeline.isFinished }
    }

    /// Graceful shutdown has begun: a reload in progress stops waiting and swaps nothing in.
    func noteShutdown() {
        state.withLock { $0.shuttingDown = true }
        readyWake.broadcast()
    }

    /// Stops the current pipeline (after any swap in progress), drains it, closes the source and
    /// sends the final `shutdown` record to the socket and the log. Blocks.
    func stop(reason: String) {
        noteShutdown()
        let gen = swapLock.locked { current }
        gen.pipeline.stop()
        gen.pipeline.wait()
        gen.source.shutdown()
        let c = totalCounters
        let why = gen.pipeline.error.map { "error: \($0)" } ?? reason
        publishLifecycle(LifecycleRecord.shutdown(reason: why, counters: c))
    }

    /// Re-reads the configuration and applies it (see the type's comment). Blocks for as long as
    /// the new model takes to load. Sends RELOADING=1 first and READY=1 when the result is running.
    @discardableResult
    func reload() -> ReloadOutcome {
        let started = Clock.monotonicNs()
        let sd = notifier.notifier
        sd.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicUsec())\nSTATUS=reloading the configuration")
        let outcome = applyReload()
        state.withLock { s in
            s.lastReload = outcome
            if case .applied = outcome { s.reloads += 1 }
        }
        let tookMs = Double(Clock.monotonicNs() - started) / 1e6
        switch outcome {
        case .applied(let changed, let engineReloaded, let loadMs, let gapMs):
            // The level too only when the whole configuration took effect.
            LogLevelControl.shared.set(current.config.daemon.logLevel)
            logger.notice("configuration reloaded", metadata: [
                "reload.changed": "\(changed.joined(separator: ","))", "reload.engine": engineReloaded ? "reloaded" : "kept",
                "reload.model_load_ms": "\(Self.ms(loadMs))", "reload.gap_ms": "\(gapMs.map(Self.ms) ?? "none yet")",
                "reload.total_ms": "\(Self.ms(tookMs))"])
        case .unchanged:
            logger.notice("configuration reloaded: nothing changed")
            if state.withLock({ $0.shuttingDown }) { break }
            sd.send("READY=1\n" + SystemdNotifier.status(statusLine()))
        case .rejected(let why):
            logger.error("configuration reload refused; the previous configuration keeps running", metadata: ["reload.error": "\(why)"])
            if state.withLock({ $0.shuttingDown }) { break }
            sd.send("READY=1\n" + SystemdNotifier.status("reload refused (\(why)); running the previous configuration"))
        }
        return outcome
    }

    static func ms(_ v: Double) -> String { String(fixed: v, decimals: 1) }

    private func applyReload() -> ReloadOutcome {
        guard let configProvider else {
            return .rejected("this daemon was started without a configuration file to re-read")
        }
        var next: DaemonConfig
        do { next = try configProvider() } catch { return .rejected("\(error)") }
        let old = current
        let plan = ReloadPlan(old: old.config, new: next)
        for key in plan.needRestart {
            logger.warning("reload: this setting takes effect only after a restart; keeping the running value",
                           metadata: ["reload.key": "\(key)"])
        }
        next = plan.effective

        // Decide whether the engine must be rebuilt: a changed inference setting, or model files
        // replaced in place.
        let model: ModelDescriptor
        do { model = try ModelDescriptor.load(path: next.model.path) } catch { return .rejected("\(error)") }
        let engineChanged = plan.engineChanged || FileStamp.of(model) != old.parts.files
        var changed = plan.changed
        if engineChanged && !changed.contains("model.path") && !plan.engineChanged { changed.append("model files") }
        if !engineChanged && !plan.pipelineChanged && !plan.sourceChanged {
            if plan.changed.isEmpty { return .unchanged }
            // Only the log level (or restart-only keys): nothing to swap.
            state.withLock { $0.current = Generation(config: next, parts: old.parts, source: old.source, pipeline: old.pipeline) }
            if !state.withLock({ $0.shuttingDown }) { notifier.notifier.send("READY=1\n" + SystemdNotifier.status(statusLine())) }
            return .applied(changed: changed, engineReloaded: false, modelLoadMs: 0, gapMs: nil)
        }

        // Off to the side, while the old pipeline keeps running.
        let loadStart = Clock.monotonicNs()
        let parts: EngineParts
        if engineChanged {
            do { parts = try loadEngineParts(config: next, logger: logger) } catch { return .rejected("\(error)") }
        } else {
            parts = old.parts
        }
        let loadMs = Double(Clock.monotonicNs() - loadStart) / 1e6

        // The swap.
        var lastOldRecord: UInt64 = 0
        let swapped = swapLock.locked { () -> ReloadOutcome in
            if state.withLock({ $0.shuttingDown }) { return .rejected("the daemon is stopping") }
            state.withLock { $0.swapping = true }
            defer { state.withLock { $0.swapping = false } }

            if !plan.sourceChanged { old.source.beginHandOver() }
            old.pipeline.stop()
            if !old.pipeline.waitFinished(timeoutNs: handOverTimeoutNs) {
                logger.warning("reload: the source did not hand over in time; reopening it",
                               metadata: ["source": "\(old.source.name)"])
                old.source.forceStop()
            }
            old.pipeline.wait()
            old.source.endHandOver()
            lastOldRecord = notifier.lastRecordMonotonicNs
            let oldCounters = old.pipeline.counters
            state.withLock { s in
                s.finishedCounters = s.finishedCounters.map { $0.adding(oldCounters) } ?? oldCounters
                s.currentRetired = true
            }
            if let error = old.pipeline.error {
                // The old pipeline failed during the load; the daemon stops with its error.
                logger.error("reload: the running pipeline failed meanwhile", metadata: ["error": "\(error)"])
                return .rejected("the running pipeline failed: \(error)")
            }

            var source = old.source
            if plan.sourceChanged {
                // A camera cannot be opened twice: the old one is closed before the new one opens.
                old.source.shutdown()
                do {
                    source = SourceHandle(inner: try makeWiredSource(config: next, logger: logger, eventSinks: recordSinks),
                                          stallAfterFrames: next.debugStallAfterFrames)
                } catch {
                    restartOld(old, reopenSource: true)
                    return .rejected("\(error)")
                }
            }
            let published = state.withLock { $0.finishedCounters?.published ?? 0 }
            let pipeline = makeGenerationPipeline(config: next, parts: parts, source: source, publishedSoFar: published)
            watch(pipeline)
            publishLifecycle(LifecycleRecord.reload(model: parts.model.name, engine: parts.engine.info.summary,
                                                    source: source.name, changed: changed))
            notifier.armReady(status: statusLine(config: next, parts: parts, source: source, state: "running"))
            do {
                try pipeline.start()
            } catch {
                logger.error("reload: the new pipeline did not start", metadata: ["error": "\(error)"])
                if plan.sourceChanged { source.shutdown() }
                restartOld(old, reopenSource: plan.sourceChanged)
                return .rejected("cannot start the source '\(source.name)': \(error)")
            }
            state.withLock { s in
                s.current = Generation(config: next, parts: parts, source: source, pipeline: pipeline)
                s.currentRetired = false
            }
            return .applied(changed: changed, engineReloaded: engineChanged, modelLoadMs: loadMs, gapMs: nil)
        }
        // A generation that ended while the swap ran (the old one failed meanwhile, or the new one
        // ended at once) was not counted as the daemon's end then.
        if finishedOnItsOwn() { fireEnded() }
        // Outside the swap lock: measure the gap once the new pipeline publishes (not waited for
        // when the daemon is stopping).
        guard case .applied = swapped else { return swapped }
        let gap = waitFirstRecord(after: lastOldRecord, timeoutNs: 5_000_000_000)
        return .applied(changed: changed, engineReloaded: engineChanged, modelLoadMs: loadMs, gapMs: gap)
    }

    /// Puts the previous generation back after a failed swap (its engine is still loaded).
    private func restartOld(_ old: Generation, reopenSource: Bool) {
        var source = old.source
        if reopenSource {
            do {
                source = SourceHandle(inner: try makeWiredSource(config: old.config, logger: logger, eventSinks: recordSinks),
                                      stallAfterFrames: old.config.debugStallAfterFrames)
            } catch {
                logger.error("reload: the previous source cannot be reopened either", metadata: ["error": "\(error)"])
            }
        }
        let published = state.withLock { $0.finishedCounters?.published ?? 0 }
        let pipeline = makeGenerationPipeline(config: old.config, parts: old.parts, source: source, publishedSoFar: published)
        watch(pipeline)
        notifier.armReady(status: statusLine(config: old.config, parts: old.parts, source: source, state: "running"))
        do { try pipeline.start() } catch {
            logger.error("reload: the previous pipeline cannot restart", metadata: ["error": "\(error)"])
        }
        // Even when it did not start: its finished state ends the daemon with a non-zero status.
        state.withLock { s in
            s.current = Generation(config: old.config, parts: old.parts, source: source, pipeline: pipeline)
            s.currentRetired = false
        }
    }

    private func makeGenerationPipeline(config: DaemonConfig, parts: EngineParts, source: SourceHandle,
                                        publishedSoFar: Int) -> ClassificationPipeline {
        var c = config
        // --frames counts over the daemon's life, not per generation; so does `seq`: the finished
        // generations numbered their captured frames 0… contiguously.
        if let limit = c.frameLimit { c.frameLimit = max(1, limit - publishedSoFar) }
        c.pipeline.firstSeq = UInt64(max(0, state.withLock { $0.finishedCounters?.captured ?? 0 }))
        return makePipeline(config: c, parts: parts, source: source, sinks: pipelineSinks, logger: logger, onResult: onResult)
    }

    /// Milliseconds from the old pipeline's last record to the new one's first, waiting up to
    /// `timeoutNs` (woken by the record that sends READY=1, or by shutdown).
    private func waitFirstRecord(after lastOld: UInt64, timeoutNs: UInt64) -> Double? {
        _ = readyWake.wait(timeoutNs: timeoutNs, until: {
            notifier.readyMonotonicNs != 0 || state.withLock { $0.shuttingDown }
        })
        let t = notifier.readyMonotonicNs
        guard t != 0, lastOld != 0 else { return nil }
        return Double(t &- lastOld) / 1e6
    }

    func publishLifecycle(_ line: [UInt8]) {
        line.withUnsafeBytes { raw in for sink in recordSinks { sink.publish(raw) } }
    }

    /// One line for `STATUS=`: state, rate and what runs.
    func statusLine(state: String = "running", fps: Double? = nil) -> String {
        let g = current
        return statusLine(config: g.config, parts: g.parts, source: g.source, state: state, fps: fps)
    }

    func statusLine(config: DaemonConfig, parts: EngineParts, source: SourceHandle, state: String, fps: Double? = nil) -> String {
        var s = state
        if let fps {
            let c = totalCounters
            s += ", \(String(fixed: fps, decimals: 1)) fps, \(c.published) classified, \(c.droppedTotal) dropped"
        }
        s += "; model \(parts.model.name) on \(parts.engine.info.backend)"
        s += " \(parts.engine.info.device); source \(source.name)"
        return s
    }
}

/// Which sections differ between the running and the re-read configuration, and what that takes.
/// Sections are compared whole (each is its component's options type); `changed` names the keys
/// written differently in the two files (or flags) within those sections.
struct ReloadPlan {
    var effective: DaemonConfig
    var changed: [String] = []
    var needRestart: [String] = []
    var engineChanged = false
    var pipelineChanged = false
    var sourceChanged = false

    init(old: DaemonConfig, new: DaemonConfig) {
        var e = new
        // Flags that hold for the daemon's life.
        e.frameLimit = old.frameLimit
        e.debugStallAfterFrames = old.debugStallAfterFrames
        // Bound to the socket and the log, which stay up so that subscribers stay connected.
        var restartSections: [String] = []
        if e.publish != old.publish { restartSections.append(SocketOptions.section); e.publish = old.publish }
        if e.log != old.log { restartSections.append(RollingLogOptions.section); e.log = old.log }

        engineChanged = e.model.path != old.model.path || e.inference != old.inference
        pipelineChanged = e.pipeline != old.pipeline || e.stable != old.stable
        sourceChanged = e.source != old.source || e.camera != old.camera
        var sections: [String] = []
        if e.source != old.source { sections.append(SourceOptions.section) }
        if e.camera != old.camera { sections.append(CameraOptions.section) }
        if e.model != old.model { sections.append(ModelOptions.section) }
        if e.inference != old.inference { sections.append(InferenceOptions.section) }
        if e.pipeline.withoutModel != old.pipeline.withoutModel { sections.append(PipelineOptions.section) }
        if e.stable != old.stable { sections.append(StableLabelOptions.section) }
        if e.daemon != old.daemon { sections.append(DaemonOptions.section) }

        func keys(in section: String) -> [String] {
            let k = DaemonConfig.differingKeys(old, new, section: section)
            return k.isEmpty ? [section] : k
        }
        changed = sections.flatMap(keys)
        needRestart = restartSections.flatMap(keys)
        // The source section: one entry, as the record says what was reopened.
        if sourceChanged { changed.removeAll { $0.hasPrefix("source.") || $0.hasPrefix("camera.") || $0 == "source" || $0 == "camera" }; changed.append("source") }
        effective = e
    }
}

extension PipelineOptions {
    /// The `pipeline:` section's own keys (the `model:` section compared apart).
    var withoutModel: PipelineOptions {
        var o = self
        o.model = ModelOptions()
        return o
    }
}
