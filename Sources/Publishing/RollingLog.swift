import WireFormat
import Glibc
import Logging
import Support
import Synchronization

/// How the rolling log's lines look.
public enum LogFormat: String, ConfigEnum {
    /// JSON Lines: exactly the records subscribers receive.
    case json
    /// One human-readable line per record: `2026-11-23T09:20:00.123Z #123 Egyptian cat 0.39 (stable: cat) 7.1 ms`.
    case text
}

/// When the log file is fsynced.
public enum FsyncPolicy: Sendable, Equatable {
    /// Never explicitly (the kernel writes back on its own schedule).
    case never
    /// Before a file is rotated and when the log closes (default).
    case rotation
    /// At most this often while records are written, plus at rotation and close.
    case interval(ms: Int)
    /// After every batch the writer thread writes.
    case always
}

/// The `log:` section: the rolling log's file, rotation, compression, durability and format.
public struct RollingLogOptions: ConfigSection {
    public static let section = "log"
    public var path = "/var/log/camclassd/classifications.log"
    /// Rotate before the file would exceed this many bytes (records are never split); 0 = no size limit.
    public var maxBytes = 10 * 1024 * 1024
    /// Also rotate when the UTC day changes (checked when records are written).
    public var rotateDaily = false
    /// Rotated files kept: `path.1` (newest) … `path.N`.
    public var keep = 5
    /// Records buffered between the publishing worker and the writer thread.
    public var bufferBytes = 4 * 1024 * 1024
    /// Compress rotated files to `path.N.gz`.
    public var gzip = false
    public var fsync: FsyncPolicy = .rotation
    public var format: LogFormat = .json
    /// Label names for the `text` format (JSON lines carry their own).
    @NotCompared public var vocabulary: RecordVocabulary? = nil
    /// Wall clock (CLOCK_REALTIME ns) deciding daily rotation; tests inject a fake one.
    @NotCompared public var clock: @Sendable () -> UInt64 = { Clock.realtimeNs() }
    /// The write(2) the writer thread uses; tests inject failures (ENOSPC, EIO) here.
    @NotCompared public var write: @Sendable (Int32, UnsafeRawPointer, Int) -> Int = { Glibc.write($0, $1, $2) }
    /// After a failed write, the writer keeps the unwritten records and retries this often.
    public var retryMs = 250
    /// After a rotation fails (rename refused: read-only or full directory), the log keeps growing
    /// past `maxBytes` and rotation is tried again after this long (no retry storm).
    public var rotationRetryMs = 5000
    /// One writer per log: an exclusive flock on the open log file (a second daemon writing and
    /// rotating the same log would interleave records and rename each other's files).
    public var lock = true

    public init() {}
    public init(path: String) { self.path = path }

    private enum FsyncName: String, ConfigEnum { case never, rotation, interval, always }

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        path = try r.string("path", path, maxBytes: 4095, allowEmpty: false)
        maxBytes = try r.int("max_bytes", maxBytes, 0...(1 << 40), unit: "bytes (0 = no size rotation)")
        if maxBytes != 0 && maxBytes < 1024 { throw r.invalid("max_bytes", "\(maxBytes)", "expected 0 (no size rotation) or at least 1024") }
        keep = try r.int("keep", keep, 0...1000, unit: "files")
        bufferBytes = try r.int("buffer_bytes", bufferBytes, 65_536...(256 << 20), unit: "bytes")
        rotateDaily = try r.bool("rotate_daily", rotateDaily)
        gzip = try r.bool("gzip", gzip)
        let mode = try r.choice("fsync", FsyncName.rotation)
        let intervalMs = try r.int("fsync_interval_ms", 1000, 10...3_600_000, unit: "ms")
        switch mode {
        case .never: fsync = .never
        case .rotation: fsync = .rotation
        case .interval: fsync = .interval(ms: intervalMs)
        case .always: fsync = .always
        }
        format = try r.choice("format", format)
    }
}

/// Why the rolling log cannot be opened or kept.
public enum RollingLogError: Error, CustomStringConvertible {
    /// The log path (or a file the rotation writes) is a symbolic link: refused, so records never
    /// land in the link's target.
    case symbolicLink(String)
    /// Another process holds the log's lock.
    case inUse(String)
    case system(SystemCallError)

