import WireFormat
import Glibc
import Support

/// The log cannot be watched for changes: inotify refused (a limit reached, no permission). The
/// follower then polls the log instead (see `LogFollower.Waiting`); this says why.
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
/// into place; while the directory does not exist, its nearest existing ancestor). When inotify
/// refuses (limits reached), the follower polls every 20 ms instead and says so once.
/// Catching up after a rotation never waits for inotify: it takes a consistent picture of the
/// rotated files (see `catchUp`), so it is correct however the writer's renames interleave.
/// Thread context: one thread at a time.
public final class LogFollower: @unchecked Sendable {  // used by one thread at a time
    /// How `poll` waits for the log to change.
    public enum Waiting: Sendable, Equatable {
        /// Blocks on inotify: no wake-up while the log is idle.
        case inotify
        /// Looks every 20 ms (for file systems whose changes inotify does not see, e.g. NFS
        /// written from another host; also where inotify refuses).
        case polling
    }

    public let path: String
    private let directory: String
    private let fileName: [UInt8]
    private var fd: Int32 = -1
    private var current = FileID(ino: 0, dev: 0)
    private var offset = 0
    private var partial: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Rotated files searched for the file being followed (for skipped files).
    public var maxRotated = 1000
    /// How `poll` waits now: `.polling` when asked for, or after inotify refused.
    public private(set) var waiting: Waiting
    private let onFallback: (LogFollowerError) -> Void

    // inotify: one descriptor, a watch on the open file and one on its directory.
    private var inotifyFD: Int32 = -1
    private var fileWatch: Int32 = -1
    private var directoryWatch: Int32 = -1
    /// The directory watch is on an ancestor (the log's directory does not exist yet).
    private var watchingAncestor = false
    private var directoryWatchLost = false
    private var events = [UInt8](repeating: 0, count: 8192)

