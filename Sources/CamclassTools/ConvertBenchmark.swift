import Client
import CamclassDaemon
import WireFormat
import Capture
import Glibc
import ImageOps

/// `camclass bench-convert`: CPU time per frame of what the capture thread and a worker do to a
/// camera frame before inference — convert the driver buffer into the NV12 pool buffer (the
/// camera's `CameraFrameConverter`) and crop/scale it to the model input — for NV12, YUYV and
/// MJPEG (real JPEG bytes, 4:2:2 like UVC cameras) input, next to the same work written as plain
/// per-pixel Swift loops, to show what libyuv (and libjpeg-turbo's planar output) saves.
/// The driver's own DQBUF/QBUF (two ioctls, microseconds) is not part of it.
public struct ConvertBenchmark {
    public struct Options: Sendable {
        public var sizes: [(width: Int, height: Int)] = [(640, 480), (1280, 720)]
        public var modelWidth = 224
        public var modelHeight = 224
        /// Frames per measurement; the median of `runs` measurements is reported.
        public var frames = 100
        public var runs = 5
        /// A photo (JPEG) for realistic content; a synthetic pattern when nil or unreadable.
        public var photo: String?
        public init() {}
    }

    public struct Row: Sendable {
        public var format: CameraPixelFormat
        public var width: Int
        public var height: Int
        /// Input bytes per frame (the MJPEG size shows the compression).
        public var inputBytes: Int
        public var libraryMs: Double
        public var naiveMs: Double
        public var gain: Double { libraryMs > 0 ? naiveMs / libraryMs : 0 }
    }

    let options: Options
    public init(options: Options) { self.options = options }

    public func run(progress: (String) -> Void) throws -> [Row] {
        var rows: [Row] = []
        let model = NV12Buffer(width: options.modelWidth, height: options.modelHeight)
        for size in options.sizes {
            let frame = try contentFrame(width: size.width, height: size.height)
            for format in CameraPixelFormat.allCases {
                let input = try driverBuffer(format, frame: frame)
                let converter = CameraFrameConverter(format: format, width: size.width, height: size.height,
                                                     bytesPerLine: input.bytesPerLine, sizeImage: input.bytes.count)
                let pool = NV12Buffer(width: size.width, height: size.height)
                let naive = NaiveConverter(format: format, width: size.width, height: size.height,
                                           bytesPerLine: input.bytesPerLine)
                let library = try input.bytes.withUnsafeBytes { raw in
                    try measure {
                        try converter.convert(raw, into: pool.view)
                        NV12Ops.scale(pool.view.readOnly, into: model.view, mode: .crop)
                    }
                }
                let baseline = try input.bytes.withUnsafeBytes { raw in
                    try measure {
                        try naive.convert(raw, into: pool.view)
                        NaiveConverter.scale(pool.view.readOnly, into: model.view)
                    }
                }
                let row = Row(format: format, width: size.width, height: size.height, inputBytes: input.bytes.count,
                              libraryMs: library, naiveMs: baseline)
                progress(ConvertBenchmark.format(row))
                rows.append(row)
            }
        }
        return rows
    }

    public static func format(_ r: Row) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        return pad(r.format.rawValue, 6) + pad("\(r.width)x\(r.height)", 11) + pad("\(r.inputBytes / 1024) KiB", 10)
            + pad(String(fixed: r.libraryMs, decimals: 3) + " ms", 12) + pad(String(fixed: r.naiveMs, decimals: 3) + " ms", 12)
            + String(fixed: r.gain, decimals: 1) + "x"
    }

    public static let header = "input size       frame     libyuv      naive Swift gain"

    /// Median over `runs` of the thread CPU time per frame, after a warm-up.
    func measure(_ body: () throws -> Void) throws -> Double {
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
