import WireFormat
import Glibc
import Logging
import Support
import Synchronization

/// The `publish:` section: the Unix socket subscribers connect to, and what each may cost.
public struct SocketOptions: ConfigSection {
    public static let section = "publish"
    public var path = "/run/camclassd/camclassd.sock"
    /// File mode of the socket (0660: owner and group may connect).
    public var mode: mode_t = 0o660
    /// Bytes buffered per subscriber; when full, that subscriber's records are dropped and counted.
    public var subscriberBufferBytes = 256 * 1024
    public var maxSubscribers = 64
    /// Longest request line a client may send; a longer one gets an error and the connection closed.
    public var maxRequestBytes = 4096
    /// Request lines a client may send per second (a burst of the same size is allowed); more is
    /// a flood: the client gets an error and is disconnected.
    public var maxRequestsPerSecond = 20
    /// Kernel send buffer per subscriber socket. Kept modest so that a stalled subscriber's backlog
    /// sits in its own accounted buffer (and is dropped and counted there), not hidden in the kernel.
    public var kernelSendBufferBytes: Int32 = 32 * 1024
    /// Records buffered between the publishing worker and the I/O thread (shared by all subscribers).
    public var journalBytes = 1 << 20
    /// At the subscriber limit, a new client makes room by evicting the subscriber that has been
    /// losing records continuously for longest, if that is at least this long (the model is
    /// Redis's client-output-buffer-limit); nil = never evict, the new client is refused.
    public var evictLosingAfterMs: Int? = 5000
    /// After accept(2) fails for lack of file descriptors (EMFILE/ENFILE), the listening socket is
    /// not polled for this long, or until a subscriber leaves (no busy loop on the backlog).
    public var acceptBackoffMs = 1000
    /// Repeated warnings (refused or unacceptable clients, protocol-rule disconnects) are logged
    /// at most once per this interval, with a count of the ones not logged.
    public var warningIntervalMs = 10_000

    public init() {}
    public init(path: String) { self.path = path }

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        path = try r.string("socket", path, maxBytes: 4095, allowEmpty: false)
        // sun_path holds 107 bytes and a NUL.
        if path.utf8.count > 107 {
            throw r.invalid("socket", path, "a Unix socket path holds at most 107 bytes (this one has \(path.utf8.count)); choose a shorter path")
        }
        mode = mode_t(try r.fileMode("socket_mode", UInt32(mode)))
        subscriberBufferBytes = try r.int("subscriber_buffer_bytes", subscriberBufferBytes, 4096...(64 << 20), unit: "bytes")
        maxSubscribers = try r.int("max_subscribers", maxSubscribers, 1...4096)
        maxRequestBytes = try r.int("max_request_bytes", maxRequestBytes, 256...(1 << 20), unit: "bytes")
        maxRequestsPerSecond = try r.int("max_requests_per_second", maxRequestsPerSecond, 1...10_000)
        let evictAfter = try r.int("evict_after_ms", evictLosingAfterMs ?? 0, 0...3_600_000, unit: "ms (0 = never evict)")
        evictLosingAfterMs = evictAfter == 0 ? nil : evictAfter
    }
}

/// What the protocol needs from the daemon; give it to `configure` before `start`.
public struct ProtocolContext: Sendable {
    public var hello: ProtocolHello
    /// Label names (and coarse groups) for `subscribe.labels`; nil = only class ids are accepted.
    public var vocabulary: RecordVocabulary?
    /// The daemon's `model.top_k` (a subscriber's `top_k` is capped at it).
    public var maxTopK: Int
    /// Encodes a `status` record (one line); called on the socket's I/O thread.
    public var status: (@Sendable () -> [UInt8])?

    public init(hello: ProtocolHello = ProtocolHello(), vocabulary: RecordVocabulary? = nil, maxTopK: Int = 5,
                status: (@Sendable () -> [UInt8])? = nil) {
        self.hello = hello
        self.vocabulary = vocabulary
        self.maxTopK = maxTopK
        self.status = status
    }
}

public enum SocketPublisherError: Error, CustomStringConvertible {
    case inUse(String)
    case notASocket(String)
    case system(String, SystemCallError)

    public var description: String {
        switch self {
        case .inUse(let p): return "socket '\(p)' is in use by another running camclassd (stop it or choose another `publish.socket`)"
        case .notASocket(let p): return "'\(p)' exists and is not a socket; refusing to replace it (remove it or choose another `publish.socket`)"
        case .system(let p, let e): return "socket '\(p)': \(e)"
        }
    }
}

/// Publishes records to every client of a Unix stream socket, speaking protocol v1
/// (docs/protocol.md): a `hello` on connect, then records filtered per subscriber, and replies to
/// `subscribe` / `status` / `last` requests. Each record travels with its source's name
/// (`PublishedRecord.source`), which a subscriber's `sources` filter and `last`'s `source` use.
///
/// The publishing worker's `publish` only appends the record once to a shared journal (one lock, one
/// copy, no per-subscriber work, no allocation) and wakes the I/O thread. The I/O thread applies
/// each subscriber's filter, cuts `top` entries out of the line where the filter asks for it, and
/// copies the result into that subscriber's bounded buffer. A slow or stuck subscriber loses
/// records (counted, and told with a `dropped` record when it catches up) but never delays the
/// pipeline or other subscribers.
/// Thread context: `publish` from the publishing worker (any thread is safe); a dedicated I/O thread
/// accepts, reads requests, filters and writes; `configure`/`start`/`stop` from the owner.
public final class UnixSocketPublisher: RecordSink, @unchecked Sendable {
    public let options: SocketOptions
    private let logger: Logger
    /// What `hello` says and how requests are served, asked for at each connection and request
    /// (a reload may change the model).
    private let contextProvider = Mutex<@Sendable () -> ProtocolContext>({ ProtocolContext() })
    private var listenFD: Int32 = -1
    private var wakeFD: Int32 = -1      // write end of the wake-up pipe
    private var wakeReadFD: Int32 = -1
    private var ioThread: DedicatedThread?
    private let stopping = Atomic<Bool>(false)
    private let wakePending = Atomic<Bool>(false)
    private let published = Atomic<Int>(0)
    /// Passes of the I/O thread (each one a wake-up from `poll`); tests check that records fanned
    /// out inline do not wake it.
    let ioPasses = Atomic<Int>(0)

