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
    /// The configured source (its name is what records carry).
    let spec: SourceSpec
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

    init(inner: any FrameSource, spec: SourceSpec, stallAfterFrames: Int?) {
        self.inner = inner
        self.spec = spec
        self.stallAfterFrames = stallAfterFrames
        name = CamclassDaemon.name(spec, inner)
    }

    /// The name records carry: the configured one.
    let name: String
    func reserveLeases(_ count: Int) { inner.reserveLeases(count) }
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

    func nextFrame() throws -> FrameLease? {
        if detached.load(ordering: .acquiring) { return nil }
        if let limit = stallAfterFrames, delivered >= limit {
            // Like a camera that stopped streaming: block (no wake-ups) until stopped or detached.
            detachedWake.wait(until: { detached.load(ordering: .acquiring) })
            return nil
        }
        guard let frame = try inner.nextFrame() else { return nil }
        delivered += 1
        return frame
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

/// What a SIGHUP did.
public enum ReloadOutcome: Sendable, Equatable {
    /// The new configuration runs. `changed` lists the keys that took effect.
    case applied(changed: [String], engineReloaded: Bool, modelLoadMs: Double, gapMs: Double?)
    /// Nothing that can change at run time differs.
    case unchanged
    /// The new configuration was refused; the previous one keeps running.
    case rejected(String)
}

/// Owns the running pipeline generation (engine, sources, pipeline) and changes it on reload.
///
/// A reload that changes only sources (added, removed, or one source's settings) is applied to the
/// running pipeline: just those sources are closed or opened, and the others keep publishing
/// without a gap. A reload that changes the model, the engine or the pipeline's settings builds
/// what changed off to the side while the current pipeline keeps classifying and publishing (so
/// the watchdog stays fed during a model load), then swaps: the old pipeline is stopped and
/// drained, its unchanged sources handed over open, and a new one starts on the same socket and
/// rolling log, so subscribers stay connected and see no gap longer than one drain plus one frame.
/// An invalid configuration, a model that does not load, or a source that does not open leave the
/// previous configuration running. Settings bound to the socket and the log (paths, sizes) need a
/// restart; a reload keeps them and says so.
/// Thread context: `start`, `stop`, `reload` on dedicated threads (they block); the rest anywhere.
public final class PipelineSupervisor: @unchecked Sendable {
    struct Generation: Sendable {
        let config: DaemonConfig
        let parts: EngineParts
        let sources: [SourceHandle]
        let pipeline: ClassificationPipeline

        func source(named name: String) -> SourceHandle? { sources.first { $0.name == name } }
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
    /// How long a hand-over waits for the old capture threads before stopping the sources for real.
    var handOverTimeoutNs: UInt64 = 2_000_000_000
    /// Runs once when the current generation ends on its own (see `whenEndedOnItsOwn`).
    private let ended = Mutex<(fired: Bool, observers: [@Sendable () -> Void])>((false, []))
    /// Wakes `waitFirstRecord` (a record sent READY=1, or shutdown began).
    private let readyWake = Condition()

    init(config: DaemonConfig, parts: EngineParts, sources: [SourceHandle], pipeline: ClassificationPipeline,
         notifier: ProgressNotifier, recordSinks: [any RecordSink], pipelineSinks: [any RecordSink],
         onResult: (@Sendable (ClassificationResult, LabelSet) -> Void)?,
         configProvider: (@Sendable () throws -> DaemonConfig)?, logger: Logger) {
        state = Mutex(State(current: Generation(config: config, parts: parts, sources: sources, pipeline: pipeline)))
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

    /// Runs `body` once when the current pipeline ends on its own (frame limit, end of the
    /// replays, failure), not because a reload is replacing it: at once when it already has.
    /// `body` runs on the pipeline's publishing worker or the reload thread and must not block.
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

    /// The sources' combined sign of life for the service watchdog: waiting only when every
    /// source waits for its device (otherwise records flow, or their absence is a real stall).
    var liveness: SourceLiveness? {
        let all = current.sources.map(\.liveness)
        guard !all.isEmpty else { return nil }
        var oldest = UInt64.max
        for l in all {
            guard let l, l.waiting else { return nil }
            oldest = min(oldest, l.lastActivityNs)
        }
        return SourceLiveness(waiting: true, lastActivityNs: oldest)
    }

    func start() throws { try current.pipeline.start() }

    /// True when the current pipeline ended on its own (frame limit, end of the replays, failure),
    /// not because a reload is replacing it.
    func finishedOnItsOwn() -> Bool {
        state.withLock { s in !s.swapping && s.current.pipeline.isFinished }
    }

    /// Graceful shutdown has begun: a reload in progress stops waiting and swaps nothing in.
    func noteShutdown() {
        state.withLock { $0.shuttingDown = true }
        readyWake.broadcast()
    }

    /// Stops the current pipeline (after any swap in progress), drains it, closes the sources and
    /// sends the final `shutdown` record to the socket and the log. Blocks.
    func stop(reason: String) {
        noteShutdown()
        let gen = swapLock.locked { current }
        gen.pipeline.stop()
        gen.pipeline.wait()
        for s in gen.sources { s.shutdown() }
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
        if !engineChanged && !plan.pipelineChanged && !plan.sourcesChanged {
            if plan.changed.isEmpty { return .unchanged }
            // Only the log level (or restart-only keys): nothing to swap.
            state.withLock { $0.current = Generation(config: next, parts: old.parts, sources: old.sources, pipeline: old.pipeline) }
            if !state.withLock({ $0.shuttingDown }) { notifier.notifier.send("READY=1\n" + SystemdNotifier.status(statusLine())) }
            return .applied(changed: changed, engineReloaded: false, modelLoadMs: 0, gapMs: nil)
        }
        if !engineChanged && !plan.pipelineChanged {
            return applySourceChanges(old: old, next: next, plan: plan, changed: changed)
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

            // Sources whose settings did not change are handed over open; the rest are reopened.
            let kept = old.sources.filter { h in next.sources.contains(h.spec) }
            for h in kept { h.beginHandOver() }
            old.pipeline.stop()
            if !old.pipeline.waitFinished(timeoutNs: handOverTimeoutNs) {
                logger.warning("reload: the sources did not hand over in time; reopening them",
                               metadata: ["sources": "\(old.sources.map(\.name).joined(separator: ","))"])
                for h in kept { h.forceStop() }
            }
            old.pipeline.wait()
            for h in kept { h.endHandOver() }
            // Every source carries on its numbering (read once its capture thread has ended).
            let seqs = Dictionary(old.pipeline.lanes.map { ($0.name, $0.nextSequence) }, uniquingKeysWith: { a, _ in a })
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

            // A camera cannot be opened twice: the sources replaced are closed before new ones open.
            for h in old.sources where !kept.contains(where: { $0 === h }) { h.shutdown() }
            var sources: [SourceHandle] = []
            do {
                for spec in next.sources {
                    if let h = kept.first(where: { $0.spec == spec }) { sources.append(h); continue }
                    sources.append(try makeSourceHandle(spec: spec, config: next))
                }
            } catch {
                for h in sources where !kept.contains(where: { $0 === h }) { h.shutdown() }
                restartOld(old, kept: kept, seqs: seqs)
                return .rejected("\(error)")
            }
            let pipeline = makeGenerationPipeline(config: next, parts: parts, sources: sources, seqs: seqs)
            watch(pipeline)
            publishLifecycle(LifecycleRecord.reload(model: parts.model.name, engine: parts.engine.info.summary,
                                                    source: sources.map(\.name).joined(separator: ","), changed: changed))
            notifier.armReady(status: statusLine(config: next, parts: parts, sources: sources, state: "running"))
            do {
                try pipeline.start()
            } catch {
                logger.error("reload: the new pipeline did not start", metadata: ["error": "\(error)"])
                for h in sources where !kept.contains(where: { $0 === h }) { h.shutdown() }
                restartOld(old, kept: kept, seqs: seqs)
                return .rejected("cannot start the sources: \(error)")
            }
            state.withLock { s in
                s.current = Generation(config: next, parts: parts, sources: sources, pipeline: pipeline)
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

    /// Applies a reload that changes only sources to the running pipeline: the sources removed or
    /// changed are stopped, drained and closed, then the new or changed ones opened and added;
    /// every other source keeps publishing meanwhile. A source that does not open is left out
    /// (the reload is refused, the removed ones restored).
    private func applySourceChanges(old: Generation, next: DaemonConfig, plan: ReloadPlan, changed: [String]) -> ReloadOutcome {
        swapLock.locked { () -> ReloadOutcome in
            if state.withLock({ $0.shuttingDown }) { return .rejected("the daemon is stopping") }
            let pipeline = old.pipeline
            let leaving = old.sources.filter { h in !next.sources.contains(h.spec) }
            let arriving = next.sources.filter { spec in !old.sources.contains { $0.spec == spec } }
            pipeline.holdOpen()  // removing the last source must not end the pipeline
            defer { pipeline.releaseHold() }
            var seqs: [String: UInt64] = [:]
            for h in leaving {
                if let lane = pipeline.removeSource(named: h.name, closeSource: false) { seqs[h.name] = lane.nextSequence }
                h.shutdown()
            }
            var added: [SourceHandle] = []
            do {
                for spec in arriving {
                    let h = try makeSourceHandle(spec: spec, config: next)
                    do {
                        try pipeline.addSource(h, spec: LaneSpec(name: spec.name, weight: spec.options.weight, firstSeq: seqs[spec.name] ?? 0))
                    } catch {
                        h.shutdown()
                        throw error
                    }
                    added.append(h)
                }
            } catch {
                // Back to the previous sources.
                for h in added {
                    pipeline.removeSource(named: h.name, closeSource: false)
                    h.shutdown()
                }
                for h in leaving {
                    do {
                        let back = try makeSourceHandle(spec: h.spec, config: old.config)
                        try pipeline.addSource(back, spec: LaneSpec(name: h.name, weight: h.spec.options.weight, firstSeq: seqs[h.name] ?? 0))
                    } catch {
                        logger.error("reload: a previous source cannot be reopened", metadata: ["source": "\(h.name)", "error": "\(error)"])
                    }
                }
                let restored = pipeline.lanes.compactMap { lane in
                    old.sources.first { $0.name == lane.name } ?? (lane.source as? SourceHandle)
                }
                state.withLock { $0.current = Generation(config: old.config, parts: old.parts, sources: restored, pipeline: pipeline) }
                return .rejected("\(error)")
            }
            let sources = next.sources.compactMap { spec in
                old.sources.first { $0.spec == spec } ?? added.first { $0.spec == spec }
            }
            state.withLock { $0.current = Generation(config: next, parts: old.parts, sources: sources, pipeline: pipeline) }
            publishLifecycle(LifecycleRecord.reload(model: old.parts.model.name, engine: old.parts.engine.info.summary,
                                                    source: sources.map(\.name).joined(separator: ","), changed: changed))
            if !state.withLock({ $0.shuttingDown }) { notifier.notifier.send("READY=1\n" + SystemdNotifier.status(statusLine())) }
            logger.info("reload: sources changed in place", metadata: [
                "reload.removed": "\(leaving.map(\.name).joined(separator: ","))",
                "reload.added": "\(arriving.map(\.name).joined(separator: ","))"])
            return .applied(changed: changed, engineReloaded: false, modelLoadMs: 0, gapMs: nil)
        }
    }

    private func makeSourceHandle(spec: SourceSpec, config: DaemonConfig) throws -> SourceHandle {
        SourceHandle(inner: try makeWiredSource(spec: spec, logger: logger, eventSinks: recordSinks,
                                                replayMJPEG: config.debugReplayMJPEG),
                     spec: spec, stallAfterFrames: config.debugStallAfterFrames)
    }

    /// Puts the previous generation back after a failed swap (its engine is still loaded).
    private func restartOld(_ old: Generation, kept: [SourceHandle], seqs: [String: UInt64]) {
        var sources: [SourceHandle] = []
        for h in old.sources {
            if kept.contains(where: { $0 === h }) { sources.append(h); continue }
            do { sources.append(try makeSourceHandle(spec: h.spec, config: old.config)) } catch {
                logger.error("reload: a previous source cannot be reopened either", metadata: ["source": "\(h.name)", "error": "\(error)"])
            }
        }
        let pipeline = makeGenerationPipeline(config: old.config, parts: old.parts, sources: sources, seqs: seqs)
        watch(pipeline)
        notifier.armReady(status: statusLine(config: old.config, parts: old.parts, sources: sources, state: "running"))
        do { try pipeline.start() } catch {
            logger.error("reload: the previous pipeline cannot restart", metadata: ["error": "\(error)"])
        }
        // Even when it did not start: its finished state ends the daemon with a non-zero status.
        state.withLock { s in
            s.current = Generation(config: old.config, parts: old.parts, sources: sources, pipeline: pipeline)
            s.currentRetired = false
        }
    }

    private func makeGenerationPipeline(config: DaemonConfig, parts: EngineParts, sources: [SourceHandle],
                                        seqs: [String: UInt64]) -> ClassificationPipeline {
        var c = config
        // --frames counts over the daemon's life, not per generation; so does each source's `seq`.
        let published = state.withLock { $0.finishedCounters?.published ?? 0 }
        if let limit = c.frameLimit { c.frameLimit = max(1, limit - published) }
        return makePipeline(config: c, parts: parts, sources: sources, seqs: seqs, sinks: pipelineSinks, logger: logger,
                            onResult: onResult)
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
        return statusLine(config: g.config, parts: g.parts, sources: g.sources, state: state, fps: fps, pipeline: g.pipeline)
    }

    func statusLine(config: DaemonConfig, parts: EngineParts, sources: [SourceHandle], state: String, fps: Double? = nil,
                    pipeline: ClassificationPipeline? = nil) -> String {
        var s = state
        if let fps {
            let c = totalCounters
            s += ", \(String(fixed: fps, decimals: 1)) fps, \(c.published) classified, \(c.droppedTotal) dropped"
        }
        s += "; model \(parts.model.name) on \(parts.engine.info.backend)"
        s += " \(parts.engine.info.device)"
        if let pipeline, fps != nil, pipeline.lanes.count > 1 {
            // Each source's output rate over the latency window.
            let each = pipeline.lanes.map { lane -> String in
                let sum = lane.latency.summary(captured: Int(lane.nextSequence - lane.firstSeq))
                return "\(lane.name) \(String(fixed: sum.fpsOut, decimals: 1)) fps"
            }
            s += "; sources \(each.joined(separator: ", "))"
        } else {
            s += "; source\(sources.count > 1 ? "s" : "") \(sources.map(\.name).joined(separator: ", "))"
        }
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
    var sourcesChanged = false

    init(old: DaemonConfig, new: DaemonConfig) {
        var e = new
        // Flags that hold for the daemon's life.
        e.frameLimit = old.frameLimit
        e.debugStallAfterFrames = old.debugStallAfterFrames
        e.debugReplayMJPEG = old.debugReplayMJPEG
        // Bound to the socket and the log, which stay up so that subscribers stay connected.
        var restartSections: [String] = []
        if e.publish != old.publish { restartSections.append(SocketOptions.section); e.publish = old.publish }
        if e.log != old.log { restartSections.append(RollingLogOptions.section); e.log = old.log }

        engineChanged = e.model.path != old.model.path || e.inference != old.inference
        pipelineChanged = e.pipeline != old.pipeline || e.stable != old.stable
        sourcesChanged = e.sources != old.sources
        var sections: [String] = []
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
        // Sources: one entry per source added, removed or changed, as `source <name>`.
        if sourcesChanged {
            let oldNames = Set(old.sources.map(\.name)), newNames = Set(e.sources.map(\.name))
            for spec in e.sources where !old.sources.contains(spec) {
                changed.append(oldNames.contains(spec.name) ? "source \(spec.name) changed" : "source \(spec.name) added")
            }
            for spec in old.sources where !newNames.contains(spec.name) { changed.append("source \(spec.name) removed") }
        }
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
