import CV4L2
import Glibc
import ImageOps
import Logging
import Support
import Synchronization

/// A live V4L2 camera as a `FrameSource`: negotiates a format (NV12, YUYV or MJPEG) and streams
/// through MMAP buffers. A dequeued buffer is handed to the pipeline as it is, as a lease
/// (`V4L2Stream`) that queues it to the driver again when it ends: capture copies and converts
/// nothing (the worker converts while it scales into the model input), and MJPEG frames that the
/// queue drops are never decoded. When the camera goes away (unplug, stream error, long stall) it
/// stops the stream, reports `lost`, waits for the frames still leased, re-opens with exponential
/// backoff, renegotiates and reports `streaming` again; `nextFrame` only returns nil when asked
/// to stop.
///
/// Call `prepare()` before building the pipeline: it negotiates, so `maxFrameSize` (the pool's
/// buffer size) is known. If the camera is absent then, the pool is sized for the requested size
/// and the camera is waited for.
///
/// Thread context: `prepare`, `open`, `nextFrame`, `close` from one thread at a time (the owner,
/// then the pipeline's capture thread); `requestStop`, `stats`, `setEventHandler` from any thread.
public final class V4L2Camera: FrameSource, @unchecked Sendable {
    public let options: CameraOptions
    public var name: String { options.path }
    public var fileNames: [String] { [] }
    public var isLive: Bool { true }
    public private(set) var maxFrameSize: (width: Int, height: Int)

    private let logger: Logger
    private let wakeFD: Int32
    private let stopRequested = Atomic<Bool>(false)
    private let handler = Mutex<(@Sendable (CameraStateChange) -> Void)?>(nil)
    private let intake = CameraFrameIntake()
    private var counters: CameraCounters { intake.counters }
    private let published = Mutex<NegotiatedFormat?>(nil)
    private let lostFlag = Atomic<Bool>(false)
    private let activity = Atomic<UInt64>(0)

    /// Leases the pipeline may hold at once (`reserveLeases`): buffers requested are this + 2.
    private let leaseBudget = Atomic<Int>(0)
    /// A stream given up (lost, closed) whose buffers are still leased: the device cannot be
    /// re-opened until they are back. Shared with `requestStop`, which wakes the wait.
    private let retiredStream = Mutex<V4L2Stream?>(nil)

    // Capture-thread state.
    /// Opened and negotiated, not yet streaming.
    private var device: V4L2Device?
    /// Streaming.
    private var stream: V4L2Stream?
    private var negotiated: NegotiatedFormat?
    private var deviceNumber: UInt = 0
    /// The pool exists: renegotiation must not exceed `maxFrameSize`.
    private var sizeFixed = false
    private var lastFrameNs: UInt64 = 0
    private var stallReported = false
    private var lostAtNs: UInt64?
    private var lostReason = ""
    private var retryError = ""
    private var negotiationLogged = false
    private var timestampFallbackLogged = false

    public init(options: CameraOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        maxFrameSize = (max(2, options.width & ~1), max(2, options.height & ~1))
        wakeFD = cv4l2_wakefd()
        precondition(wakeFD >= 0, "eventfd failed: \(String(cString: strerror(errno)))")
    }

    deinit { Glibc.close(wakeFD) }

    /// Receives `lost`/`streaming` events (called on the capture thread; must not block).
    public func setEventHandler(_ h: @escaping @Sendable (CameraStateChange) -> Void) {
        handler.withLock { $0 = h }
    }

    /// Per-cause counts since start.
    public var stats: CameraStats { counters.snapshot }

    /// The format currently negotiated (nil while the camera is lost and before `prepare`).
    public var format: NegotiatedFormat? { published.withLock { $0 } }

    /// The camera is gone and being re-opened (no frames meanwhile, by design).
    public var isLost: Bool { lostFlag.load(ordering: .relaxed) }

    /// CLOCK_MONOTONIC of the capture thread's last sign of life: a frame, or a re-open attempt
    /// while the camera is lost. A watchdog can tell "unplugged, retrying" (recent) from a thread
    /// stuck in the driver (old) — classifications alone stop in both cases.
    public var lastActivityNs: UInt64 { activity.load(ordering: .relaxed) }

