import CYUV
import ImageOps
import Testing

/// `SeparableScaler` (vertical passes and transposes) gives libyuv's bilinear result: luma as
/// `ScalePlane` directly on the crop, chroma as `ScalePlane` on each of U and V, within rounding.
@Suite struct SeparableScalerTests {
    /// A frame with structure in both directions (gradients, a stripe pattern, pseudo-random
    /// texture), so a wrong tap position or a swapped axis shows.
    static func frame(width w: Int, height h: Int) -> NV12Buffer {
        let b = NV12Buffer(width: w, height: h)
        let v = b.view
        var seed: UInt32 = 12345
        func next() -> Int {
            seed = seed &* 1_103_515_245 &+ 12345
            return Int(seed >> 24) & 31
        }
        for y in 0..<h { for x in 0..<w {
            v.y[y * v.layout.strideY + x] = UInt8(truncatingIfNeeded: (x * 3 + y / 2 + ((x / 7) % 2) * 60 + next()))
        } }
        for y in 0..<h / 2 { for x in 0..<w / 2 {
            v.uv[y * v.layout.strideUV + 2 * x] = UInt8(truncatingIfNeeded: 40 + x + next())
            v.uv[y * v.layout.strideUV + 2 * x + 1] = UInt8(truncatingIfNeeded: 200 - y + ((x / 5) % 2) * 30)
        } }
        return b
    }

    /// Largest and mean absolute difference of two planes.
    static func diff(_ a: UnsafePointer<UInt8>, _ strideA: Int, _ b: UnsafePointer<UInt8>, _ strideB: Int,
                     width: Int, height: Int) -> (max: Int, mean: Double) {
        var worst = 0, total = 0
        for y in 0..<height { for x in 0..<width {
            let d = abs(Int(a[y * strideA + x]) - Int(b[y * strideB + x]))
            worst = max(worst, d)
            total += d
        } }
        return (worst, Double(total) / Double(width * height))
    }

    @Test(arguments: [(640, 480, ResizeMode.crop), (640, 480, .stretch), (1280, 720, .crop), (1920, 1080, .crop),
                      (1282, 722, .crop), (480, 640, .crop), (300, 240, .crop)])
    func matchesLibyuvBilinear(width: Int, height: Int, mode: ResizeMode) {
        let src = Self.frame(width: width, height: height)
        let s = src.view.readOnly
        let out = 224
        let scaler = SeparableScaler(maxCropWidth: width, maxOutputWidth: out, maxOutputHeight: out)
        let separable = NV12Buffer(width: out, height: out)
        NV12Ops.scale(s, into: separable.view, mode: mode, scaler: scaler)
        let r = NV12Ops.cropRect(source: s.layout, destinationWidth: out, destinationHeight: out, mode: mode)
        #expect(scaler.handles(cropWidth: r.width, cropHeight: r.height, outputWidth: out, outputHeight: out))

        // Luma: ScalePlane straight on the crop.
        let direct = NV12Buffer(width: out, height: out)
        let sy = s.y + r.y * s.layout.strideY + r.x
        ScalePlane(sy, Int32(s.layout.strideY), Int32(r.width), Int32(r.height), direct.view.y,
                   Int32(direct.view.layout.strideY), Int32(out), Int32(out), kFilterBilinear)
        let dy = Self.diff(separable.view.y, separable.view.layout.strideY, direct.view.y, direct.view.layout.strideY,
                           width: out, height: out)
        #expect(dy.max <= 1 && dy.mean < 0.1, "luma differs from ScalePlane: max \(dy.max), mean \(dy.mean)")

        // Chroma: U and V split out of the crop and each scaled with ScalePlane.
        let cw = r.width / 2, ch = r.height / 2, ow = out / 2
        let u = UnsafeMutablePointer<UInt8>.allocate(capacity: cw * ch), v = UnsafeMutablePointer<UInt8>.allocate(capacity: cw * ch)
        let su = UnsafeMutablePointer<UInt8>.allocate(capacity: ow * ow), sv = UnsafeMutablePointer<UInt8>.allocate(capacity: ow * ow)
        defer { u.deallocate(); v.deallocate(); su.deallocate(); sv.deallocate() }
        SplitUVPlane(s.uv + (r.y / 2) * s.layout.strideUV + r.x, Int32(s.layout.strideUV), u, Int32(cw), v, Int32(cw),
                     Int32(cw), Int32(ch))
        ScalePlane(u, Int32(cw), Int32(cw), Int32(ch), su, Int32(ow), Int32(ow), Int32(ow), kFilterBilinear)
        ScalePlane(v, Int32(cw), Int32(cw), Int32(ch), sv, Int32(ow), Int32(ow), Int32(ow), kFilterBilinear)
        var worst = 0
        let d = separable.view
        for y in 0..<ow { for x in 0..<ow {
            worst = max(worst, abs(Int(d.uv[y * d.layout.strideUV + 2 * x]) - Int(su[y * ow + x])),
                        abs(Int(d.uv[y * d.layout.strideUV + 2 * x + 1]) - Int(sv[y * ow + x])))
        } }
        #expect(worst <= 1, "chroma differs from ScalePlane per plane by up to \(worst)")
    }

