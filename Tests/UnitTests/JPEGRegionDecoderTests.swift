import CTurboJPEG
import Foundation
@testable import ImageOps
import Testing

/// `JPEGRegionDecoder` (libjpeg's API through Sources/CJPEGRegion: DCT scaling, cropped columns,
/// skipped rows, early stop) against whole-image decodes, and its handling of bad input.
@Suite struct JPEGRegionDecoderTests {
    /// A `width` x `height` JPEG (any size, odd included) of smooth colour waves and hard-edged
    /// blocks, encoded by libjpeg-turbo from RGB.
    static func jpeg(width w: Int, height h: Int, sampling: JPEGSubsampling, quality: Int32 = 90, progressive: Bool = false) throws -> [UInt8] {
        // Separable waves (one sin/cos per row and column) keep this quick in debug builds.
        let colR = (0..<w).map { 100 * sin(Double($0) / Double(w) * 9) }, rowR = (0..<h).map { cos(Double($0) / Double(h) * 5) }
        let colG = (0..<w).map { Double($0) / Double(w) * 5 }, rowG = (0..<h).map { Double($0) / Double(h) * 7 }
        let rowB = (0..<h).map { 128 + 80 * sin(Double($0) / Double(h) * 11 + 1) }
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        rgb.withUnsafeMutableBufferPointer { p in
            for y in 0..<h {
                for x in 0..<w {
                    let block = (x / 37 + y / 23) % 4 == 0 ? 70.0 : 0
                    let i = (y * w + x) * 3
                    p[i] = UInt8(max(0, min(255, (128 + colR[x] * rowR[y] + block).rounded())))
                    p[i + 1] = UInt8(max(0, min(255, (128 + 90 * cos(colG[x] + rowG[y]) - block).rounded())))
                    p[i + 2] = UInt8(max(0, min(255, rowB[y].rounded())))
                }
            }
        }
        guard let handle = tjInitCompress() else { throw JPEGDecodeError.corrupt("tjInitCompress") }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let flags: Int32 = progressive ? Int32(TJFLAG_PROGRESSIVE) : 0
        let rc = tjCompress2(handle, rgb, Int32(w), Int32(w * 3), Int32(h), Int32(TJPF_RGB.rawValue), &out, &size,
                             sampling.tj, quality, flags)
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else { throw JPEGDecodeError.corrupt("tjCompress2 failed") }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    /// The decoded region's planes copied out (Y, then Cb and Cr unless gray), row by row.
    static func planes(_ r: JPEGRegion) -> [[UInt8]] {
        func copy(_ p: UnsafePointer<UInt8>) -> [UInt8] {
            [UInt8](unsafeUninitializedCapacity: r.width * r.height) { a, n in
                for row in 0..<r.height { (a.baseAddress! + row * r.width).update(from: p + row * r.stride, count: r.width) }
                n = r.width * r.height
            }
        }
        return r.isGray ? [copy(r.y)] : [copy(r.y), copy(r.cb), copy(r.cr)]
    }

    /// `rect` cut out of planes of `width` columns.
    static func cut(_ planes: [[UInt8]], width: Int, _ rect: (x: Int, y: Int, w: Int, h: Int)) -> [[UInt8]] {
        planes.map { p in
            p.withUnsafeBufferPointer { src in
                [UInt8](unsafeUninitializedCapacity: rect.w * rect.h) { a, n in
                    for row in 0..<rect.h {
                        (a.baseAddress! + row * rect.w).update(from: src.baseAddress! + (rect.y + row) * width + rect.x, count: rect.w)
                    }
                    n = rect.w * rect.h
                }
            }
        }
    }

    /// Decoding a region (columns cropped, rows above skipped, rows below never decoded) gives
    /// exactly the pixels of the same rectangle of the whole scaled image, for every subsampling,
    /// every DCT scale and odd image sizes; regions start off the iMCU grid and touch the edges.
    @Test(arguments: JPEGSubsampling.allCases, [1, 2, 4, 8])
    func regionIsTheSameRectangleOfTheWholeImage(sampling: JPEGSubsampling, denominator d: Int) throws {
        for (w, h) in [(1279, 719), (640, 480), (333, 501)] {
            let bytes = try Self.jpeg(width: w, height: h, sampling: sampling)
            let decoder = JPEGRegionDecoder(maxWidth: w, maxHeight: h)
            try bytes.withUnsafeBytes { raw in
                let header = try decoder.header(raw)
                #expect(header.width == w && header.height == h && header.components == (sampling == .gray ? 1 : 3)
                        && !header.progressive)
                let (sw, sh) = JPEGRegionDecoder.scaledSize(width: w, height: h, denominator: d)
                let whole = Self.planes(try decoder.decode(raw, header: header, denominator: d, x: 0, y: 0, width: sw, height: sh))
                let rects = [(x: sw / 4 & ~1, y: 0, w: sw / 2, h: sh), (x: 0, y: sh / 3, w: sw, h: sh / 3),
                             (x: min(13, sw - 1), y: min(7, sh - 1), w: max(1, sw / 3), h: max(1, sh / 5)),
                             (x: sw - max(1, sw / 5), y: sh - max(1, sh / 7), w: max(1, sw / 5), h: max(1, sh / 7)),
                             (x: sw - 1, y: sh - 1, w: 1, h: 1)]
                for rect in rects {
                    let region = try decoder.decode(raw, header: header, denominator: d, x: rect.x, y: rect.y,
                                                    width: rect.w, height: rect.h)
                    let same = Self.planes(region) == Self.cut(whole, width: sw, rect)
                    #expect(same, "\(sampling) \(w)x\(h) 1/\(d) region \(rect) differs from the whole image's")
                }
            }
        }
    }