    // Result thread → I/O thread.
    private let journal: Mutex<Journal>
    private struct Journal: ~Copyable {
        var ring: ByteRing
        var appended = 0      // entries ever appended
        var lost = 0          // entries that did not fit (the I/O thread was behind)
        var lostReported = 0
    }

    /// Held by the I/O thread for each pass (everything but its `poll`), and taken — only if free —
    /// by the publishing worker to fan a record out itself (`deliverInline`). Guards the state
    /// below marked "fan-out".
    private let fanOut = Mutex(())
    /// Inline delivery is for the common case (a few local readers): with more subscribers the
    /// sends would lengthen the publishing worker's turn, so the I/O thread fans out.
    static let inlineFanOutMaxSubscribers = 4

    // Fan-out: the I/O thread, or the publishing worker holding `fanOut`.
    private var subscribers: [Subscriber] = []
    private var nextID = 1
    private var journalScratch: UnsafeMutableRawBufferPointer
    private var processed = 0
    private let selected: UnsafeMutableBufferPointer<Int32>
    private var notice = ByteWriter(capacity: 128)
    /// The latest classification of each source (for `last`), at most `maxLastSources`; a record
    /// of a source not among them takes the slot seen least recently.
    private var lastSlots: [LastSlot] = []
    /// The slot of the latest classification of any source (-1: none yet).
    private var latestSlot = -1
    private var lastTick: UInt64 = 0
    public static let maxLastSources = 16

    /// One source's latest classification line. The buffer is allocated when the source first
    /// publishes; later records are copied into it (no allocation per record).
    final class LastSlot {
        var name: [UInt8]
        let line: UnsafeMutableRawBufferPointer
        var count = 0
        var seen: UInt64 = 0

        init(name: UnsafeRawBufferPointer) {
            self.name = []
            self.name.reserveCapacity(max(64, name.count))
            self.name.append(contentsOf: name)
            line = .allocate(byteCount: UnixSocketPublisher.maxLastRecordBytes, alignment: 8)
        }

        deinit { line.deallocate() }

        func named(_ bytes: UnsafeRawBufferPointer) -> Bool { name.elementsEqual(bytes) }
    }

    /// Longest classification line `last` keeps (a longer one is not kept: never a cut record).
    static let maxLastRecordBytes = 64 * 1024

    // I/O thread → everyone else.
    private let snapshot = Mutex(Snapshot())
    private struct Snapshot {
        var subscribers: [SubscriberStats] = []
        /// When each of `subscribers` connected: `connectedSeconds` is computed when read, as the
        /// I/O thread publishes a snapshot only when something happens.
        var connectedNs: [UInt64] = []
        var processed = 0
        var droppedTotal = 0
        var disconnectedTotal = 0
        var protocolErrors = 0
        var floodDisconnects = 0
        var evicted = 0
        var refused = 0
        var acceptPauses = 0
    }
    // Running totals kept by the I/O thread.
    private var droppedTotalIO = 0
    private var disconnectedTotalIO = 0
    private var protocolErrorsIO = 0
    private var floodDisconnectsIO = 0
    private var evictedIO = 0
    private var refusedIO = 0
    private var acceptPausesIO = 0
    /// While non-zero, the listening socket is left out of poll until then (out of descriptors).
    private var acceptPausedUntilNs: UInt64 = 0
    private var refusedLog: LogRateLimiter
    private var acceptFailureLog: LogRateLimiter
    private var protocolRuleLog: LogRateLimiter
    /// The socket file this publisher created (device, inode): `stop` removes only that file.
    private var boundNode: (dev: UInt64, ino: UInt64)?

    final class Subscriber {
        let id: Int
        let fd: Int32
        var ring: ByteRing
        let input: UnsafeMutableRawBufferPointer
        var inputCount = 0
        var filter = SubscriptionFilter()
        /// `filter.sources` as UTF-8, compared with each record's source bytes (no allocation).
        var sources: [[UInt8]] = []
        var matched = 0            // classifications that passed the score/class filters (every_n)
        var nextAllowedNs: UInt64 = 0
        var rated = false
        var tokens: Double
        var lastRefillNs: UInt64
        var delivered = 0
        var dropped = 0            // records lost since connecting
        var pendingDropped = 0     // lost and not yet told
        var filtered = 0
        var requests = 0
        var closeReason: String?
        let connectedNs: UInt64
        /// Since when the subscriber has been losing records without catching up (0 = it is not).
        var losingSinceNs: UInt64 = 0
        /// Being disconnected (evicted): what it has buffered, ending with the error line, is still
        /// sent until `lingerUntilNs`; it gets nothing new and no longer counts toward the limit.
        var lingerReason: String?
        var lingerUntilNs: UInt64 = 0
        var isActive: Bool { closeReason == nil && lingerReason == nil }

        init(id: Int, fd: Int32, capacity: Int, maxRequest: Int, tokens: Double) {
            self.id = id
            self.fd = fd
            ring = ByteRing(capacity: capacity)
            input = .allocate(byteCount: maxRequest + 1, alignment: 8)
            self.tokens = tokens
            connectedNs = Clock.monotonicNs()
            lastRefillNs = connectedNs
        }

        deinit { input.deallocate() }
    }

    public typealias SubscriberStats = WireFormat.SubscriberStats

    public init(options: SocketOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        journal = Mutex(Journal(ring: ByteRing(capacity: max(options.journalBytes, 64 * 1024))))
        journalScratch = .allocate(byteCount: max(options.journalBytes, 64 * 1024), alignment: 16)
        selected = .allocate(capacity: 1 << 16)
        selected.initialize(repeating: 0)
        let interval = UInt64(max(0, options.warningIntervalMs)) * 1_000_000
        refusedLog = LogRateLimiter(intervalNs: interval)
        acceptFailureLog = LogRateLimiter(intervalNs: interval)
        protocolRuleLog = LogRateLimiter(intervalNs: interval)
    }

    deinit {
        journalScratch.deallocate()
        selected.deallocate()
        if wakeFD >= 0 { close(wakeFD) }
        if wakeReadFD >= 0 { close(wakeReadFD) }
    }

