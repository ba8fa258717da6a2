import Glibc
import ImageOps
import Synchronization

public enum ReplayError: Error, CustomStringConvertible {
    case notFound(String)
    case empty(String)
    case unreadable(path: String, errno: Int32)
    case badFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let p): return "replay source '\(p)' does not exist"
        case .empty(let p):
            return "replay source '\(p)' has no .jpg/.jpeg or <name>_<W>x<H>.nv12 files"
        case .unreadable(let p, let e): return "cannot read '\(p)': \(String(cString: strerror(e)))"
        case .badFile(let p, let r): return "cannot replay '\(p)': \(r)"
        }
    }
}

/// Replays a folder (or a single file) of JPEG or raw NV12 images as if it were a camera.
/// Files are decoded once at `open` and replayed from memory, so each frame costs what a camera
/// delivering NV12 costs: one copy into a pool buffer. Frames carry monotonic timestamps.
/// Thread context: see `FrameSource`.
public final class ReplaySource: FrameSource, @unchecked Sendable {
    public let path: String
    /// Frames per second; 0 = as fast as the pipeline takes them.
    public let fps: Double
    public let loop: Bool
    public private(set) var fileNames: [String] = []
    private var images: [NV12Buffer] = []
    private var next = 0
    private var nextDeadline: UInt64 = 0
    private let stopRequested = Atomic<Bool>(false)

    public init(path: String, fps: Double, loop: Bool) throws {
        self.path = path
        self.fps = fps
        self.loop = loop
        try load()
    }

    /// Replays images already in memory (benchmarks, tests).
    public init(name: String, images: [NV12Buffer], fileNames: [String], fps: Double, loop: Bool) {
        precondition(!images.isEmpty && images.count == fileNames.count)
        path = name
        self.fps = fps
        self.loop = loop
        self.images = images
        self.fileNames = fileNames
    }

    /// A paced replay stands in for a camera (drop-oldest downstream); an unpaced one is a file
    /// job where every frame should be classified (the pipeline then applies backpressure).
    public var isLive: Bool { fps > 0 }

    public var name: String { path }

    public var maxFrameSize: (width: Int, height: Int) {
        (images.map(\.layout.width).max() ?? 2, images.map(\.layout.height).max() ?? 2)
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
        let decoder = JPEGDecoder(maxWidth: 8192, maxHeight: 8192)
        for file in files {
            let bytes = try Self.readFile(file)
            let base = String(file.split(separator: "/").last ?? Substring(file))
            if file.lowercased().hasSuffix(".nv12") {
                images.append(try Self.rawNV12(bytes, path: file))
            } else {
                let buffer: NV12Buffer = try bytes.withUnsafeBytes { raw in
                    let h: (width: Int, height: Int, subsampling: Int32)
                    do { h = try decoder.header(raw) } catch { throw ReplayError.badFile(path: file, reason: "\(error)") }
                    guard h.width >= 2, h.height >= 2 else { throw ReplayError.badFile(path: file, reason: "image too small") }
                    let buf = NV12Buffer(width: h.width & ~1, height: h.height & ~1)
                    do { try decoder.decodeExact(raw, into: buf.view) } catch {
                        throw ReplayError.badFile(path: file, reason: "\(error)")
                    }
                    return buf
                }
                images.append(buffer)
            }
            fileNames.append(base)
        }
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReplayError.unreadable(path: path, errno: errno) }
        defer { Glibc.close(fd) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReplayError.unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Raw NV12 files name their size: `anything_<W>x<H>.nv12`, Y plane then UV plane, no padding.
    static func rawNV12(_ bytes: [UInt8], path: String) throws -> NV12Buffer {
        let stem = path.split(separator: "/").last.map(String.init) ?? path
        let parts = stem.dropLast(5).split(separator: "_").last.map { $0.split(separator: "x") } ?? []
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0, w % 2 == 0, h % 2 == 0 else {
            throw ReplayError.badFile(path: path, reason: "raw NV12 files must be named <name>_<W>x<H>.nv12 with even W and H")
        }
        guard bytes.count == w * h * 3 / 2 else {
            throw ReplayError.badFile(path: path, reason: "\(bytes.count) bytes, but \(w)x\(h) NV12 needs \(w * h * 3 / 2)")
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

    public func nextFrame(into frame: inout NV12Frame) throws -> Bool {
        if stopRequested.load(ordering: .relaxed) { return false }
        if next >= images.count {
            guard loop else { return false }
            next = 0
        }
        if fps > 0 {
            // Pace like a camera: absolute deadlines, sleeping in short slices so stop is prompt.
            while true {
                let now = Clock.monotonicNs()
                if now >= nextDeadline { break }
                if stopRequested.load(ordering: .relaxed) { return false }
                Clock.sleep(untilMonotonicNs: min(nextDeadline, now + 50_000_000))
            }
            let period = UInt64(1e9 / fps)
            nextDeadline += period
            let now = Clock.monotonicNs()
            if nextDeadline + period < now { nextDeadline = now }  // fell far behind: don't burst
        }
        let image = images[next]
        let dst = frame.buffer.cropped(width: image.layout.width, height: image.layout.height)
        let copyStart = Clock.monotonicNs()
        NV12Ops.copy(image.view.readOnly, into: dst)
        frame.info.convertNs = Clock.monotonicNs() - copyStart
        frame.info.width = image.layout.width
        frame.info.height = image.layout.height
        frame.info.fileIndex = Int32(next)
        frame.info.captureNs = Clock.monotonicNs()
        frame.info.sourceDropped = 0
        next += 1
        return true
    }

    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    public func close() {}
}