    /// The whole-image decode is the picture: its Y plane is exactly TurboJPEG's DCT-scaled Y (the
    /// previous MJPEG path, with the same IDCT: the fast one at 1/1 only), and its chroma, averaged
    /// back to the JPEG's chroma grid, within 2.
    @Test(arguments: [JPEGSubsampling.s444, .s422, .s420], [1, 2, 4, 8])
    func wholeImageMatchesTurboJPEGPlanes(subsampling: JPEGSubsampling, denominator d: Int) throws {
        let (w, h) = (640, 480)
        let bytes = try Self.jpeg(width: w, height: h, sampling: subsampling)
        let region = JPEGRegionDecoder(maxWidth: w, maxHeight: h)
        let reference = JPEGDecoder(maxWidth: w, maxHeight: h)
        try bytes.withUnsafeBytes { raw in
            let (sw, sh) = JPEGRegionDecoder.scaledSize(width: w, height: h, denominator: d)
            let ours = Self.planes(try region.decode(raw, header: region.header(raw), denominator: d, x: 0, y: 0,
                                                     width: sw, height: sh, fastIDCT: d == 1))
            let tj = try reference.decodeScaledPlanes(raw, header: reference.header(raw), denominator: d)
            #expect(tj.width == sw && tj.height == sh)
            let sameY = ours[0] == Array(UnsafeBufferPointer(start: tj.y, count: sw * sh))
            #expect(sameY, "Y differs at 1/\(d)")
            let sx = sw / tj.chromaWidth, sy = sh / tj.chromaHeight
            for (plane, theirs) in [(ours[1], tj.u), (ours[2], tj.v)] {
                var sum = 0
                for cy in 0..<tj.chromaHeight {
                    for cx in 0..<tj.chromaWidth {
                        var acc = 0
                        for dy in 0..<sy { for dx in 0..<sx { acc += Int(plane[(cy * sy + dy) * sw + cx * sx + dx]) } }
                        sum += abs(acc / (sx * sy) - Int(theirs[cy * tj.chromaWidth + cx]))
                    }
                }
                let mean = Double(sum) / Double(tj.chromaWidth * tj.chromaHeight)
                #expect(mean <= 2, "\(subsampling) 1/\(d): chroma mean |diff| \(mean)")
            }
        }
    }

