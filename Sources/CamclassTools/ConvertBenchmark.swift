import Client
import CamclassDaemon
import WireFormat
import Capture
import Glibc
import ImageOps

/// `camclass bench-convert`: CPU time per frame of what happens to a camera frame between the driver
/// buffer and the model input, for NV12, YUYV and MJPEG (real JPEG bytes, 4:2:2 like UVC cameras):
/// - before: the capture thread's `CameraFrameConverter` into a full-size NV12 pool buffer (MJPEG:
///   full-size decode and a full-frame range table), then the worker's crop/scale to the input;
/// - after: the worker's `ModelInputConverter` straight from the driver buffer into the input
///   (MJPEG: DCT-scaled decode, range table on the input only);
/// - naive: the "before" work as plain per-pixel Swift loops, to show what libyuv saves.
/// Measured as thread CPU time (CLOCK_THREAD_CPUTIME_ID) on one thread: one frame's cost on one
/// core, whichever thread the work runs on. The driver's DQBUF/QBUF (two ioctls) is not part of it.
public struct ConvertBenchmark {
    public struct Options: Sendable {
        public var sizes: [(width: Int, height: Int)] = [(640, 480), (1280, 720), (1920, 1080)]
        /// Only these rows (format and size) instead of every format at every size.
        public var rows: [RowSpec]?
        /// Which columns to measure (the others print "-"); a single one lets an instruction counter
        /// (tools/callgrind-per-frame.sh) attribute `measure` to one path.
        public var columns: Set<Column> = Set(Column.allCases)
        public var modelWidth = 224
        public var modelHeight = 224
        /// Frames per measurement; the median of `runs` measurements is reported.
        public var frames = 100
        public var runs = 5
        /// A photo (JPEG) for realistic content; a synthetic pattern when nil or unreadable.
        public var photo: String?
        /// Where to write each MJPEG row's JPEG (`mjpeg-WxH.jpg`), the exact bytes measured, so
        /// other decoders (ffmpeg) can be measured on the same input; nil: not written.
        public var saveMJPEGDirectory: String?
        public init() {}
    }

    public enum Column: String, Sendable, CaseIterable { case before, after, naive }

    /// One row to measure, written FORMAT:WxH (`mjpeg:1920x1080`).
    public struct RowSpec: Sendable {
        public var format: CameraPixelFormat
        public var width: Int
        public var height: Int

        public init(format: CameraPixelFormat, width: Int, height: Int) {
            self.format = format
            self.width = width
            self.height = height
        }

        /// nil unless FORMAT is nv12, yuyv or mjpeg and the size is even, 2…8192 each way.
        public init?(_ text: String) {
            let parts = text.split(separator: ":")
            let size = parts.count == 2 ? parts[1].split(separator: "x") : []
            guard parts.count == 2, let format = CameraPixelFormat(configName: String(parts[0])), size.count == 2,
                  let w = Int(size[0]), let h = Int(size[1]), (2...8192).contains(w), (2...8192).contains(h),
                  w % 2 == 0, h % 2 == 0 else { return nil }
            self.init(format: format, width: w, height: h)
        }
    }

    public struct Row: Sendable {
        public var format: CameraPixelFormat
        public var width: Int
        public var height: Int
        /// Input bytes per frame (the MJPEG size shows the compression).
        public var inputBytes: Int
        /// Capture-thread conversion into the pool buffer + scale (the path before issue 12).
        public var beforeMs: Double
        /// `ModelInputConverter` on the worker, driver buffer → model input.
        public var afterMs: Double
        /// The "before" work as per-pixel Swift loops.
        public var naiveMs: Double
        public var gain: Double { afterMs > 0 ? beforeMs / afterMs : 0 }
    }

    let options: Options
    public init(options: Options) { self.options = options }

