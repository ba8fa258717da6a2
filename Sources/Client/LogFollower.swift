import WireFormat
import Glibc
import Support

/// The log cannot be watched for changes: inotify refused (a limit reached, no permission).
public struct LogFollowerError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let cause: SystemCallError
    public init(path: String, cause: SystemCallError) {
        self.path = path
        self.cause = cause
    }

    public var description: String {
        let hint: String
        switch cause.errno {
        case EMFILE: hint = "; the inotify instances (sysctl fs.inotify.max_user_instances) or open files (ulimit -n) are used up"
        case ENOSPC: hint = "; the inotify watches are used up (raise sysctl fs.inotify.max_user_watches)"
        case EACCES: hint = "; the log's directory is not readable by this user (run as a member of the log's group)"
        default: hint = ""
        }
        return "cannot watch the log '\(path)' for new lines: \(cause)\(hint)"
    }
}

/// Follows a rolling log like `tail -F`, across rotations: when the file is renamed away
/// (`log` → `log.1`) it finishes the old file, reads any rotated file it skipped entirely (when it
/// fell more than one rotation behind), then continues with the new file from its start.
/// Emits complete lines only. (`camclass tail`.)
///
/// Waiting costs no wake-ups: `poll` blocks on an inotify descriptor that watches the open file
/// (written, truncated, renamed, removed) and its directory (the file's name created or renamed
/// into place; while the directory does not exist, its nearest existing ancestor).
/// Thread context: one thread at a time.
public final class LogFollower: @unchecked Sendable {  // used by one thread at a time
    public let path: String
    private let directory: String
    private let fileName: [UInt8]
    private var fd: Int32 = -1
    private var inode: ino_t = 0
    private var device: dev_t = 0
    private var offset = 0
    private var partial: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Rotated files searched for the file being followed (for skipped files).
    public var maxRotated = 1000

    // inotify: one descriptor, a watch on the open file and one on its directory.
    private let inotifyFD: Int32
    private var fileWatch: Int32 = -1
    private var directoryWatch: Int32 = -1
    /// The directory watch is on an ancestor (the log's directory does not exist yet).
    private var watchingAncestor = false
    private var directoryWatchLost = false
    private var events = [UInt8](repeating: 0, count: 8192)

    private static let fileEvents = UInt32(IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
    // IN_MOVED_FROM/IN_DELETE of other names: the renames and removals of a rotation in progress.
    private static let directoryEvents = UInt32(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
                                                | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
    /// A gap in the rotated files' numbering that stays this long without a rename in the
    /// directory is not a rotation in progress (a file removed by hand).
    static let renameQuietMs = 200
    /// Longest a rotation in progress is waited for before following the current file as it is.
    static let rotationGiveUpMs = 5000

    /// - Parameter lastLines: start with this many of the file's last lines (nil = from its start).
    /// - Throws: `LogFollowerError` when inotify refuses (limits, permission). A missing file (or
    ///   directory) is not an error: it is followed from its start once it appears.
    public init(path: String, lastLines: Int? = 10) throws(LogFollowerError) {
        self.path = path
        let slash = path.lastIndex(of: "/")
        directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        fileName = Array((slash.map { String(path[path.index(after: $0)...]) } ?? path).utf8)
        let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard ifd >= 0 else {
            throw LogFollowerError(path: path, cause: SystemCallError("inotify_init1", errno: errno))
        }
        inotifyFD = ifd
        try watchDirectory()
        if try openCurrent(), let n = lastLines { seekToLast(n) }
    }

    deinit {
        if fd >= 0 { close(fd) }
        close(inotifyFD)
    }

    @discardableResult
    private func openCurrent() throws(LogFollowerError) -> Bool {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { return false }
        try adopt(f)
        return true
    }

    private func seekToLast(_ lines: Int) {
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        var start = size
        var newlines = 0
        let chunk = 4096
        var buf = [UInt8](repeating: 0, count: chunk)
        // Walk back until lines+1 newlines are seen (the last byte is normally a newline).
        outer: while start > 0 {
            let n = min(chunk, start)
            start -= n
            let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(start)) }
            if got <= 0 { break }
            for i in stride(from: got - 1, through: 0, by: -1) where buf[i] == 0x0A {
                if start + i == size - 1 { continue }
                newlines += 1
                if newlines > lines - 1 || lines == 0 {
                    start += i + 1
                    break outer
                }
            }
        }
        offset = lines == 0 ? size : max(0, start)
        lseek(fd, off_t(offset), SEEK_SET)
    }