    public var errnoValue: Int32 {
        switch self {
        case .symbolicLink: return ELOOP
        case .inUse: return EWOULDBLOCK
        case .system(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .symbolicLink(let p):
            return "'\(p)' is a symbolic link; refusing to write the log through it (records would land in the link's target). Remove the link or choose another `log.path`"
        case .inUse(let p):
            return "the log '\(p)' is in use by another running camclassd (it holds a lock on the file); stop it or choose another `log.path`"
        case .system(let e): return "\(e)"
        }
    }
}

/// Appends records to a file that rotates by size and/or daily (`app.log` → `app.log.1` → … →
/// `app.log.N`, optionally gzipped), readable with `tail -F` or `camclass tail`.
///
/// A dedicated writer thread does the I/O; records reach it whole through a bounded buffer, and
/// the file is only ever written in whole lines from that one thread, so records never interleave
/// or tear, and rotation happens only between records. When the disk fails (ENOSPC, EIO) the
/// daemon keeps classifying and publishing: the writer keeps what it could not write and retries,
/// the buffer absorbs what arrives meanwhile, and whatever does not fit is counted as lost and
/// marked in the file with a `log_gap` record when writing resumes.
/// Thread context: `publish` from the publishing worker (any thread is safe); `start`/`stop` from the owner.
public final class RollingLog: RecordSink, @unchecked Sendable {
    public let options: RollingLogOptions
    private let logger: Logger
    private let state: Mutex<State>
    private let wake = Condition()
    /// Guards `text` (the `text` format's encoder, used by publishers).
    private let textLock = Condition()
    private var text: TextRecordEncoder?
    private var writer: DedicatedThread?

    // Writer thread only (and `start`/`stop` before/after it runs).
    private var fd: Int32 = -1
    private var fileSize = 0
    private var fileDay: UInt64 = 0
    private var dirty = false
    private var lastFsyncNs: UInt64 = 0
    private let scratch: UnsafeMutableRawBufferPointer
    private var pendingStart = 0
    private var pendingEnd = 0
    /// Rotated files present (`path.1` … `path.N`), found at the first rotation, then kept.
    private var rotatedFiles: Int?
    private var failingSinceLost = 0
    /// While non-zero, rotation is not tried before this monotonic time (it failed).
    private var rotationBlockedUntilNs: UInt64 = 0
    private var rotationFailureLog = LogRateLimiter(intervalNs: 60_000_000_000)
    private var rotationFailing = false

    private struct State: ~Copyable {
        var ring: ByteRing
        var gap = ByteWriter(capacity: 256)
        var stopping = false
        /// The writer waits with no timeout (nothing buffered, nothing due): the next record wakes it.
        var writerIdle = false
        /// Records that did not fit in the buffer (ever), and those not yet marked in the file.
        var lostRecords = 0
        var unmarkedLost = 0
        var records = 0
    }

    private let stats = Mutex(Stats())
    public struct Stats: Sendable, Equatable {
        public var bytesWritten = 0
        /// Lines written (records and `log_gap` markers).
        public var recordsWritten = 0
        public var rotations = 0
        public var rotationsBySize = 0
        public var rotationsByTime = 0
        /// Failed write(2) calls (each is retried).
        public var writeErrors = 0
        public var fsyncs = 0
        public var fsyncErrors = 0
        public var gzipped = 0
        public var gzipErrors = 0
        /// Rotations that could not rename the file (it kept growing; retried later).
        public var rotationErrors = 0
        /// Records that never reached the file (buffer full while the disk failed or lagged).
        public var lostRecords = 0
        /// The writer currently cannot write (disk full, I/O error); records wait in memory.
        public var failing = false
        public var lastError: String?
        public var currentFileBytes = 0
    }

    public init(options: RollingLogOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        state = Mutex(State(ring: ByteRing(capacity: options.bufferBytes)))
        text = options.format == .text ? TextRecordEncoder(vocabulary: options.vocabulary ?? RecordVocabulary(labels: [])) : nil
        scratch = .allocate(byteCount: options.bufferBytes, alignment: 16)
    }

    /// Replaces the label names the `text` format prints (a reload that changed the model).
    public func setVocabulary(_ vocabulary: RecordVocabulary) {
        guard options.format == .text else { return }
        let encoder = TextRecordEncoder(vocabulary: vocabulary)
        textLock.locked { text = encoder }
    }

    deinit { scratch.deallocate() }

