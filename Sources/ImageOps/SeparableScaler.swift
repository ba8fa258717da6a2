import CYUV

/// NV12 crop/scale for downscaling as two vertical passes with a transpose after each, all
/// libyuv calls: vertical bilinear pass (the crop's height → the output's), transpose, vertical
/// pass again (which now filters along the crop's width), transpose back into the output.
///
/// Why: libyuv's horizontal bilinear filter (`ScaleFilterCols`) computes one output pixel per step
/// on x86 (SSSE3 for Y, plain C for interleaved UV) and was ~85 % of camclassd's instructions per
/// frame, while its vertical filter (`InterpolateRow`, AVX2) and its transposes run wide SIMD.
/// Bilinear filtering is separable, so the result is `ScalePlane`'s bilinear output within
/// rounding (±1); chroma follows `ScalePlane`'s sample positions on each plane, as luma does.
///
/// Scratch for crops up to `maxCropWidth` wide and outputs up to `maxOutputWidth` x
/// `maxOutputHeight` is allocated in `init`; `scale` allocates nothing.
/// Thread context: one per worker thread; not thread-safe (the scratch is shared by calls).
public final class SeparableScaler {
    public let maxCropWidth: Int
    public let maxOutputWidth: Int
    public let maxOutputHeight: Int
    /// Vertical pass outputs (crop width x output height), then the transposed chroma planes.
    private let a: UnsafeMutablePointer<UInt8>
    /// Transposed vertical pass outputs (output height x crop width).
    private let b: UnsafeMutablePointer<UInt8>
    /// Second vertical pass outputs (output height x output width).
    private let c: UnsafeMutablePointer<UInt8>

    public init(maxCropWidth: Int, maxOutputWidth: Int, maxOutputHeight: Int) {
        precondition(maxCropWidth >= 2 && maxOutputWidth >= 2 && maxOutputHeight >= 2,
                     "scaler sizes: crop \(maxCropWidth), output \(maxOutputWidth)x\(maxOutputHeight)")
        self.maxCropWidth = maxCropWidth
        self.maxOutputWidth = maxOutputWidth
        self.maxOutputHeight = maxOutputHeight
        let ab = maxCropWidth * maxOutputHeight
        a = .allocate(capacity: max(ab, maxOutputWidth * maxOutputHeight))
        b = .allocate(capacity: ab)
        c = .allocate(capacity: maxOutputWidth * maxOutputHeight)
    }

    deinit {
        a.deallocate()
        b.deallocate()
        c.deallocate()
    }

    /// Whether `scale` takes the separable path for a crop of `cropWidth` x `cropHeight` into
    /// `outputWidth` x `outputHeight`: downscaling across (where the horizontal filter costs) and
    /// not upscaling down the frame, within the scratch. Otherwise use `ScalePlane`/`UVScale`.
    public func handles(cropWidth: Int, cropHeight: Int, outputWidth: Int, outputHeight: Int) -> Bool {
        cropWidth > outputWidth && cropHeight >= outputHeight && cropWidth <= maxCropWidth
            && outputWidth <= maxOutputWidth && outputHeight <= maxOutputHeight
            && cropWidth % 2 == 0 && cropHeight % 2 == 0 && outputWidth % 2 == 0 && outputHeight % 2 == 0
    }

    /// Scales the `cropWidth` x `cropHeight` NV12 region at `y`/`uv` into `dst` (bilinear).
    /// Precondition: `handles(...)` for these sizes.
    public func scale(y: UnsafePointer<UInt8>, strideY: Int, uv: UnsafePointer<UInt8>, strideUV: Int,
                      cropWidth cw: Int, cropHeight ch: Int, into dst: NV12MutableView) {
        let dw = dst.layout.width, dh = dst.layout.height
        precondition(handles(cropWidth: cw, cropHeight: ch, outputWidth: dw, outputHeight: dh))
        // Luma: crop height → output height (rows stay crop-wide), transpose, crop width → output
        // width as a vertical pass, transpose into the output.
        ScalePlane(y, Int32(strideY), Int32(cw), Int32(ch), a, Int32(cw), Int32(cw), Int32(dh), kFilterBilinear)
        TransposePlane(a, Int32(cw), b, Int32(dh), Int32(cw), Int32(dh))
        ScalePlane(b, Int32(dh), Int32(dh), Int32(cw), c, Int32(dh), Int32(dh), Int32(dw), kFilterBilinear)
        TransposePlane(c, Int32(dh), dst.y, Int32(dst.layout.strideY), Int32(dh), Int32(dw))

        // Chroma (cw2 x ch2 UV pairs): the vertical pass on the interleaved plane, then transposed
        // into separate U and V planes, each scaled like luma, transposed back, interleaved.
        let cw2 = cw / 2, ch2 = ch / 2, dw2 = dw / 2, dh2 = dh / 2
        _ = UVScale(uv, Int32(strideUV), Int32(cw2), Int32(ch2), a, Int32(cw), Int32(cw2), Int32(dh2), kFilterBilinear)
        let bu = b, bv = b + dh2 * cw2
        SplitTransposeUV(a, Int32(cw), bu, Int32(dh2), bv, Int32(dh2), Int32(cw2), Int32(dh2))
        let cu = c, cv = c + dh2 * dw2
        ScalePlane(bu, Int32(dh2), Int32(dh2), Int32(cw2), cu, Int32(dh2), Int32(dh2), Int32(dw2), kFilterBilinear)
        ScalePlane(bv, Int32(dh2), Int32(dh2), Int32(cw2), cv, Int32(dh2), Int32(dh2), Int32(dw2), kFilterBilinear)
        let au = a, av = a + dw2 * dh2
        TransposePlane(cu, Int32(dh2), au, Int32(dw2), Int32(dh2), Int32(dw2))
        TransposePlane(cv, Int32(dh2), av, Int32(dw2), Int32(dh2), Int32(dw2))
        MergeUVPlane(au, Int32(dw2), av, Int32(dw2), dst.uv, Int32(dst.layout.strideUV), Int32(dw2), Int32(dh2))
    }
}
