import Glibc
import ImageOps
import Logging
import Support
import Synchronization

public enum ReplayError: Error, CustomStringConvertible {
    case notFound(String)
    case empty(String)
    case unreadable(path: String, errno: Int32)
    case badFile(path: String, reason: String)
    /// Every replayable file was skipped (each reason was logged as it was skipped).
    case noUsableFiles(path: String, skipped: [ReplaySkip])

    public var description: String {
        switch self {
        case .notFound(let p): return "replay source '\(p)' does not exist"
        case .empty(let p):
            return "replay source '\(p)' has no .jpg/.jpeg or <name>_<W>x<H>.nv12 files"
        case .unreadable(let p, let e): return "cannot read '\(p)': \(String(cString: strerror(e)))"
        case .badFile(let p, let r): return "cannot replay '\(p)': \(r)"
        case .noUsableFiles(let p, let skipped):
            let first = skipped.prefix(3).map { "\($0.file): \($0.reason)" }.joined(separator: "; ")
            return "replay source '\(p)' has no usable image: \(skipped.count) file(s) skipped (\(first)" +
                (skipped.count > 3 ? "; …)" : ")")
        }
    }
}

/// A replay file that was left out, and why.
public struct ReplaySkip: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var reason: String
    public var description: String { "\(file): \(reason)" }
}

/// Replays a folder (or a single file) of JPEG or raw NV12 images as if it were a camera.
/// Files are decoded once at load and replayed from memory: a frame is a lease on the decoded
/// image itself, so replaying copies nothing (the only copy is the worker's crop/scale into the
/// model input, as for an NV12 camera). Frames carry monotonic timestamps.
/// Thread context: see `FrameSource`.
public final class ReplaySource: FrameSource, FrameBufferOwner, @unchecked Sendable {
    public let path: String
    /// Frames per second; 0 = as fast as the pipeline takes them.
    public let fps: Double
    public let loop: Bool
    public private(set) var fileNames: [String] = []
    /// Files of the folder that were not replayable (empty, corrupt, too large, not a regular
    /// file…): each was logged once at load; the replay runs on the others.
    public private(set) var skipped: [ReplaySkip] = []
    /// Images over this many pixels are refused from their header, before anything is allocated.
    public let maxPixels: Int
    /// 40 MP: any camera or photo the pipeline is meant for; a header claiming more is an attack or
    /// a mistake (a 631-byte file can claim 60000x60000, ~10 GB to decode).
    public static let defaultMaxPixels = 40_000_000
    private let logger: Logger?
    private var images: [NV12Buffer] = []
    /// Each file's frame as handed over, made once at load: a view of its decoded image, or (when
    /// `compressed`) its JPEG bytes.
    private var imageViews: [FramePayload] = []
    /// Serve JPEG files as their compressed bytes, decoded by a worker per frame as an MJPEG
    /// camera's frames are (the MJPEG path without a camera: tests and benchmarks).
    public let compressed: Bool
    /// The JPEG bytes kept for `compressed` (freed with the source).
    private var jpegBytes: [UnsafeMutableRawBufferPointer] = []
    private var next = 0
    private var nextDeadline: UInt64 = 0
    private let stopRequested = Atomic<Bool>(false)
    /// The pacing wait: sleeps until the next frame's time, woken early only by `requestStop`.
    private let pacing = Condition()

    /// Loads (decodes) every replayable file of `path` now. Bad files are skipped, counted in
    /// `skipped` and logged as a warning each; it fails only when no file is usable.
    /// - Parameters:
    ///   - maxPixels: the largest image accepted (width x height from the header); clamped to 4…2^30.
    ///   - logger: where each skipped file is reported (nil: only `skipped`).
    /// - Throws: `ReplayError` (`.notFound`, `.empty`, `.noUsableFiles`, `.unreadable` for the folder).
    public init(path: String, fps: Double, loop: Bool, maxPixels: Int = ReplaySource.defaultMaxPixels,
                logger: Logger? = nil, compressed: Bool = false) throws {
        self.path = path
        self.compressed = compressed
        self.fps = fps
        self.loop = loop
        self.maxPixels = min(max(4, maxPixels), 1 << 30)  // keeps every later Int32 size conversion safe
        self.logger = logger
        try load()
    }