    /// New complete lines (without newlines). When there are none yet, blocks (on inotify, no
    /// periodic wake-up) until some appear or `timeoutMs` passes; a negative `timeoutMs` waits
    /// without limit, 0 does not wait. An empty result means the time ran out.
    /// Thread context: the follower's thread (blocking: never on Swift's cooperative pool).
    /// - Throws: `LogFollowerError` when a watch cannot be set up again (limits reached).
    public func poll(timeoutMs: Int) throws(LogFollowerError) -> [String] {
        // At most ~24 days: a longer finite wait is one without limit for any purpose.
        let deadline: UInt64? = timeoutMs < 0 ? nil : Clock.monotonicNs() + UInt64(min(timeoutMs, Int(Int32.max))) * 1_000_000
        while true {
            // Events are consumed before the file is looked at, so a change made after the look
            // leaves an event behind and the wait below returns at once: nothing is missed.
            _ = try drainEvents()
            if directoryWatchLost || watchingAncestor { try watchDirectory() }
            var out: [String] = []
            if fd < 0 { try openCurrent() }
            if fd >= 0 {
                readAvailable(into: &out)
                if out.isEmpty { try checkRotation(into: &out) }
            }
            if !out.isEmpty { return out }
            // Sleep until something happens to the file or to its name (other files in the
            // directory come and go: their events are consumed and the wait goes on).
            repeat {
                guard try waitForEvents(until: deadline) else { return [] }
            } while try !drainEvents().concernsLog
        }
    }

