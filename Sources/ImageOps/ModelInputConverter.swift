import CYUV

/// Why a captured frame could not become a model input. Every case means "drop the frame and
/// count it"; the next frame is unaffected.
public enum FrameConversionError: Error, Equatable, CustomStringConvertible {
    /// Fewer bytes than the frame's format and size need (a short or truncated raw frame).
    case truncated(got: Int, need: Int)
    /// The frame cannot be converted: a JPEG that does not decode (damaged, truncated, another
    /// size than negotiated, over the converter's maximum), or a geometry the converter was not
    /// made for.
    case corrupt(String)

    public var description: String {
        switch self {
        case .truncated(let got, let need): return "short frame: \(got) bytes, \(need) needed"
        case .corrupt(let why): return why
        }
    }
}

/// Turns a captured frame (`FramePayload`: a driver buffer or a replayed image, as delivered)
/// straight into an engine's NV12 model input, doing only the work the input needs:
/// - NV12: libyuv crops/scales from the payload into the input (the only copy; downscales take
///   `SeparableScaler`'s vertical-passes-and-transposes path).
/// - YUYV: libyuv converts only the region the resize mode keeps into scratch NV12, then scales.
/// - MJPEG: libjpeg-turbo decodes with DCT scaling (1/8, 1/4 or 1/2 when the reduced image still
///   covers the input after the crop; see `dctScaleDenominator`) only the region the crop keeps
///   (`JPEGRegionDecoder`: the other columns are entropy-decoded but not transformed) into planes
///   in scratch; libyuv scales each plane to the input size; then JFIF's full-range YCbCr is mapped
///   to BT.601 limited range (what NV12/YUYV cameras deliver and the engines assume) on the small
///   input only.
///
/// All memory (the JPEG region decoder and its planes, the YUYV region, chroma planes at input size, the
/// range tables) is allocated in `init` for frames up to `maxWidth` x `maxHeight`; `convert`
/// allocates nothing (libjpeg-turbo keeps its per-image state in its own pools).
/// Thread context: one converter per worker thread; not thread-safe (a turbojpeg handle is not).
public final class ModelInputConverter {
    public let maxWidth: Int
    public let maxHeight: Int
    public let inputWidth: Int
    public let inputHeight: Int
    private let jpeg: JPEGRegionDecoder
    /// YUYV: the kept region converted to NV12 (at most maxWidth x maxHeight).
    private let region: NV12Buffer
    /// MJPEG: U and V scaled to the input's chroma size, before they are interleaved into it.
    private let chromaU: UnsafeMutablePointer<UInt8>
    private let chromaV: UnsafeMutablePointer<UInt8>
    /// JFIF full range → BT.601 limited range, applied to the input only.
    private let range = FullToLimitedRange()
    /// NV12 and YUYV downscales into the input (see `SeparableScaler`).
    private let scaler: SeparableScaler

    /// - Parameters:
    ///   - maxWidth, maxHeight: the largest frame this converter will be given (the negotiated
    ///     camera size, or the largest replayed image); larger frames are refused with `.corrupt`.
    ///   - inputWidth, inputHeight: the model input's size (even).
    public init(maxWidth: Int, maxHeight: Int, inputWidth: Int, inputHeight: Int) {
        precondition(maxWidth >= 2 && maxHeight >= 2 && inputWidth >= 2 && inputHeight >= 2
                     && inputWidth % 2 == 0 && inputHeight % 2 == 0,
                     "converter sizes: frame \(maxWidth)x\(maxHeight), input \(inputWidth)x\(inputHeight)")
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        self.inputWidth = inputWidth
        self.inputHeight = inputHeight
        scaler = SeparableScaler(maxCropWidth: maxWidth, maxOutputWidth: inputWidth, maxOutputHeight: inputHeight)
        jpeg = JPEGRegionDecoder(maxWidth: maxWidth, maxHeight: maxHeight)
        region = NV12Buffer(width: maxWidth & ~1, height: maxHeight & ~1)
        let chroma = (inputWidth / 2) * (inputHeight / 2)
        chromaU = .allocate(capacity: chroma)
        chromaV = .allocate(capacity: chroma)
    }