    /// Replays images already in memory (benchmarks, tests).
    public init(name: String, images: [NV12Buffer], fileNames: [String], fps: Double, loop: Bool) {
        precondition(!images.isEmpty && images.count == fileNames.count)
        path = name
        self.fps = fps
        self.loop = loop
        self.images = images
        imageViews = images.map { .nv12($0.view.readOnly) }
        compressed = false
        self.fileNames = fileNames
        maxPixels = Self.defaultMaxPixels
        logger = nil
    }

    /// A paced replay stands in for a camera (drop-oldest downstream); an unpaced one is a file
    /// job where every frame should be classified (the pipeline then applies backpressure).
    public var isLive: Bool { fps > 0 }

    public var name: String { path }

    deinit { for b in jpegBytes { b.deallocate() } }

    public var maxFrameSize: (width: Int, height: Int) {
        (imageViews.map { $0.size.width }.max() ?? 2, imageViews.map { $0.size.height }.max() ?? 2)
    }

    public static func isReplayable(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") || lower.hasSuffix(".nv12")
    }

    private func load() throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ReplayError.notFound(path) }
        var files: [String] = []
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard let dir = opendir(path) else { throw ReplayError.unreadable(path: path, errno: errno) }
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if Self.isReplayable(name) { files.append(name) }
            }
            files.sort()
            files = files.map { path.hasSuffix("/") ? path + $0 : path + "/" + $0 }
        } else {
            files = [path]
        }
        guard !files.isEmpty else { throw ReplayError.empty(path) }
        // decodeExact uses no scratch planes: the smallest decoder will do.
        let decoder = JPEGDecoder(maxWidth: 2, maxHeight: 2)
        for file in files {
            do {
                imageViews.append(try loadOne(file, decoder: decoder))
                fileNames.append(String(file.split(separator: "/").last ?? Substring(file)))
            } catch let ReplayError.badFile(path: p, reason: reason) {
                skip(p, reason)
            } catch let ReplayError.unreadable(path: p, errno: e) {
                skip(p, String(cString: strerror(e)))
            }
        }
        guard !imageViews.isEmpty else { throw ReplayError.noUsableFiles(path: path, skipped: skipped) }
    }

    private func skip(_ file: String, _ reason: String) {
        skipped.append(ReplaySkip(file: file, reason: reason))
        logger?.warning("replay file skipped", metadata: ["source.file": "\(file)", "source.reason": "\(reason)"])
    }

    /// One file as the frame it will be handed over as (its decoded image, kept in `images`, or
    /// its JPEG bytes when `compressed`). - Throws: `ReplayError.badFile` / `.unreadable`.
    private func loadOne(_ file: String, decoder: JPEGDecoder) throws -> FramePayload {
        let image = try decodeOne(file, decoder: decoder)
        images.append(image)
        guard compressed && !file.lowercased().hasSuffix(".nv12") else { return .nv12(image.view.readOnly) }
        // It decodes (checked just now); keep the bytes, as a camera would deliver them.
        let bytes = try Self.readFile(file)
        let header = try bytes.withUnsafeBytes { try decoder.header($0) }
        let kept = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        kept.copyBytes(from: bytes)
        jpegBytes.append(kept)
        images.removeLast()  // the decoded copy is not needed
        return .mjpeg(UnsafeRawBufferPointer(kept), width: header.width, height: header.height)
    }

    private func decodeOne(_ file: String, decoder: JPEGDecoder) throws -> NV12Buffer {
        // A raw NV12 file is exactly 1.5 bytes a pixel; a JPEG far less (4 is a generous bound).
        let (limit, overflow) = maxPixels.multipliedReportingOverflow(by: 4)
        let bytes = try Self.readFile(file, maxBytes: overflow ? Int.max : limit)
        if file.lowercased().hasSuffix(".nv12") { return try Self.rawNV12(bytes, path: file, maxPixels: maxPixels) }
        return try bytes.withUnsafeBytes { raw in
            let h: (width: Int, height: Int, subsampling: Int32, colorspace: Int32)
            do { h = try decoder.headerInfo(raw) } catch { throw ReplayError.badFile(path: file, reason: "\(error)") }
            guard h.width >= 2, h.height >= 2 else { throw ReplayError.badFile(path: file, reason: "image too small") }
            // Checked on the header, before the NV12 buffer is allocated.
            guard h.width * h.height <= maxPixels else {
                throw ReplayError.badFile(path: file, reason: "\(JPEGDecodeError.overPixelLimit(width: h.width, height: h.height, limit: maxPixels))")
            }
            let buf = NV12Buffer(width: h.width & ~1, height: h.height & ~1)
            do { try decoder.decodeExact(raw, into: buf.view, maxPixels: maxPixels) } catch {
                throw ReplayError.badFile(path: file, reason: "\(error)")
            }
            return buf
        }
    }

    /// Reads a whole regular file of at most `maxBytes`. Opened non-blocking and checked with
    /// fstat first: a FIFO (or device) named `*.jpg` would otherwise block `open`/`read` forever.
    static func readFile(_ path: String, maxBytes: Int = Int.max) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw ReplayError.unreadable(path: path, errno: errno) }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ReplayError.unreadable(path: path, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ReplayError.badFile(path: path, reason: "not a regular file")
        }
        guard st.st_size > 0 else { throw ReplayError.badFile(path: path, reason: "empty file") }
        guard st.st_size <= maxBytes else {
            throw ReplayError.badFile(path: path, reason: "\(st.st_size) bytes, over the \(maxBytes)-byte bound for the pixel limit")
        }
        var out = [UInt8]()
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReplayError.unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            guard out.count + n <= maxBytes else {
                throw ReplayError.badFile(path: path, reason: "grew past the \(maxBytes)-byte bound while read")
            }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Raw NV12 files name their size: `anything_<W>x<H>.nv12`, Y plane then UV plane, no padding.
    static func rawNV12(_ bytes: [UInt8], path: String, maxPixels: Int = defaultMaxPixels) throws -> NV12Buffer {
        let stem = path.split(separator: "/").last.map(String.init) ?? path
        let parts = stem.dropLast(5).split(separator: "_").last.map { $0.split(separator: "x") } ?? []
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0, w % 2 == 0, h % 2 == 0 else {
            throw ReplayError.badFile(path: path, reason: "raw NV12 files must be named <name>_<W>x<H>.nv12 with even W and H")
        }
        // The name is outside input: no multiplication before the size is known to be sane.
        let (pixels, overflow) = w.multipliedReportingOverflow(by: h)
        guard !overflow, pixels <= maxPixels else {
            throw ReplayError.badFile(path: path, reason: "\(w)x\(h) is over the limit of \(maxPixels) pixels")
        }
        guard bytes.count == pixels * 3 / 2 else {
            throw ReplayError.badFile(path: path, reason: "\(bytes.count) bytes, but \(w)x\(h) NV12 needs \(pixels * 3 / 2)")
        }
        let buf = NV12Buffer(width: w, height: h)
        bytes.withUnsafeBufferPointer { p in
            let src = NV12ConstView(y: p.baseAddress!, uv: p.baseAddress! + w * h, layout: NV12Layout(width: w, height: h))
            NV12Ops.copy(src, into: buf.view)
        }
        return buf
    }

    public func open() {
        stopRequested.store(false, ordering: .relaxed)
        next = 0
        nextDeadline = Clock.monotonicNs()
    }

    public func nextFrame() throws -> FrameLease? {
        if stopRequested.load(ordering: .relaxed) { return nil }
        if next >= imageViews.count {
            guard loop else { return nil }
            next = 0
        }
        if fps > 0 {
            // Pace like a camera: absolute deadlines, one wake-up per frame; `requestStop` wakes
            // the wait early, so stop is prompt without sleeping in slices.
            let waitStart = Clock.monotonicNs()
            if nextDeadline > waitStart {
                _ = pacing.wait(timeoutNs: nextDeadline - waitStart, until: { stopRequested.load(ordering: .relaxed) })
            }
            if stopRequested.load(ordering: .relaxed) { return nil }
            let period = UInt64(1e9 / fps)
            nextDeadline += period
            let now = Clock.monotonicNs()
            if nextDeadline + period < now { nextDeadline = now }  // fell far behind: don't burst
        }
        // The image itself is the frame: it never changes, so a lease needs no copy and its
        // release nothing but the reference it drops.
        var info = FrameInfo()
        info.fileIndex = Int32(next)
        info.captureNs = Clock.monotonicNs()
        var lease = FrameLease(owner: self, slot: next, payload: imageViews[next], info: info)
        lease.info.handOverNs = max(1, Clock.monotonicNs() - info.captureNs)
        next += 1
        return lease
    }

    public func release(slot: Int) {}

    public func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        pacing.broadcast()
    }

    public func close() {}
}