    /// A progressive JPEG holds the same coefficients as the baseline one: the same pixels.
    @Test func progressiveDecodesLikeBaseline() throws {
        let (w, h) = (640, 360)
        let baseline = try Self.jpeg(width: w, height: h, sampling: .s422)
        let progressive = try Self.jpeg(width: w, height: h, sampling: .s422, progressive: true)
        let decoder = JPEGRegionDecoder(maxWidth: w, maxHeight: h)
        func decode(_ bytes: [UInt8]) throws -> [[UInt8]] {
            try bytes.withUnsafeBytes { raw in
                let header = try decoder.header(raw)
                return Self.planes(try decoder.decode(raw, header: header, denominator: 2, x: 40, y: 10, width: 200, height: 150))
            }
        }
        let isProgressive = try progressive.withUnsafeBytes { raw throws -> Bool in try decoder.header(raw).progressive }
        #expect(isProgressive)
        let same = try decode(progressive) == decode(baseline)
        #expect(same)
    }

    /// Bad input throws `JPEGDecodeError.corrupt` (or `.tooLarge`) with libjpeg's message, never
    /// crashes, and the next good frame decodes as before.
    @Test func badInputThrowsTypedErrorsAndTheNextFrameDecodes() throws {
        let (w, h) = (640, 480)
        let good = try Self.jpeg(width: w, height: h, sampling: .s422)
        let decoder = JPEGRegionDecoder(maxWidth: w, maxHeight: h)
        func decode(_ bytes: [UInt8], region: (Int, Int, Int, Int) = (80, 0, 480, 480), denominator: Int = 1) throws -> [[UInt8]] {
            try bytes.withUnsafeBytes { raw in
                let header = try decoder.header(raw)
                return Self.planes(try decoder.decode(raw, header: header, denominator: denominator, x: region.0, y: region.1,
                                                      width: region.2, height: region.3))
            }
        }
        let expected = try decode(good)
        func corruptMessage(_ bytes: [UInt8], region: (Int, Int, Int, Int) = (80, 0, 480, 480)) -> String? {
            do { _ = try decode(bytes, region: region); return nil } catch {
                if case .corrupt(let why) = error as? JPEGDecodeError { return why }
                return nil
            }
        }
        for fraction in [0.02, 0.3, 0.7, 0.995] {
            let cut = Array(good.prefix(Int(Double(good.count) * fraction)))
            let why = corruptMessage(cut)
            #expect(why != nil, "truncated to \(fraction)")
            let again = try decode(good) == expected
            #expect(again, "a good frame after one truncated to \(fraction)")
        }
        var damaged = good
        for i in stride(from: good.count / 3, to: good.count - 2, by: 97) { damaged[i] ^= 0x5A }
        #expect(corruptMessage(damaged) != nil, "damaged entropy data")
        #expect(corruptMessage([UInt8](repeating: 0x42, count: 5000))?.contains("JPEG") == true, "not a JPEG")
        #expect(corruptMessage(Array(good.prefix(4))) != nil, "four bytes")
        // Regions outside the (scaled) image are refused by the C side too.
        #expect(corruptMessage(good, region: (600, 0, 80, 10)) != nil)
        #expect(corruptMessage(good, region: (0, 470, 10, 20)) != nil)
        #expect(corruptMessage(good, region: (-2, 0, 10, 10)) != nil)
        // CMYK (4 components) is neither YCbCr nor gray.
        let cmyk = try Self.cmykJPEG(width: 32, height: 32)
        #expect(corruptMessage(cmyk, region: (0, 0, 32, 32))?.contains("colour space") == true)
        // Larger than the decoder was made for: refused from the header, before decoding.
        let big = try Self.jpeg(width: 700, height: 480, sampling: .s422)
        #expect(throws: JPEGDecodeError.tooLarge(width: 700, height: 480)) { _ = try decode(big, region: (0, 0, 10, 10)) }
        let last = try decode(good) == expected
        #expect(last, "a good frame after all of these")
    }

    static func cmykJPEG(width w: Int, height h: Int) throws -> [UInt8] {
        let cmyk = [UInt8](repeating: 200, count: w * h * 4)
        guard let handle = tjInitCompress() else { throw JPEGDecodeError.corrupt("tjInitCompress") }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let rc = tjCompress2(handle, cmyk, Int32(w), Int32(w * 4), Int32(h), Int32(TJPF_CMYK.rawValue), &out, &size,
                             Int32(TJSAMP_444.rawValue), 90, 0)
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else { throw JPEGDecodeError.corrupt("tjCompress2(CMYK) failed") }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }
}