    public func run(progress: (String) -> Void) throws -> [Row] {
        var results: [Row] = []
        let model = NV12Buffer(width: options.modelWidth, height: options.modelHeight)
        let plan = options.rows ?? options.sizes.flatMap { size in
            CameraPixelFormat.allCases.map { RowSpec(format: $0, width: size.width, height: size.height) }
        }
        var frames: [String: NV12Buffer] = [:]  // one content frame per size
        for spec in plan {
            let (format, width, height) = (spec.format, spec.width, spec.height)
            let size = (width: width, height: height)
            let key = "\(width)x\(height)"
            let frame = try frames[key] ?? contentFrame(width: width, height: height)
            frames[key] = frame
            do {  // one row's buffers, freed before the next row
                let input = try driverBuffer(format, frame: frame)
                if format == .mjpeg, let dir = options.saveMJPEGDirectory {
                    try Self.write(input.bytes, to: dir + "/mjpeg-\(key).jpg")
                }
                let converter = CameraFrameConverter(format: format, width: size.width, height: size.height,
                                                     bytesPerLine: input.bytesPerLine, sizeImage: input.bytes.count)
                let pool = NV12Buffer(width: size.width, height: size.height)
                let naive = NaiveConverter(format: format, width: size.width, height: size.height,
                                           bytesPerLine: input.bytesPerLine)
                let before = try input.bytes.withUnsafeBytes { raw in
                    try measure(.before) {
                        try converter.convert(raw, into: pool.view)
                        NV12Ops.scale(pool.view.readOnly, into: model.view, mode: .crop)
                    }
                }
                let modelInput = ModelInputConverter(maxWidth: size.width, maxHeight: size.height,
                                                     inputWidth: options.modelWidth, inputHeight: options.modelHeight)
                let after = try input.bytes.withUnsafeBytes { raw in
                    let payload = Self.payload(format, raw, bytesPerLine: input.bytesPerLine, width: size.width, height: size.height)
                    return try measure(.after) { try modelInput.convert(payload, into: model.view, mode: .crop) }
                }
                let baseline = try input.bytes.withUnsafeBytes { raw in
                    try measure(.naive) {
                        try naive.convert(raw, into: pool.view)
                        NaiveConverter.scale(pool.view.readOnly, into: model.view)
                    }
                }
                let row = Row(format: format, width: size.width, height: size.height, inputBytes: input.bytes.count,
                              beforeMs: before, afterMs: after, naiveMs: baseline)
                progress(ConvertBenchmark.format(row))
                results.append(row)
            }
        }
        return results
    }

    /// How the capture side describes a tightly packed driver buffer of `format` (what the daemon's
    /// frame lease hands to the worker).
    static func payload(_ format: CameraPixelFormat, _ raw: UnsafeRawBufferPointer, bytesPerLine: Int,
                        width: Int, height: Int) -> FramePayload {
        let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
        switch format {
        case .nv12:
            return .nv12(NV12ConstView(y: base, uv: base + bytesPerLine * height,
                                       layout: NV12Layout(width: width, height: height, strideY: bytesPerLine, strideUV: bytesPerLine)))
        case .yuyv: return .yuyv(base, stride: bytesPerLine, width: width, height: height)
        case .mjpeg: return .mjpeg(raw, width: width, height: height)
        }
    }

    /// A JPEG for `saveMJPEGDirectory` could not be written.
    public struct WriteFailure: Error, CustomStringConvertible {
        public let description: String
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        guard let f = fopen(path, "wb") else { throw WriteFailure(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        guard written == bytes.count else { throw WriteFailure(description: "short write to \(path)") }
    }

    public static func format(_ r: Row) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func ms(_ v: Double) -> String { v.isNaN ? "-" : String(fixed: v, decimals: 3) + " ms" }
        return pad(r.format.rawValue, 6) + pad("\(r.width)x\(r.height)", 11) + pad("\(r.inputBytes / 1024) KiB", 10)
            + pad(ms(r.beforeMs), 11) + pad(ms(r.afterMs), 11)
            + pad(r.gain.isNaN || r.gain == 0 ? "-" : String(fixed: r.gain, decimals: 1) + "x", 7) + ms(r.naiveMs)
    }

    public static let header = "input size       frame     before     after      gain   naive Swift"

