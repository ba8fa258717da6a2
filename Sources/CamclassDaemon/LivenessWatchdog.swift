import Capture
import Glibc
import ServiceLifecycle
import Support

extension ProgressNotifier {
    /// Feeds the watchdog for a source that waits for its device (a camera unplugged and being
    /// re-opened): classifications stop by design then, and that is not a hang. It pings only when
    /// no classification pinged recently, the source says it is waiting, and its capture thread
    /// showed life (a re-open attempt, a backoff wake-up) within `freshNs`. A deadlocked stage, a
    /// capture thread stuck in the driver, or a source that is not waiting therefore stops the pings
    /// as before.
    /// Thread context: any thread (atomics and one non-blocking datagram).
    /// - Returns: whether a ping was sent.
    @discardableResult
    public func feedWhileWaiting(_ liveness: SourceLiveness?, nowNs: UInt64 = Clock.monotonicNs(), freshNs: UInt64) -> Bool {
        guard let liveness, liveness.waiting, liveness.lastActivityNs != 0,
              nowNs >= liveness.lastActivityNs ? nowNs - liveness.lastActivityNs <= freshNs : true else { return false }
        return pingIfDue(nowNs: nowNs)
    }
}

/// Checks the source's liveness a few times per watchdog interval and feeds the watchdog while the
/// source waits for its device (see `ProgressNotifier.feedWhileWaiting`). Under systemd without
/// `WatchdogSec=` (or outside systemd) it only waits for shutdown.
/// Thread context: a ServiceLifecycle service (awaits only; the checks are atomics).
struct LivenessWatchdogService: Service {
    let notifier: ProgressNotifier
    /// The current source's liveness (a reload may replace the source).
    let liveness: @Sendable () -> SourceLiveness?

    func run() async throws {
        guard let interval = notifier.notifier.watchdogIntervalNs, notifier.notifier.isEnabled else {
            // Nothing to feed; returning now would end the service group (its default).
            try? await gracefulShutdown()
            return
        }
        let tick = max(interval / 4, 1_000_000)
        // The capture thread shows life at least once a second while it waits; allow half the
        // watchdog interval (never less than 1.2 s) before a silent capture thread counts as stuck.
        let fresh = max(interval / 2, 1_200_000_000)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .nanoseconds(Int64(clamping: tick))) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            notifier.feedWhileWaiting(liveness(), freshNs: fresh)
        }
    }
}
