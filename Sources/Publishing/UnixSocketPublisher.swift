import Glibc
import Logging
import Support
import Synchronization

public struct SocketOptions: Sendable {
    public var path: String
    /// File mode of the socket (0660: owner and group may connect).
    public var mode: mode_t = 0o660
    /// Bytes buffered per subscriber; when full, that subscriber's records are dropped and counted.
    public var subscriberBufferBytes = 256 * 1024
    public var maxSubscribers = 64
    /// Longest request line a client may send.
    public var maxRequestBytes = 4096
    /// Kernel send buffer per subscriber socket. Kept modest so that a stalled subscriber's backlog
    /// sits in its own accounted buffer (and is dropped and counted there), not hidden in the kernel.
    public var kernelSendBufferBytes: Int32 = 32 * 1024

    public init(path: String) { self.path = path }
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

/// Publishes JSON Lines to every client of a Unix stream socket. Each subscriber has its own
/// bounded buffer: a slow or stuck subscriber loses records (counted, and told with a `dropped`
/// record when it catches up) but never delays the pipeline or other subscribers.
/// Thread context: `publish` from the result thread; a dedicated I/O thread accepts, writes and
/// reads; `start`/`stop` from the owner.
public final class UnixSocketPublisher: RecordSink, @unchecked Sendable {
    public let options: SocketOptions
    private let logger: Logger
    private var listenFD: Int32 = -1
    private var wakeFD: Int32 = -1      // write end of the wake-up pipe
    private var wakeReadFD: Int32 = -1
    private var ioThread: DedicatedThread?
    private let state: Mutex<State>
    private let stopping = Atomic<Bool>(false)
    private let published = Atomic<Int>(0)

    private struct State: ~Copyable {
        var subscribers: [Subscriber] = []
        var nextID = 1
        var droppedTotal = 0
        var disconnectedTotal = 0
    }

    final class Subscriber: @unchecked Sendable {
        let id: Int
        let fd: Int32
        var ring: ByteRing
        var dropped = 0          // records lost since connecting
        var pendingDropped = 0   // lost and not yet told
        var delivered = 0
        var inputPending = 0     // bytes of the current request line seen so far
        var closing = false
        init(id: Int, fd: Int32, capacity: Int) {
            self.id = id
            self.fd = fd
            ring = ByteRing(capacity: capacity)
        }
    }

    public struct SubscriberStats: Sendable, Equatable {
        public var id: Int
        public var delivered: Int
        public var dropped: Int
        public var buffered: Int
    }

    public init(options: SocketOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        state = Mutex(State())
    }

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
            try syscall("listen(\(path))") { listen(listenFD, 64) }
            var pair: (Int32, Int32) = (-1, -1)
            try withUnsafeMutableBytes(of: &pair) { raw in
                _ = try syscall("pipe") { pipe(raw.baseAddress!.assumingMemoryBound(to: Int32.self)) }
            }
            for fd in [pair.0, pair.1] {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            wakeReadFD = pair.0
            wakeFD = pair.1
        } catch let e as SystemCallError {
            if listenFD >= 0 { close(listenFD); listenFD = -1 }
            throw SocketPublisherError.system(path, e)
        }
        stopping.store(false, ordering: .relaxed)
        ioThread = DedicatedThread(name: "camclass-sock") { [self] in ioLoop() }
        logger.info("socket listening", metadata: ["socket.path": "\(path)", "socket.mode": "\(String(options.mode, radix: 8))"])
    }

    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemCallError("socket path too long (\(bytes.count) bytes, max 107)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

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

    /// Copies `line` into every subscriber's buffer (or counts it as dropped for that subscriber).
    public func publish(_ line: UnsafeRawBufferPointer) {
        published.add(1, ordering: .relaxed)
        var wake = false
        state.withLock { s in
            for sub in s.subscribers where !sub.closing {
                if sub.pendingDropped > 0 {
                    var notice = ByteWriter(capacity: 64)
                    notice.ascii("{\"type\":\"dropped\",\"count\":")
                    notice.uint(UInt64(sub.pendingDropped))
                    notice.ascii("}\n")
                    if sub.ring.free >= notice.count + line.count {
                        _ = sub.ring.append(notice.bytes)
                        sub.pendingDropped = 0
                    }
                }
                if sub.pendingDropped == 0 && sub.ring.append(line) {
                    sub.delivered += 1
                    wake = true
                } else {
                    sub.dropped += 1
                    sub.pendingDropped += 1
                    s.droppedTotal += 1
                }
            }
        }
        if wake { signalIO() }
    }

    private func signalIO() {
        var one: UInt8 = 1
        _ = write(wakeFD, &one, 1)  // a full pipe already means "wake up"
    }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }
    public var droppedTotal: Int { state.withLock { $0.droppedTotal } }
    public var publishedCount: Int { published.load(ordering: .relaxed) }
    public var subscriberStats: [SubscriberStats] {
        state.withLock { s in s.subscribers.map { SubscriberStats(id: $0.id, delivered: $0.delivered, dropped: $0.dropped, buffered: $0.ring.count) } }
    }