    /// Median over `runs` of the thread CPU time per frame, after a warm-up; NaN for a column not
    /// asked for. Not inlined: tools/callgrind-per-frame.sh collects instructions inside it.
    @inline(never)
    func measure(_ column: Column, _ body: () throws -> Void) throws -> Double {
        guard options.columns.contains(column) else { return .nan }
        for _ in 0..<3 { try body() }
        var perFrame: [Double] = []
        for _ in 0..<options.runs {
            let t0 = threadCPUNs()
            for _ in 0..<options.frames { try body() }
            perFrame.append(Double(threadCPUNs() - t0) / 1e6 / Double(options.frames))
        }
        return median(perFrame)
    }

    func threadCPUNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The photo scaled (cropped) to the frame size, or a gradient.
    func contentFrame(width: Int, height: Int) throws -> NV12Buffer {
        let out = NV12Buffer(width: width, height: height)
        if let photo = options.photo, let replay = try? ReplaySource(path: photo, fps: 0, loop: false) {
            replay.open()
            if let f = try? replay.nextFrame(), let pixels = f.nv12 {
                NV12Ops.scale(pixels, into: out.view, mode: .crop)
                return out
            }
        }
        let v = out.view
        for y in 0..<height { for x in 0..<width { v.y[y * v.layout.strideY + x] = UInt8(truncatingIfNeeded: x ^ y) } }
        for y in 0..<height / 2 { for x in 0..<width { v.uv[y * v.layout.strideUV + x] = UInt8(truncatingIfNeeded: 64 + x / 4) } }
        return out
    }

    /// What the driver would hand over for `frame` in `format`: tightly packed rows, as vivid and
    /// UVC deliver them.
    func driverBuffer(_ format: CameraPixelFormat, frame: NV12Buffer) throws -> (bytes: [UInt8], bytesPerLine: Int) {
        let w = frame.layout.width, h = frame.layout.height
        switch format {
        case .nv12:
            var bytes = [UInt8](repeating: 0, count: w * h * 3 / 2)
            bytes.withUnsafeMutableBufferPointer { p in
                let dst = NV12MutableView(y: p.baseAddress!, uv: p.baseAddress! + w * h, layout: NV12Layout(width: w, height: h))
                NV12Ops.copy(frame.view.readOnly, into: dst)
            }
            return (bytes, w)
        case .yuyv:
            var bytes = [UInt8](repeating: 0, count: w * h * 2)
            try bytes.withUnsafeMutableBufferPointer { p in
                try NV12Ops.convertToYUYV(frame.view.readOnly, into: p.baseAddress!, stride: w * 2)
            }
            return (bytes, w * 2)
        case .mjpeg:
            return (try JPEGEncoder.encode(frame.view.readOnly, subsampling: .s422, quality: 85), 0)
        }
    }
}

/// The benchmark's baseline: the same conversions and a bilinear crop/scale as straightforward
/// per-pixel Swift loops (bounds-checked arrays avoided, so it is the algorithm that is compared).
final class NaiveConverter {
    let format: CameraPixelFormat
    let width: Int
    let height: Int
    let bytesPerLine: Int
    let planar: JPEGPlanarDecoder?

    init(format: CameraPixelFormat, width: Int, height: Int, bytesPerLine: Int) {
        self.format = format
        self.width = width
        self.height = height
        self.bytesPerLine = bytesPerLine
        planar = format == .mjpeg ? JPEGPlanarDecoder(width: width, height: height, subsampling: .s422) : nil
    }