    private static let fileEvents = UInt32(IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
    // The name appearing (created, renamed into place). Its going away is seen by the open file's
    // watch (IN_MOVE_SELF; IN_ATTRIB for an unlink), so the rotation's many renames of other names
    // only add IN_MOVED_TO events, which are read and dropped.
    private static let directoryEvents = UInt32(IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
    /// The polling fallback's interval.
    static let pollIntervalUs: UInt32 = 20_000
    /// Tries (1 ms apart) at a consistent picture of the rotated files before following the
    /// current file as it is (only continuous renames for this long can exhaust them).
    static let catchUpAttempts = 5000
    /// Rotated files kept open at once while catching up; beyond, their contents are read at once.
    static let maxOpenRotated = 128

    /// - Parameters:
    ///   - lastLines: start with this many of the file's last lines (nil = from its start).
    ///   - waiting: `.inotify` (default) or `.polling`.
    ///   - onFallback: called once (on this thread) if inotify refuses and the follower switches to
    ///     polling; following goes on either way.
    /// A missing file (or directory) is not an error: it is followed from its start once it appears.
    public init(path: String, lastLines: Int? = 10, waiting: Waiting = .inotify,
                onFallback: @escaping (LogFollowerError) -> Void = { _ in }) {
        self.path = path
        self.waiting = waiting
        self.onFallback = onFallback
        let slash = path.lastIndex(of: "/")
        directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        fileName = Array((slash.map { String(path[path.index(after: $0)...]) } ?? path).utf8)
        // The file first: when descriptors are scarce, following by polling beats not following.
        if openCurrent(), let n = lastLines { seekToLast(n) }
        guard waiting == .inotify else { return }
        let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard ifd >= 0 else {
            fallBack(SystemCallError("inotify_init1", errno: errno))
            return
        }
        inotifyFD = ifd
        watchDirectory()
        watchFile()
    }

    deinit {
        if fd >= 0 { close(fd) }
        if inotifyFD >= 0 { close(inotifyFD) }
    }

    /// Gives up inotify for polling, saying why (once).
    private func fallBack(_ cause: SystemCallError) {
        guard waiting == .inotify else { return }
        waiting = .polling
        if inotifyFD >= 0 { close(inotifyFD) }
        inotifyFD = -1
        fileWatch = -1
        directoryWatch = -1
        onFallback(LogFollowerError(path: path, cause: cause))
    }

    @discardableResult
    private func openCurrent() -> Bool {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { return false }
        adopt(f)
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

    /// New complete lines (without newlines). When there are none yet, waits until some appear or
    /// `timeoutMs` passes: blocked on inotify (no periodic wake-up), or polling every 20 ms in
    /// `.polling`. A negative `timeoutMs` waits without limit, 0 does not wait. An empty result
    /// means the time ran out.
    /// Thread context: the follower's thread (blocking: never on Swift's cooperative pool).
    public func poll(timeoutMs: Int) -> [String] {
        // At most ~24 days: a longer finite wait is one without limit for any purpose.
        let deadline: UInt64? = timeoutMs < 0 ? nil : Clock.monotonicNs() + UInt64(min(timeoutMs, Int(Int32.max))) * 1_000_000
        while true {
            if waiting == .inotify {
                // Events are consumed before the file is looked at, so a change made after the
                // look leaves an event behind and the wait below returns at once: nothing is missed.
                _ = drainEvents()
                if directoryWatchLost || watchingAncestor { watchDirectory() }
            }
            var out: [String] = []
            if fd < 0 { openCurrent() }
            if fd >= 0 {
                readAvailable(into: &out)
                if out.isEmpty { checkRotation(into: &out) }
            }
            if !out.isEmpty { return out }
            if waiting == .inotify {
                // Sleep until something happens to the file or to its name (other files in the
                // directory come and go: their events are consumed and the wait goes on).
                var changed = false
                while !changed && waiting == .inotify {
                    guard waitForEvents(until: deadline) else { return [] }
                    changed = drainEvents()
                }
            } else {
                var sleepUs = Self.pollIntervalUs
                if let deadline {
                    let now = Clock.monotonicNs()
                    if now >= deadline { return [] }
                    sleepUs = UInt32(min(UInt64(sleepUs), (deadline - now + 999) / 1000))
                }
                usleep(sleepUs)
            }
        }
    }

    /// Blocks until the inotify descriptor has events or the monotonic `deadline` (nil: none)
    /// passes; false when the time ran out. A failing poll switches to polling (true: look again).
    private func waitForEvents(until deadline: UInt64?) -> Bool {
        var pfd = pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0)
        do {
            // The timeout is computed on every try, so a signal (EINTR) does not extend the wait.
            let n = try syscall("poll(inotify)") { () -> Int32 in
                var ms: Int32 = -1
                if let deadline {
                    let now = Clock.monotonicNs()
                    ms = now >= deadline ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
                }
                return Glibc.poll(&pfd, 1, ms)
            }
            return n > 0
        } catch {
            fallBack(error as? SystemCallError ?? SystemCallError("poll(inotify)", errno: EIO))
            return true
        }
    }

    /// Reads every queued inotify event (without blocking); true when one concerns the log: the
    /// open file changed, the log's name appeared, the directory watch must be set up again, or
    /// events were lost (then everything is looked at again).
    private func drainEvents() -> Bool {
        var concerns = false
        let header = MemoryLayout<inotify_event>.size
        while waiting == .inotify {
            let n: Int
            do {
                n = try events.withUnsafeMutableBytes { buf in
                    try syscall("read(inotify)") { read(inotifyFD, buf.baseAddress, buf.count) }
                }
            } catch let e as SystemCallError where e.errno == EAGAIN {
                return concerns
            } catch {
                fallBack(error as? SystemCallError ?? SystemCallError("read(inotify)", errno: EIO))
                return true
            }
            if n <= 0 { return concerns }
            events.withUnsafeBytes { buf in
                var at = 0
                while at + header <= n {
                    let wd = buf.loadUnaligned(fromByteOffset: at, as: Int32.self)
                    let mask = buf.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)
                    let nameLength = Int(buf.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self))
                    let name = UnsafeRawBufferPointer(rebasing: buf[(at + header)..<min(n, at + header + nameLength)])
                    at += header + nameLength
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
        return true
    }

    /// An event's name (NUL-padded) is `expected`.
    private static func sameName(_ name: UnsafeRawBufferPointer, _ expected: [UInt8]) -> Bool {
        let end = name.firstIndex(of: 0) ?? name.endIndex
        return name[..<end].elementsEqual(expected)
    }

    /// Watches the log's directory for its name, or, while the directory does not exist, the
    /// nearest existing ancestor for anything (to look again when a directory is created).
    /// A refusal (limits, permission) switches to polling.
    private func watchDirectory() {
        guard waiting == .inotify && inotifyFD >= 0 else { return }
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
                fallBack(SystemCallError("inotify_add_watch(\(dir))", errno: e))
                return
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
    /// A refusal (limits) switches to polling.
    private func watchFile() {
        guard waiting == .inotify && inotifyFD >= 0 else { return }
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
            fallBack(SystemCallError("inotify_add_watch(\(path))", errno: errno))
            return
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

    private func checkRotation(into out: inout [String]) {
        var st = stat()
        if stat(path, &st) == 0 {
            if FileID(ino: st.st_ino, dev: st.st_dev) == current {
                if Int(st.st_size) < offset {  // truncated in place
                    lseek(fd, 0, SEEK_SET)
                    offset = 0
                }
                return
            }
        } else if fstat(fd, &st) != 0 || st.st_nlink == 0 {
            return  // removed (`keep` 0, or by hand): the new file's creation wakes us
        }
        // Rotated: renamed away (the new file created, or not yet). The writer is done with a file
        // once it renamed it, so what it wrote is all there: finish the old file first.
        readAvailable(into: &out)
        if !partial.isEmpty {
            out.append(String(decoding: partial, as: UTF8.self))
            partial.removeAll()
        }
        // The renames may still be going on (the writer shifts `path.N` … `path.1` up by one, then
        // renames the file to `path.1`): a picture is retried until it holds still, 1 ms apart.
        // The old file's first bytes identify it once compressed (`log.gzip`).
        var head = [UInt8](repeating: 0, count: 4096)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        head.removeSubrange(max(0, got)...)
        for attempt in 0..<Self.catchUpAttempts {
            if attempt > 0 { usleep(1000) }
            if catchUp(head: head, into: &out) { return }
        }
        // Renames without end for seconds: follow the current file as it is.
        openCurrent()
        readAvailable(into: &out)
    }

    /// A file's identity (device and inode).
    private struct FileID: Equatable {
        var ino: ino_t
        var dev: dev_t
    }

    /// What one rotated name `path.j` holds: the plain file, else its gzipped form.
    private struct Slot: Equatable {
        var plain: FileID?
        var gz: FileID?
        var isEmpty: Bool { plain == nil && gz == nil }
    }

    private static func identify(_ p: String) -> FileID? {
        var st = stat()
        return stat(p, &st) == 0 ? FileID(ino: st.st_ino, dev: st.st_dev) : nil
    }

    /// The rotated names `path.1 …` in order: up to `count` of them, or (nil) until the followed
    /// file (plain) or the end (two names in a row that hold nothing: a rotation in progress
    /// leaves a hole of one), at most `maxRotated`.
    private func scanSlots(count: Int?) -> [Slot] {
        var slots: [Slot] = []
        var j = 1
        while j <= (count ?? maxRotated) {
            var s = Slot(plain: Self.identify("\(path).\(j)"), gz: nil)
            if s.plain == nil { s.gz = Self.identify("\(path).\(j).gz") }
            slots.append(s)
            if count == nil {
                if s.plain == current { break }
                if s.isEmpty && slots.count >= 2 && slots[slots.count - 2].isEmpty { break }
            }
            j += 1
        }
        return slots
    }

    private enum Rotated {
        case open(Int32)
        case contents([UInt8])
    }

    /// One try at reading the files rotated after the followed one (it is finished), oldest first,
    /// then following the current file from its start. False (nothing done) when a rename came
    /// in between: try again.
    ///
    /// Why this is right whatever the writer is doing: the names (`path.1 …` up to the followed
    /// file, and `path`) are looked at once, the files opened, then the names looked at again.
    /// Each step of the writer changes at least one of them (a rename two at once), so two looks
    /// that agree name for name (the first wholly before the second) mean nothing changed between
    /// them — a name seen empty twice could have been filled and emptied again only by a second
    /// rotation, which would have moved the followed file first. The files opened in between are
    /// one consistent picture. In the writer's every state — a rotation half done included (a hole
    /// in the numbering, or no `path` yet) — the files newer than the followed one are then
    /// exactly those below it and `path`, newest at the lowest number.
    /// `head`: the followed file's first bytes. The followed file is read to its end; it is
    /// known by its identity (`current`), its descriptor may be closed when descriptors run out.
    private func catchUp(head: [UInt8], into out: inout [String]) -> Bool {
        let before = scanSlots(count: nil)
        let currentBefore = Self.identify(path)
        var ours = before.firstIndex { $0.plain == current }.map { $0 + 1 }
        var found: [Int: Rotated] = [:]
        var opened = 0
        func release() {
            for case .open(let f) in found.values { close(f) }
        }
        for (i, slot) in before.enumerated() {
            let j = i + 1
            if let k = ours, j >= k { break }
            if let id = slot.plain {
                let f = open("\(path).\(j)", O_RDONLY | O_CLOEXEC)
                if f < 0 {
                    if errno == ENOENT { release(); return false }  // renamed meanwhile
                    continue  // unreadable (permissions, descriptors): nothing to read from it
                }
                var st = stat()
                guard fstat(f, &st) == 0, FileID(ino: st.st_ino, dev: st.st_dev) == id else {
                    close(f)
                    release()
                    return false
                }
                if opened < Self.maxOpenRotated {
                    found[j] = .open(f)
                    opened += 1
                } else {
                    found[j] = .contents(Self.readAll(f) ?? [])
                    close(f)
                }
            } else if slot.gz != nil {
                // Complete once under this name (it is written under a temporary one).
                guard let bytes = try? Gzip.decompress(file: "\(path).\(j).gz") else { continue }  // corrupt: nothing to read
                // The followed file compressed after it was rotated: the `.gz` that starts as it does.
                if ours == nil && !head.isEmpty && bytes.starts(with: head) {
                    ours = j
                    break
                }
                found[j] = .contents(bytes)
            }
        }
        var next = open(path, O_RDONLY | O_CLOEXEC)
        if next < 0 && (errno == EMFILE || errno == ENFILE) && fd >= 0 {
            // Descriptors used up (a low `ulimit -n`): the followed file's can go.
            close(fd)
            fd = -1
            next = open(path, O_RDONLY | O_CLOEXEC)
        }
        var nextID: FileID?
        if next >= 0 {
            var st = stat()
            fstat(next, &st)
            nextID = FileID(ino: st.st_ino, dev: st.st_dev)
        }
        guard nextID == currentBefore, scanSlots(count: before.count) == before, Self.identify(path) == currentBefore else {
            release()
            if next >= 0 { close(next) }
            return false
        }
        guard let k = ours else {
            // Not found (deleted: beyond `keep`, or `keep` 0): nothing to recover.
            release()
            guard next >= 0 else { return true }  // nothing to follow yet: `path`'s creation wakes us
            adopt(next)
            readAvailable(into: &out)
            return true
        }
        if next < 0 {
            // Renamed away, not re-created yet. Following nothing until it is would lose track:
            // by the time we look again, more rotations may have passed. So the newest rotated
            // file becomes the followed one (read to its end); the next rotation check finds it.
            let newest = (1..<k).first { found[$0] != nil }
            if let n = newest, case .contents = found[n] {
                release()  // compressed meanwhile (log.gzip): look again once `path` is back
                return false
            }
            if newest == nil && fd < 0 {
                // Still the newest, but its descriptor was closed: open it again where it is now.
                let f = open("\(path).\(k)", O_RDONLY | O_CLOEXEC)
                var st = stat()
                guard f >= 0, fstat(f, &st) == 0, FileID(ino: st.st_ino, dev: st.st_dev) == current else {
                    if f >= 0 { close(f) }
                    return false
                }
                fd = f
                offset = Int(lseek(f, 0, SEEK_END))
                watchFile()
            }
            for j in stride(from: k - 1, through: 1, by: -1) {
                switch found[j] {
                case .open(let f):
                    let bytes = Self.readAll(f) ?? []
                    emitWhole(bytes, into: &out)
                    if j == newest {
                        adopt(f)
                        offset = bytes.count
                    } else {
                        close(f)
                    }
                case .contents(let bytes): emitWhole(bytes, into: &out)
                case nil: break
                }
            }
            return true  // newest nil: the followed file is the newest, and stays followed
        }
        for j in stride(from: k - 1, through: 1, by: -1) {
            switch found[j] {
            case .open(let f):
                emitWhole(Self.readAll(f) ?? [], into: &out)
                close(f)
            case .contents(let bytes): emitWhole(bytes, into: &out)
            case nil: break
            }
        }
        adopt(next)
        readAvailable(into: &out)
        return true
    }

    private func emitWhole(_ bytes: [UInt8], into out: inout [String]) {
        split(bytes[...], into: &out)
        if !partial.isEmpty { out.append(String(decoding: partial, as: UTF8.self)); partial.removeAll() }
    }

    /// Follows the open file `f` from its start (-1: none yet), watching it instead of the old one.
    private func adopt(_ f: Int32) {
        if fd >= 0 { close(fd) }
        fd = f
        offset = 0
        if f >= 0 {
            var st = stat()
            fstat(f, &st)
            current = FileID(ino: st.st_ino, dev: st.st_dev)
        }
        watchFile()
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
