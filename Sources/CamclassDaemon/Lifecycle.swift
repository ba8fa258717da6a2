import WireFormat
import Glibc
import Logging
import Pipeline
import Publishing
import ServiceLifecycle
import Support
import Synchronization
import UnixSignals

/// Records the daemon itself sends to subscribers and the rolling log (besides classifications):
/// `{"type":"reload",…}` before the first record of a new configuration, and
/// `{"type":"shutdown",…}` as the very last line before the socket closes.
enum LifecycleRecord {
    static func reload(model: String, engine: String, source: String, changed: [String]) -> [UInt8] {
        ByteWriter.whole(capacity: 1024) { w in
            w.ascii("{\"type\":\"reload\",\"time\":\"")
            w.rfc3339(realtimeNs: Clock.realtimeNs())
            w.ascii("\",\"model\":")
            w.jsonString(model)
            w.ascii(",\"engine\":")
            w.jsonString(engine)
            w.ascii(",\"source\":")
            w.jsonString(source)
            w.ascii(",\"changed\":[")
            for (i, key) in changed.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.jsonString(key)
            }
            w.ascii("]}\n")
        }
    }

    static func shutdown(reason: String, counters c: PipelineCounters) -> [UInt8] {
        ByteWriter.whole(capacity: 512) { w in
            w.ascii("{\"type\":\"shutdown\",\"time\":\"")
            w.rfc3339(realtimeNs: Clock.realtimeNs())
            w.ascii("\",\"reason\":")
            w.jsonString(reason)
            w.ascii(",\"published\":")
            w.uint(UInt64(c.published))
            w.ascii(",\"dropped\":")
            w.uint(UInt64(c.droppedTotal))
            w.ascii("}\n")
        }
    }
}

/// The pipeline (whichever generation runs) until it ends on its own or the daemon shuts down;
/// then stops and drains it and sends the final record.
struct SupervisedPipelineService: Service {
    let supervisor: PipelineSupervisor

    func run() async throws {
        // Suspended (no thread, no timer) until the pipeline ends on its own or shutdown begins.
        let end = OneShotEvent()
        supervisor.whenEndedOnItsOwn { end.fire() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await end.wait()
            } onGracefulShutdown: {
                end.fire()
            }
        } onCancel: {
            end.fire()
        }
        let reason: String
        if Task.isShuttingDownGracefully {
            reason = "stop requested"
        } else if let limit = supervisor.current.config.frameLimit, supervisor.totalCounters.published >= limit {
            reason = "frame limit"
        } else {
            reason = "end of source"
        }
        await runBlocking { [supervisor] in supervisor.stop(reason: reason) }
    }
}

/// A one-time event to await: `wait` suspends until `fire` (from any thread) has been called;
/// afterwards it returns at once. Resumes its waiters through continuations, so an awaiting
/// service costs nothing until the event happens.
/// Thread context: any thread / any task.
final class OneShotEvent: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.fired { return [] }
            s.fired = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    var isFired: Bool { state.withLock { $0.fired } }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.fired { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}

/// SIGHUP → reload, one at a time, on a dedicated thread (a model load blocks for seconds).
/// At shutdown a reload in progress is finished (bounded by the model load) before the pipeline
/// stops, so that the process never exits under a half-loaded engine.
struct ReloadService: Service {
    let supervisor: PipelineSupervisor

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withGracefulShutdownHandler {
            for await _ in signals.cancelOnGracefulShutdown() {
                await runBlocking { [supervisor] in supervisor.reload() }
            }
        } onGracefulShutdown: { [supervisor] in
            supervisor.noteShutdown()
        }
    }
}

/// `STATUS=` every few seconds (rate, counts, what runs, or that classifications stopped), a
/// warning in the log when the pipeline stalls and when it resumes, and `STOPPING=1` plus the
/// shutdown bound when graceful shutdown begins. Never `WATCHDOG=1`: that comes only from
/// published records (`ProgressNotifier`).
struct NotifyService: Service {
    let supervisor: PipelineSupervisor
    let deadline: ShutdownDeadline?
    let logger: Logger
    var intervalSeconds = 5
    /// No classification for this long counts as stalled in the status and the log.
    var stallAfterNs: UInt64 = 3_000_000_000

    func run() async throws {
        let notifier = supervisor.notifier
        var lastPublished = supervisor.totalCounters.published
        var lastTime = Clock.monotonicNs()
        var stalled = false
        while !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { [intervalSeconds] in try await Task.sleep(for: .seconds(intervalSeconds)) }
            if Task.isShuttingDownGracefully { break }
            let now = Clock.monotonicNs()
            let published = supervisor.totalCounters.published
            let fps = Double(published - lastPublished) / (Double(now - lastTime) / 1e9)
            lastPublished = published
            lastTime = now
            let last = notifier.lastRecordMonotonicNs
            let idleNs = last == 0 ? 0 : now &- last
            if last == 0 {
                // Not READY yet: a camera that is absent or not streaming keeps the unit activating.
                notifier.notifier.send(SystemdNotifier.status(supervisor.statusLine(state: "starting: waiting for the first frame")))
            } else if idleNs > stallAfterNs {
                let seconds = String(fixed: Double(idleNs) / 1e9, decimals: 0)
                if !stalled {
                    logger.warning("pipeline stalled: no classification published", metadata: ["pipeline.idle_s": "\(seconds)"])
                }
                stalled = true
                notifier.notifier.send(SystemdNotifier.status(supervisor.statusLine(state: "stalled: no classification for \(seconds) s")))
            } else {
                if stalled { logger.notice("pipeline resumed") }
                stalled = false
                notifier.notifier.send(SystemdNotifier.status(supervisor.statusLine(state: "running", fps: fps)))
            }
        }
        deadline?.arm(logger: logger)
        notifier.stop(status: "stopping: draining the pipeline, flushing the log, closing subscribers")
    }
}

/// Bounds graceful shutdown: if stopping (drain, flush, close) has not finished `seconds` after it
/// began — a wedged driver call, say — the process exits with EX_SOFTWARE rather than wait for
/// systemd's SIGKILL. Cancelled when `run()` returns.
public final class ShutdownDeadline: Sendable {
    let seconds: Int
    private let done = AtomicFlag()
    private let armed = AtomicFlag()
    private let wake = Condition()

    /// - Parameter seconds: `daemon.stop_timeout_s`.
    init(seconds: Int) { self.seconds = seconds }

    func arm(logger: Logger) {
        guard !armed.isSet else { return }
        armed.set()
        DedicatedThread.detach(name: "camclass-bound") { [self] in
            let finished = wake.wait(timeoutNs: UInt64(seconds) * 1_000_000_000, until: { done.isSet })
            if !finished {
                logger.critical("graceful shutdown took longer than \(seconds) s; exiting without finishing it")
                _exit(ExitStatus.software.code)
            }
        }
    }

    func cancel() {
        done.set()
        wake.broadcast()
    }
}

extension PipelineError {
    /// The exit status when the running pipeline failed, so that `systemctl status` tells a dead
    /// camera from a dead accelerator (both non-zero, so `Restart=on-failure` restarts the service).
    public var exitStatus: ExitStatus {
        if case .source = self { return .ioError }
        if case .engineUnhealthy = self { return .unavailable }
        return .software
    }
}
