import CamclassTestSupport
import CTurboJPEG
import CYUV
import Foundation
import ImageOps
import Testing

@Suite struct UnitImageOpsTests {
    @Test func cropRectKeepsCentreAtModelAspect() {
        let wide = NV12Ops.cropRect(source: NV12Layout(width: 640, height: 480), destinationWidth: 224,
                                    destinationHeight: 224, mode: .crop)
        #expect(wide.x == 80 && wide.y == 0 && wide.width == 480 && wide.height == 480)
        let tall = NV12Ops.cropRect(source: NV12Layout(width: 480, height: 640), destinationWidth: 224,
                                    destinationHeight: 224, mode: .crop)
        #expect(tall.x == 0 && tall.y == 80 && tall.width == 480 && tall.height == 480)
        let stretch = NV12Ops.cropRect(source: NV12Layout(width: 640, height: 480), destinationWidth: 224,
                                       destinationHeight: 224, mode: .stretch)
        #expect(stretch.width == 640 && stretch.height == 480)
        // Odd arithmetic still yields even offsets and sizes (NV12 chroma is 2x2).
        let odd = NV12Ops.cropRect(source: NV12Layout(width: 1282, height: 722), destinationWidth: 224,
                                   destinationHeight: 224, mode: .crop)
        #expect(odd.x % 2 == 0 && odd.y % 2 == 0 && odd.width % 2 == 0 && odd.height % 2 == 0)
    }

    /// A 2:1 bilinear downscale of a pattern with constant 2x2 blocks reproduces the blocks exactly,
    /// and a crop picks the centre region: reference values computed by hand.
    @Test func scaleAndCropAgainstReferenceValues() {
        let src = NV12Buffer(width: 8, height: 8)
        let v = src.view
        for y in 0..<8 { for x in 0..<8 { v.y[y * v.layout.strideY + x] = UInt8((y / 2) * 40 + (x / 2) * 10) } }
        for y in 0..<4 { for x in 0..<4 {
            v.uv[y * v.layout.strideUV + 2 * x] = UInt8(100 + x)
            v.uv[y * v.layout.strideUV + 2 * x + 1] = UInt8(200 + y)
        } }
        let dst = NV12Buffer(width: 4, height: 4)
        NV12Ops.scale(v.readOnly, into: dst.view, mode: .stretch)
        let d = dst.view
        for y in 0..<4 { for x in 0..<4 {
            #expect(d.y[y * d.layout.strideY + x] == UInt8(y * 40 + x * 10), "Y(\(x),\(y))")
        } }
        // Chroma 4x4 → 2x2: averages of 2x2 chroma blocks.
        #expect(d.uv[0] == 100 || d.uv[0] == 101)
        #expect(d.uv[1] == 200 || d.uv[1] == 201)

        // Crop 8x8 → 4x8 centre (aspect 1:2): columns 2…5, no scaling needed → exact copy.
        let tall = NV12Buffer(width: 4, height: 8)
        NV12Ops.scale(v.readOnly, into: tall.view, mode: .crop)
        let t = tall.view
        for y in 0..<8 { for x in 0..<4 {
            #expect(t.y[y * t.layout.strideY + x] == v.y[y * v.layout.strideY + x + 2])
        } }
    }

    @Test func yuyvConvertsToNV12() throws {
        // Two pixels per 4 bytes: Y0 U Y1 V.
        let w = 4, h = 2
        var yuyv = [UInt8]()
        for _ in 0..<h { for _ in 0..<(w / 2) { yuyv += [50, 90, 60, 240] } }
        let dst = NV12Buffer(width: w, height: h)
        try yuyv.withUnsafeBufferPointer { try NV12Ops.convertYUYV($0.baseAddress!, stride: w * 2, into: dst.view) }
        let d = dst.view
        #expect(Array(UnsafeBufferPointer(start: d.y, count: 4)) == [50, 60, 50, 60])
        #expect(d.uv[0] == 90 && d.uv[1] == 240)
    }

