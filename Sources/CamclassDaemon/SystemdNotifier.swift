import WireFormat
import Glibc
import Publishing
import Support
import Synchronization

/// The service-manager notification protocol of sd_notify(3), spoken directly: one datagram of
/// `KEY=VALUE` lines to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the
/// abstract namespace).
///
/// Why not libsystemd: the protocol is a documented, stable datagram format that systemd itself
/// says may be reimplemented, we need none of the rest of the library (no fd store, no credentials
/// passing), and linking it would add a build dependency (`libsystemd-dev`) and a run-time one on
/// every machine, including developer machines and containers where systemd never runs. Forty lines
/// here are easier to test (the tests listen on their own socket) than a dlopen'ed C library.
///
/// Not started by systemd (no `NOTIFY_SOCKET`): every call is a cheap no-op.
/// Thread context: any thread; `send` never blocks (MSG_DONTWAIT: a full queue loses the message,
/// which systemd tolerates for STATUS and which a watchdog ping retries on the next record).
public final class SystemdNotifier: Sendable {
    private let fd: Int32
    /// The socket address bytes (sun_path, with a leading NUL for the abstract namespace).
    private let path: [UInt8]
    /// How often systemd expects `WATCHDOG=1` (`WATCHDOG_USEC`), when it expects it from this process.
    public let watchdogIntervalNs: UInt64?
    /// The socket as given (for logs).
    public let socketName: String?

    public var isEnabled: Bool { fd >= 0 }

    /// - Parameters:
    ///   - socket: `$NOTIFY_SOCKET`; nil or empty disables notifications.
    ///   - watchdogUsec: `$WATCHDOG_USEC`; nil, 0 or unparsable disables the watchdog.
    ///   - watchdogPid: `$WATCHDOG_PID`; when set, the watchdog applies only if it is our pid
    ///     (systemd sets it so that a child of a forking wrapper does not ping by mistake).
    public init(socket: String?, watchdogUsec: String?, watchdogPid: String?) {
        var interval: UInt64?
        if let usec = watchdogUsec.flatMap({ UInt64($0) }), usec > 0 {
            if let pid = watchdogPid, !pid.isEmpty, Int32(pid) != getpid() {
                interval = nil
            } else {
                interval = usec * 1000
            }
        }
        watchdogIntervalNs = interval
        guard let socket, !socket.isEmpty, socket.hasPrefix("/") || socket.hasPrefix("@") else {
            // Unset, or a transport we do not speak (e.g. "vsock:" for VMs): stay silent.
            fd = -1
            path = []
            socketName = socket
            return
        }
        var bytes = Array(socket.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout<sockaddr_un>.size - MemoryLayout<sa_family_t>.size
        let s = bytes.count < capacity ? Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) : -1
        fd = s
        path = bytes
        socketName = socket
    }

    /// From this process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    public static func fromEnvironment() -> SystemdNotifier {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        return SystemdNotifier(socket: env("NOTIFY_SOCKET"), watchdogUsec: env("WATCHDOG_USEC"),
                               watchdogPid: env("WATCHDOG_PID"))
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Sends `message` (newline-separated `KEY=VALUE` assignments) as one datagram.
    /// - Returns: whether the datagram was sent (false when disabled or the send failed).
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard fd >= 0 else { return false }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: path) }
        // Abstract names are not NUL-terminated: the address length says where they end.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path[0] == 0 ? 0 : 1))
        var text = message
        return text.withUTF8 { bytes in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                    while true {
                        let n = sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), a, length)
                        if n < 0 && errno == EINTR { continue }
                        return n == bytes.count
                    }
                }
            }
        }
    }

    /// `STATUS=` with `text` on one line (a newline would start another assignment), at most 400 bytes.
    public static func status(_ text: String) -> String {
        var t = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        if t.utf8.count > 400 { t = String(t.prefix(400)) + "…" }
        return "STATUS=" + t
    }

    /// `MONOTONIC_USEC=` value for `RELOADING=1` (systemd ≥ 253 matches it against its own clock).
    public static func monotonicUsec() -> UInt64 { Clock.monotonicNs() / 1000 }
}