    public var liveness: SourceLiveness? { SourceLiveness(waiting: isLost, lastActivityNs: lastActivityNs) }

    /// Opens and negotiates, fixing `maxFrameSize`. A camera that is absent is waited for later.
    /// - Throws: `CameraError` for everything waiting cannot fix: permission denied, busy, not a
    ///   capture device, no usable format.
    public func prepare() throws(CameraError) {
        defer { sizeFixed = true }
        do throws(CameraError) {
            try negotiate()
            if let c = intake.converter { maxFrameSize = (c.outputWidth, c.outputHeight) }
        } catch {
            guard error.isAbsence else { throw error }
            device = nil
            lostAtNs = Clock.monotonicNs()
            lostReason = error.description
            logger.warning("camera not present; waiting for it", metadata: [
                "camera.path": "\(options.path)", "camera.reason": "\(error)",
                "camera.pool_size": "\(maxFrameSize.width)x\(maxFrameSize.height)"])
        }
    }

    public func open() throws {
        stopRequested.store(false, ordering: .relaxed)
        var drain: UInt64 = 0
        _ = Glibc.read(wakeFD, &drain, 8)
        if !sizeFixed { try prepare() }
        if device == nil && stream == nil && lostAtNs == nil {
            // Opened again after `close()`: negotiate again, within the pool's frame size.
            do throws(CameraError) { try negotiate() } catch {
                guard error.isAbsence else { throw error }
                lostAtNs = Clock.monotonicNs()
                lostReason = error.description
            }
        }
        guard device != nil else {
            lostFlag.store(true, ordering: .relaxed)
            activity.store(Clock.monotonicNs(), ordering: .relaxed)
            counters.losses.add(1, ordering: .relaxed)
            emit(CameraStateChange(state: .lost, source: options.path, reason: lostReason, format: nil, downtimeNs: nil,
                             monotonicNs: lostAtNs ?? Clock.monotonicNs(), realtimeNs: Clock.realtimeNs()))
            return
        }
        do throws(CameraError) {
            try startStream()
        } catch {
            guard error.isAbsence else { device = nil; throw error }
            markLost(error.description)
            return
        }
        logger.info("camera streaming", metadata: metadata(negotiated!))
        emit(streamingEvent(downtimeNs: nil))
    }