    /// Opens (appending to) the log file and starts the writer thread.
    /// - Throws: `SystemCallError` naming the file when it cannot be opened.
    public func start() throws {
        try openFile()
        writer = DedicatedThread(name: "camclass-log") { [self] in writeLoop() }
        logger.info("rolling log open", metadata: [
            "log.path": "\(options.path)", "log.max_bytes": "\(options.maxBytes)", "log.keep": "\(options.keep)",
            "log.rotate_daily": "\(options.rotateDaily)", "log.gzip": "\(options.gzip)", "log.format": "\(options.format.rawValue)",
            "log.fsync": "\(options.fsync)"])
    }

    private static func day(_ realtimeNs: UInt64) -> UInt64 { realtimeNs / 86_400_000_000_000 }

    private func openFile() throws(RollingLogError) {
        let dir = options.path.lastIndex(of: "/").map { String(options.path[..<$0]) } ?? "."
        if !dir.isEmpty && access(dir, F_OK) != 0 { mkdir(dir, 0o755) }
        // O_NOFOLLOW: a symbolic link at the log path is refused (ELOOP), never written through.
        while true {
            let f = open(options.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
            if f < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == ELOOP { throw .symbolicLink(options.path) }
                throw .system(SystemCallError("open(\(options.path))", errno: e))
            }
            // One writer per log: an exclusive lock on the open file, taken again on each new file
            // after a rotation (a second daemon would interleave records and rotate our files).
            if options.lock {
                var rc: Int32
                repeat { rc = flock(f, LOCK_EX | LOCK_NB) } while rc != 0 && errno == EINTR
                if rc != 0 {
                    let e = errno
                    close(f)
                    if e == EWOULDBLOCK { throw .inUse(options.path) }
                    throw .system(SystemCallError("flock(\(options.path))", errno: e))
                }
            }
            fd = f
            break
        }
        var st = stat()
        fstat(fd, &st)
        fileSize = Int(st.st_size)
        // A file continued from an earlier run belongs to the day it was last written.
        fileDay = fileSize > 0 ? Self.day(UInt64(st.st_mtim.tv_sec) * 1_000_000_000) : Self.day(options.clock())
        stats.withLock { $0.currentFileBytes = fileSize }
    }

    public func publish(_ line: UnsafeRawBufferPointer) {
        publish(PublishedRecord(kind: RecordKind.of(line: line), json: line))
    }

    /// Appends the record (in the configured format) to the buffer, whole or not at all.
    public func publish(_ record: PublishedRecord) {
        guard options.format == .text else {
            append(record.json)
            return
        }
        // The text encoder's buffer is shared by publishers: render and append under its lock.
        textLock.locked {
            append(text?.encode(record) ?? record.json)
        }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) {
        // Cross into the lock with plain integers: the caller's bytes are read during this call only.
        let address = UInt(bitPattern: bytes.baseAddress), count = bytes.count
        let wakeWriter = state.withLock { s -> Bool in
            s.records += 1
            let line = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count)
            if s.unmarkedLost > 0 {
                // Mark where records are missing, just before the first one that fits again.
                s.gap.reset()
                if options.format == .text {
                    s.gap.rfc3339Millis(realtimeNs: options.clock())
                    s.gap.ascii(" log gap: ")
                    s.gap.uint(UInt64(s.unmarkedLost))
                    s.gap.ascii(" records lost (the log could not keep up or the disk failed)\n")
                } else {
                    s.gap.ascii("{\"type\":\"log_gap\",\"time\":\"")
                    s.gap.rfc3339(realtimeNs: options.clock())
                    s.gap.ascii("\",\"lost\":")
                    s.gap.uint(UInt64(s.unmarkedLost))
                    s.gap.ascii("}\n")
                }
                if s.ring.free >= s.gap.count + line.count {
                    _ = s.ring.append(s.gap.bytes)
                    s.unmarkedLost = 0
                }
            }
            if s.unmarkedLost == 0 && s.ring.append(line) {
                // While records come, the writer wakes on its own every `batchNs` and takes them in
                // batches; a signal only when the buffer fills, or for the first record after the
                // writer went idle (nothing else would wake it).
                if s.writerIdle {
                    s.writerIdle = false
                    return true
                }
                return s.ring.count >= wakeThreshold
            }
            s.lostRecords += 1
            s.unmarkedLost += 1
            return true
        }
        if wakeWriter { wake.broadcast() }
    }

    public var currentStats: Stats {
        var s = stats.withLock { $0 }
        s.lostRecords += state.withLock { $0.lostRecords }
        return s
    }