    /// A chroma ramp (U = source chroma column) scaled 480 → 224 lands where a centred mapping
    /// puts each output sample, (i + ½)·s − ½ source columns, as luma does; libyuv 1857's
    /// `UVScale` (the previous path) lands ~1.7 columns left of that, which this would catch.
    @Test func chromaLandsOnCentredPositions() {
        let src = NV12Buffer(width: 480, height: 8)
        let v = src.view
        for y in 0..<4 { for x in 0..<240 {
            v.uv[y * v.layout.strideUV + 2 * x] = UInt8(x)
            v.uv[y * v.layout.strideUV + 2 * x + 1] = 128
        } }
        for y in 0..<8 { for x in 0..<480 { v.y[y * v.layout.strideY + x] = UInt8(x / 2) } }
        let dst = NV12Buffer(width: 224, height: 4)
        let scaler = SeparableScaler(maxCropWidth: 480, maxOutputWidth: 224, maxOutputHeight: 224)
        NV12Ops.scale(v.readOnly, into: dst.view, mode: .stretch, scaler: scaler)
        let step = 240.0 / 112.0
        for i in [0, 1, 50, 110, 111] {
            let ideal = (Double(i) + 0.5) * step - 0.5
            let got = Double(dst.view.uv[2 * i])
            #expect(abs(got - ideal) <= 1.0, "U[\(i)] = \(got), centred mapping \(ideal)")
        }
    }

    /// Upscales, equal widths and crops wider than the scratch are not its job: `NV12Ops.scale`
    /// then takes libyuv's direct path, with the same output as without a scaler.
    @Test func leavesOtherGeometriesToTheDirectPath() {
        let scaler = SeparableScaler(maxCropWidth: 640, maxOutputWidth: 224, maxOutputHeight: 224)
        #expect(!scaler.handles(cropWidth: 160, cropHeight: 160, outputWidth: 224, outputHeight: 224))
        #expect(!scaler.handles(cropWidth: 224, cropHeight: 480, outputWidth: 224, outputHeight: 224))
        #expect(!scaler.handles(cropWidth: 480, cropHeight: 200, outputWidth: 224, outputHeight: 224))
        #expect(!scaler.handles(cropWidth: 1080, cropHeight: 1080, outputWidth: 224, outputHeight: 224))
        for (w, h) in [(160, 120), (1920, 1080)] {
            let src = Self.frame(width: w, height: h)
            let with = NV12Buffer(width: 224, height: 224), without = NV12Buffer(width: 224, height: 224)
            NV12Ops.scale(src.view.readOnly, into: with.view, mode: .crop, scaler: scaler)
            NV12Ops.scale(src.view.readOnly, into: without.view, mode: .crop)
            let dy = Self.diff(with.view.y, with.view.layout.strideY, without.view.y, without.view.layout.strideY, width: 224, height: 224)
            let duv = Self.diff(with.view.uv, with.view.layout.strideUV, without.view.uv, without.view.layout.strideUV, width: 224, height: 112)
            #expect(dy.max == 0 && duv.max == 0, "\(w)x\(h)")
        }
    }
}
