import CTurboJPEG
import CYUV

/// Why a JPEG could not become an NV12 frame. Every case is "drop the frame and count it".
public enum JPEGDecodeError: Error, CustomStringConvertible, Equatable {
    case corrupt(String)
    case sizeMismatch(expected: String, got: String)
    case unsupportedSubsampling(Int32)
    case tooLarge(width: Int, height: Int)
    /// The header's pixel count is over the caller's limit (checked before anything is allocated).
    case overPixelLimit(width: Int, height: Int, limit: Int)

    public var description: String {
        switch self {
        case .corrupt(let why): return "corrupt JPEG: \(why)"
        case .sizeMismatch(let e, let g): return "JPEG is \(g), expected \(e)"
        case .unsupportedSubsampling(let s): return "unsupported JPEG chroma subsampling (TJSAMP \(s))"
        case .tooLarge(let w, let h): return "JPEG of \(w)x\(h) exceeds the decoder's maximum size"
        case .overPixelLimit(let w, let h, let limit):
            return "JPEG header says \(w)x\(h) (\(w * h) pixels), over the limit of \(limit) pixels"
        }
    }
}

/// One decoded JPEG as separate planes (tightly packed rows: stride = width), pointing into the
/// decoder's scratch: valid until the decoder's next call. Gray images have no chroma (`chromaWidth`
/// 0; `u`, `v` are not to be read).
public struct JPEGPlanes {
    public let y: UnsafePointer<UInt8>
    public let u: UnsafePointer<UInt8>
    public let v: UnsafePointer<UInt8>
    public let width: Int
    public let height: Int
    public let chromaWidth: Int
    public let chromaHeight: Int
    public let subsampling: JPEGSubsampling
}

/// Decodes (M)JPEG straight to planar YUV with libjpeg-turbo and packs it into NV12 with libyuv.
/// The Y plane is decoded directly into the destination; chroma goes through scratch planes that
/// are sized once for `maxWidth` x `maxHeight`, so decoding allocates nothing.
/// Thread context: one decoder per thread (a turbojpeg handle is not thread-safe).
public final class JPEGDecoder {
    private var handle: tjhandle
    public let maxWidth: Int
    public let maxHeight: Int
    private let scratch: UnsafeMutablePointer<UInt8>
    private let scratchCount: Int

    public init(maxWidth: Int, maxHeight: Int) {
        guard let h = tjInitDecompress() else { fatalError("tjInitDecompress failed: out of memory") }
        handle = h
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        // Worst case (4:4:4): full-size Y, U and V planes.
        scratchCount = maxWidth * maxHeight * 3
        scratch = .allocate(capacity: scratchCount)
    }

    deinit {
        tjDestroy(handle)
        scratch.deallocate()
    }

    /// Reads width, height and subsampling without decoding.
    public func header(_ jpeg: UnsafeRawBufferPointer) throws -> (width: Int, height: Int, subsampling: Int32) {
        let h = try headerInfo(jpeg)
        return (h.width, h.height, h.subsampling)
    }

