import CYUV
import Capture
import Foundation
import ImageOps
import Testing

/// `ModelInputConverter` (a frame as captured → the model input, on the worker) against the path it
/// replaces: `CameraFrameConverter` into a full-size NV12 buffer, then `NV12Ops.scale`.
@Suite struct ModelInputConverterTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case nv12, yuyv, mjpeg422, mjpeg420, mjpeg444, mjpegGray
        var testDescription: String { rawValue }
        var format: CameraPixelFormat {
            switch self {
            case .nv12: return .nv12
            case .yuyv: return .yuyv
            default: return .mjpeg
            }
        }
        var subsampling: JPEGSubsampling {
            switch self {
            case .mjpeg420: return .s420
            case .mjpeg444: return .s444
            case .mjpegGray: return .gray
            default: return .s422
            }
        }
    }

    static let input = (width: 224, height: 224)

    /// A frame with content over the whole value range (so a missing range conversion shows) that
    /// is smooth enough for DCT-scaled decoding and full-size decoding + bilinear to agree: slow
    /// waves, a gradient and a few hard-edged blocks.
    static func contentFrame(width w: Int, height h: Int) -> NV12Buffer {
        let frame = NV12Buffer(width: w, height: h)
        let v = frame.view
        for y in 0..<h {
            for x in 0..<w {
                var value = 128.0 + 90 * sin(Double(x) / Double(w) * 9) * cos(Double(y) / Double(h) * 7)
                value += 30 * (Double(x + y) / Double(w + h) - 0.5)
                if (x / (w / 8) + y / (h / 6)) % 5 == 0 { value = value * 0.4 + 140 }
                v.y[y * v.layout.strideY + x] = UInt8(max(0, min(255, value.rounded())))
            }
        }
        for y in 0..<h / 2 {
            for x in 0..<w / 2 {
                let u = 128 + 90 * sin(Double(x) / Double(w) * 11 + 1), c = 128 + 90 * cos(Double(y) / Double(h) * 8)
                v.uv[y * v.layout.strideUV + 2 * x] = UInt8(u.rounded())
                v.uv[y * v.layout.strideUV + 2 * x + 1] = UInt8(c.rounded())
            }
        }
        return frame
    }

    /// What the driver hands over for `frame` in `kind`: tightly packed rows.
    static func driverBytes(_ kind: Kind, frame: NV12Buffer) throws -> (bytes: [UInt8], bytesPerLine: Int) {
        let w = frame.layout.width, h = frame.layout.height
        switch kind.format {
        case .nv12:
            var bytes = [UInt8](repeating: 0, count: w * h * 3 / 2)
            bytes.withUnsafeMutableBufferPointer { p in
                NV12Ops.copy(frame.view.readOnly, into: NV12MutableView(y: p.baseAddress!, uv: p.baseAddress! + w * h,
                                                                         layout: NV12Layout(width: w, height: h)))
            }
            return (bytes, w)
        case .yuyv:
            var bytes = [UInt8](repeating: 0, count: w * h * 2)
            try bytes.withUnsafeMutableBufferPointer { try NV12Ops.convertToYUYV(frame.view.readOnly, into: $0.baseAddress!, stride: w * 2) }
            return (bytes, w * 2)
        case .mjpeg:
            return (try JPEGEncoder.encode(frame.view.readOnly, subsampling: kind.subsampling, quality: 90), 0)
        }
    }

    /// The old path: the capture thread's full-size conversion into a pool buffer, then the scale.
    static func oldPath(_ kind: Kind, bytes: [UInt8], bytesPerLine: Int, width: Int, height: Int,
                        mode: ResizeMode) throws -> NV12Buffer {
        let converter = CameraFrameConverter(format: kind.format, width: width, height: height,
                                             bytesPerLine: bytesPerLine, sizeImage: bytes.count)
        let pool = NV12Buffer(width: width, height: height)
        try bytes.withUnsafeBytes { try converter.convert($0, into: pool.view) }
        let out = NV12Buffer(width: input.width, height: input.height)
        NV12Ops.scale(pool.view.readOnly, into: out.view, mode: mode)
        return out
    }

    static func newPath(_ converter: ModelInputConverter, _ kind: Kind, bytes: [UInt8], bytesPerLine: Int,
                        width w: Int, height h: Int, mode: ResizeMode) throws -> NV12Buffer {
        let out = NV12Buffer(width: input.width, height: input.height)
        try bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let payload: FramePayload
            switch kind.format {
            case .nv12: payload = .nv12(NV12ConstView(y: base, uv: base + bytesPerLine * h,
                                                      layout: NV12Layout(width: w, height: h, strideY: bytesPerLine, strideUV: bytesPerLine)))
            case .yuyv: payload = .yuyv(base, stride: bytesPerLine, width: w, height: h)
            case .mjpeg: payload = .mjpeg(raw, width: w, height: h)
            }
            try converter.convert(payload, into: out.view, mode: mode)
        }
        return out
    }

    /// Mean absolute difference of the Y plane and of the UV plane.
    static func meanAbsDiff(_ a: NV12Buffer, _ b: NV12Buffer) -> (y: Double, uv: Double) {
        let w = a.layout.width, h = a.layout.height
        var dy = 0, duv = 0
        for row in 0..<h { for x in 0..<w { dy += abs(Int(a.view.y[row * a.layout.strideY + x]) - Int(b.view.y[row * b.layout.strideY + x])) } }
        for row in 0..<h / 2 { for x in 0..<w { duv += abs(Int(a.view.uv[row * a.layout.strideUV + x]) - Int(b.view.uv[row * b.layout.strideUV + x])) } }
        return (Double(dy) / Double(w * h), Double(duv) / Double(w * h / 2))
    }

    /// Raw formats: luma as the old path within rounding (`SeparableScaler` is the same bilinear
    /// filter in two passes); chroma within `rawChromaBound`, because the old path's `UVScale`
    /// samples ~1.7 source chroma columns left of centre at these ratios and the new one samples
    /// at the centre, like luma (`SeparableScalerTests.chromaLandsOnCentredPositions`). MJPEG
    /// within `mjpegBound` per plane: DCT-scaled decoding is a different (better) low-pass than
    /// full-size decoding + bilinear. A missing range conversion or the other resize mode is far
    /// outside these (checked below), so the bounds separate right from wrong.
    static let mjpegBound = 2.5
    static let rawLumaBound = 0.05
    static let rawChromaBound = 2.0

    @Test(arguments: Kind.allCases, ResizeMode.allCases)
    func matchesOldPath(kind: Kind, mode: ResizeMode) throws {
        let sizes = kind.format == .mjpeg ? [(640, 480), (1280, 720), (1920, 1080)] : [(640, 480), (1280, 720)]
        let converter = ModelInputConverter(maxWidth: 1920, maxHeight: 1080, inputWidth: Self.input.width,
                                            inputHeight: Self.input.height)
        for (w, h) in sizes {
            let frame = Self.contentFrame(width: w, height: h)
            let (bytes, bpl) = try Self.driverBytes(kind, frame: frame)
            let old = try Self.oldPath(kind, bytes: bytes, bytesPerLine: bpl, width: w, height: h, mode: mode)
            let new = try Self.newPath(converter, kind, bytes: bytes, bytesPerLine: bpl, width: w, height: h, mode: mode)
            let d = Self.meanAbsDiff(old, new)
            let lumaBound = kind.format == .mjpeg ? Self.mjpegBound : Self.rawLumaBound
            let chromaBound = kind.format == .mjpeg ? Self.mjpegBound : Self.rawChromaBound
            #expect(d.y <= lumaBound && d.uv <= chromaBound, "\(kind) \(w)x\(h) \(mode): mean |old - new| Y \(d.y), UV \(d.uv)")
            // The bound must reject a result that is wrong: the other resize mode's framing.
            let other = try Self.newPath(converter, kind, bytes: bytes, bytesPerLine: bpl, width: w, height: h,
                                         mode: mode == .crop ? .stretch : .crop)
            let wrong = Self.meanAbsDiff(old, other)
            #expect(wrong.y > 2 * Self.mjpegBound, "\(kind) \(w)x\(h): the other mode differs by only \(wrong.y) in Y")
        }
    }

    /// A forgotten full→limited range conversion (JFIF values passed through, as `JPEGDecoder.decode`
    /// delivers them) is well outside the MJPEG bound on content that spans the value range.
    @Test func missingRangeConversionFailsTheBound() throws {
        let (w, h) = (1280, 720)
        let frame = Self.contentFrame(width: w, height: h)
        let (bytes, _) = try Self.driverBytes(.mjpeg422, frame: frame)
        let old = try Self.oldPath(.mjpeg422, bytes: bytes, bytesPerLine: 0, width: w, height: h, mode: .crop)
        let full = NV12Buffer(width: w, height: h)
        try bytes.withUnsafeBytes { try JPEGDecoder(maxWidth: w, maxHeight: h).decode($0, into: full.view) }
        let fullRange = NV12Buffer(width: Self.input.width, height: Self.input.height)
        NV12Ops.scale(full.view.readOnly, into: fullRange.view, mode: .crop)
        let d = Self.meanAbsDiff(old, fullRange)
        #expect(d.y > 2 * Self.mjpegBound && d.uv > 2 * Self.mjpegBound, "full range vs limited differs by Y \(d.y), UV \(d.uv)")
    }

    @Test func dctScaleIsTheLargestReductionThatStillCoversTheInput() {
        func d(_ w: Int, _ h: Int, _ mode: ResizeMode = .crop, input: Int = 224) -> Int {
            ModelInputConverter.dctScaleDenominator(width: w, height: h, inputWidth: input, inputHeight: input, mode: mode)
        }
        // 640x480: 1/2 → 320x240, crop 240x240 ≥ 224; 1/4 → 160x120 is too small.
        #expect(d(640, 480) == 2)
        // 1280x720: 1/2 → 640x360, crop 360x360; 1/4 → 320x180 is too small.
        #expect(d(1280, 720) == 2)
        // 1920x1080: 1/4 → 480x270, crop 270x270; 1/8 → 240x135 is too small.
        #expect(d(1920, 1080) == 4)
        #expect(d(3840, 2160) == 8)
        #expect(d(320, 240) == 1)
        #expect(d(224, 224) == 1)
        // Stretch needs the reduced frame itself ≥ the input: 1/4 of 1920x1080 is 480x270.
        #expect(d(1920, 1080, .stretch) == 4)
        #expect(d(640, 480, .stretch) == 2)
        // A wide frame cropped to a square keeps only its height: that decides.
        #expect(d(1920, 448) == 2)
        #expect(d(1920, 446) == 1)  // 1/2 → 960x223, even 222 < 224
    }

    /// JFIF white (Y 255) becomes BT.601 limited-range white (Y 235); neutral chroma stays 128.
    @Test(arguments: [JPEGSubsampling.s420, .s422, .s444, .gray])
    func fullRangeWhiteBecomesLimitedRange(subsampling: JPEGSubsampling) throws {
        let (w, h) = (640, 480)
        let frame = NV12Buffer(width: w, height: h)
        memset(frame.bytes, 255, frame.layout.yByteCount)
        memset(frame.bytes + frame.layout.yByteCount, 128, frame.layout.uvByteCount)
        let jpeg = try JPEGEncoder.encode(frame.view.readOnly, subsampling: subsampling, quality: 95)
        // The encoder goes through RGB with libyuv's limited-range matrix: NV12 Y 255 is brighter than
        // white and clips to RGB 255, which JFIF stores as Y 255.
        let converter = ModelInputConverter(maxWidth: w, maxHeight: h, inputWidth: 224, inputHeight: 224)
        let out = try Self.newPath(converter, .mjpeg420, bytes: jpeg, bytesPerLine: 0, width: w, height: h, mode: .crop)
        let meanY = NV12Ops.meanLuma(out.view.readOnly)
        #expect(abs(meanY - 235) < 1, "Y 255 (full range) should become 235, got \(meanY)")
        for x in 0..<224 { #expect(abs(Int(out.view.uv[50 * out.layout.strideUV + x]) - 128) <= 1) }
    }

    @Test func corruptTruncatedAndMismatchedJPEGsThrowCorrupt() throws {
        let (w, h) = (640, 480)
        let frame = Self.contentFrame(width: w, height: h)
        let (good, _) = try Self.driverBytes(.mjpeg422, frame: frame)
        let converter = ModelInputConverter(maxWidth: w, maxHeight: h, inputWidth: 224, inputHeight: 224)
        func convert(_ bytes: [UInt8], width: Int = w, height: Int = h) throws {
            let out = NV12Buffer(width: 224, height: 224)
            try bytes.withUnsafeBytes { raw in
                try converter.convert(.mjpeg(raw, width: width, height: height), into: out.view, mode: .crop)
            }
        }
        func isCorrupt(_ bytes: [UInt8], width: Int = w, height: Int = h) -> Bool {
            do { try convert(bytes, width: width, height: height); return false } catch {
                if case .corrupt = error as? FrameConversionError { return true }
                return false
            }
        }
        #expect(isCorrupt(Array(good.prefix(good.count / 2))), "truncated")
        var damaged = good
        for i in stride(from: good.count / 3, to: good.count - 2, by: 97) { damaged[i] ^= 0x5A }
        #expect(isCorrupt(damaged), "damaged entropy data")
        #expect(isCorrupt([UInt8](repeating: 0x42, count: 5000)), "not a JPEG")
        #expect(isCorrupt(good, width: 1280, height: 720), "header 640x480, negotiated 1280x720")
        #expect(isCorrupt(good, width: 320, height: 240), "header 640x480, negotiated 320x240")
        let small = ModelInputConverter(maxWidth: 320, maxHeight: 240, inputWidth: 224, inputHeight: 224)
        let out = NV12Buffer(width: 224, height: 224)
        #expect(throws: FrameConversionError.self) {
            try good.withUnsafeBytes { try small.convert(.mjpeg($0, width: w, height: h), into: out.view, mode: .crop) }
        }
        #expect(throws: FrameConversionError.truncated(got: 0, need: 1)) {
            try converter.convert(.mjpeg(UnsafeRawBufferPointer(start: nil, count: 0), width: w, height: h),
                                  into: out.view, mode: .crop)
        }
        // One bad frame does not spoil the next good one.
        #expect(throws: Never.self) { try convert(good) }
        let old = try Self.oldPath(.mjpeg422, bytes: good, bytesPerLine: 0, width: w, height: h, mode: .crop)
        let new = try Self.newPath(converter, .mjpeg422, bytes: good, bytesPerLine: 0, width: w, height: h, mode: .crop)
        #expect(Self.meanAbsDiff(old, new).y <= Self.mjpegBound)
    }

    /// The MJPEG path before the region decoder, as it was: TurboJPEG's DCT-scaled planar decode of
    /// the whole frame, libyuv crop/scale of each plane, the range table.
    static func previousMJPEGPath(bytes: [UInt8], inputWidth iw: Int = input.width, inputHeight ih: Int = input.height,
                                  mode: ResizeMode) throws -> NV12Buffer {
        let out = NV12Buffer(width: iw, height: ih)
        try bytes.withUnsafeBytes { raw in
            let header = try JPEGDecoder(maxWidth: 1, maxHeight: 1).header(raw)
            let decoder = JPEGDecoder(maxWidth: header.width, maxHeight: header.height)
            let d = ModelInputConverter.dctScaleDenominator(width: header.width, height: header.height, inputWidth: iw,
                                                            inputHeight: ih, mode: mode)
            let p = try decoder.decodeScaledPlanes(raw, header: header, denominator: d)
            let r = NV12Ops.cropRect(source: NV12Layout(width: p.width & ~1, height: p.height & ~1),
                                     destinationWidth: iw, destinationHeight: ih, mode: mode)
            let v = out.view
            ScalePlane(p.y + r.y * p.width + r.x, Int32(p.width), Int32(r.width), Int32(r.height),
                       v.y, Int32(v.layout.strideY), Int32(iw), Int32(ih), kFilterBilinear)
            if p.subsampling == .gray {
                SetPlane(v.uv, Int32(v.layout.strideUV), Int32(iw), Int32(ih / 2), 0x80)
            } else {
                let sx = p.subsampling == .s444 ? 1 : 2, sy = p.subsampling == .s420 ? 2 : 1
                let offset = (r.y / sy) * p.chromaWidth + r.x / sx
                let u = NV12Buffer(width: iw, height: ih), w = NV12Buffer(width: iw, height: ih)
                ScalePlane(p.u + offset, Int32(p.chromaWidth), Int32(r.width / sx), Int32(r.height / sy),
                           u.view.y, Int32(iw / 2), Int32(iw / 2), Int32(ih / 2), kFilterBilinear)
                ScalePlane(p.v + offset, Int32(p.chromaWidth), Int32(r.width / sx), Int32(r.height / sy),
                           w.view.y, Int32(iw / 2), Int32(iw / 2), Int32(ih / 2), kFilterBilinear)
                MergeUVPlane(u.view.y, Int32(iw / 2), w.view.y, Int32(iw / 2), v.uv, Int32(v.layout.strideUV),
                             Int32(iw / 2), Int32(ih / 2))
            }
            FullToLimitedRange().apply(v)
        }
        return out
    }

    /// The region decoder (only the kept columns transformed, rows outside the crop skipped,
    /// chroma upsampled before scaling) gives the model input the previous MJPEG path gave: the
    /// same crop, mean |difference| at most 2 in Y and in UV, for landscape, portrait and odd sizes.
    @Test(arguments: [JPEGSubsampling.s420, .s422, .s444, .gray], ResizeMode.allCases)
    func regionDecodeMatchesThePreviousMJPEGPath(subsampling: JPEGSubsampling, mode: ResizeMode) throws {
        for (w, h) in [(640, 480), (1280, 720), (1920, 1080), (1279, 719), (721, 1281), (300, 240)] {
            let bytes = try JPEGRegionDecoderTests.jpeg(width: w, height: h, sampling: subsampling, quality: 85)
            let previous = try Self.previousMJPEGPath(bytes: bytes, mode: mode)
            let converter = ModelInputConverter(maxWidth: w, maxHeight: h, inputWidth: Self.input.width,
                                                inputHeight: Self.input.height)
            let out = NV12Buffer(width: Self.input.width, height: Self.input.height)
            try bytes.withUnsafeBytes { try converter.convert(.mjpeg($0, width: w, height: h), into: out.view, mode: mode) }
            let d = Self.meanAbsDiff(previous, out)
            #expect(d.y <= 2 && d.uv <= 2, "\(subsampling) \(w)x\(h) \(mode): mean |previous - region| Y \(d.y), UV \(d.uv)")
            // Not a trivial agreement: the other mode's framing is far outside the bound.
            let other = NV12Buffer(width: Self.input.width, height: Self.input.height)
            try bytes.withUnsafeBytes {
                try converter.convert(.mjpeg($0, width: w, height: h), into: other.view, mode: mode == .crop ? .stretch : .crop)
            }
            #expect(Self.meanAbsDiff(previous, other).y > 4, "\(subsampling) \(w)x\(h): the other mode is as close")
        }
    }

    /// 4:4:0 and 4:1:1 JPEGs (which the planar path refused) convert to the picture the 4:4:4 JPEG
    /// of the same content gives.
    @Test func unusualSubsamplingsConvertLikeFullChroma() throws {
        let (w, h) = (1280, 720)
        let converter = ModelInputConverter(maxWidth: w, maxHeight: h, inputWidth: 224, inputHeight: 224)
        func convert(_ sampling: JPEGSubsampling) throws -> NV12Buffer {
            let bytes = try JPEGRegionDecoderTests.jpeg(width: w, height: h, sampling: sampling, quality: 95)
            let out = NV12Buffer(width: 224, height: 224)
            try bytes.withUnsafeBytes { try converter.convert(.mjpeg($0, width: w, height: h), into: out.view, mode: .crop) }
            return out
        }
        let full = try convert(.s444)
        for sampling in [JPEGSubsampling.s440, .s411] {
            let d = Self.meanAbsDiff(full, try convert(sampling))
            #expect(d.y <= 1 && d.uv <= 3, "\(sampling): mean |4:4:4 - it| Y \(d.y), UV \(d.uv)")
        }
    }

    @Test func impossibleRawGeometryIsRefused() throws {
        let converter = ModelInputConverter(maxWidth: 640, maxHeight: 480, inputWidth: 224, inputHeight: 224)
        let out = NV12Buffer(width: 224, height: 224)
        let bytes = [UInt8](repeating: 128, count: 1280 * 720 * 2)
        try bytes.withUnsafeBufferPointer { p in
            let base = p.baseAddress!
            // Stride shorter than a row, odd width, over the converter's maximum.
            #expect(throws: FrameConversionError.self) { try converter.convert(.yuyv(base, stride: 600, width: 640, height: 480), into: out.view, mode: .crop) }
            #expect(throws: FrameConversionError.self) { try converter.convert(.yuyv(base, stride: 1280, width: 639, height: 480), into: out.view, mode: .crop) }
            #expect(throws: FrameConversionError.self) { try converter.convert(.yuyv(base, stride: 2560, width: 1280, height: 720), into: out.view, mode: .crop) }
            let bad = NV12Layout(width: 640, height: 480, strideY: 320, strideUV: 640)
            #expect(throws: FrameConversionError.self) { try converter.convert(.nv12(NV12ConstView(y: base, uv: base, layout: bad)), into: out.view, mode: .crop) }
            // A model input larger than the converter was made for.
            let big = NV12Buffer(width: 256, height: 256)
            #expect(throws: FrameConversionError.self) { try converter.convert(.yuyv(base, stride: 1280, width: 640, height: 480), into: big.view, mode: .crop) }
            // The same frame with sane geometry converts (grey stays grey).
            try converter.convert(.yuyv(base, stride: 1280, width: 640, height: 480), into: out.view, mode: .crop)
            #expect(abs(NV12Ops.meanLuma(out.view.readOnly) - 128) < 0.5)
        }
    }
}
