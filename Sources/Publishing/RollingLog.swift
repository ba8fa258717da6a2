import Glibc
import Logging
import Support
import Synchronization

public struct RollingLogOptions: Sendable {
    public var path: String
    /// Rotate before the file would exceed this many bytes (records are never split).
    public var maxBytes = 10 * 1024 * 1024
    /// Rotated files kept: `path.1` (newest) … `path.N`.
    public var keep = 5
    /// Records buffered between the result thread and the writer thread.
    public var bufferBytes = 4 * 1024 * 1024

    public init(path: String) { self.path = path }
}

/// Appends records to a file that rotates by size (`app.log` → `app.log.1` → … → `app.log.N`),
/// readable with `tail -F`. A dedicated writer thread does the I/O; records reach it whole through
/// a bounded buffer, so a slow disk costs lost log records (counted), never a pipeline stall.
/// Rotation happens only between records: nothing is split, lost or duplicated across files.
/// Thread context: `publish` from the result thread; `start`/`stop` from the owner.
public final class RollingLog: RecordSink, @unchecked Sendable {
    public let options: RollingLogOptions
    private let logger: Logger
    private let state: Mutex<State>
    private let wake = Condition()
    private var writer: DedicatedThread?
    private var fd: Int32 = -1
    private var fileSize = 0
    private var scratch: UnsafeMutableRawBufferPointer

    private struct State: ~Copyable {
        var ring: ByteRing
        var stopping = false
        var lostRecords = 0
        var records = 0
    }

    private let stats = Mutex(Stats())
    public struct Stats: Sendable, Equatable {
        public var bytesWritten = 0
        public var recordsWritten = 0
        public var rotations = 0
        public var writeErrors = 0
        public var lostRecords = 0
    }

    public init(options: RollingLogOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        state = Mutex(State(ring: ByteRing(capacity: options.bufferBytes)))
        scratch = .allocate(byteCount: options.bufferBytes, alignment: 16)
    }

    deinit { scratch.deallocate() }

    /// Opens (appending to) the log file and starts the writer thread.
    /// - Throws: `SystemCallError` naming the file when it cannot be opened.
    public func start() throws {
        try openFile()
        writer = DedicatedThread(name: "camclass-log") { [self] in writeLoop() }
        logger.info("rolling log open", metadata: ["log.path": "\(options.path)", "log.max_bytes": "\(options.maxBytes)",
                                                   "log.keep": "\(options.keep)"])
    }

    private func openFile() throws {
        let dir = options.path.lastIndex(of: "/").map { String(options.path[..<$0]) } ?? "."
        if !dir.isEmpty && access(dir, F_OK) != 0 { mkdir(dir, 0o755) }
        fd = try syscall("open(\(options.path))") { open(options.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640) }
        var st = stat()
        fstat(fd, &st)
        fileSize = Int(st.st_size)
    }

    public func publish(_ line: UnsafeRawBufferPointer) {
        // Pass the caller's bytes into the lock as plain integers (they are read during this call only).
        let address = UInt(bitPattern: line.baseAddress), count = line.count
        let accepted = state.withLock { s -> Bool in
            s.records += 1
            if s.ring.append(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count)) { return true }
            s.lostRecords += 1
            return false
        }
        if accepted { wake.signal() }
    }

    public var currentStats: Stats {
        var s = stats.withLock { $0 }
        s.lostRecords += state.withLock { $0.lostRecords }
        return s
    }

    /// Writes everything buffered, fsyncs and closes. Blocks until done.
    public func stop() {
        state.withLock { $0.stopping = true }
        wake.signal()
        writer?.join()
        writer = nil
        if fd >= 0 {
            fsync(fd)
            close(fd)
            fd = -1
        }
        let s = currentStats
        logger.info("rolling log closed", metadata: ["log.path": "\(options.path)", "log.records": "\(s.recordsWritten)",
                                                     "log.lost": "\(s.lostRecords)"])
    }

    private func writeLoop() {
        while true {
            // Move everything buffered to the writer's scratch (whole records), then write unlocked.
            var taken = 0
            var stop = false
            wake.wait(until: {
                state.withLock { s in
                    while !s.ring.isEmpty {
                        let chunk = s.ring.readable
                        UnsafeMutableRawBufferPointer(rebasing: scratch[taken..<(taken + chunk.count)]).copyMemory(from: chunk)
                        taken += chunk.count
                        s.ring.consume(chunk.count)
                    }
                    stop = s.stopping
                    return taken > 0 || stop
                }
            })
            if taken > 0 { writeRecords(UnsafeRawBufferPointer(rebasing: scratch[0..<taken])) }
            if stop && taken == 0 { return }
        }
    }

    /// Writes whole lines, rotating first whenever the next run would overflow the file.
    private func writeRecords(_ bytes: UnsafeRawBufferPointer) {
        var start = 0
        while start < bytes.count {
            let room = max(0, options.maxBytes - fileSize)
            // Longest run of whole lines that fits; at least one line into an empty file.
            var end = start
            var i = start
            while i < bytes.count {
                if bytes[i] == 0x0A {
                    if i + 1 - start <= room || (end == start && fileSize == 0) { end = i + 1 } else { break }
                    if i + 1 - start > room { break }
                }
                i += 1
            }
            if end == start {
                if fileSize > 0 { rotate(); continue }
                end = bytes.count  // no newline at all: write as is
            }
            let run = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            let lines = run.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            if writeAll(run) {
                fileSize += run.count
                stats.withLock { $0.bytesWritten += run.count; $0.recordsWritten += lines }
            } else {
                stats.withLock { $0.lostRecords += lines }
            }
            start = end
        }
    }

    private func writeAll(_ run: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < run.count {
            let n = write(fd, run.baseAddress! + off, run.count - off)
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            let e = errno
            let first = stats.withLock { s -> Bool in
                s.writeErrors += 1
                return s.writeErrors == 1 || s.writeErrors % 1000 == 0
            }
            if first {
                logger.error("log write failed; records are being lost", metadata: [
                    "log.path": "\(options.path)", "error": "\(String(cString: strerror(e)))"])
            }
            // Drop the partial tail so the file stays line-aligned.
            if off > 0 { _ = ftruncate(fd, off_t(fileSize)) }
            return false
        }
        return true
    }

    private func rotate() {
        let p = options.path
        fsync(fd)
        close(fd)
        if options.keep > 0 {
            unlink("\(p).\(options.keep)")
            if options.keep > 1 {
                for i in stride(from: options.keep - 1, through: 1, by: -1) { rename("\(p).\(i)", "\(p).\(i + 1)") }
            }
            rename(p, "\(p).1")
        } else {
            unlink(p)
        }
        do { try openFile() } catch {
            logger.error("cannot reopen log after rotation", metadata: ["log.path": "\(p)", "error": "\(error)"])
        }
        fileSize = 0
        stats.withLock { $0.rotations += 1 }
        logger.debug("log rotated", metadata: ["log.path": "\(p)"])
    }
}