    /// Writes everything buffered (one last try if the disk is failing), fsyncs (unless the
    /// policy is `never`) and closes. Blocks until done.
    public func stop() {
        state.withLock { $0.stopping = true }
        wake.broadcast()
        writer?.join()
        writer = nil
        if fd >= 0 {
            if options.fsync != .never { syncFile() }
            close(fd)
            fd = -1
        }
        let s = currentStats
        logger.info("rolling log closed", metadata: ["log.path": "\(options.path)", "log.records": "\(s.recordsWritten)",
                                                     "log.lost": "\(s.lostRecords)", "log.write_errors": "\(s.writeErrors)"])
    }

    // MARK: writer thread

    private var fsyncIntervalNs: UInt64? {
        if case .interval(let ms) = options.fsync { return UInt64(max(1, ms)) * 1_000_000 }
        return nil
    }

    /// Moves everything buffered (whole records) into the writer's scratch; called with the
    /// condition's mutex held. True when there is something to write or the log is stopping.
    /// With `idle`, an empty buffer marks the writer idle, so the next `append` signals it.
    private func takeBuffered(_ stop: inout Bool, idle: Bool = false) -> Bool {
        var stopping = false
        let end = state.withLock { s -> Int in
            s.writerIdle = idle && s.ring.isEmpty && !s.stopping
            var end = pendingEnd
            while !s.ring.isEmpty {
                let chunk = s.ring.readable
                UnsafeMutableRawBufferPointer(rebasing: scratch[end..<(end + chunk.count)]).copyMemory(from: chunk)
                end += chunk.count
                s.ring.consume(chunk.count)
            }
            stopping = s.stopping
            return end
        }
        pendingEnd = end
        stop = stopping
        return pendingEnd > 0 || stopping
    }

    /// While records come faster than one a period, the writer takes what is buffered this often:
    /// records are written in batches without the publishing thread waking the writer (a futex
    /// call, often a context switch) for each. At 30 FPS: 10 wake-ups and writes a second instead
    /// of 30; a `tail -F` sees a line at most this late.
    static let batchNs: UInt64 = 100_000_000
    private var wakeThreshold: Int { options.bufferBytes / 4 }

    /// How the writer waits next, from when it last took records (`previousNs`, `lastNs`; 0 =
    /// never) and whether its last wait brought any. Records that came less than a period apart
    /// keep the batch timer; after a period without one (or when they come slower than a period)
    /// it goes idle: no timeout, and the next record signals it and is written at once. So a
    /// record costs the writer one wake-up at low rates, and at high rates a wake-up a period.
    static func waitsIdle(previousNs: UInt64, lastNs: UInt64, lastWaitBroughtRecords: Bool) -> Bool {
        guard lastWaitBroughtRecords, previousNs > 0 else { return true }
        return lastNs &- previousNs >= batchNs
    }

    private func writeLoop() {
        var previousTakeNs: UInt64 = 0
        var lastTakeNs: UInt64 = 0
        var lastWaitBroughtRecords = false
        while true {
            var stop = false
            if pendingStart == pendingEnd {
                // Take everything buffered (whole records) into the writer's scratch, then write unlocked.
                pendingStart = 0
                pendingEnd = 0
                let idle = Self.waitsIdle(previousNs: previousTakeNs, lastNs: lastTakeNs,
                                          lastWaitBroughtRecords: lastWaitBroughtRecords)
                // Non-escaping closures only: a stored closure capturing `stop` would allocate
                // a context on every pass (this thread is part of the per-frame publish path).
                var timeout: UInt64? = idle ? nil : Self.batchNs
                var fsyncDue = false
                if let interval = fsyncIntervalNs, dirty {
                    // Wake up in time to honour the fsync interval even when records stop coming.
                    let due = lastFsyncNs + interval
                    let now = Clock.monotonicNs()
                    if timeout.map({ due <= $0 + now }) ?? true { timeout = due > now ? due - now : 0; fsyncDue = true }
                }
                // Returns at once when records are buffered, else after `timeout` with what came
                // meanwhile; idle (no timeout), when the next record or `stop` signals.
                let ready: Bool
                if let timeout {
                    ready = wake.wait(timeoutNs: timeout, until: { takeBuffered(&stop, idle: idle) })
                } else {
                    wake.wait(until: { takeBuffered(&stop, idle: true) })
                    ready = true
                }
                if !ready && fsyncDue { syncFile() }
                lastWaitBroughtRecords = pendingEnd > 0
                if lastWaitBroughtRecords {
                    previousTakeNs = lastTakeNs
                    lastTakeNs = Clock.monotonicNs()
                }
            } else {
                // The last write failed: wait, then retry what is pending.
                _ = wake.wait(timeoutNs: UInt64(options.retryMs) * 1_000_000, until: { state.withLock { $0.stopping } })
                stop = state.withLock { $0.stopping }
            }
            if pendingEnd > pendingStart {
                let consumed = writeRecords(UnsafeRawBufferPointer(rebasing: scratch[pendingStart..<pendingEnd]))
                pendingStart += consumed
                if pendingStart == pendingEnd {
                    recovered()
                    afterWrite()
                } else if stop {
                    // Shutting down with the disk still failing: what is left is lost (counted).
                    let left = UnsafeRawBufferPointer(rebasing: scratch[pendingStart..<pendingEnd])
                    let lines = left.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                    stats.withLock { $0.lostRecords += lines }
                    logger.error("log closed with unwritten records", metadata: ["log.path": "\(options.path)", "log.lost": "\(lines)"])
                    pendingStart = pendingEnd
                }
            }
            if stop && pendingStart == pendingEnd && state.withLock({ $0.ring.isEmpty }) { return }
        }
    }

