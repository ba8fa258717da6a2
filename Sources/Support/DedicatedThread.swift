import CSystem
import Glibc

/// A named OS thread for blocking work (capture, decode, inference waits, socket I/O), kept off
/// Swift's cooperative pool. `join` waits for the body to return.
public final class DedicatedThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let box: Box
    public let name: String

    private final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        let name: String
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts `body` on a new thread named `name` (at most 15 bytes are shown by `ps`/`top`).
    public init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        box = Box(name: name, body: body)
        let context = Unmanaged.passRetained(box).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            // Name the thread for `top -H`/`ps -L` (prctl is variadic; /proc does the same).
            let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                let short = String(box.name.prefix(15))
                _ = short.withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
            box.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create(\(name)) failed: \(rc)")
    }

    private var joined = false

    /// Waits for the thread to finish. Call from another thread; later calls return at once.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    /// A thread nobody joins is detached when its handle goes, so its stack is freed when it ends.
    deinit {
        if !joined { pthread_detach(thread) }
    }

    /// Starts `body` on a thread that nobody joins (its stack is freed when it ends).
    public static func detach(name: String, body: @escaping @Sendable () -> Void) {
        _ = DedicatedThread(name: name, body: body)  // deinit detaches it
    }
}

/// An error from a system call, carrying the call's name and errno (like v4l2-ctl's traces).
public struct SystemCallError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }
    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Runs a system call, retrying on EINTR; a result of -1 throws `SystemCallError(name, errno)`.
@discardableResult
public func syscall<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = errno
        if e == EINTR { continue }
        throw SystemCallError(name(), errno: e)
    }
}

/// Runs blocking work (model loading, joins) on a dedicated thread and awaits its result, so Swift's
/// cooperative pool — as many threads as cores — is never blocked.
public func onDedicatedThread<T: Sendable>(_ name: String = "camclass-work",
                                           _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        DedicatedThread.detach(name: name) {
            do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
        }
    }
}

/// A pipe whose ends are non-blocking and close-on-exec from creation (a wake-up pipe).
/// - Throws: `SystemCallError` naming pipe2.
public func makeWakePipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    try syscall("pipe2") { csystem_pipe2(&fds, O_NONBLOCK | O_CLOEXEC) }
    return (fds[0], fds[1])
}

/// accept4(2) on a listening socket: the connection non-blocking and close-on-exec from creation,
/// so no exec can inherit it between accept and fcntl. -1 with errno set, as accept.
public func acceptNonBlocking(_ listenFD: Int32) -> Int32 {
    csystem_accept4(listenFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
}
