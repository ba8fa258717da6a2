import CTurboJPEG
import CYUV

/// JPEG chroma subsampling (UVC cameras send 4:2:2 MJPEG; photos are mostly 4:2:0; 4:4:0 and 4:1:1
/// are rare, and only `JPEGRegionDecoder` reads them).
public enum JPEGSubsampling: Sendable, CaseIterable {
    case s420, s422, s444, s440, s411, gray

    var tj: Int32 {
        switch self {
        case .s420: return Int32(TJSAMP_420.rawValue)
        case .s422: return Int32(TJSAMP_422.rawValue)
        case .s444: return Int32(TJSAMP_444.rawValue)
        case .s440: return Int32(TJSAMP_440.rawValue)
        case .s411: return Int32(TJSAMP_411.rawValue)
        case .gray: return Int32(TJSAMP_GRAY.rawValue)
        }
    }
}

/// Encodes NV12 as JPEG with libjpeg-turbo: real JPEG bytes for the MJPEG tests and the
/// conversion benchmark (what a UVC camera would send). Allocates: not for per-frame use.
public enum JPEGEncoder {
    public static func encode(_ src: NV12ConstView, subsampling: JPEGSubsampling = .s422, quality: Int32 = 85) throws -> [UInt8] {
        let w = src.layout.width, h = src.layout.height
        let argb = UnsafeMutablePointer<UInt8>.allocate(capacity: w * h * 4)
        defer { argb.deallocate() }
        let s = NV12ToARGB(src.y, Int32(src.layout.strideY), src.uv, Int32(src.layout.strideUV), argb, Int32(w * 4),
                           Int32(w), Int32(h))
        if s != 0 { throw ImageOpsError.libyuv(call: "NV12ToARGB", status: s) }
        guard let handle = tjInitCompress() else { throw JPEGDecodeError.corrupt("tjInitCompress failed") }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        // libyuv's ARGB is B, G, R, A in memory: turbojpeg's BGRA.
        let rc = tjCompress2(handle, argb, Int32(w), Int32(w * 4), Int32(h), Int32(TJPF_BGRA.rawValue), &out, &size,
                             subsampling.tj, quality, 0)
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else { throw JPEGDecodeError.corrupt("tjCompress2 failed") }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }
}

/// Decodes JPEG to separate Y, U, V planes without packing them (the benchmark's baseline does
/// the packing and scaling in plain Swift loops to show what libyuv saves).
public final class JPEGPlanarDecoder {
    private let handle: tjhandle
    public let width: Int
    public let height: Int
    public let chromaWidth: Int
    public let chromaHeight: Int
    public let y: UnsafeMutablePointer<UInt8>
    public let u: UnsafeMutablePointer<UInt8>
    public let v: UnsafeMutablePointer<UInt8>

    /// Planes for `width` x `height` JPEGs of `subsampling`.
    public init(width: Int, height: Int, subsampling: JPEGSubsampling) {
        guard let h = tjInitDecompress() else { fatalError("tjInitDecompress failed: out of memory") }
        handle = h
        self.width = width
        self.height = height
        chromaWidth = Int(tjPlaneWidth(1, Int32(width), subsampling.tj))
        chromaHeight = Int(tjPlaneHeight(1, Int32(height), subsampling.tj))
        y = .allocate(capacity: width * height)
        u = .allocate(capacity: max(1, chromaWidth * chromaHeight))
        v = .allocate(capacity: max(1, chromaWidth * chromaHeight))
    }

    deinit {
        tjDestroy(handle)
        y.deallocate()
        u.deallocate()
        v.deallocate()
    }

    public func decode(_ jpeg: UnsafeRawBufferPointer) throws {
        var planes: (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?) = (y, u, v)
        var strides: (Int32, Int32, Int32) = (Int32(width), Int32(chromaWidth), Int32(chromaWidth))
        let rc = withUnsafeMutableBytes(of: &planes) { pp in
            withUnsafeMutableBytes(of: &strides) { sp in
                tjDecompressToYUVPlanes(handle, jpeg.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt(jpeg.count),
                                        pp.baseAddress!.assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self),
                                        Int32(width), sp.baseAddress!.assumingMemoryBound(to: Int32.self), Int32(height),
                                        CTJ_FLAG_FASTDCT)
            }
        }
        if rc != 0 { throw JPEGDecodeError.corrupt(String(cString: tjGetErrorStr2(handle))) }
    }
}

extension NV12Ops {
    /// NV12 → YUYV (4:2:2 packed) of the same size, e.g. to make test frames a YUYV camera would send.
    public static func convertToYUYV(_ src: NV12ConstView, into dst: UnsafeMutablePointer<UInt8>, stride: Int) throws {
        let w = src.layout.width, h = src.layout.height
        let i420 = UnsafeMutablePointer<UInt8>.allocate(capacity: w * h * 3 / 2)
        defer { i420.deallocate() }
        let u = i420 + w * h, v = u + (w / 2) * (h / 2)
        var s = NV12ToI420(src.y, Int32(src.layout.strideY), src.uv, Int32(src.layout.strideUV), i420, Int32(w), u, Int32(w / 2),
                           v, Int32(w / 2), Int32(w), Int32(h))
        if s != 0 { throw ImageOpsError.libyuv(call: "NV12ToI420", status: s) }
        s = I420ToYUY2(i420, Int32(w), u, Int32(w / 2), v, Int32(w / 2), dst, Int32(stride), Int32(w), Int32(h))
        if s != 0 { throw ImageOpsError.libyuv(call: "I420ToYUY2", status: s) }
    }
}
