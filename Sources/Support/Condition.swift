import Glibc
import Synchronization

/// A condition variable with its mutex, for thread hand-offs outside Swift concurrency.
/// The pthread objects live in heap storage of their own: a class's stored property has no stable
/// address that C may keep a pointer to (swift-nio's `ConditionLock` does the same).
public final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init")
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        precondition(pthread_cond_init(cond, &attr) == 0, "pthread_cond_init")
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Waits (re-checking on every wake-up) until `ready` returns true.
    public func wait(until ready: () -> Bool) {
        pthread_mutex_lock(mutex)
        while !ready() { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
    }

    /// Like `wait(until:)` but gives up after `timeoutNs`; returns whether `ready` became true.
    public func wait(timeoutNs: UInt64, until ready: () -> Bool) -> Bool {
        let deadline = Clock.monotonicNs() &+ min(timeoutNs, UInt64(Int64.max) / 2)
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready() {
            if pthread_cond_timedwait(cond, mutex, &ts) == ETIMEDOUT { return ready() }
        }
        return true
    }

    /// Within `locked`: waits (the mutex released meanwhile) until `ready` returns true.
    public func waitLocked(until ready: () -> Bool) {
        while !ready() { pthread_cond_wait(cond, mutex) }
    }

    /// Runs `body` with the mutex held (for state that waiters re-check).
    public func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Wakes one waiter: only when every waiter waits for the same thing and any one of them can
    /// act on it (one item for one consumer); otherwise `broadcast`.
    public func signal() {
        pthread_mutex_lock(mutex)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Wakes every waiter (each re-checks its own condition).
    public func broadcast() {
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }
}

/// A shareable stop/ready flag (an `Atomic<Bool>` in a class, so closures can capture it).
public final class AtomicFlag: Sendable {
    private let value: Synchronization.Atomic<Bool>
    public init(_ initial: Bool = false) { value = .init(initial) }
    public var isSet: Bool { value.load(ordering: .acquiring) }
    public func set(_ v: Bool = true) { value.store(v, ordering: .releasing) }
}

/// A rendezvous of `parties` threads: each `arriveAndWait` blocks until all of them have arrived,
/// then all go on together (benchmark threads that must start their measured work at once, with
/// no sleep-and-hope). Reusable: the next round starts when the last one of a round arrives.
/// Thread context: any threads; blocking (never on Swift's cooperative pool).
public final class ThreadBarrier: @unchecked Sendable {  // state guarded by `condition`'s mutex
    private let condition = Condition()
    public let parties: Int
    private var arrived = 0
    private var round = 0

    public init(parties: Int) {
        self.parties = max(1, parties)
    }

    /// Blocks until all `parties` threads of this round have called it.
    public func arriveAndWait() {
        let last = condition.locked { () -> Bool in
            let mine = round
            arrived += 1
            if arrived == parties {
                arrived = 0
                round &+= 1
                return true
            }
            condition.waitLocked { round != mine }
            return false
        }
        // The round changed under the mutex, so a thread that has not slept yet sees it anyway.
        if last { condition.broadcast() }
    }
}