    func convert(_ bytes: UnsafeRawBufferPointer, into dst: NV12MutableView) throws {
        let src = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let w = width, h = height, sy = dst.layout.strideY, suv = dst.layout.strideUV
        switch format {
        case .nv12:
            for row in 0..<h { for x in 0..<w { dst.y[row * sy + x] = src[row * bytesPerLine + x] } }
            let uv = src + bytesPerLine * h
            for row in 0..<h / 2 { for x in 0..<w { dst.uv[row * suv + x] = uv[row * bytesPerLine + x] } }
        case .yuyv:
            for row in 0..<h {
                let line = src + row * bytesPerLine
                for x in 0..<w { dst.y[row * sy + x] = line[2 * x] }
            }
            // Chroma: each NV12 row averages two YUYV rows (4:2:2 → 4:2:0).
            for row in 0..<h / 2 {
                let a = src + 2 * row * bytesPerLine, b = a + bytesPerLine
                for pair in 0..<w / 2 {
                    dst.uv[row * suv + 2 * pair] = UInt8((Int(a[4 * pair + 1]) + Int(b[4 * pair + 1]) + 1) / 2)
                    dst.uv[row * suv + 2 * pair + 1] = UInt8((Int(a[4 * pair + 3]) + Int(b[4 * pair + 3]) + 1) / 2)
                }
            }
        case .mjpeg:
            let p = planar!
            try p.decode(bytes)
            for row in 0..<h { for x in 0..<w { dst.y[row * sy + x] = limitedY(p.y[row * w + x]) } }
            let cw = p.chromaWidth
            for row in 0..<h / 2 {
                for pair in 0..<w / 2 {
                    let u = (Int(p.u[2 * row * cw + pair]) + Int(p.u[(2 * row + 1) * cw + pair]) + 1) / 2
                    let v = (Int(p.v[2 * row * cw + pair]) + Int(p.v[(2 * row + 1) * cw + pair]) + 1) / 2
                    dst.uv[row * suv + 2 * pair] = limitedC(u)
                    dst.uv[row * suv + 2 * pair + 1] = limitedC(v)
                }
            }
        }
    }

    @inline(__always) func limitedY(_ v: UInt8) -> UInt8 { UInt8(16 + (Int(v) * 219 + 127) / 255) }
    @inline(__always) func limitedC(_ v: Int) -> UInt8 { UInt8(clamping: 128 + ((v - 128) * 224) / 255) }

    /// Centre crop to the destination's aspect ratio, then bilinear scaling, per pixel.
    static func scale(_ src: NV12ConstView, into dst: NV12MutableView) {
        let r = NV12Ops.cropRect(source: src.layout, destinationWidth: dst.layout.width,
                                 destinationHeight: dst.layout.height, mode: .crop)
        bilinear(src.y + r.y * src.layout.strideY + r.x, stride: src.layout.strideY, width: r.width, height: r.height,
                 channels: 1, into: dst.y, dstStride: dst.layout.strideY, dstWidth: dst.layout.width, dstHeight: dst.layout.height)
        bilinear(src.uv + (r.y / 2) * src.layout.strideUV + r.x, stride: src.layout.strideUV, width: r.width / 2,
                 height: r.height / 2, channels: 2, into: dst.uv, dstStride: dst.layout.strideUV,
                 dstWidth: dst.layout.width / 2, dstHeight: dst.layout.height / 2)
    }

    static func bilinear(_ src: UnsafePointer<UInt8>, stride: Int, width: Int, height: Int, channels: Int,
                         into dst: UnsafeMutablePointer<UInt8>, dstStride: Int, dstWidth: Int, dstHeight: Int) {
        let sx = Double(width) / Double(dstWidth), sy = Double(height) / Double(dstHeight)
        for y in 0..<dstHeight {
            let fy = max(0, (Double(y) + 0.5) * sy - 0.5)
            let y0 = min(Int(fy), height - 1), y1 = min(y0 + 1, height - 1)
            let wy = fy - Double(y0)
            for x in 0..<dstWidth {
                let fx = max(0, (Double(x) + 0.5) * sx - 0.5)
                let x0 = min(Int(fx), width - 1), x1 = min(x0 + 1, width - 1)
                let wx = fx - Double(x0)
                for c in 0..<channels {
                    let p00 = Double(src[y0 * stride + x0 * channels + c]), p01 = Double(src[y0 * stride + x1 * channels + c])
                    let p10 = Double(src[y1 * stride + x0 * channels + c]), p11 = Double(src[y1 * stride + x1 * channels + c])
                    let top = p00 + (p01 - p00) * wx, bottom = p10 + (p11 - p10) * wx
                    dst[y * dstStride + x * channels + c] = UInt8(top + (bottom - top) * wy + 0.5)
                }
            }
        }
    }
}