    /// Stops accepting, gives subscribers up to `flushTimeoutMs` to receive what is buffered,
    /// closes them and removes the socket file.
    public func stop(flushTimeoutMs: Int = 1000) {
        guard listenFD >= 0 else { return }
        let deadline = Clock.monotonicNs() + UInt64(flushTimeoutMs) * 1_000_000
        while Clock.monotonicNs() < deadline {
            let pending = state.withLock { s in s.subscribers.contains { !$0.ring.isEmpty && !$0.closing } }
            if !pending { break }
            signalIO()
            usleep(2000)
        }
        stopping.store(true, ordering: .relaxed)
        signalIO()
        ioThread?.join()
        ioThread = nil
        state.withLock { s in
            for sub in s.subscribers { close(sub.fd) }
            s.subscribers.removeAll()
        }
        close(listenFD)
        close(wakeFD)
        close(wakeReadFD)
        listenFD = -1
        unlink(options.path)
        logger.info("socket closed", metadata: ["socket.path": "\(options.path)"])
    }

    private func ioLoop() {
        var fds: [pollfd] = []
        fds.reserveCapacity(options.maxSubscribers + 2)
        var ids: [Int] = []
        ids.reserveCapacity(options.maxSubscribers + 2)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { scratch.deallocate() }
        while !stopping.load(ordering: .relaxed) {
            fds.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0))
            state.withLock { s in
                for sub in s.subscribers {
                    var ev = Int16(POLLIN)
                    if !sub.ring.isEmpty { ev |= Int16(POLLOUT) }
                    fds.append(pollfd(fd: sub.fd, events: ev, revents: 0))
                    ids.append(sub.id)
                }
            }
            let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 500) }
            if n < 0 { if errno == EINTR { continue }; logger.error("poll failed", metadata: ["error": "\(errno)"]); break }
            if n == 0 { continue }
            if fds[1].revents != 0 {
                var sink: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
                _ = withUnsafeMutableBytes(of: &sink) { read(wakeReadFD, $0.baseAddress, $0.count) }
            }
            if fds[0].revents & Int16(POLLIN) != 0 { acceptAll() }
            for i in 0..<ids.count {
                let rev = fds[i + 2].revents
                if rev == 0 { continue }
                serviceSubscriber(id: ids[i], revents: rev, scratch: scratch)
            }
            // Flush what publishers appended while we were busy (edge: no new wake byte).
            flushWritable()
        }
    }

    private func acceptAll() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return  // EAGAIN: none left
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var sndbuf = options.kernelSendBufferBytes
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, socklen_t(MemoryLayout<Int32>.size))
            var full = false
            var id = 0
            state.withLock { s in
                if s.subscribers.count >= options.maxSubscribers {
                    full = true
                    return
                }
                id = s.nextID
                s.nextID += 1
                s.subscribers.append(Subscriber(id: id, fd: fd, capacity: options.subscriberBufferBytes))
            }
            if full {
                let msg = "{\"type\":\"error\",\"error\":\"too many subscribers (max \(options.maxSubscribers))\"}\n"
                _ = msg.withCString { write(fd, $0, strlen($0)) }
                close(fd)
                logger.warning("subscriber refused: limit reached", metadata: ["socket.max_subscribers": "\(options.maxSubscribers)"])
                continue
            }
            logger.info("subscriber connected", metadata: ["subscriber.id": "\(id)"])
        }
    }

    private func serviceSubscriber(id: Int, revents: Int16, scratch: UnsafeMutableRawBufferPointer) {
        var disconnectReason: String?
        var fd: Int32 = -1
        state.withLock { s in
            guard let sub = s.subscribers.first(where: { $0.id == id }) else { return }
            fd = sub.fd
            if revents & Int16(POLLIN) != 0 {
                // Requests are not interpreted yet: read and discard, enforcing the line limit.
                while true {
                    let n = read(sub.fd, scratch.baseAddress, scratch.count)
                    if n > 0 {
                        let bytes = UnsafeRawBufferPointer(rebasing: scratch[0..<n])
                        for b in bytes {
                            if b == 0x0A { sub.inputPending = 0 } else { sub.inputPending += 1 }
                        }
                        if sub.inputPending > options.maxRequestBytes {
                            disconnectReason = "request line longer than \(options.maxRequestBytes) bytes"
                            break
                        }
                        continue
                    }
                    if n == 0 { disconnectReason = "closed by peer"; break }
                    if errno == EINTR { continue }
                    if errno != EAGAIN { disconnectReason = "read: \(String(cString: strerror(errno)))" }
                    break
                }
            }
            if disconnectReason == nil && revents & Int16(POLLOUT) != 0 {
                if let why = drain(sub) { disconnectReason = why }
            }
            if disconnectReason == nil && revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 && revents & Int16(POLLIN) == 0 {
                disconnectReason = "connection error"
            }
            if disconnectReason != nil {
                s.subscribers.removeAll { $0.id == id }
                s.disconnectedTotal += 1
            }
        }
        if let disconnectReason {
            close(fd)
            logger.info("subscriber disconnected", metadata: ["subscriber.id": "\(id)", "reason": "\(disconnectReason)"])
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
        var gone: [(Int, Int32, String)] = []
        state.withLock { s in
            for sub in s.subscribers where !sub.ring.isEmpty {
                if let why = drain(sub) { gone.append((sub.id, sub.fd, why)) }
            }
            if !gone.isEmpty {
                s.subscribers.removeAll { sub in gone.contains { $0.0 == sub.id } }
                s.disconnectedTotal += gone.count
            }
        }
        for (id, fd, why) in gone {
            close(fd)
            logger.info("subscriber disconnected", metadata: ["subscriber.id": "\(id)", "reason": "\(why)"])
        }
    }
}