    deinit {
        chromaU.deallocate()
        chromaV.deallocate()
    }

    /// The DCT scaling libjpeg-turbo decodes a `width` x `height` JPEG with, as the denominator
    /// (8 = 1/8, 4, 2, 1 = full size): the largest reduction whose reduced image, after the crop
    /// `mode` makes for an `inputWidth` x `inputHeight` input, is still at least the input's size
    /// in both dimensions (`.stretch`: the reduced image itself), so the final scale never enlarges.
    /// 640x480, 1280x720 → 1/2 and 1920x1080 → 1/4 for a 224x224 input with `.crop`.
    public static func dctScaleDenominator(width: Int, height: Int, inputWidth: Int, inputHeight: Int,
                                           mode: ResizeMode) -> Int {
        var d = 8  // 8, 4, 2 (a loop, not an array literal: this runs per frame and must not allocate)
        while d >= 2 {
            let sw = ((width + d - 1) / d) & ~1, sh = ((height + d - 1) / d) & ~1
            if sw >= 2 && sh >= 2 {
                let r = NV12Ops.cropRect(source: NV12Layout(width: sw, height: sh), destinationWidth: inputWidth,
                                         destinationHeight: inputHeight, mode: mode)
                if r.width >= inputWidth && r.height >= inputHeight { return d }
            }
            d /= 2
        }
        return 1
    }

    /// Converts `payload` into `input` (the engine's input tensor, at most inputWidth x inputHeight),
    /// cropping or stretching as `mode` says.
    /// Thread context: the worker that owns this converter; allocates nothing on success.
    /// - Throws: `.corrupt` for a JPEG that does not decode, whose header size differs from the
    ///   payload's negotiated size, or any frame over maxWidth x maxHeight or with impossible
    ///   geometry; `.truncated` for an empty MJPEG payload. `input` may then be partly written.
    public func convert(_ payload: FramePayload, into input: NV12MutableView, mode: ResizeMode) throws(FrameConversionError) {
        let iw = input.layout.width, ih = input.layout.height
        guard iw >= 2, ih >= 2, iw % 2 == 0, ih % 2 == 0, iw <= inputWidth, ih <= inputHeight,
              input.layout.strideY >= iw, input.layout.strideUV >= iw else {
            throw .corrupt("model input \(input.layout) does not fit the converter's \(inputWidth)x\(inputHeight)")
        }
        switch payload {
        case .nv12(let v):
            let l = v.layout
            guard l.width >= 2, l.height >= 2, l.width % 2 == 0, l.height % 2 == 0, l.strideY >= l.width,
                  l.strideUV >= l.width else { throw .corrupt("bad NV12 frame geometry: \(l), strides \(l.strideY)/\(l.strideUV)") }
            NV12Ops.scale(v, into: input, mode: mode, scaler: scaler)
        case .yuyv(let src, let stride, let w, let h):
            guard w >= 2, h >= 2, w % 2 == 0, h % 2 == 0, stride >= 2 * w else {
                throw .corrupt("bad YUYV frame geometry: \(w)x\(h), \(stride) bytes per row")
            }
            guard w <= maxWidth, h <= maxHeight else {
                throw .corrupt("YUYV frame of \(w)x\(h) exceeds the converter's \(maxWidth)x\(maxHeight)")
            }
            try convertYUYV(src, stride: stride, width: w, height: h, into: input, mode: mode)
        case .mjpeg(let bytes, let w, let h):
            guard bytes.baseAddress != nil, bytes.count > 0 else { throw .truncated(got: 0, need: 1) }
            guard w >= 2, h >= 2 else { throw .corrupt("bad MJPEG frame geometry: \(w)x\(h)") }
            try convertJPEG(bytes, width: w, height: h, into: input, mode: mode)
        }
    }

