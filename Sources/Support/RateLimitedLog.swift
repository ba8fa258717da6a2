import Synchronization

/// Decides when a repeated event deserves a log line: the first occurrence at once, then at most
/// one line per `intervalNs`, which reports how many occurrences were not logged meanwhile
/// ("one line per event" for a daemon that may see the same failure thousands of times a second).
///
/// It only decides; the caller logs (Support has no logging dependency), e.g.
/// `if let n = limiter.admit() { logger.warning("…", metadata: ["suppressed": "\(n)"]) }`.
/// Thread context: a value owned by one thread; `SharedLogRateLimiter` for several threads.
public struct LogRateLimiter: Sendable {
    public let intervalNs: UInt64
    private var nextNs: UInt64 = 0
    private var started = false
    private var suppressed = 0
    /// Occurrences seen so far (logged or not).
    public private(set) var total = 0

    /// - Parameter intervalNs: at most one line per this interval (default 10 s).
    public init(intervalNs: UInt64 = 10_000_000_000) { self.intervalNs = intervalNs }

    /// Counts one occurrence. Returns nil when it should not be logged, else how many earlier
    /// occurrences were suppressed since the last logged one (0 for the first).
    public mutating func admit(nowNs: UInt64 = Clock.monotonicNs()) -> Int? {
        total += 1
        if started && nowNs < nextNs {
            suppressed += 1
            return nil
        }
        started = true
        let (next, overflow) = nowNs.addingReportingOverflow(intervalNs)
        nextNs = overflow ? UInt64.max : next
        defer { suppressed = 0 }
        return suppressed
    }

    /// Occurrences not logged since the last logged one (for a closing summary line).
    public var pendingSuppressed: Int { suppressed }
}

/// `LogRateLimiter` behind a lock, for events raised on several threads.
/// Thread context: any thread.
public final class SharedLogRateLimiter: Sendable {
    private let state: Mutex<LogRateLimiter>

    public init(intervalNs: UInt64 = 10_000_000_000) { state = Mutex(LogRateLimiter(intervalNs: intervalNs)) }

    /// See `LogRateLimiter.admit`.
    public func admit(nowNs: UInt64 = Clock.monotonicNs()) -> Int? { state.withLock { $0.admit(nowNs: nowNs) } }

    public var total: Int { state.withLock { $0.total } }
}