    public func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
        retiredStream.withLock { $0 }?.wake()
    }

    public func reserveLeases(_ count: Int) { leaseBudget.store(max(0, count), ordering: .relaxed) }

    /// Driver buffers to request: what the pipeline may hold plus two for the driver to fill, and
    /// at least `camera.buffers`; 32 at most (uvcvideo's limit).
    var buffersToRequest: Int { min(32, max(options.buffers, leaseBudget.load(ordering: .relaxed) + 2)) }

    public func close() {
        retire()
        // Closed after the pipeline's threads ended, so normally nothing is leased any more: the
        // device closes now. (Otherwise it closes when the last lease ends.)
        retiredStream.withLock { if $0?.leased == 0 { $0 = nil } }
        device = nil
        lostAtNs = nil
        intake.converter = nil
        published.withLock { $0 = nil }
        let s = counters.snapshot
        logger.info("camera closed", metadata: [
            "camera.path": "\(options.path)", "camera.frames": "\(s.frames)", "camera.sequence_gaps": "\(s.sequenceGaps)",
            "camera.error_buffers": "\(s.errorBuffers)", "camera.empty_buffers": "\(s.emptyBuffers)",
            "camera.corrupt_frames": "\(s.corruptFrames)", "camera.stalls": "\(s.stalls)",
            "camera.losses": "\(s.losses)", "camera.recoveries": "\(s.recoveries)"])
    }

    // MARK: capture loop

    public func nextFrame() throws -> FrameLease? {
        while !stopRequested.load(ordering: .relaxed) {
            guard let stream else {
                guard reconnect() else { return nil }
                continue
            }
            let pollError: Bool
            switch waitReadable(stream.fd) {
            case .stop: return nil
            case .timeout: checkStall(); continue
            case .ready(let error): pollError = error
            }
            var buf = v4l2_buffer()
            buf.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
            buf.memory = CV4L2_MEMORY_MMAP
            let e = stream.dequeue(&buf)
            if e == EAGAIN {
                // A spurious wake-up; but an error poll with nothing to dequeue would spin.
                if pollError { markLost("poll reported an error on the camera (POLLERR/POLLHUP)") }
                continue
            }
            if e != 0 {
                // ENODEV (unplugged), EIO (fatal stream error), EINVAL (unbound while queued), …
                markLost("VIDIOC_DQBUF: \(String(cString: strerror(e)))")
                continue
            }
            let now = Clock.monotonicNs()
            lastFrameNs = now
            activity.store(now, ordering: .relaxed)
            if stallReported {
                stallReported = false
                logger.info("camera frames resumed after a stall", metadata: ["camera.path": "\(options.path)"])
            }
            guard let mapped = stream.mapping(Int(buf.index)), let converter = intake.converter else {
                markLost("driver returned unknown buffer index \(buf.index)")
                continue
            }
            let outcome = intake.take(mapped, bytesUsed: buf.bytesused, flags: buf.flags, sequence: buf.sequence)
            if outcome.gap > 0 { logDrop(.sequenceGap, n: outcome.gap, total: outcome.gapTotal, reason: nil) }
            guard outcome.delivered, let payload = outcome.payload else {
                // Not a frame: straight back to the driver.
                if stream.requeueUnleased(&buf) != 0 { markLost("VIDIOC_QBUF: \(String(cString: strerror(errno)))") }
                if let kind = outcome.dropped { logDrop(kind, n: 1, total: outcome.droppedTotal, reason: outcome.reason) }
                continue
            }
            var info = FrameInfo()
            info.width = converter.outputWidth
            info.height = converter.outputHeight
            info.fileIndex = -1
            info.captureNs = timestamp(buf, now: now)
            info.sourceDropped = outcome.sourceDropped
            var lease = stream.lease(index: Int(buf.index), payload: payload, info: info)
            lease.info.handOverNs = max(1, Clock.monotonicNs() - now)
            return lease
        }
        return nil
    }

    private enum Readiness {
        /// A frame, or an error (POLLERR/POLLHUP: DQBUF then says which: EIO, ENODEV, …).
        case ready(error: Bool)
        case timeout
        case stop
    }

    /// Blocks in poll() until a frame (or an error) is ready, the stall timeout passes, or
    /// `requestStop` writes the wake-up fd.
    private func waitReadable(_ fd: Int32) -> Readiness {
        withUnsafeTemporaryAllocation(of: pollfd.self, capacity: 2) { fds in
            fds[0] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            fds[1] = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
            while true {
                let n = poll(fds.baseAddress, 2, Int32(clamping: options.stallTimeoutMs))
                if n < 0 && errno == EINTR { continue }
                if fds[1].revents != 0 || stopRequested.load(ordering: .relaxed) { return .stop }
                if n == 0 { return .timeout }
                let bad = Int16(POLLERR) | Int16(POLLHUP) | Int16(POLLNVAL)
                return .ready(error: n < 0 || fds[0].revents & bad != 0)
            }
        }
    }

    /// Logs the first drop of a kind and then every hundredth at warning; each one at debug only
    /// (no per-frame logs at info).
    private func logDrop(_ kind: CameraDropKind, n: Int, total: Int, reason: FrameDropReason?) {
        logger.debug("camera frame dropped", metadata: [
            "camera.drop": "\(kind.rawValue)", "camera.frames": "\(n)", "camera.count": "\(total)"])
        guard total == n || total / 100 != (total - n) / 100 else { return }
        var meta: Logger.Metadata = ["camera.path": "\(options.path)", "camera.drop": "\(kind.rawValue)",
                                     "camera.count": "\(total)"]
        if let reason { meta["camera.reason"] = "\(reason)" }
        logger.warning("camera frames dropped", metadata: meta)
    }

    /// The driver's capture time when it is CLOCK_MONOTONIC (the pipeline's clock) and plausible,
    /// else now. Drivers that compute frame times (vivid) may stamp a frame a little ahead of the
    /// dequeue; a stamp far off is a driver that does not really use the monotonic clock.
    private func timestamp(_ buf: v4l2_buffer, now: UInt64) -> UInt64 {
        if buf.flags & CV4L2_BUF_FLAG_TIMESTAMP_MASK == CV4L2_BUF_FLAG_TIMESTAMP_MONOTONIC && buf.timestamp.tv_sec >= 0 {
            let ns = UInt64(buf.timestamp.tv_sec) * 1_000_000_000 + UInt64(buf.timestamp.tv_usec) * 1_000
            if ns > 0 && ns <= now + 1_000_000_000 && ns + 10_000_000_000 >= now { return ns }
        }
        if !timestampFallbackLogged {
            timestampFallbackLogged = true
            logger.info("camera timestamps are not plausible CLOCK_MONOTONIC times; using the dequeue time", metadata: [
                "camera.path": "\(options.path)", "camera.buffer_flags": "0x\(String(buf.flags, radix: 16))",
                "camera.timestamp": "\(buf.timestamp.tv_sec).\(buf.timestamp.tv_usec)", "camera.now_ns": "\(now)"])
        }
        return now
    }

    /// No frame for `stallTimeoutMs`: report once per stall; a node that vanished or was replaced
    /// is a loss; after four timeouts the stream is restarted.
    private func checkStall() {
        if let stream, stream.leased >= stream.bufferCount {
            // Every buffer is leased: the pipeline is slow, not the camera.
            lastFrameNs = Clock.monotonicNs()
            return
        }
        let silentMs = (Clock.monotonicNs() &- lastFrameNs) / 1_000_000
        if !stallReported {
            stallReported = true
            counters.stalls.add(1, ordering: .relaxed)
            logger.warning("camera stalled: no frame", metadata: [
                "camera.path": "\(options.path)", "camera.silent_ms": "\(silentMs)"])
        }
        var st = stat()
        if stat(options.path, &st) != 0 || UInt(st.st_rdev) != deviceNumber {
            markLost("device disappeared (\(options.path) no longer names the open camera)")
        } else if silentMs >= UInt64(4 * options.stallTimeoutMs) {
            markLost("stalled: no frame for \(silentMs) ms")
        }
    }

    // MARK: loss and recovery

    /// Stops streaming and lets go of the device (unmapped and closed once the frames still leased
    /// are back), then reports the loss. The next `nextFrame` re-opens with backoff.
    private func markLost(_ reason: String) {
        // Frames still in the pipeline keep the old device open until they are back (logged then).
        let leased = stream?.leased ?? 0
        retire()
        device = nil
        intake.converter = nil
        stallReported = false
        published.withLock { $0 = nil }
        let now = Clock.monotonicNs()
        lostAtNs = now
        lostReason = reason
        retryError = ""
        lostFlag.store(true, ordering: .relaxed)
        activity.store(now, ordering: .relaxed)
        counters.losses.add(1, ordering: .relaxed)
        logger.warning("camera lost", metadata: ["camera.path": "\(options.path)", "camera.reason": "\(reason)",
                                                 "camera.leased": "\(leased)"])
        emit(CameraStateChange(state: .lost, source: options.path, reason: reason, format: nil, downtimeNs: nil,
                         monotonicNs: now, realtimeNs: Clock.realtimeNs()))
    }

    /// Re-opens until streaming again (true) or stopped (false): immediately, then after 100 ms,
    /// doubling up to `backoffMaxMs`. Each new reason for failing is logged once.
    private func reconnect() -> Bool {
        var delayMs = 0
        while !stopRequested.load(ordering: .relaxed) {
            if delayMs > 0 && sleepUnlessStopped(ms: delayMs) { return false }
            activity.store(Clock.monotonicNs(), ordering: .relaxed)
            do throws(CameraError) {
                try negotiate()
                try startStream()
                let now = Clock.monotonicNs()
                let downtime = now &- (lostAtNs ?? now)
                lostAtNs = nil
                counters.recoveries.add(1, ordering: .relaxed)
                var meta = metadata(negotiated!)
                meta["camera.downtime_ms"] = "\(downtime / 1_000_000)"
                logger.info("camera streaming again", metadata: meta)
                emit(streamingEvent(downtimeNs: downtime))
                return true
            } catch {
                device = nil
                intake.converter = nil
                if error.description != retryError {
                    retryError = error.description
                    logger.warning("camera unavailable; retrying", metadata: [
                        "camera.path": "\(options.path)", "camera.reason": "\(error)",
                        "camera.backoff_max_ms": "\(options.backoffMaxMs)"])
                }
            }
            delayMs = delayMs == 0 ? 100 : min(delayMs * 2, max(100, options.backoffMaxMs))
        }
        return false
    }

    /// Stops the current stream, if any, keeping it (and so the device) until its leases are back.
    private func retire() {
        guard let s = stream else { return }
        stream = nil
        s.retire()
        retiredStream.withLock { $0 = s }
    }

    /// The previous stream's buffers must all be back before the device is opened again (the
    /// driver keeps the old file's buffers until it closes). Frames in flight return within one
    /// inference; a second is generous.
    /// - Throws: `.busy`-like `CameraError` when they are not back in time (retried with backoff).
    private func awaitRetiredLeases() throws(CameraError) {
        guard let old = retiredStream.withLock({ $0 }) else { return }
        let back = old.waitAllReturned(timeoutNs: 1_000_000_000, abandon: { stopRequested.load(ordering: .relaxed) })
        guard back else {
            throw .system(path: options.path, call: "re-open (frames of the previous stream still in flight: \(old.leased))", errno: EBUSY)
        }
        retiredStream.withLock { $0 = nil }  // the last reference: the old device closes here
        if let lostAt = lostAtNs {
            logger.info("camera buffers returned after loss", metadata: [
                "camera.path": "\(options.path)", "camera.waited_ms": "\((Clock.monotonicNs() &- lostAt) / 1_000_000)"])
        }
    }

    /// Waits `ms` on the wake-up fd; true when stop was requested meanwhile.
    private func sleepUnlessStopped(ms: Int) -> Bool {
        var p = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        let deadline = Clock.monotonicNs() &+ UInt64(clamping: ms).multipliedReportingOverflow(by: 1_000_000).partialValue
        while !stopRequested.load(ordering: .relaxed) {
            let now = Clock.monotonicNs()
            if now >= deadline { return false }
            // At most a second per poll: each wake-up is a sign of life for the service watchdog
            // (`liveness`), however long the backoff.
            _ = poll(&p, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            activity.store(Clock.monotonicNs(), ordering: .relaxed)
        }
        return true
    }

    // MARK: negotiation

    /// Opens the node, checks it is a streaming capture device, picks format/size/rate, S_FMT,
    /// S_PARM, and builds the converter for what the driver actually set.
    private func negotiate() throws(CameraError) {
        device = nil
        try awaitRetiredLeases()
        let dev = try V4L2Device(path: options.path, raw: options.raw)
        let caps = try dev.capabilities()
        if let why = caps.unusableReason {
            throw .notCaptureDevice(path: options.path, card: caps.card, capabilities: caps.effective, reason: why)
        }
        var request = options.request
        if sizeFixed {
            request.maxWidth = maxFrameSize.width | 1  // an odd row/column is cropped, so it still fits
            request.maxHeight = maxFrameSize.height | 1
        }
        let formats = try dev.formats(for: request)
        guard let choice = CameraNegotiation.choose(from: formats, request: request) else {
            var unlimited = request
            unlimited.maxWidth = nil
            unlimited.maxHeight = nil
            if sizeFixed, let c = CameraNegotiation.choose(from: try dev.formats(for: unlimited), request: unlimited) {
                throw .tooLarge(path: options.path, width: c.width, height: c.height,
                                maxWidth: maxFrameSize.width, maxHeight: maxFrameSize.height)
            }
            throw .noUsableFormat(path: options.path, offered: formats.filter { !$0.emulated }.map { fourccString($0.fourcc) },
                                  wanted: options.formats.map(\.rawValue))
        }
        let f = try dev.setFormat(fourcc: choice.fourcc, width: choice.width, height: choice.height)
        guard f.fourcc == choice.fourcc else {
            throw .formatRefused(path: options.path, asked: fourccString(choice.fourcc), got: fourccString(f.fourcc))
        }
        guard f.width >= 2, f.height >= 2 else {
            throw .formatRefused(path: options.path, asked: "\(choice.width)x\(choice.height)", got: "\(f.width)x\(f.height)")
        }
        // The driver's answer sizes the pool and the MJPEG decoder's planes: bound it.
        guard f.width * f.height <= options.maxPixels else {
            throw .formatRefused(path: options.path, asked: "\(choice.width)x\(choice.height)",
                                 got: "\(f.width)x\(f.height), over camera.max_pixels \(options.maxPixels)")
        }
        if sizeFixed && ((f.width & ~1) > maxFrameSize.width || (f.height & ~1) > maxFrameSize.height) {
            throw .tooLarge(path: options.path, width: f.width, height: f.height,
                            maxWidth: maxFrameSize.width, maxHeight: maxFrameSize.height)
        }
        let interval = try dev.setInterval(choice.interval ?? FrameInterval(fps: options.fps))
        let fps = interval?.fps
        intake.converter = CameraFrameConverter(format: choice.format, width: f.width, height: f.height,
                                         bytesPerLine: f.bytesPerLine, sizeImage: f.sizeImage)
        let exact = f.width == options.width && f.height == options.height
            && (fps.map { $0 >= options.fps * (1 - CameraNegotiation.fpsTolerance) } ?? true)
        negotiated = NegotiatedFormat(device: resolvedPath(options.path), driver: caps.driver, card: caps.card,
                                      busInfo: caps.busInfo, format: choice.format, fourcc: f.fourcc, width: f.width,
                                      height: f.height, bytesPerLine: f.bytesPerLine, sizeImage: f.sizeImage,
                                      fps: fps, buffers: 0, exact: exact)
        deviceNumber = dev.deviceNumber
        device = consume dev
        if !negotiationLogged {
            negotiationLogged = true
            var meta = metadata(negotiated!)
            meta["camera.requested"] = "\(options.formats.map(\.rawValue).joined(separator: ">")) \(options.width)x\(options.height) @ \(options.fps) fps"
            meta["camera.match"] = "\(exact ? "exact" : "closest supported")"
            meta["camera.io"] = "\(options.raw ? "raw ioctl" : "libv4l2")"
            logger.info("camera format negotiated", metadata: meta)
        }
    }

    private func startStream() throws(CameraError) {
        guard var dev = device.take() else { throw .notFound(path: options.path) }
        let granted = try dev.startStreaming(buffers: buffersToRequest)
        // Frames the workers refuse are counted with the camera's corrupt frames (and logged by the
        // pipeline, which names the source).
        stream = V4L2Stream(device: dev, bufferCount: granted, counters: counters, onRejected: { _, _ in })
        negotiated?.buffers = granted
        published.withLock { $0 = negotiated }
        intake.streamRestarted()
        lostFlag.store(false, ordering: .relaxed)
        lastFrameNs = Clock.monotonicNs()
        activity.store(lastFrameNs, ordering: .relaxed)
        stallReported = false
    }

    private func streamingEvent(downtimeNs: UInt64?) -> CameraStateChange {
        CameraStateChange(state: .streaming, source: options.path, reason: nil, format: negotiated, downtimeNs: downtimeNs,
                    monotonicNs: Clock.monotonicNs(), realtimeNs: Clock.realtimeNs())
    }

    private func emit(_ event: CameraStateChange) {
        let h = handler.withLock { $0 }
        h?(event)
    }

    private func metadata(_ n: NegotiatedFormat) -> Logger.Metadata {
        [
            "camera.path": "\(options.path)", "camera.device": "\(n.device)", "camera.driver": "\(n.driver)",
            "camera.card": "\(n.card)", "camera.format": "\(n.format.rawValue)",
            "camera.size": "\(n.width)x\(n.height)", "camera.fps": "\(n.fps.map { String($0) } ?? "driver default")",
            "camera.bytesperline": "\(n.bytesPerLine)", "camera.sizeimage": "\(n.sizeImage)",
            "camera.buffers": "\(n.buffers > 0 ? n.buffers : buffersToRequest)",
        ]
    }
}

/// The node a path names after following links (a by-id link → /dev/videoN), or the path itself.
func resolvedPath(_ path: String) -> String {
    guard let p = realpath(path, nil) else { return path }
    defer { free(p) }
    return String(cString: p)
}