    /// Only the kept region is converted (YUY2ToNV12 averages row pairs for 4:2:0 chroma), then
    /// scaled: the same pixels as converting the whole frame and cropping, for less work.
    private func convertYUYV(_ src: UnsafePointer<UInt8>, stride: Int, width w: Int, height h: Int,
                             into input: NV12MutableView, mode: ResizeMode) throws(FrameConversionError) {
        let r = NV12Ops.cropRect(source: NV12Layout(width: w, height: h), destinationWidth: input.layout.width,
                                 destinationHeight: input.layout.height, mode: mode)
        let dst = region.view.cropped(width: r.width, height: r.height)
        // r.x is even: whole Y0 U Y1 V groups.
        let status = YUY2ToNV12(src + r.y * stride + r.x * 2, Int32(stride), dst.y, Int32(dst.layout.strideY),
                                dst.uv, Int32(dst.layout.strideUV), Int32(r.width), Int32(r.height))
        if status != 0 { throw .corrupt("libyuv YUY2ToNV12 failed with status \(status)") }
        // Already cropped: scaling the region whole is the crop.
        NV12Ops.scale(dst.readOnly, into: input, mode: .stretch, scaler: scaler)
    }

    private func convertJPEG(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int, into input: NV12MutableView,
                             mode: ResizeMode) throws(FrameConversionError) {
        let iw = input.layout.width, ih = input.layout.height
        let region: JPEGRegion
        let r: (x: Int, y: Int, width: Int, height: Int)
        do throws(JPEGDecodeError) {
            let header = try jpeg.header(bytes)
            guard header.width & ~1 == width & ~1, header.height & ~1 == height & ~1 else {
                throw .sizeMismatch(expected: "\(width)x\(height)", got: "\(header.width)x\(header.height)")
            }
            guard header.width <= maxWidth, header.height <= maxHeight else {
                throw .tooLarge(width: header.width, height: header.height)
            }
            let d = Self.dctScaleDenominator(width: header.width, height: header.height, inputWidth: iw,
                                             inputHeight: ih, mode: mode)
            let scaled = JPEGRegionDecoder.scaledSize(width: header.width, height: header.height, denominator: d)
            // The same region as cropping the whole scaled image (even sizes), decoded alone.
            r = NV12Ops.cropRect(source: NV12Layout(width: scaled.width & ~1, height: scaled.height & ~1),
                                 destinationWidth: iw, destinationHeight: ih, mode: mode)
            region = try jpeg.decode(bytes, header: header, denominator: d, x: r.x, y: r.y, width: r.width,
                                     height: r.height, fastIDCT: d == 1)
        } catch {
            throw .corrupt("\(error)")
        }
        ScalePlane(region.y, Int32(region.stride), Int32(r.width), Int32(r.height),
                   input.y, Int32(input.layout.strideY), Int32(iw), Int32(ih), kFilterBilinear)
        let cw = iw / 2, ch = ih / 2
        if region.isGray {
            // Neutral chroma; SetPlane fills bytes and a UV row is iw bytes (cw pairs).
            SetPlane(input.uv, Int32(input.layout.strideUV), Int32(iw), Int32(ch), 0x80)
        } else {
            // Chroma comes upsampled to the region's full size (whatever the JPEG's subsampling),
            // scaled to the input's chroma size.
            ScalePlane(region.cb, Int32(region.stride), Int32(r.width), Int32(r.height),
                       chromaU, Int32(cw), Int32(cw), Int32(ch), kFilterBilinear)
            ScalePlane(region.cr, Int32(region.stride), Int32(r.width), Int32(r.height),
                       chromaV, Int32(cw), Int32(cw), Int32(ch), kFilterBilinear)
            MergeUVPlane(chromaU, Int32(cw), chromaV, Int32(cw), input.uv, Int32(input.layout.strideUV), Int32(cw), Int32(ch))
        }
        range.apply(input)  // full → limited range on the input only (iw x ih x 1.5 bytes)
    }
}