    /// Width, height, subsampling and colour space (TJCS_*) from the header alone; nothing is
    /// allocated, so a header claiming a huge image costs nothing here.
    public func headerInfo(_ jpeg: UnsafeRawBufferPointer) throws -> (width: Int, height: Int, subsampling: Int32, colorspace: Int32) {
        var w: Int32 = 0, h: Int32 = 0, sub: Int32 = 0, cs: Int32 = 0
        guard let base = jpeg.baseAddress, jpeg.count > 4 else { throw JPEGDecodeError.corrupt("empty buffer") }
        let rc = tjDecompressHeader3(handle, base.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count), &w, &h, &sub, &cs)
        if rc != 0 { throw failure() }
        guard w > 0, h > 0 else { throw JPEGDecodeError.corrupt("header says \(w)x\(h)") }
        return (Int(w), Int(h), sub, cs)
    }

    /// Decodes `jpeg` into `dst`, whose width and height must equal the JPEG's (even sizes; an odd
    /// JPEG dimension is accepted when `dst` is one smaller). A truncated or damaged JPEG throws
    /// (libjpeg-turbo's warnings count as damage), leaving `dst` partially written.
    public func decode(_ jpeg: UnsafeRawBufferPointer, into dst: NV12MutableView) throws {
        let (w, h, sub) = try header(jpeg)
        guard w & ~1 == dst.layout.width, h & ~1 == dst.layout.height else {
            throw JPEGDecodeError.sizeMismatch(expected: "\(dst.layout.width)x\(dst.layout.height)", got: "\(w)x\(h)")
        }
        guard w <= maxWidth, h <= maxHeight else { throw JPEGDecodeError.tooLarge(width: w, height: h) }
        let base = jpeg.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let flags = CTJ_FLAG_FASTDCT | CTJ_FLAG_STOPONWARNING | CTJ_FLAG_LIMITSCANS
        let cw = Int(tjPlaneWidth(1, Int32(w), sub)), ch = Int(tjPlaneHeight(1, Int32(h), sub))
        let outW = Int32(dst.layout.width), outH = Int32(dst.layout.height)

        switch sub {
        case Int32(TJSAMP_420.rawValue), Int32(TJSAMP_422.rawValue), Int32(TJSAMP_444.rawValue):
            let fullY = sub != Int32(TJSAMP_420.rawValue)
            // 4:2:0: Y straight into the destination. Others: Y into scratch too (libyuv packs it).
            let yPlane = fullY ? scratch : dst.y
            let yStride = fullY ? w : dst.layout.strideY
            if !fullY && (h & 1 == 1 || w & 1 == 1) {
                // Odd sizes would write past the destination's visible rows: use scratch then copy.
                return try decodeViaScratchY(base, count: jpeg.count, w: w, h: h, sub: sub, flags: flags, into: dst)
            }
            let u = scratch + (fullY ? w * h : 0)
            let v = u + cw * ch
            let rc = decodePlanes(base, count: jpeg.count, width: w, height: h, flags: flags,
                                  planes: (yPlane, u, v), strides: (Int32(yStride), Int32(cw), Int32(cw)))
            if rc != 0 { throw failure() }
            switch sub {
            case Int32(TJSAMP_420.rawValue):
                MergeUVPlane(u, Int32(cw), v, Int32(cw), dst.uv, Int32(dst.layout.strideUV), outW / 2, outH / 2)
            case Int32(TJSAMP_422.rawValue):
                // libyuv has I422→NV21 only; swapping U and V yields NV12.
                let s = I422ToNV21(yPlane, Int32(w), v, Int32(cw), u, Int32(cw), dst.y, Int32(dst.layout.strideY),
                                   dst.uv, Int32(dst.layout.strideUV), outW, outH)
                if s != 0 { throw ImageOpsError.libyuv(call: "I422ToNV21", status: s) }
            default:
                let s = I444ToNV12(yPlane, Int32(w), u, Int32(cw), v, Int32(cw), dst.y, Int32(dst.layout.strideY),
                                   dst.uv, Int32(dst.layout.strideUV), outW, outH)
                if s != 0 { throw ImageOpsError.libyuv(call: "I444ToNV12", status: s) }
            }
        case Int32(TJSAMP_GRAY.rawValue):
            let rc = decodePlanes(base, count: jpeg.count, width: w, height: h, flags: flags,
                                  planes: (scratch, nil, nil), strides: (Int32(w), 0, 0))
            if rc != 0 { throw failure() }
            CopyPlane(scratch, Int32(w), dst.y, Int32(dst.layout.strideY), outW, outH)
            // SetPlane fills bytes: the UV plane's rows are outW bytes (outW / 2 U,V pairs).
            SetPlane(dst.uv, Int32(dst.layout.strideUV), outW, outH / 2, 0x80)
        default:
            throw JPEGDecodeError.unsupportedSubsampling(sub)
        }
    }

    /// Decodes through RGB and libyuv's BT.601 *limited-range* conversion, the range cameras deliver
    /// NV12 in and OpenVINO's NV12 colour conversion assumes. `decode` instead passes JPEG's
    /// full-range (JFIF) YCbCr through unchanged — faster, for MJPEG cameras. This one allocates
    /// temporary buffers: use it for one-time work (loading a replay), not per frame.
    /// CMYK and YCCK JPEGs (print workflows) are decoded to CMYK and turned into RGB with the
    /// plain formula (no colour management): libjpeg-turbo itself refuses CMYK → RGB.
    /// - Parameter maxPixels: checked on the header before any allocation (a 631-byte file can claim
    ///   60000x60000); over it throws `.overPixelLimit`.
    public func decodeExact(_ jpeg: UnsafeRawBufferPointer, into dst: NV12MutableView, maxPixels: Int = Int.max) throws {
        let (w, h, _, cs) = try headerInfo(jpeg)
        guard w * h <= maxPixels else { throw JPEGDecodeError.overPixelLimit(width: w, height: h, limit: maxPixels) }
        guard w & ~1 == dst.layout.width, h & ~1 == dst.layout.height else {
            throw JPEGDecodeError.sizeMismatch(expected: "\(dst.layout.width)x\(dst.layout.height)", got: "\(w)x\(h)")
        }
        let rgb = UnsafeMutablePointer<UInt8>.allocate(capacity: w * h * 3)
        defer { rgb.deallocate() }
        let argb = UnsafeMutablePointer<UInt8>.allocate(capacity: w * h * 4)
        defer { argb.deallocate() }
        let base = jpeg.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let flags = CTJ_FLAG_STOPONWARNING | CTJ_FLAG_ACCURATEDCT
        if cs == Int32(TJCS_CMYK.rawValue) || cs == Int32(TJCS_YCCK.rawValue) {
            // Four bytes a pixel into `argb`, then into `rgb`.
            let rc = tjDecompress2(handle, base, UInt(jpeg.count), argb, Int32(w), Int32(w * 4), Int32(h),
                                   Int32(TJPF_CMYK.rawValue), flags)
            if rc != 0 { throw failure() }
            Self.cmykToRGB(argb, into: rgb, pixels: w * h)
        } else {
            let rc = tjDecompress2(handle, base, UInt(jpeg.count), rgb, Int32(w), Int32(w * 3), Int32(h),
                                   Int32(TJPF_RGB.rawValue), flags)
            if rc != 0 { throw failure() }
        }
        try NV12Ops.convertRGB24(rgb, stride: w * 3, scratchARGB: argb, into: dst)
    }

    /// CMYK as JPEG files store it (Adobe's convention, which Photoshop writes and libjpeg passes
    /// through: the stored values are inverted, 255 = no ink) to RGB: R = C·K/255, and so on.
    static func cmykToRGB(_ cmyk: UnsafePointer<UInt8>, into rgb: UnsafeMutablePointer<UInt8>, pixels: Int) {
        for i in 0..<pixels {
            let k = UInt32(cmyk[4 * i + 3])
            for c in 0..<3 { rgb[3 * i + c] = UInt8((UInt32(cmyk[4 * i + c]) * k + 127) / 255) }
        }
    }

    private func decodeViaScratchY(_ base: UnsafePointer<UInt8>, count: Int, w: Int, h: Int, sub: Int32, flags: Int32,
                                   into dst: NV12MutableView) throws {
        let cw = Int(tjPlaneWidth(1, Int32(w), sub)), ch = Int(tjPlaneHeight(1, Int32(h), sub))
        let u = scratch + w * h
        let v = u + cw * ch
        let rc = decodePlanes(base, count: count, width: w, height: h, flags: flags,
                              planes: (scratch, u, v), strides: (Int32(w), Int32(cw), Int32(cw)))

        if rc != 0 { throw failure() }
        let s = I420ToNV12(scratch, Int32(w), u, Int32(cw), v, Int32(cw), dst.y, Int32(dst.layout.strideY),
                           dst.uv, Int32(dst.layout.strideUV), Int32(dst.layout.width), Int32(dst.layout.height))
        if s != 0 { throw ImageOpsError.libyuv(call: "I420ToNV12", status: s) }
    }

    /// Decodes `jpeg` with libjpeg-turbo's DCT scaling by 1/`denominator` (1, 2, 4 or 8) into
    /// planar Y, U, V in the decoder's scratch, which `decodedPlanes` then points into (valid until
    /// the next call). The scaled size is ⌈width/denominator⌉ x ⌈height/denominator⌉, as libjpeg-turbo's
    /// TJSCALED computes it; the IDCT itself produces the reduced image, so the full-size image never
    /// exists. `header` is what `headerInfo` returned for the same bytes. Allocates nothing in Swift
    /// (libjpeg-turbo keeps its per-image working memory in its own pools).
    /// - Throws: `JPEGDecodeError` — `.tooLarge` over maxWidth/maxHeight, `.unsupportedSubsampling`
    ///   (4:4:0, 4:1:1), `.corrupt` for truncated or damaged data (libjpeg-turbo warnings included).
    public func decodeScaledPlanes(_ jpeg: UnsafeRawBufferPointer, header: (width: Int, height: Int, subsampling: Int32),
                                   denominator: Int) throws -> JPEGPlanes {
        precondition(denominator == 1 || denominator == 2 || denominator == 4 || denominator == 8,
                     "DCT scaling is 1/1, 1/2, 1/4 or 1/8")
        let (w, h, sub) = header
        guard w <= maxWidth, h <= maxHeight else { throw JPEGDecodeError.tooLarge(width: w, height: h) }
        let subsampling: JPEGSubsampling
        switch sub {
        case Int32(TJSAMP_420.rawValue): subsampling = .s420
        case Int32(TJSAMP_422.rawValue): subsampling = .s422
        case Int32(TJSAMP_444.rawValue): subsampling = .s444
        case Int32(TJSAMP_GRAY.rawValue): subsampling = .gray
        default: throw JPEGDecodeError.unsupportedSubsampling(sub)
        }
        let sw = (w + denominator - 1) / denominator, sh = (h + denominator - 1) / denominator
        let gray = subsampling == .gray
        let cw = gray ? 0 : Int(tjPlaneWidth(1, Int32(sw), sub)), ch = gray ? 0 : Int(tjPlaneHeight(1, Int32(sh), sub))
        // Scratch is 3 x maxWidth x maxHeight: room for Y and both chroma planes even at 4:4:4, 1/1.
        let u = scratch + sw * sh, v = u + cw * ch
        let base = jpeg.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // The fast integer IDCT only at full size: libjpeg-turbo 2.1's planar output of 4:2:0 at 1/2
        // with it has corrupt chroma (upstream issue 912; seen here: mean Cb 55 instead of 110), and
        // the reduced IDCTs used at 1/4 and 1/8 do not have a fast variant anyway.
        let flags = (denominator == 1 ? CTJ_FLAG_FASTDCT : 0) | CTJ_FLAG_STOPONWARNING | CTJ_FLAG_LIMITSCANS
        let rc = decodePlanes(base, count: jpeg.count, width: sw, height: sh, flags: flags,
                              planes: (scratch, gray ? nil : u, gray ? nil : v),
                              strides: (Int32(sw), Int32(cw), Int32(cw)))
        if rc != 0 { throw failure() }
        return JPEGPlanes(y: scratch, u: u, v: v, width: sw, height: sh, chromaWidth: cw, chromaHeight: ch,
                          subsampling: subsampling)
    }

    /// One tjDecompressToYUVPlanes call with the plane pointers on the stack (no allocation).
    private func decodePlanes(_ base: UnsafePointer<UInt8>, count: Int, width: Int, height: Int, flags: Int32,
                              planes: (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?,
                                       UnsafeMutablePointer<UInt8>?),
                              strides: (Int32, Int32, Int32)) -> Int32 {
        var p = planes
        var s = strides
        return withUnsafeMutableBytes(of: &p) { pp in
            withUnsafeMutableBytes(of: &s) { sp in
                tjDecompressToYUVPlanes(handle, base, UInt(count),
                                        pp.baseAddress!.assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self),
                                        Int32(width), sp.baseAddress!.assumingMemoryBound(to: Int32.self),
                                        Int32(height), flags)
            }
        }
    }

    /// The error for the call that just failed. The handle is then replaced: after some errors
    /// libjpeg-turbo's state misreads the next image (seen: its size as 0x0), and one bad MJPEG
    /// frame must not spoil the following good ones. Only the error path allocates.
    private func failure() -> JPEGDecodeError {
        let error = JPEGDecodeError.corrupt(errorString())
        if let fresh = tjInitDecompress() {
            tjDestroy(handle)
            handle = fresh
        }
        return error
    }

    private func errorString() -> String {
        guard let p = tjGetErrorStr2(handle) else { return "unknown libjpeg-turbo error" }
        return String(cString: p)
    }
}