    /// Sets what `hello` says, the label names `subscribe.labels` resolves, and the `status` source.
    /// Call before `start`; calling again later (a reload that changed the model) applies to new
    /// connections' `hello` and to later requests.
    public func configure(_ context: ProtocolContext) {
        contextProvider.withLock { $0 = { context } }
    }

    /// The same, asked for whenever a client connects or sends a request (on the I/O thread).
    public func configure(provider: @escaping @Sendable () -> ProtocolContext) {
        contextProvider.withLock { $0 = provider }
    }

    private var currentContext: ProtocolContext { contextProvider.withLock { $0 }() }

    /// Binds and starts the I/O thread. A stale socket file (no one listening) is replaced; a live
    /// one or a non-socket file is an error.
    public func start() throws {
        let path = options.path
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw SocketPublisherError.notASocket(path) }
            if Self.someoneListens(path) { throw SocketPublisherError.inUse(path) }
            unlink(path)
        }
        do {
            listenFD = try syscall("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }
            var addr = try Self.address(path)
            // Create the node with the final mode from the start (no window with looser permissions).
            let old = umask(~options.mode & 0o777)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            let bindErrno = errno
            umask(old)
            if rc != 0 { throw SystemCallError("bind(\(path))", errno: bindErrno) }
            try syscall("chmod(\(path))") { chmod(path, options.mode) }
            var bound = stat()
            try syscall("lstat(\(path))") { lstat(path, &bound) }
            boundNode = (UInt64(bound.st_dev), UInt64(bound.st_ino))
            try syscall("listen(\(path))") { listen(listenFD, 64) }
            let pair = try makeWakePipe()
            wakeReadFD = pair.0
            wakeFD = pair.1
        } catch let e as SystemCallError {
            if listenFD >= 0 { close(listenFD); listenFD = -1 }
            throw SocketPublisherError.system(path, e)
        }
        stopping.store(false, ordering: .relaxed)
        fanOut.withLock { _ in ioThread = DedicatedThread(name: "camclass-sock") { [self] in ioLoop() } }
        logger.info("socket listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(options.mode, radix: 8))",
                                                   "socket.protocol": "\(CamclassProtocol.version)"])
    }

    static func address(_ path: String) throws -> sockaddr_un { try unixSocketAddress(path) }

    static func someoneListens(_ path: String) -> Bool {
        guard var addr = try? address(path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0
    }

    // MARK: publishing (publishing worker)

    /// Journal entry layout: a fixed header, `topCount` entries of (class, score, start, end), the
    /// source name's UTF-8 bytes, the line.
    private static let headerSize = 40
    private static let entrySize = 16

    /// A raw line (its kind taken from its `type`); delivered to every subscriber whose event
    /// choice includes that kind, with no `top` filtering.
    public func publish(_ line: UnsafeRawBufferPointer) {
        publish(PublishedRecord(kind: RecordKind.of(line: line), json: line))
    }

    /// Appends the record to the journal for the I/O thread (or counts it lost when the I/O thread
    /// is a whole journal behind). Never blocks on a subscriber; allocates nothing.
    public func publish(_ record: PublishedRecord) {
        published.add(1, ordering: .relaxed)
        // A native String's bytes are read in place (small ones from a stack copy): no allocation.
        let inPlace = record.source.utf8.withContiguousStorageIfAvailable { append(record, source: UnsafeRawBufferPointer($0)) }
        if inPlace == nil {
            var copy = record.source
            copy.withUTF8 { append(record, source: UnsafeRawBufferPointer($0)) }
        }
    }

    private func append(_ record: PublishedRecord, source: UnsafeRawBufferPointer) {
        let line = record.json
        let spans = record.spans
        let result = record.result
        let n = (spans != nil && result != nil) ? min(spans!.count, result!.topCount, Int(UInt16.max)) : 0
        // Source names are at most 32 bytes (SourceName); a longer one is cut at 255 bytes (no
        // `sources` filter can name it anyway; `last` keys it by those bytes).
        let sourceCount = min(source.count, 255)
        let total = Self.headerSize + n * Self.entrySize + sourceCount + line.count
        var header: (UInt32, UInt8, UInt8, UInt16, UInt64, UInt64, UInt32, UInt32, UInt32, UInt32) = (
            UInt32(total), record.kind.rawValue, n > 0 ? 1 : 0, UInt16(n), result?.seq ?? 0, result?.captureNs ?? 0,
            UInt32(spans?.open ?? 0), UInt32(spans?.close ?? 0), UInt32(sourceCount), 0)
        let sourceAddress = UInt(bitPattern: source.baseAddress)
        // Cross into the lock with plain integers: the caller's buffers are read during this call only.
        let lineAddress = UInt(bitPattern: line.baseAddress), lineCount = line.count
        let classes = UInt(bitPattern: result?.topClasses.baseAddress), scores = UInt(bitPattern: result?.topScores.baseAddress)
        let starts = UInt(bitPattern: spans?.starts.baseAddress), ends = UInt(bitPattern: spans?.ends.baseAddress)
        let appended = journal.withLock { j -> Bool in
            guard j.ring.free >= total else { j.lost += 1; return false }
            _ = withUnsafeBytes(of: &header) { j.ring.append(UnsafeRawBufferPointer(rebasing: $0[0..<Self.headerSize])) }
            if n > 0, let c = UnsafePointer<Int32>(bitPattern: classes), let sc = UnsafePointer<Float>(bitPattern: scores),
               let st = UnsafePointer<Int32>(bitPattern: starts), let en = UnsafePointer<Int32>(bitPattern: ends) {
                for i in 0..<n {
                    var e: (Int32, Float, UInt32, UInt32) = (c[i], sc[i], UInt32(st[i]), UInt32(en[i]))
                    _ = withUnsafeBytes(of: &e) { j.ring.append($0) }
                }
            }
            if sourceCount > 0 {
                _ = j.ring.append(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: sourceAddress), count: sourceCount))
            }
            _ = j.ring.append(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: lineAddress), count: lineCount))
            j.appended += 1
            return true
        }
        guard appended, !deliverInline() else { return }
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) { signalIO() }
    }

    /// Fans the journal out on the calling (publishing) thread when the I/O thread is between
    /// passes and at most `inlineFanOutMaxSubscribers` are connected: the record reaches readers
    /// without waking the I/O thread (a wake-up and a context switch a record). Sends are
    /// non-blocking, as on the I/O thread. Returns false (the caller wakes the I/O thread) when the
    /// I/O thread is busy or must act: bytes a subscriber's socket did not take (it polls for
    /// POLLOUT), a subscriber to close, or a stop under way.
    private func deliverInline() -> Bool {
        let done = fanOut.withLockIfAvailable { _ -> Bool in
            guard !stopping.load(ordering: .relaxed), ioThread != nil,
                  subscribers.count <= Self.inlineFanOutMaxSubscribers else { return false }
            drainJournal()
            flushWritable()
            publishSnapshot()
            for sub in subscribers where sub.closeReason != nil || sub.lingerReason != nil || !sub.ring.isEmpty {
                return false
            }
            return true
        }
        guard done == true else { return false }
        progress.broadcast()
        return true
    }

    private func signalIO() {
        var one: UInt8 = 1
        _ = write(wakeFD, &one, 1)  // a full pipe already means "wake up"
    }

    public var subscriberCount: Int { snapshot.withLock { $0.subscribers.count } }
    /// Records lost by subscribers that could not keep up (all subscribers, including gone ones).
    public var droppedTotal: Int { snapshot.withLock { $0.droppedTotal } }
    public var disconnectedTotal: Int { snapshot.withLock { $0.disconnectedTotal } }
    /// Malformed or rejected requests answered with an error line.
    public var protocolErrors: Int { snapshot.withLock { $0.protocolErrors } }
    public var floodDisconnects: Int { snapshot.withLock { $0.floodDisconnects } }
    /// Subscribers disconnected to make room at the limit (`evicted`).
    public var evictedTotal: Int { snapshot.withLock { $0.evicted } }
    /// Clients refused at the limit (`too_many_subscribers`).
    public var refusedTotal: Int { snapshot.withLock { $0.refused } }
    /// Times accepting paused because the process ran out of file descriptors.
    public var acceptPauses: Int { snapshot.withLock { $0.acceptPauses } }
    public var publishedCount: Int { published.load(ordering: .relaxed) }
    public var subscriberStats: [SubscriberStats] {
        let now = Clock.monotonicNs()
        return snapshot.withLock { s in
            zip(s.subscribers, s.connectedNs).map { stats, since in
                var st = stats
                st.connectedSeconds = Double(now &- since) / 1e9
                return st
            }
        }
    }
    /// Broadcast by the I/O thread after each pass (a snapshot published), for `stop`'s flush wait
    /// and `waitForSubscribers`.
    private let progress = Condition()

    /// Blocks until at least `n` subscribers are connected (as `subscriberCount` counts them) or
    /// `timeoutNs` passes; whether they are. Woken by the I/O thread's passes (an accepted client
    /// ends one), so no polling. For benchmarks and tests that start publishing once readers are in.
    /// Thread context: any thread but the socket's I/O thread.
    public func waitForSubscribers(_ n: Int, timeoutNs: UInt64) -> Bool {
        progress.wait(timeoutNs: timeoutNs) { subscriberCount >= n }
    }

    /// Stops accepting, gives subscribers up to `flushTimeoutMs` to receive what is published and
    /// buffered, closes them and removes the socket file.
    public func stop(flushTimeoutMs: Int = 1000) {
        guard listenFD >= 0 else { return }
        // Wait for the I/O thread's passes (each one publishes a snapshot and broadcasts `progress`)
        // until nothing is pending, or the time is up.
        let appended = journal.withLock { $0.appended }
        signalIO()
        _ = progress.wait(timeoutNs: UInt64(max(0, flushTimeoutMs)) * 1_000_000, until: {
            !snapshot.withLock { s in s.processed < appended || s.subscribers.contains { $0.buffered > 0 } }
        })
        stopping.store(true, ordering: .relaxed)
        signalIO()
        ioThread?.join()
        fanOut.withLock { _ in
            ioThread = nil
            for sub in subscribers { close(sub.fd) }
            subscribers.removeAll()
            publishSnapshot()
        }
        close(listenFD)
        close(wakeFD)
        close(wakeReadFD)
        listenFD = -1
        wakeFD = -1
        wakeReadFD = -1
        // Remove the socket file only if it is still the one bound here: another daemon may have
        // bound the path since (after someone removed ours), and its socket is not ours to delete.
        var st = stat()
        if let node = boundNode, lstat(options.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK,
           UInt64(st.st_dev) == node.dev, UInt64(st.st_ino) == node.ino {
            unlink(options.path)
        } else {
            logger.notice("socket file left in place: the path no longer is the socket this daemon created",
                          metadata: ["socket.path": "\(options.path)"])
        }
        boundNode = nil
        logger.info("socket closed", metadata: ["socket.path": "\(options.path)", "socket.dropped": "\(droppedTotalIO)"])
    }

    // MARK: I/O thread

    private func ioLoop() {
        var fds: [pollfd] = []
        fds.reserveCapacity(options.maxSubscribers + 2)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { scratch.deallocate() }
        while !stopping.load(ordering: .relaxed) {
            // The poll set is built under `fanOut`; `subscribers` changes only on this thread, so
            // it still matches after `poll` (the worker may only mark one closed or fill a ring,
            // and then wakes this thread).
            let (timeoutMs, polled) = fanOut.withLock { _ in pollSet(&fds) }
            let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMs) }
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("poll failed; the socket stops serving subscribers", metadata: ["error": "\(String(cString: strerror(errno)))"])
                break
            }
            if fds[1].revents != 0 {
                var sink: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
                _ = withUnsafeMutableBytes(of: &sink) { read(wakeReadFD, $0.baseAddress, $0.count) }
            }
            wakePending.store(false, ordering: .sequentiallyConsistent)
            ioPasses.add(1, ordering: .relaxed)
            fanOut.withLock { _ in
                drainJournal()
                for i in 0..<polled {
                    let rev = fds[i + 2].revents
                    if rev == 0 { continue }
                    service(subscribers[i], revents: rev, scratch: scratch)
                }
                if fds[0].revents & Int16(POLLIN) != 0 { acceptAll() }
                flushWritable()
                reapClosed()
                publishSnapshot()
            }
            progress.broadcast()
        }
        // Last chance for what was published just before the stop.
        fanOut.withLock { _ in
            drainJournal()
            flushWritable()
            reapClosed()
        }
    }

    /// Fills `fds` (listening socket, wake-up pipe, then one entry per subscriber, in order) and
    /// returns poll's timeout and the number of subscribers polled. Fan-out state: call with `fanOut`.
    private func pollSet(_ fds: inout [pollfd]) -> (timeoutMs: Int32, polled: Int) {
        fds.removeAll(keepingCapacity: true)
        // No timeout unless something is due at a time: the end of an accept pause, or of an
        // evicted subscriber's linger. Otherwise only descriptors wake this thread (a record
        // through the wake-up pipe, a client, a request): an idle socket costs no wake-ups.
        var dueNs: UInt64 = 0
        let now = Clock.monotonicNs()
        if acceptPausedUntilNs != 0 {
            if now >= acceptPausedUntilNs { acceptPausedUntilNs = 0 } else { dueNs = acceptPausedUntilNs }
        }
        for sub in subscribers where sub.closeReason == nil && sub.lingerReason != nil {
            if dueNs == 0 || sub.lingerUntilNs < dueNs { dueNs = sub.lingerUntilNs }
        }
        let timeoutMs: Int32 = dueNs == 0 ? -1 : Int32(clamping: (dueNs > now ? (dueNs - now) / 1_000_000 : 0) + 1)
        // A negative fd is ignored by poll: while accepting is paused the backlog waits.
        fds.append(pollfd(fd: acceptPausedUntilNs == 0 ? listenFD : -1, events: Int16(POLLIN), revents: 0))
        fds.append(pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0))
        for sub in subscribers {
            var ev = sub.lingerReason == nil ? Int16(POLLIN) : 0
            if !sub.ring.isEmpty { ev |= Int16(POLLOUT) }
            fds.append(pollfd(fd: sub.fd, events: ev, revents: 0))
        }
        return (timeoutMs, subscribers.count)
    }

    private func publishSnapshot() {
        let now = Clock.monotonicNs()
        snapshot.withLock { s in
            s.subscribers.removeAll(keepingCapacity: true)
            s.connectedNs.removeAll(keepingCapacity: true)
            for sub in subscribers {
                s.connectedNs.append(sub.connectedNs)
                s.subscribers.append(SubscriberStats(id: sub.id, delivered: sub.delivered, dropped: sub.dropped, buffered: sub.ring.count,
                                                     filtered: sub.filtered, requests: sub.requests,
                                                     connectedSeconds: Double(now - sub.connectedNs) / 1e9))
            }
            s.processed = processed
            s.droppedTotal = droppedTotalIO
            s.disconnectedTotal = disconnectedTotalIO
            s.protocolErrors = protocolErrorsIO
            s.floodDisconnects = floodDisconnectsIO
            s.evicted = evictedIO
            s.refused = refusedIO
            s.acceptPauses = acceptPausesIO
        }
    }

    /// Moves everything in the journal to the scratch buffer, then fans it out.
    private func drainJournal() {
        var taken = 0
        var lost = 0
        var entries = 0
        journal.withLock { j in
            while !j.ring.isEmpty {
                let chunk = j.ring.readable
                UnsafeMutableRawBufferPointer(rebasing: journalScratch[taken..<(taken + chunk.count)]).copyMemory(from: chunk)
                taken += chunk.count
                j.ring.consume(chunk.count)
            }
            lost = j.lost - j.lostReported
            j.lostReported = j.lost
            entries = j.appended
        }
        if lost > 0 {
            let now = Clock.monotonicNs()
            for sub in subscribers where sub.isActive {
                sub.dropped += lost
                sub.pendingDropped += lost
                droppedTotalIO += lost
                if sub.losingSinceNs == 0 { sub.losingSinceNs = now }
            }
        }
        var off = 0
        let base = UnsafeRawBufferPointer(journalScratch)
        while off + Self.headerSize <= taken {
            let total = Int(base.loadUnaligned(fromByteOffset: off, as: UInt32.self))
            deliver(entryAt: off, total: total)
            off += total
        }
        processed = entries
    }

    /// One journal entry, decoded in place.
    private struct Entry {
        var kind: RecordKind
        var count: Int
        var seq: UInt64
        var captureNs: UInt64
        var open: Int
        var close: Int
        var entries: UnsafeRawBufferPointer
        /// The record's source name (UTF-8; empty = about no source).
        var source: UnsafeRawBufferPointer
        var json: UnsafeRawBufferPointer

        func classID(_ i: Int) -> Int32 { entries.loadUnaligned(fromByteOffset: i * 16, as: Int32.self) }
        func score(_ i: Int) -> Float { entries.loadUnaligned(fromByteOffset: i * 16 + 4, as: Float.self) }
        func span(_ i: Int) -> Range<Int> {
            Int(entries.loadUnaligned(fromByteOffset: i * 16 + 8, as: UInt32.self))..<Int(entries.loadUnaligned(fromByteOffset: i * 16 + 12, as: UInt32.self))
        }
    }

    private func deliver(entryAt off: Int, total: Int) {
        let base = UnsafeRawBufferPointer(journalScratch)
        let kind = RecordKind(rawValue: base[off + 4]) ?? .other
        let count = Int(base.loadUnaligned(fromByteOffset: off + 6, as: UInt16.self))
        let entriesStart = off + Self.headerSize
        let sourceStart = entriesStart + count * Self.entrySize
        let jsonStart = sourceStart + Int(base.loadUnaligned(fromByteOffset: off + 32, as: UInt32.self))
        let e = Entry(kind: kind, count: count,
                      seq: base.loadUnaligned(fromByteOffset: off + 8, as: UInt64.self),
                      captureNs: base.loadUnaligned(fromByteOffset: off + 16, as: UInt64.self),
                      open: Int(base.loadUnaligned(fromByteOffset: off + 24, as: UInt32.self)),
                      close: Int(base.loadUnaligned(fromByteOffset: off + 28, as: UInt32.self)),
                      entries: UnsafeRawBufferPointer(rebasing: base[entriesStart..<sourceStart]),
                      source: UnsafeRawBufferPointer(rebasing: base[sourceStart..<jsonStart]),
                      json: UnsafeRawBufferPointer(rebasing: base[jsonStart..<(off + total)]))
        if kind == .classification && e.json.count <= Self.maxLastRecordBytes {
            keepLast(e)
        }
        for sub in subscribers where sub.isActive {
            deliver(e, to: sub)
        }
    }

    /// Keeps `e` as its source's latest classification (and the latest of all).
    private func keepLast(_ e: Entry) {
        lastTick += 1
        var index = -1
        for (i, slot) in lastSlots.enumerated() where slot.named(e.source) { index = i; break }
        if index < 0 {
            if lastSlots.count < Self.maxLastSources {
                lastSlots.append(LastSlot(name: e.source))  // once per new source
                index = lastSlots.count - 1
            } else {
                // A 17th source: it replaces the one seen least recently (its name's storage is reused).
                index = 0
                for (i, slot) in lastSlots.enumerated() where slot.seen < lastSlots[index].seen { index = i }
                lastSlots[index].name.removeAll(keepingCapacity: true)
                lastSlots[index].name.append(contentsOf: e.source)
            }
        }
        let slot = lastSlots[index]
        UnsafeMutableRawBufferPointer(rebasing: slot.line[0..<e.json.count]).copyMemory(from: e.json)
        slot.count = e.json.count
        slot.seen = lastTick
        latestSlot = index
    }

    /// Whether `sub`'s `sources` filter lets a record of `source` through. Records about no source
    /// always pass.
    private static func wants(_ sub: Subscriber, source: UnsafeRawBufferPointer) -> Bool {
        if sub.sources.isEmpty || source.isEmpty { return true }
        for name in sub.sources where name.elementsEqual(source) { return true }
        return false
    }

    private func deliver(_ e: Entry, to sub: Subscriber) {
        let f = sub.filter
        guard Self.wants(sub, source: e.source) else { sub.filtered += 1; return }
        switch e.kind {
        case .classification:
            guard f.classifications else { sub.filtered += 1; return }
            var picked = e.count
            var cut = false
            if f.filtersEntries && e.count > 0 {
                picked = 0
                let limit = f.topK ?? Int.max
                for i in 0..<e.count {
                    if Double(e.score(i)) < f.minScore { continue }
                    if !f.classes.isEmpty && !Self.contains(f.classes, Int(e.classID(i))) { continue }
                    selected[picked] = Int32(i)
                    picked += 1
                    if picked == limit { break }
                }
                if picked == 0 { sub.filtered += 1; return }
                cut = picked != e.count
            }
            sub.matched += 1
            if f.everyN > 1 && (sub.matched - 1) % f.everyN != 0 { sub.filtered += 1; return }
            if let interval = f.maxRateIntervalNs {
                // The interval comes from a checked conversion (SubscriptionFilter.maxRateRange) and
                // the sums saturate: a client's request must never trap the I/O thread (issue 11 F1).
                let t = e.captureNs
                // A frame up to 5 % of the interval early still counts as on time (frame clocks
                // jitter); the average rate stays at most max_rate_hz because `next` advances by
                // whole intervals.
                if sub.rated && Self.saturatingAdd(t, interval / 20) < sub.nextAllowedNs { sub.filtered += 1; return }
                // Keep the average rate even when frames do not land exactly on the interval.
                let onSchedule = sub.rated && (t < sub.nextAllowedNs || t - sub.nextAllowedNs < interval)
                sub.nextAllowedNs = Self.saturatingAdd(onSchedule ? sub.nextAllowedNs : t, interval)
                sub.rated = true
            }
            if cut {
                var length = e.open + (e.json.count - e.close) + (picked - 1)
                for j in 0..<picked { length += e.span(Int(selected[j])).count }
                guard makeRoom(sub, for: length) else { return }
                _ = sub.ring.append(UnsafeRawBufferPointer(rebasing: e.json[0..<e.open]))
                for j in 0..<picked {
                    if j > 0 { _ = StaticString(",").withUTF8Buffer { sub.ring.append(UnsafeRawBufferPointer($0)) } }
                    let s = e.span(Int(selected[j]))
                    _ = sub.ring.append(UnsafeRawBufferPointer(rebasing: e.json[s]))
                }
                _ = sub.ring.append(UnsafeRawBufferPointer(rebasing: e.json[e.close...]))
                sub.delivered += 1
                return
            }
        case .change, .camera:
            guard f.events.contains(e.kind) else { sub.filtered += 1; return }
        default:
            break
        }
        guard makeRoom(sub, for: e.json.count) else { return }
        _ = sub.ring.append(e.json)
        sub.delivered += 1
    }

    static func saturatingAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? UInt64.max : sum
    }

    static func contains(_ sorted: [Int], _ x: Int) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] == x
    }

    /// Tells the subscriber about earlier losses first (when both fit), then reports whether
    /// `length` more bytes fit; if not, the record counts as dropped for this subscriber.
    private func makeRoom(_ sub: Subscriber, for length: Int) -> Bool {
        if sub.pendingDropped > 0 {
            notice.reset()
            notice.ascii("{\"type\":\"dropped\",\"count\":")
            notice.uint(UInt64(sub.pendingDropped))
            notice.ascii(",\"total\":")
            notice.uint(UInt64(sub.dropped))
            notice.ascii("}\n")
            if sub.ring.free >= notice.count + length {
                _ = sub.ring.append(notice.bytes)
                sub.pendingDropped = 0
                sub.losingSinceNs = 0  // caught up
            }
        }
        if sub.pendingDropped == 0 && sub.ring.free >= length { return true }
        sub.dropped += 1
        sub.pendingDropped += 1
        droppedTotalIO += 1
        if sub.losingSinceNs == 0 { sub.losingSinceNs = Clock.monotonicNs() }
        return false
    }

    /// A reply to a request (ack, status, last, error); lost like a record if the buffer is full.
    private func reply(_ sub: Subscriber, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            if makeRoom(sub, for: raw.count) { _ = sub.ring.append(raw) }
        }
    }

    private func acceptAll() {
        while true {
            // Non-blocking and close-on-exec from the start (no window for an exec in between).
            let fd = acceptNonBlocking(listenFD)
            if fd < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM {
                    // The connection stays in the backlog, so poll would report it again at once:
                    // a busy loop (issue 11 F9). Leave the listening socket out of poll until a
                    // subscriber leaves or the backoff ends.
                    acceptPausedUntilNs = Clock.monotonicNs() + UInt64(max(1, options.acceptBackoffMs)) * 1_000_000
                    acceptPausesIO += 1
                    if let suppressed = acceptFailureLog.admit() {
                        logger.warning("cannot accept subscribers: \(String(cString: strerror(e))); new connections wait (raise the open-files limit, LimitNOFILE=, or lower publish.max_subscribers)",
                                       metadata: ["socket.backoff_ms": "\(options.acceptBackoffMs)", "socket.subscribers": "\(subscribers.count)",
                                                  "log.suppressed": "\(suppressed)"])
                    }
                }
                return  // EAGAIN: none left
            }
            var sndbuf = options.kernelSendBufferBytes
            do {
                try syscall("setsockopt(SO_SNDBUF)") { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, socklen_t(MemoryLayout<Int32>.size)) }
            } catch {
                // Unusual (a bad descriptor or option); the subscriber works with the kernel's default buffer.
                if let suppressed = acceptFailureLog.admit() {
                    logger.warning("subscriber socket: \(error); using the kernel's send buffer size", metadata: ["log.suppressed": "\(suppressed)"])
                }
            }
            if activeSubscribers >= options.maxSubscribers && !evictLongestLosing() {
                refusedIO += 1
                let msg = ProtocolError(.tooManySubscribers, "too many subscribers (max \(options.maxSubscribers)); raise publish.max_subscribers",
                                        disconnect: true).encode()
                _ = msg.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
                if let suppressed = refusedLog.admit() {
                    logger.warning("subscriber refused: limit reached", metadata: ["socket.max_subscribers": "\(options.maxSubscribers)",
                                                                                  "log.suppressed": "\(suppressed)"])
                }
                continue
            }
            let id = nextID
            nextID += 1
            let sub = Subscriber(id: id, fd: fd, capacity: options.subscriberBufferBytes, maxRequest: options.maxRequestBytes,
                                 tokens: Double(options.maxRequestsPerSecond))
            let hello = currentContext.hello.encode()
            hello.withUnsafeBytes { _ = sub.ring.append($0) }
            subscribers.append(sub)
            logger.debug("subscriber connected", metadata: ["subscriber.id": "\(id)"])
        }
    }

    private var activeSubscribers: Int {
        var n = 0
        for sub in subscribers where sub.isActive { n += 1 }
        return n
    }

    /// At the limit: disconnects the subscriber that has been losing records continuously for
    /// longest (at least `evictLosingAfterMs`), telling it why. Returns whether one was evicted.
    private func evictLongestLosing() -> Bool {
        guard let afterMs = options.evictLosingAfterMs else { return false }
        let now = Clock.monotonicNs()
        let minimumNs = UInt64(max(0, afterMs)) * 1_000_000
        var victim: Subscriber?
        for sub in subscribers where sub.isActive && sub.losingSinceNs != 0 && now - sub.losingSinceNs >= minimumNs {
            if victim == nil || sub.losingSinceNs < victim!.losingSinceNs { victim = sub }
        }
        guard let victim else { return false }
        let seconds = Double(now - victim.losingSinceNs) / 1e9
        evictedIO += 1
        disconnect(victim, ProtocolError(.evicted, "the subscriber limit (publish.max_subscribers = \(options.maxSubscribers)) was reached and this connection had been losing records for \(Int(seconds.rounded())) s without catching up; it was disconnected to make room. Read faster, or subscribe to fewer records (every_n, max_rate_hz)",
                                         disconnect: true), reason: "evicted: losing records for \(Int(seconds.rounded())) s at the subscriber limit",
                   lingerMs: 2000)
        return true
    }

    private func service(_ sub: Subscriber, revents: Int16, scratch: UnsafeMutableRawBufferPointer) {
        guard sub.closeReason == nil else { return }
        if let reason = sub.lingerReason {
            if revents & Int16(POLLOUT) != 0, let why = drain(sub) { sub.closeReason = why; return }
            if revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { sub.closeReason = reason }
            return
        }
        if revents & Int16(POLLIN) != 0 {
            var budget = 64 * 1024  // per wake-up, so one chatty client cannot starve the others
            while budget > 0 && sub.closeReason == nil {
                let n = read(sub.fd, scratch.baseAddress, scratch.count)
                if n > 0 {
                    budget -= n
                    consumeInput(sub, UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
                    continue
                }
                if n == 0 { sub.closeReason = "closed by peer"; break }
                if errno == EINTR { continue }
                if errno != EAGAIN { sub.closeReason = "read: \(String(cString: strerror(errno)))" }
                break
            }
        }
        if sub.closeReason == nil && revents & Int16(POLLOUT) != 0 {
            if let why = drain(sub) { sub.closeReason = why }
        }
        if sub.closeReason == nil && revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 && revents & Int16(POLLIN) == 0 {
            sub.closeReason = "connection error"
        }
    }

    /// Splits input into request lines and handles each.
    private func consumeInput(_ sub: Subscriber, _ bytes: UnsafeRawBufferPointer) {
        for b in bytes {
            if sub.closeReason != nil { return }
            if b == 0x0A {
                var len = sub.inputCount
                if len > 0 && sub.input[len - 1] == 0x0D { len -= 1 }
                sub.inputCount = 0
                handleRequest(sub, UnsafeRawBufferPointer(rebasing: sub.input[0..<len]))
                continue
            }
            if sub.inputCount >= options.maxRequestBytes {
                protocolErrorsIO += 1
                disconnect(sub, ProtocolError(.requestTooLong, "request line longer than \(options.maxRequestBytes) bytes (publish.max_request_bytes); disconnecting",
                                              disconnect: true), reason: "request line too long")
                return
            }
            sub.input[sub.inputCount] = b
            sub.inputCount += 1
        }
    }

    private func handleRequest(_ sub: Subscriber, _ line: UnsafeRawBufferPointer) {
        sub.requests += 1
        // Flood control: a token bucket of max_requests_per_second, refilled continuously.
        let now = Clock.monotonicNs()
        let rate = Double(options.maxRequestsPerSecond)
        sub.tokens = min(rate, sub.tokens + Double(now - sub.lastRefillNs) / 1e9 * rate)
        sub.lastRefillNs = now
        if sub.tokens < 1 {
            floodDisconnectsIO += 1
            protocolErrorsIO += 1
            disconnect(sub, ProtocolError(.flood, "more than \(options.maxRequestsPerSecond) requests per second (publish.max_requests_per_second); disconnecting",
                                          disconnect: true), reason: "request flood")
            return
        }
        sub.tokens -= 1
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }  // blank lines are keep-alives
        let context = currentContext
        let request: ProtocolRequest
        do {
            request = try ProtocolRequest.parse(line, vocabulary: context.vocabulary, maxTopK: context.maxTopK)
        } catch {
            protocolErrorsIO += 1
            reply(sub, error.encode())
            return
        }
        switch request {
        case .subscribe(let filter):
            sub.filter = filter
            sub.sources = filter.sources.map { Array($0.utf8) }
            sub.matched = 0
            sub.rated = false
            let known = knownSources(context)
            reply(sub, filter.encodeAck(unknownSources: filter.sources.filter { !known.contains($0) }))
            logger.debug("subscriber filter set", metadata: ["subscriber.id": "\(sub.id)"])
        case .status:
            if let status = context.status {
                reply(sub, status())
            } else {
                reply(sub, ProtocolError(.unavailable, "this publisher has no status source", request: "status").encode())
            }
        case .last(let source):
            let slot: LastSlot
            if let source {
                let wanted = Array(source.utf8)
                guard let found = lastSlots.first(where: { $0.name == wanted && $0.count > 0 }) else {
                    let known = knownSources(context)
                    if known.contains(source) {
                        reply(sub, ProtocolError(.noResultYet, "source '\(source)' has not published a classification yet; try again shortly",
                                                 request: "last").encode())
                    } else {
                        let list = known.isEmpty ? "none yet" : known.sorted().joined(separator: ", ")
                        reply(sub, ProtocolError(.unknownSource, "last: no source is named '\(source)' (known: \(list))", request: "last").encode())
                    }
                    return
                }
                slot = found
            } else {
                guard latestSlot >= 0 && lastSlots[latestSlot].count > 0 else {
                    reply(sub, ProtocolError(.noResultYet, "no classification has been published yet; try again shortly", request: "last").encode())
                    return
                }
                slot = lastSlots[latestSlot]
            }
            let prefix = Array("{\"type\":\"classification\",".utf8)
            let stored = UnsafeRawBufferPointer(rebasing: slot.line[0..<slot.count])
            var out: [UInt8] = []
            out.reserveCapacity(slot.count + 16)
            if stored.starts(with: prefix) {
                out += prefix
                out += Array("\"reply\":\"last\",".utf8)
                out += stored[prefix.count...]
            } else {
                out += stored
            }
            reply(sub, out)
        }
    }

    /// Source names the daemon has now (the hello's list) or has published classifications of.
    private func knownSources(_ context: ProtocolContext) -> Set<String> {
        var known = Set(context.hello.sources.map(\.name))
        for slot in lastSlots where !slot.name.isEmpty { known.insert(String(decoding: slot.name, as: UTF8.self)) }
        return known
    }

    /// Sends `error` after what is buffered (best effort) and closes the connection. With
    /// `lingerMs`, what does not go out at once is still sent for that long (a slow reader being
    /// evicted still gets its whole records and the reason), then the connection closes.
    private func disconnect(_ sub: Subscriber, _ error: ProtocolError, reason: String, lingerMs: Int = 0) {
        _ = drain(sub)
        let bytes = error.encode()
        bytes.withUnsafeBytes { raw in
            // Make room by dropping the newest whole records (never the oldest, which may be half
            // sent): the error line must not be glued to a torn record.
            if sub.ring.dropNewestLines(toFit: raw.count) { _ = sub.ring.append(raw) }
        }
        _ = drain(sub)
        if lingerMs > 0 && !sub.ring.isEmpty {
            sub.lingerReason = reason
            sub.lingerUntilNs = Clock.monotonicNs() + UInt64(lingerMs) * 1_000_000
            if let suppressed = protocolRuleLog.admit() {
                logger.notice("subscriber disconnected by protocol rule", metadata: ["subscriber.id": "\(sub.id)", "reason": "\(reason)",
                                                                                    "log.suppressed": "\(suppressed)"])
            }
            return
        }
        // Read what the client already sent, so closing does not reset the connection before it
        // can read the error (a socket closed with unread input resets its peer).
        var discard: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        for _ in 0..<256 {
            let n = withUnsafeMutableBytes(of: &discard) { read(sub.fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
        }
        shutdown(sub.fd, Int32(SHUT_WR))
        sub.closeReason = reason
        if let suppressed = protocolRuleLog.admit() {
            logger.notice("subscriber disconnected by protocol rule", metadata: ["subscriber.id": "\(sub.id)", "reason": "\(reason)",
                                                                                "log.suppressed": "\(suppressed)"])
        }
    }

    /// Writes as much of `sub`'s buffer as the socket takes. Returns a reason to disconnect, or nil.
    private func drain(_ sub: Subscriber) -> String? {
        while !sub.ring.isEmpty {
            let chunk = sub.ring.readable
            let n = send(sub.fd, chunk.baseAddress, chunk.count, Int32(MSG_NOSIGNAL))
            if n > 0 { sub.ring.consume(n); continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return nil }
            return "write: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    private func flushWritable() {
        for sub in subscribers where sub.closeReason == nil && !sub.ring.isEmpty {
            if let why = drain(sub) { sub.closeReason = why }
        }
        // Evicted subscribers close once their last line is out, or when their time is up.
        let now = Clock.monotonicNs()
        for sub in subscribers where sub.closeReason == nil {
            guard let reason = sub.lingerReason, sub.ring.isEmpty || now >= sub.lingerUntilNs else { continue }
            shutdown(sub.fd, Int32(SHUT_WR))
            sub.closeReason = reason
        }
    }

    private func reapClosed() {
        guard subscribers.contains(where: { $0.closeReason != nil }) else { return }
        acceptPausedUntilNs = 0  // descriptors are freed: accepting may work again
        for sub in subscribers {
            guard let why = sub.closeReason else { continue }
            close(sub.fd)
            disconnectedTotalIO += 1
            logger.debug("subscriber disconnected", metadata: ["subscriber.id": "\(sub.id)", "reason": "\(why)",
                                                              "subscriber.delivered": "\(sub.delivered)", "subscriber.dropped": "\(sub.dropped)"])
        }
        subscribers.removeAll { $0.closeReason != nil }
    }
}