    /// JPEG → NV12 (fast path, MJPEG cameras) for every chroma subsampling: a solid colour encoded
    /// by libjpeg-turbo comes back with JPEG's full-range (JFIF) values (red: Y 76, Cb 85, Cr 255).
    @Test(arguments: [Int32(TJSAMP_420.rawValue), Int32(TJSAMP_422.rawValue), Int32(TJSAMP_444.rawValue),
                      Int32(TJSAMP_GRAY.rawValue)])
    func jpegDecodesToNV12(subsampling: Int32) throws {
        let (w, h) = (64, 48)
        let jpeg = try Self.encodeSolidJPEG(width: w, height: h, rgb: (255, 0, 0), subsampling: subsampling)
        let decoder = JPEGDecoder(maxWidth: 256, maxHeight: 256)
        let out = NV12Buffer(width: w, height: h)
        try jpeg.withUnsafeBytes { try decoder.decode($0, into: out.view) }
        let meanY = NV12Ops.meanLuma(out.view.readOnly)
        #expect(abs(meanY - 76) < 3, "JFIF Y of red ≈ 76, got \(meanY)")
        let u = Int(out.view.uv[out.view.layout.strideUV * 10 + 20]), v = Int(out.view.uv[out.view.layout.strideUV * 10 + 21])
        if subsampling == Int32(TJSAMP_GRAY.rawValue) {
            #expect(u == 128 && v == 128)
        } else {
            #expect(abs(u - 85) < 5 && abs(v - 255) < 5, "JFIF CbCr of red ≈ (85, 255), got (\(u), \(v))")
        }
    }

    /// The exact path (replay): BT.601 limited range, as cameras deliver NV12 (red: Y 81, U 90, V 240).
    @Test func jpegDecodesExactlyToLimitedRange() throws {
        let jpeg = try Self.encodeSolidJPEG(width: 64, height: 48, rgb: (255, 0, 0), subsampling: Int32(TJSAMP_444.rawValue))
        let decoder = JPEGDecoder(maxWidth: 256, maxHeight: 256)
        let out = NV12Buffer(width: 64, height: 48)
        try jpeg.withUnsafeBytes { try decoder.decodeExact($0, into: out.view) }
        #expect(abs(NV12Ops.meanLuma(out.view.readOnly) - 81) < 3)
        let u = Int(out.view.uv[out.view.layout.strideUV * 10 + 20]), v = Int(out.view.uv[out.view.layout.strideUV * 10 + 21])
        #expect(abs(u - 90) < 5 && abs(v - 240) < 5, "BT.601 UV of red ≈ (90, 240), got (\(u), \(v))")
    }

    @Test func corruptJPEGIsRejectedNotCrashing() throws {
        let jpeg = try Self.encodeSolidJPEG(width: 64, height: 48, rgb: (10, 200, 30), subsampling: Int32(TJSAMP_422.rawValue))
        let decoder = JPEGDecoder(maxWidth: 256, maxHeight: 256)
        let out = NV12Buffer(width: 64, height: 48)
        let truncated = Array(jpeg.prefix(jpeg.count / 2))
        #expect(throws: JPEGDecodeError.self) { try truncated.withUnsafeBytes { try decoder.decode($0, into: out.view) } }
        let wrongSize = NV12Buffer(width: 32, height: 32)
        #expect(throws: JPEGDecodeError.self) { try jpeg.withUnsafeBytes { try decoder.decode($0, into: wrongSize.view) } }
        #expect(throws: JPEGDecodeError.self) { try [UInt8](repeating: 0xFF, count: 100).withUnsafeBytes { try decoder.decode($0, into: out.view) } }
        // A good frame right after bad ones still decodes (one corrupt MJPEG frame must not spoil the next).
        var flipped = jpeg
        for i in stride(from: jpeg.count / 3, to: jpeg.count - 2, by: 7) { flipped[i] ^= 0x5A }
        _ = try? flipped.withUnsafeBytes { try decoder.decode($0, into: out.view) }
        _ = try? truncated.withUnsafeBytes { try decoder.decode($0, into: out.view) }
        try jpeg.withUnsafeBytes { try decoder.decode($0, into: out.view) }
        #expect(abs(Int(out.view.y[100]) - 124) < 6, "JFIF luma of (10,200,30) ≈ 124, got \(out.view.y[100])")
    }

    static func encodeSolidJPEG(width: Int, height: Int, rgb: (UInt8, UInt8, UInt8), subsampling: Int32) throws -> [UInt8] {
        var pixels = [UInt8]()
        for _ in 0..<(width * height) { pixels += [rgb.0, rgb.1, rgb.2] }
        guard let h = tjInitCompress() else { throw JPEGDecodeError.corrupt("tjInitCompress") }
        defer { tjDestroy(h) }
        var buf: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let rc = tjCompress2(h, pixels, Int32(width), 0, Int32(height), Int32(TJPF_RGB.rawValue), &buf, &size, subsampling, 95, 0)
        guard rc == 0, let buf else { throw JPEGDecodeError.corrupt("tjCompress2 failed") }
        defer { tjFree(buf) }
        return Array(UnsafeBufferPointer(start: buf, count: Int(size)))
    }
}