    private func recovered() {
        let wasFailing = stats.withLock { s -> Bool in
            let was = s.failing
            s.failing = false
            return was
        }
        if wasFailing {
            let lost = currentStats.lostRecords
            logger.notice("log writes resumed", metadata: ["log.path": "\(options.path)", "log.lost_total": "\(lost)"])
        }
    }

    private func afterWrite() {
        switch options.fsync {
        case .always: syncFile()
        case .interval:
            if let interval = fsyncIntervalNs, Clock.monotonicNs() - lastFsyncNs >= interval { syncFile() }
        default: break
        }
    }

    private func syncFile() {
        guard fd >= 0, dirty || options.fsync == .always else { return }
        stats.withLock { $0.fsyncs += 1 }
        if fsync(fd) != 0 {
            let e = errno
            stats.withLock { $0.fsyncErrors += 1; $0.lastError = "fsync: \(String(cString: strerror(e)))" }
            logger.error("log fsync failed", metadata: ["log.path": "\(options.path)", "error": "\(String(cString: strerror(e)))"])
        }
        dirty = false
        lastFsyncNs = Clock.monotonicNs()
    }

    /// Writes whole lines, rotating first whenever the next run would overflow the file or the day
    /// changed. Returns how many bytes (always whole lines) are now in a file.
    private func writeRecords(_ bytes: UnsafeRawBufferPointer) -> Int {
        var start = 0
        while start < bytes.count {
            if fd < 0 {
                do { try openFile() } catch {
                    failed(errno: error.errnoValue, what: "open")
                    return start
                }
            }
            if options.rotateDaily && fileSize > 0 && Self.day(options.clock()) != fileDay && !rotationBlocked {
                rotate(byTime: true)
                continue
            }
            let limit = options.maxBytes > 0 ? options.maxBytes : Int.max
            let room = max(0, limit - fileSize)
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
            if end == start && fileSize > 0 && rotationBlocked {
                // Rotation failed a moment ago: keep growing the file (nothing is lost) until the
                // retry time rather than trying again for every record (issue 11 F10).
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                end = min(i + 1, bytes.count)
            }
            if end == start {
                if fileSize > 0 { rotate(byTime: false); continue }
                end = bytes.count  // no newline at all: write as is
            }
            let run = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            let written = writeAll(run)
            if written > 0 {
                let lines = UnsafeRawBufferPointer(rebasing: run[0..<written]).reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                fileSize += written
                dirty = true
                stats.withLock { $0.bytesWritten += written; $0.recordsWritten += lines; $0.currentFileBytes = fileSize }
            }
            start += written
            if written < run.count { return start }
        }
        return start
    }

    /// Writes `run`; on failure cuts the file back to the last whole line and returns how many
    /// bytes (whole lines) stayed in it.
    private func writeAll(_ run: UnsafeRawBufferPointer) -> Int {
        var off = 0
        while off < run.count {
            let n = options.write(fd, run.baseAddress! + off, run.count - off)
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            let e = n < 0 ? errno : EIO
            // Keep the whole lines that made it; drop a torn tail so the file stays line-aligned.
            var keep = off
            while keep > 0 && run[keep - 1] != 0x0A { keep -= 1 }
            if keep < off { _ = ftruncate(fd, off_t(fileSize + keep)) }
            failed(errno: e, what: "write")
            return keep
        }
        return off
    }

