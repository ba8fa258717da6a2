import WireFormat
import Glibc
import Support

/// Follows a rolling log like `tail -F`, across rotations: when the file is renamed away
/// (`log` → `log.1`) it finishes the old file, reads any rotated file it skipped entirely (when it
/// fell more than one rotation behind), then continues with the new file from its start.
/// Emits complete lines only. (`camclass tail`.)
/// Thread context: one thread.
public final class LogFollower: @unchecked Sendable {  // used by one thread at a time
    public let path: String
    private var fd: Int32 = -1
    private var inode: ino_t = 0
    private var device: dev_t = 0
    private var offset = 0
    private var partial: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    /// Rotated files searched for the file being followed (for skipped files).
    public var maxRotated = 1000

    /// - Parameter lastLines: start with this many of the file's last lines (nil = from its start).
    public init(path: String, lastLines: Int? = 10) {
        self.path = path
        if openCurrent(), let n = lastLines { seekToLast(n) }
    }

    deinit { if fd >= 0 { close(fd) } }

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

    /// New complete lines (without newlines); waits up to `timeoutMs` for some to appear.
    public func poll(timeoutMs: Int) -> [String] {
        let deadline = Clock.monotonicNs() + UInt64(max(0, timeoutMs)) * 1_000_000
        while true {
            var out: [String] = []
            if fd < 0 { openCurrent() }
            if fd >= 0 {
                readAvailable(into: &out)
                if out.isEmpty { checkRotation(into: &out) }
            }
            if !out.isEmpty || Clock.monotonicNs() >= deadline { return out }
            usleep(20_000)
        }
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
        guard stat(path, &st) == 0 else { return }  // between rename and re-create: try again later
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
        for _ in 0..<200 {
            let k = rotatedIndexOfCurrent()
            if k < 0 {  // the writer is renaming files right now
                usleep(1000)
                continue
            }
            if k == 0, let recovered = skippedCompressed() {
                // Our file was compressed after rotating (`path.k.gz`): the files rotated after it
                // may be compressed too; read them from the .gz so nothing is skipped.
                let next = open(path, O_RDONLY | O_CLOEXEC)
                for bytes in recovered { emitWhole(bytes, into: &out) }
                adopt(next)
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
                adopt(next)
                readAvailable(into: &out)
                return
            }
            for case .plain(let f) in skipped { close(f) }
            if next >= 0 { close(next) }
            usleep(1000)
        }
        openCurrent()
        readAvailable(into: &out)
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

    private func adopt(_ f: Int32) {
        guard f >= 0 else {
            if fd >= 0 { close(fd) }
            fd = -1
            return
        }
        var st = stat()
        fstat(f, &st)
        if fd >= 0 { close(fd) }
        fd = f
        inode = st.st_ino
        device = st.st_dev
        offset = 0
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
