import Glibc
import Support
import Synchronization

/// Jittered exponential backoff: each delay is drawn uniformly from [d/2, d], d doubling from
/// `initialMs` up to `maxMs`, so that many clients losing the same server do not return in step.
/// Thread context: a value type; owned by one thread.
public struct Backoff: Sendable, Equatable {
    public let initialMs: Int
    public let maxMs: Int
    /// The upper bound of the next delay.
    public private(set) var currentMs: Int

    /// - Precondition: 1 ≤ initialMs ≤ maxMs (validated configuration).
    public init(initialMs: Int, maxMs: Int) {
        precondition(initialMs >= 1 && initialMs <= maxMs, "backoff: 1 <= initial (\(initialMs)) <= max (\(maxMs))")
        self.initialMs = initialMs
        self.maxMs = maxMs
        currentMs = initialMs
    }

    /// The next delay in milliseconds; the bound doubles (up to `maxMs`).
    public mutating func next() -> Int {
        var g = SystemRandomNumberGenerator()
        return next(using: &g)
    }

    public mutating func next<G: RandomNumberGenerator>(using g: inout G) -> Int {
        let d = currentMs
        currentMs = d > maxMs / 2 ? maxMs : d * 2
        return Int.random(in: max(1, d / 2)...d, using: &g)
    }

    /// After a success: the next failure waits `initialMs` at most again.
    public mutating func reset() { currentMs = initialMs }
}

/// A client of camclassd's socket that stays connected: it reconnects when the daemon restarts or
/// is not there yet (jittered exponential backoff), reads the `hello` line, and re-sends its
/// `subscribe` filter on every connection. Knows nothing of what the records are used for.
///
/// Thread context: `start` runs a dedicated reader thread, which calls `handler` for every event in
/// order; the handler must not block for long (the daemon drops what a slow reader misses, and
/// says so with `dropped` records). `send` and `stop` may be called from any thread.
public final class ReconnectingSubscriber: @unchecked Sendable {
    public enum Event: Sendable {
        /// Connected and greeted; the `hello` line. The subscribe request has been sent.
        case connected(hello: String)
        /// The daemon accepted the filter (its `subscribed` reply line); records are filtered from here.
        case subscribed(String)
        /// The daemon refused the filter (its `error` reply line). The connection stays up, unfiltered
        /// classifications are not delivered: the owner decides (usually: fix the config and stop).
        case rejected(String)
        /// A record or reply line (never `hello`/`subscribed`, nor a classification sent before the filter applied).
        case line(String)
        /// The connection ended (the daemon stopped or restarted). A reconnect follows.
        case disconnected(reason: String)
        /// A connection attempt failed (`attempt` counts failures since the last connection);
        /// the next one follows after `retryInMs`.
        case unreachable(reason: String, attempt: Int, retryInMs: Int)
    }

    public let path: String
    public let subscribeRequest: String?
    private let handler: @Sendable (Event) -> Void
    private let wake = Condition()
    private let stopping = AtomicFlag()
    private let lock = Mutex<SubscriberConnection?>(nil)
    private var backoff: Backoff
    private var thread: DedicatedThread?

    /// - Parameters:
    ///   - subscribeRequest: the `{"subscribe":{…}}` line sent after every `hello`; nil = everything.
    ///   - handler: called on the reader thread (see the type's thread context).
    public init(path: String, subscribeRequest: String?, backoff: Backoff, handler: @escaping @Sendable (Event) -> Void) {
        self.path = path
        self.subscribeRequest = subscribeRequest
        self.backoff = backoff
        self.handler = handler
    }

    /// Starts the reader thread (once).
    public func start() {
        guard thread == nil else { return }
        thread = DedicatedThread(name: "sock-reader") { [self] in run() }
    }

    /// Sends a request line on the current connection; false when there is none (the caller
    /// retries later or learns the answer from the next connection).
    @discardableResult
    public func send(line: String) -> Bool {
        lock.withLock { c in
            guard let c else { return false }
            do { try c.send(line: line); return true } catch { return false }
        }
    }

    /// Ends the connection and the reader thread; returns after the thread has finished.
    public func stop() {
        stopping.set()
        // shutdown wakes the reader blocked in read(2); the fd stays open until the reader drops it.
        lock.withLock { c in if let c { shutdown(c.fd, Int32(SHUT_RDWR)) } }
        wake.broadcast()
        thread?.join()
    }

    private func run() {
        var failures = 0
        while !stopping.isSet {
            let connection: SubscriberConnection
            do {
                connection = try SubscriberConnection(path: path)
            } catch {
                failures += 1
                let delay = backoff.next()
                handler(.unreachable(reason: "\(error)", attempt: failures, retryInMs: delay))
                _ = wake.wait(timeoutNs: UInt64(delay) * 1_000_000) { stopping.isSet }
                continue
            }
            lock.withLock { $0 = connection }
            if stopping.isSet { break }
            let reason = session(connection)
            lock.withLock { $0 = nil }
            if stopping.isSet { break }
            if let reason {
                // A daemon that accepted and then went away: come back quickly, but not in a tight loop.
                failures = 0
                backoff.reset()
                handler(.disconnected(reason: reason))
                let delay = backoff.next()
                _ = wake.wait(timeoutNs: UInt64(delay) * 1_000_000) { stopping.isSet }
            }
        }
        lock.withLock { $0 = nil }
    }

    /// One connection, until it ends; the reason it ended (nil when stopping).
    private func session(_ c: SubscriberConnection) -> String? {
        do {
            guard let hello = try c.readLine(timeoutMs: 5000) else {
                return c.atEOF ? "closed before its hello line" : "no hello line within 5 s"
            }
            guard hello.hasPrefix("{\"type\":\"hello\"") else { return "not a camclassd protocol v1 socket (first line: \(hello.prefix(80)))" }
            var filtered = true
            if let subscribeRequest {
                try c.send(line: subscribeRequest)
                filtered = false
            }
            handler(.connected(hello: hello))
            while let line = try c.readLine() {
                if !filtered {
                    // Records already on their way when the daemon read the request are unfiltered:
                    // classifications are dropped until the `subscribed` reply (events are wanted anyway).
                    if line.hasPrefix("{\"type\":\"subscribed\"") {
                        filtered = true
                        handler(.subscribed(line))
                        continue
                    }
                    if line.hasPrefix("{\"type\":\"error\"") && line.contains("\"request\":\"subscribe\"") {
                        handler(.rejected(line))
                        continue
                    }
                    if line.hasPrefix("{\"type\":\"classification\"") { continue }
                }
                handler(.line(line))
            }
            return stopping.isSet ? nil : "the daemon closed the connection"
        } catch {
            return stopping.isSet ? nil : "\(error)"
        }
    }
}