    private func failed(errno e: Int32, what: String) {
        let message = "\(what): \(String(cString: strerror(e)))"
        let first = stats.withLock { s -> Bool in
            s.writeErrors += 1
            s.lastError = message
            let first = !s.failing
            s.failing = true
            return first
        }
        if first {
            logger.error("log write failed; records wait in memory and are retried, then counted as lost if the buffer fills", metadata: [
                "log.path": "\(options.path)", "error": "\(message)",
                "log.buffer_bytes": "\(options.bufferBytes)"])
        }
    }

    /// Rotation failed recently and waits for its retry time.
    private var rotationBlocked: Bool {
        guard rotationBlockedUntilNs != 0 else { return false }
        if Clock.monotonicNs() >= rotationBlockedUntilNs { rotationBlockedUntilNs = 0; return false }
        return true
    }

    /// A rotation that could not move the file: counted, logged at most once a minute, retried
    /// after `rotationRetryMs`; meanwhile the current file keeps growing.
    private func rotationFailed(errno e: Int32, what: String) {
        rotationBlockedUntilNs = Clock.monotonicNs() + UInt64(max(1, options.rotationRetryMs)) * 1_000_000
        rotationFailing = true
        let message = "\(what): \(String(cString: strerror(e)))"
        stats.withLock { $0.rotationErrors += 1; $0.lastError = message }
        if let suppressed = rotationFailureLog.admit() {
            logger.error("log rotation failed; the log keeps growing past log.max_bytes and rotation is retried later", metadata: [
                "log.path": "\(options.path)", "error": "\(message)", "log.retry_ms": "\(options.rotationRetryMs)",
                "log.suppressed": "\(suppressed)"])
        }
    }

    private func rotate(byTime: Bool) {
        let p = options.path
        if options.fsync != .never { syncFile() }
        if options.keep > 0 {
            // The file stays open (and locked) until it is renamed: when the rename fails, writing
            // simply continues in it. (All writes come from this thread, so nothing is in flight.)
            // Shift only the files that exist (a large `keep` must not cost a rename per slot).
            let present = rotatedFiles ?? {
                var n = 0
                while n < options.keep && (access("\(p).\(n + 1)", F_OK) == 0 || access("\(p).\(n + 1).gz", F_OK) == 0) { n += 1 }
                return n
            }()
            unlink("\(p).\(options.keep)")
            unlink("\(p).\(options.keep).gz")
            if options.keep > 1 {
                for i in stride(from: min(present, options.keep - 1), through: 1, by: -1) {
                    rename("\(p).\(i)", "\(p).\(i + 1)")
                    rename("\(p).\(i).gz", "\(p).\(i + 1).gz")
                }
            }
            if rename(p, "\(p).1") != 0 {
                // Read-only or full directory, `.1` a directory…: keep writing to the current file.
                rotationFailed(errno: errno, what: "rename(\(p) → \(p).1)")
                rotatedFiles = nil  // count again next time (some shifts may have happened)
                return
            }
            close(fd)
            fd = -1
            rotatedFiles = min(present + 1, options.keep)
            if options.gzip {
                do {
                    try Gzip.compress(file: "\(p).1", to: "\(p).1.gz", write: { [options] in options.write($0, $1, $2) })
                    unlink("\(p).1")
                    stats.withLock { $0.gzipped += 1 }
                } catch {
                    // The rotated file stays uncompressed; nothing is lost.
                    stats.withLock { $0.gzipErrors += 1; $0.lastError = "\(error)" }
                    logger.warning("could not gzip the rotated log; kept uncompressed", metadata: ["log.path": "\(p).1", "error": "\(error)"])
                }
            }
        } else {
            close(fd)
            fd = -1
            unlink(p)
        }
        if rotationFailing {
            rotationFailing = false
            logger.notice("log rotation works again", metadata: ["log.path": "\(p)"])
        }
        fileSize = 0
        stats.withLock { s in
            s.rotations += 1
            if byTime { s.rotationsByTime += 1 } else { s.rotationsBySize += 1 }
            s.currentFileBytes = 0
        }
        do { try openFile() } catch {
            failed(errno: error.errnoValue, what: "open after rotation")
        }
        logger.debug("log rotated", metadata: ["log.path": "\(p)", "log.by": "\(byTime ? "time" : "size")"])
    }
}
