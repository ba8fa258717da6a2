import CYUV

/// How a source image is fitted to the model's input.
public enum ResizeMode: String, Sendable, CaseIterable {
    /// Centre-crop to the destination's aspect ratio, then scale (keeps shapes undistorted).
    case crop
    /// Scale the whole image to the destination size (distorts when aspect ratios differ).
    case stretch
}

/// Pixel-format conversion and scaling, all through libyuv.
/// Thread context: pure functions, callable from any thread; they never allocate.
public enum ImageOpsError: Error, CustomStringConvertible, Equatable {
    case libyuv(call: String, status: Int32)
    case badGeometry(String)

    public var description: String {
        switch self {
        case .libyuv(let call, let status): return "libyuv \(call) failed with status \(status)"
        case .badGeometry(let what): return "bad image geometry: \(what)"
        }
    }
}

public enum NV12Ops {
    /// The region of `source` that `mode` keeps for a destination of `dst` size: even offsets and sizes.
    public static func cropRect(source: NV12Layout, destinationWidth dw: Int, destinationHeight dh: Int,
                                mode: ResizeMode) -> (x: Int, y: Int, width: Int, height: Int) {
        let sw = source.width, sh = source.height
        guard mode == .crop else { return (0, 0, sw, sh) }
        // Compare aspect ratios in integers: sw/sh versus dw/dh.
        if sw * dh > sh * dw {  // source wider: keep full height
            var cw = (sh * dw + dh / 2) / dh
            cw = max(2, min(sw, cw & ~1))
            let x = ((sw - cw) / 2) & ~1
            return (x, 0, cw, sh)
        } else {
            var ch = (sw * dh + dw / 2) / dw
            ch = max(2, min(sh, ch & ~1))
            let y = ((sh - ch) / 2) & ~1
            return (0, y, sw, ch)
        }
    }

    /// Crops/scales `src` into `dst` (bilinear). This is the pipeline's only copy between the frame
    /// and the engine's input memory. With a `scaler` whose scratch fits, a downscale takes its
    /// separable path (same pixels within ±1, a fraction of the instructions on x86).
    public static func scale(_ src: NV12ConstView, into dst: NV12MutableView, mode: ResizeMode,
                             scaler: SeparableScaler? = nil) {
        let r = cropRect(source: src.layout, destinationWidth: dst.layout.width,
                         destinationHeight: dst.layout.height, mode: mode)
        let sy = src.y + r.y * src.layout.strideY + r.x
        let suv = src.uv + (r.y / 2) * src.layout.strideUV + r.x  // x even: 2 bytes per UV pair
        if r.width == dst.layout.width && r.height == dst.layout.height {
            NV12Copy(sy, Int32(src.layout.strideY), suv, Int32(src.layout.strideUV),
                     dst.y, Int32(dst.layout.strideY), dst.uv, Int32(dst.layout.strideUV),
                     Int32(r.width), Int32(r.height))
            return
        }
        if let scaler, scaler.handles(cropWidth: r.width, cropHeight: r.height,
                                      outputWidth: dst.layout.width, outputHeight: dst.layout.height) {
            scaler.scale(y: sy, strideY: src.layout.strideY, uv: suv, strideUV: src.layout.strideUV,
                         cropWidth: r.width, cropHeight: r.height, into: dst)
            return
        }
        ScalePlane(sy, Int32(src.layout.strideY), Int32(r.width), Int32(r.height),
                   dst.y, Int32(dst.layout.strideY), Int32(dst.layout.width), Int32(dst.layout.height),
                   kFilterBilinear)
        UVScale(suv, Int32(src.layout.strideUV), Int32(r.width / 2), Int32(r.height / 2),
                dst.uv, Int32(dst.layout.strideUV), Int32(dst.layout.width / 2),
                Int32(dst.layout.height / 2), kFilterBilinear)
    }

    /// Copies NV12 of the same size, honouring both sides' strides.
    public static func copy(_ src: NV12ConstView, into dst: NV12MutableView) {
        precondition(src.layout.width == dst.layout.width && src.layout.height == dst.layout.height)
        NV12Copy(src.y, Int32(src.layout.strideY), src.uv, Int32(src.layout.strideUV),
                 dst.y, Int32(dst.layout.strideY), dst.uv, Int32(dst.layout.strideUV),
                 Int32(src.layout.width), Int32(src.layout.height))
    }

    /// YUYV (YUY2, 4:2:2 packed) → NV12 of the same size.
    public static func convertYUYV(_ src: UnsafePointer<UInt8>, stride: Int, into dst: NV12MutableView) throws {
        let status = YUY2ToNV12(src, Int32(stride), dst.y, Int32(dst.layout.strideY), dst.uv,
                                Int32(dst.layout.strideUV), Int32(dst.layout.width), Int32(dst.layout.height))
        if status != 0 { throw ImageOpsError.libyuv(call: "YUY2ToNV12", status: status) }
    }

    /// Mean of the Y plane's visible pixels (tests and the stand-in BPU model use it).
    public static func meanLuma(_ v: NV12ConstView) -> Double {
        var total = 0
        for row in 0..<v.layout.height {
            let p = v.y + row * v.layout.strideY
            for col in 0..<v.layout.width { total += Int(p[col]) }
        }
        return Double(total) / Double(v.layout.width * v.layout.height)
    }

    /// Converts packed RGB (R,G,B bytes) to NV12 with BT.601 limited range (libyuv's RAW = RGB order).
    public static func convertRGB24(_ rgb: UnsafePointer<UInt8>, stride: Int, scratchARGB: UnsafeMutablePointer<UInt8>,
                                    into dst: NV12MutableView) throws {
        let w = Int32(dst.layout.width), h = Int32(dst.layout.height)
        var status = RAWToARGB(rgb, Int32(stride), scratchARGB, w * 4, w, h)
        if status != 0 { throw ImageOpsError.libyuv(call: "RAWToARGB", status: status) }
        status = ARGBToNV12(scratchARGB, w * 4, dst.y, Int32(dst.layout.strideY), dst.uv,
                            Int32(dst.layout.strideUV), w, h)
        if status != 0 { throw ImageOpsError.libyuv(call: "ARGBToNV12", status: status) }
    }
}