/// A record sink that turns the pipeline's progress into service-manager notifications: the first
/// record published after `armReady` sends `READY=1` (the camera streams and the model classifies),
/// and records keep the watchdog fed. Nothing else pings the watchdog, so a pipeline that stops
/// publishing — a hung camera, a wedged accelerator, a deadlocked stage — stops the pings and
/// systemd restarts the service after `WatchdogSec=`.
/// Thread context: `publish` on the pipeline's publishing worker (cheap: two atomics and, a few times
/// per watchdog interval, one non-blocking datagram); `armReady` from any thread.
public final class ProgressNotifier: RecordSink, Sendable {
    public let notifier: SystemdNotifier
    private let readyPending = Mutex<String?>(nil)
    private let armed = Atomic<Bool>(false)  // fast path: no lock per record once ready
    private let lastPingNs = Atomic<UInt64>(0)
    private let pingEveryNs: UInt64
    private let pings = Atomic<Int>(0)
    private let lastRecordNs = Atomic<UInt64>(0)
    private let readyNs = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    /// Told when a record sent READY=1 (rare: after start-up and after each reload).
    private let readyObserver = Mutex<(@Sendable () -> Void)?>(nil)

    public init(notifier: SystemdNotifier) {
        self.notifier = notifier
        // A quarter of the interval: a ping still lands in time when a few frames are slow.
        pingEveryNs = (notifier.watchdogIntervalNs ?? 0) / 4
    }

    /// The next published record sends `READY=1` with `status` (after start-up and after a reload).
    public func armReady(status: String) {
        readyPending.withLock { $0 = status }
        readyNs.store(0, ordering: .relaxed)
        armed.store(true, ordering: .releasing)
    }

    /// Runs `body` (on the publishing worker; must not block) each time a record sends the armed
    /// READY=1, so that a waiter for it blocks instead of polling `readyMonotonicNs`.
    public func whenReady(_ body: @escaping @Sendable () -> Void) {
        readyObserver.withLock { $0 = body }
    }

    /// Sends `STOPPING=1` (with `status`); nothing follows it, neither READY nor pings, as the
    /// pipeline drains.
    public func stop(status: String) {
        stopping.store(true, ordering: .releasing)
        notifier.send("STOPPING=1\n" + SystemdNotifier.status(status))
    }

    /// Watchdog pings sent so far (for tests and the status line).
    public var watchdogPings: Int { pings.load(ordering: .relaxed) }

    /// Monotonic time of the record that sent the READY=1 armed last (0 = not yet).
    public var readyMonotonicNs: UInt64 { readyNs.load(ordering: .acquiring) }

    /// Monotonic time of the last published record (0 = none yet).
    public var lastRecordMonotonicNs: UInt64 { lastRecordNs.load(ordering: .relaxed) }

    public func publish(_ line: UnsafeRawBufferPointer) {
        // Only classifications are progress; status or event records must not feed the watchdog.
        guard Self.isClassification(line), !stopping.load(ordering: .acquiring) else { return }
        let now = Clock.monotonicNs()
        lastRecordNs.store(now, ordering: .relaxed)
        if armed.load(ordering: .acquiring), armed.exchange(false, ordering: .acquiringAndReleasing),
           let status = readyPending.withLock({ s -> String? in defer { s = nil }; return s }) {
            notifier.send("READY=1\n" + SystemdNotifier.status(status))
            readyNs.store(now, ordering: .releasing)
            readyObserver.withLock { $0 }?()
        }
        pingIfDue(nowNs: now)
    }

    /// Sends `WATCHDOG=1` when the last ping is a quarter interval old (never after `stop`).
    @discardableResult
    func pingIfDue(nowNs now: UInt64) -> Bool {
        guard pingEveryNs > 0, !stopping.load(ordering: .acquiring) else { return false }
        let last = lastPingNs.load(ordering: .relaxed)
        guard now &- last >= pingEveryNs else { return false }
        lastPingNs.store(now, ordering: .relaxed)
        guard notifier.send("WATCHDOG=1") else { return false }
        pings.add(1, ordering: .relaxed)
        return true
    }

    private static let classificationPrefix = Array(#"{"type":"classification""#.utf8)

    static func isClassification(_ line: UnsafeRawBufferPointer) -> Bool {
        guard line.count >= classificationPrefix.count else { return false }
        for i in 0..<classificationPrefix.count where line[i] != classificationPrefix[i] { return false }
        return true
    }
}