    /// Blocks until the inotify descriptor has events or the monotonic `deadline` (nil: none)
    /// passes; false when the time ran out.
    private func waitForEvents(until deadline: UInt64?) throws(LogFollowerError) -> Bool {
        var pfd = pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)
        do {
            // The timeout is computed on every try, so a signal (EINTR) does not extend the wait.
            let n = try syscall("poll") { () -> Int32 in
                var ms: Int32 = -1
                if let deadline {
                    let now = Clock.monotonicNs()
                    ms = now >= deadline ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
                }
                return Glibc.poll(&pfd, 1, ms)
            }
            return n > 0
        } catch {
            throw LogFollowerError(path: path, cause: error as? SystemCallError ?? SystemCallError("poll", errno: EIO))
        }
    }

    /// Reads every queued inotify event (without blocking). `concernsLog`: the open file changed,
    /// or the log's name appeared, vanished or moved, or the directory watch must be set up
    /// again. `any`: any event at all (a rename in the directory, for a rotation in progress).
    private func drainEvents() throws(LogFollowerError) -> (concernsLog: Bool, any: Bool) {
        var concerns = false, any = false
        let header = MemoryLayout<inotify_event>.size
        while true {
            let n: Int
            do {
                n = try events.withUnsafeMutableBytes { buf in
                    try syscall("read(inotify)") { read(inotifyFD, buf.baseAddress, buf.count) }
                }
            } catch let e as SystemCallError where e.errno == EAGAIN {
                return (concerns, any)
            } catch {
                throw LogFollowerError(path: path, cause: error as? SystemCallError ?? SystemCallError("read(inotify)", errno: EIO))
            }
            if n <= 0 { return (concerns, any) }
            events.withUnsafeBytes { buf in
                var at = 0
                while at + header <= n {
                    let wd = buf.loadUnaligned(fromByteOffset: at, as: Int32.self)
                    let mask = buf.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)
                    let nameLength = Int(buf.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self))
                    let name = UnsafeRawBufferPointer(rebasing: buf[(at + header)..<min(n, at + header + nameLength)])
                    at += header + nameLength
                    any = true
                    if mask & UInt32(IN_Q_OVERFLOW) != 0 {  // events were lost: look at everything again
                        concerns = true
                        directoryWatchLost = true
                    } else if wd == fileWatch {
                        concerns = true
                        if mask & UInt32(IN_IGNORED) != 0 { fileWatch = -1 }
                    } else if wd == directoryWatch {
                        if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                            directoryWatchLost = true  // the directory went away or moved: watch its path again
                            concerns = true
                        } else if watchingAncestor || Self.sameName(name, fileName) {
                            concerns = true
                        }
                    }  // else: a watch given up earlier
                }
            }
        }
    }

    /// An event's name (NUL-padded) is `expected`.
    private static func sameName(_ name: UnsafeRawBufferPointer, _ expected: [UInt8]) -> Bool {
        let end = name.firstIndex(of: 0) ?? name.endIndex
        return name[..<end].elementsEqual(expected)
    }

    /// Watches the log's directory for its name, or, while the directory does not exist, the
    /// nearest existing ancestor for anything (to look again when a directory is created).
    private func watchDirectory() throws(LogFollowerError) {
        var dir = directory
        var below: String?  // the directory under `dir` (on the way to the log's) that was missing
        while true {
            let wd = inotify_add_watch(inotifyFD, dir, Self.directoryEvents)
            if wd >= 0 {
                // A watch on another directory than before: the old one is of no use any more.
                if directoryWatch >= 0 && directoryWatch != wd { inotify_rm_watch(inotifyFD, directoryWatch) }
                directoryWatch = wd
                watchingAncestor = below != nil
                directoryWatchLost = false
                // Created between its failed watch and this one, the missing directory's event
                // went to no watch: then start again from the log's directory.
                guard let missing = below, access(missing, F_OK) == 0 else { return }
                dir = directory
                below = nil
                continue
            }
            let e = errno
            guard (e == ENOENT || e == ENOTDIR) && dir != "/" && dir != "." else {
                throw LogFollowerError(path: path, cause: SystemCallError("inotify_add_watch(\(dir))", errno: e))
            }
            below = dir
            if let slash = dir.lastIndex(of: "/") {
                dir = slash == dir.startIndex ? "/" : String(dir[..<slash])
            } else {
                dir = "."
            }
        }
    }

    /// Watches the open file (its inode, through /proc/self/fd: not whatever the path names now).
    private func watchFile() throws(LogFollowerError) {
        if fileWatch >= 0 {
            inotify_rm_watch(inotifyFD, fileWatch)  // EINVAL when the kernel already dropped it
            fileWatch = -1
        }
        guard fd >= 0 else { return }
        var wd = inotify_add_watch(inotifyFD, "/proc/self/fd/\(fd)", Self.fileEvents)
        if wd < 0 && errno == ENOENT {
            // No /proc: the path (a rename in between is still seen by the directory watch).
            wd = inotify_add_watch(inotifyFD, path, Self.fileEvents)
        }
        guard wd >= 0 else {
            throw LogFollowerError(path: path, cause: SystemCallError("inotify_add_watch(\(path))", errno: errno))
        }
        fileWatch = wd
    }

    private func readAvailable(into out: inout [String]) {
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
            split(buffer[0..<n], into: &out)
        }
    }

    private func split(_ bytes: ArraySlice<UInt8>, into out: inout [String]) {
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == 0x0A {
            partial += bytes[start..<i]
            out.append(String(decoding: partial, as: UTF8.self))
            partial.removeAll(keepingCapacity: true)
            start = i + 1
        }
        partial += bytes[start..<bytes.endIndex]
    }

    private func checkRotation(into out: inout [String]) throws(LogFollowerError) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }  // between rename and re-create: the re-create wakes us
        if st.st_ino == inode && st.st_dev == device {
            if Int(st.st_size) < offset {  // truncated in place
                lseek(fd, 0, SEEK_SET)
                offset = 0
            }
            return
        }
        // Rotated. The writer closes a file before renaming it, so what it wrote before the rename
        // is all there: finish the old file first.
        readAvailable(into: &out)
        if !partial.isEmpty {
            out.append(String(decoding: partial, as: UTF8.self))
            partial.removeAll()
        }
        // Files rotated past us entirely (we fell more than one rotation behind) sit between the
        // old file (now `path.k`) and the current one. Open them all, then check that no rotation
        // happened meanwhile (the old file still at `path.k`); otherwise look again.
        let giveUp = Clock.monotonicNs() &+ UInt64(Self.rotationGiveUpMs) * 1_000_000
        while Clock.monotonicNs() < giveUp {
            let k = rotatedIndexOfCurrent()
            if k < 0 {
                // The writer is renaming files right now: its next rename (a directory event)
                // changes the picture. No rename for a while: the gap is not a rotation's.
                guard try waitForDirectoryChange(quietMs: Self.renameQuietMs) else { break }
                continue
            }
            if k == 0, let recovered = skippedCompressed() {
                // Our file was compressed after rotating (`path.k.gz`): the files rotated after it
                // may be compressed too; read them from the .gz so nothing is skipped.
                let next = open(path, O_RDONLY | O_CLOEXEC)
                for bytes in recovered { emitWhole(bytes, into: &out) }
                try adopt(next)
                readAvailable(into: &out)
                return
            }
            var skipped: [Skipped] = []
            if k > 1 {
                for j in stride(from: k - 1, through: 1, by: -1) {
                    let f = open("\(path).\(j)", O_RDONLY | O_CLOEXEC)
                    if f >= 0 {
                        skipped.append(.plain(f))
                    } else if let bytes = try? Gzip.decompress(file: "\(path).\(j).gz") {
                        skipped.append(.compressed(bytes))  // rotated past us and gzipped meanwhile
                    }
                }
            }
            let next = open(path, O_RDONLY | O_CLOEXEC)
            if k == 0 || rotatedIndexOfCurrent() == k {  // nothing moved while we opened the files
                for item in skipped {
                    switch item {
                    case .compressed(let bytes): emitWhole(bytes, into: &out)
                    case .plain(let f):
                        emitWhole(Self.readAll(f) ?? [], into: &out)
                        close(f)
                    }
                }
                try adopt(next)
                readAvailable(into: &out)
                return
            }
            // Another rotation meanwhile: look again at once (one still in progress shows as a
            // gap in the numbering, which waits for the writer's renames above).
            for case .plain(let f) in skipped { close(f) }
            if next >= 0 { close(next) }
        }
        try openCurrent()
        readAvailable(into: &out)
    }

    /// Blocks until anything happens in the watched directories or to the file (a rename of the
    /// rotation in progress), for at most `quietMs`; false when nothing did.
    private func waitForDirectoryChange(quietMs: Int) throws(LogFollowerError) -> Bool {
        let deadline = Clock.monotonicNs() &+ UInt64(quietMs) * 1_000_000
        while try waitForEvents(until: deadline) {
            if try drainEvents().any { return true }
        }
        return false
    }

    private enum Skipped {
        case plain(Int32)
        case compressed([UInt8])
    }

    private func emitWhole(_ bytes: [UInt8], into out: inout [String]) {
        split(bytes[...], into: &out)
        if !partial.isEmpty { out.append(String(decoding: partial, as: UTF8.self)); partial.removeAll() }
    }

    /// When the file being followed is no longer among the plain `path.k`: finds it among the
    /// compressed ones (by its first bytes, read from the descriptor still open on it) and returns
    /// the contents of every rotated file newer than it, oldest first. nil when it is not found
    /// (deleted: nothing to recover).
    private func skippedCompressed() -> [[UInt8]]? {
        guard fd >= 0 else { return nil }
        var head = [UInt8](repeating: 0, count: 4096)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard got > 0 else { return nil }
        head.removeSubrange(got...)
        var newer: [[UInt8]] = []  // path.1 (newest) first
        for j in 1...maxRotated {
            let plain = "\(path).\(j)", gz = plain + ".gz"
            if access(plain, F_OK) == 0 {
                let f = open(plain, O_RDONLY | O_CLOEXEC)
                guard f >= 0 else { return nil }
                defer { close(f) }
                var st = stat()
                fstat(f, &st)
                if st.st_ino == inode && st.st_dev == device { return newer.reversed() }
                guard let bytes = Self.readAll(f) else { return nil }
                newer.append(bytes)
            } else if access(gz, F_OK) == 0 {
                guard let bytes = try? Gzip.decompress(file: gz) else { return nil }
                if bytes.starts(with: head) { return newer.reversed() }
                newer.append(bytes)
            } else {
                return nil
            }
        }
        return nil
    }

    /// Where the file being followed now is among `path.1 … path.N`: 0 = not found (deleted or
    /// compressed), -1 = a rotation is in progress (a hole in the numbering: the writer renames
    /// `.N-1 → .N` … `.1 → .2`, then the file → `.1`).
    private func rotatedIndexOfCurrent() -> Int {
        for k in 1...maxRotated {
            var rs = stat()
            guard stat("\(path).\(k)", &rs) == 0 else {
                if access("\(path).\(k).gz", F_OK) == 0 { continue }
                if access("\(path).\(k + 1)", F_OK) == 0 || access("\(path).\(k + 1).gz", F_OK) == 0 { return -1 }
                return 0
            }
            if rs.st_ino == inode && rs.st_dev == device { return k }
        }
        return 0
    }

    /// Follows the open file `f` from its start (-1: none yet), watching it instead of the old one.
    private func adopt(_ f: Int32) throws(LogFollowerError) {
        guard f >= 0 else {
            if fd >= 0 { close(fd) }
            fd = -1
            try watchFile()
            return
        }
        var st = stat()
        fstat(f, &st)
        if fd >= 0 { close(fd) }
        fd = f
        inode = st.st_ino
        device = st.st_dev
        offset = 0
        try watchFile()
    }

    static func readAll(_ f: Int32) -> [UInt8]? {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(f, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }
}
