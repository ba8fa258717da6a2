import CamclassTestSupport
import Capture
import CTurboJPEG
import CV4L2
import Foundation
import ImageOps
import Testing

/// The camera's per-frame path on plain bytes: the converter (NV12 strides, YUYV, MJPEG with real
/// JPEG bytes) and the intake (sequence gaps, error flag, empty and corrupt buffers, counting).
/// The corrupt-MJPEG tests feed the exact function the capture loop calls.
@Suite struct CameraFrameTests {
    // MARK: helpers

    /// Deterministic randomness (SplitMix64) so a failure reproduces.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func samplesDir() throws -> String { try TestEnv.samples() }

    static func jpegFiles() throws -> [String] {
        let dir = try samplesDir()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jpg") }.sorted()
        #expect(!files.isEmpty, "no .jpg in \(dir)")
        return files.map { dir + "/" + $0 }
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// A sample photo as NV12 at `width` x `height` (cropped/scaled).
    static func photoFrame(width: Int, height: Int) throws -> NV12Buffer {
        let replay = try ReplaySource(path: try jpegFiles().first { $0.hasSuffix("chelsea.jpg") } ?? jpegFiles()[0], fps: 0, loop: false)
        replay.open()
        guard let f = try replay.nextFrame(), let pixels = f.nv12 else { throw CocoaError(.fileReadCorruptFile) }
        let out = NV12Buffer(width: width, height: height)
        NV12Ops.scale(pixels, into: out.view, mode: .crop)
        return out
    }

    static func header(_ jpeg: [UInt8]) throws -> (width: Int, height: Int) {
        let h = try jpeg.withUnsafeBytes { try JPEGDecoder(maxWidth: 16, maxHeight: 16).header($0) }
        return (h.width, h.height)
    }

    /// BT.601 limited-range luma of the JPEG decoded to RGB by libjpeg-turbo: a reference computed
    /// without the converter's code path (planar decode + libyuv + range tables).
    static func referenceLuma(_ jpeg: [UInt8], width: Int, height: Int) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let handle = tjInitDecompress()!
        defer { tjDestroy(handle) }
        let rc = jpeg.withUnsafeBufferPointer { j in rgb.withUnsafeMutableBufferPointer { out in
            tjDecompress2(handle, j.baseAddress, UInt(j.count), out.baseAddress, Int32(width), Int32(width * 3), Int32(height),
                          Int32(TJPF_RGB.rawValue), CTJ_FLAG_ACCURATEDCT)
        } }
        #expect(rc == 0)
        var y = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            let r = Double(rgb[3 * i]), g = Double(rgb[3 * i + 1]), b = Double(rgb[3 * i + 2])
            y[i] = UInt8(max(0, min(255, (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).rounded())))
        }
        return y
    }

    static func meanAbsDiffY(_ a: NV12ConstView, _ ref: [UInt8], refStride: Int) -> Double {
        var total = 0
        for row in 0..<a.layout.height {
            for x in 0..<a.layout.width { total += abs(Int(a.y[row * a.layout.strideY + x]) - Int(ref[row * refStride + x])) }
        }
        return Double(total) / Double(a.layout.width * a.layout.height)
    }

    /// A pool buffer larger than the frame, filled with a canary, so writes outside the frame show.
    static func canaryPool(width: Int, height: Int) -> NV12Buffer {
        let b = NV12Buffer(width: width + 64, height: height + 32)
        b.bytes.initializeMemory(as: UInt8.self, repeating: 0xA5, count: b.layout.byteCount)
        return b
    }

    static func canaryIntact(_ b: NV12Buffer, width: Int, height: Int) -> Bool {
        let v = b.view
        for row in 0..<v.layout.height {
            let start = row < height ? width : 0
            for x in start..<v.layout.strideY where v.y[row * v.layout.strideY + x] != 0xA5 { return false }
        }
        for row in 0..<v.layout.height / 2 {
            let start = row < height / 2 ? width : 0
            for x in start..<v.layout.strideUV where v.uv[row * v.layout.strideUV + x] != 0xA5 { return false }
        }
        return true
    }

    // MARK: MJPEG, real JPEG bytes

    @Test func sampleJPEGsDecodeThroughTheCameraPathToLimitedRangeNV12() throws {
        for file in try Self.jpegFiles() {
            let jpeg = try Self.bytes(file)
            let (w, h) = try Self.header(jpeg)
            let converter = CameraFrameConverter(format: .mjpeg, width: w, height: h, bytesPerLine: 0, sizeImage: jpeg.count)
            let pool = Self.canaryPool(width: converter.outputWidth, height: converter.outputHeight)
            try jpeg.withUnsafeBytes { try converter.convert($0, into: pool.view) }
            let out = pool.view.cropped(width: converter.outputWidth, height: converter.outputHeight).readOnly
            let diff = Self.meanAbsDiffY(out, Self.referenceLuma(jpeg, width: w, height: h), refStride: w)
            // Fast DCT and integer tables against an accurate float reference: within ~1 level.
            #expect(diff < 2.0, "\(file): mean |ΔY| \(diff) against BT.601 limited-range luma")
            #expect(Self.canaryIntact(pool, width: converter.outputWidth, height: converter.outputHeight), "\(file) wrote outside the frame")
        }
    }

    @Test(arguments: [JPEGSubsampling.s422, .s420, .s444, .gray])
    func uvcLikeMJPEGRoundTrips(_ subsampling: JPEGSubsampling) throws {
        let src = try Self.photoFrame(width: 640, height: 480)
        let jpeg = try JPEGEncoder.encode(src.view.readOnly, subsampling: subsampling, quality: 90)
        let converter = CameraFrameConverter(format: .mjpeg, width: 640, height: 480, bytesPerLine: 0, sizeImage: 640 * 480 * 2)
        let pool = NV12Buffer(width: 640, height: 480)
        try jpeg.withUnsafeBytes { try converter.convert($0, into: pool.view) }
        // NV12 (limited) → RGB → JPEG (full range) → camera path (back to limited): close to the source.
        var ySum = 0, uvSum = 0
        let a = src.view, b = pool.view
        for row in 0..<480 { for x in 0..<640 { ySum += abs(Int(a.y[row * a.layout.strideY + x]) - Int(b.y[row * b.layout.strideY + x])) } }
        for row in 0..<240 { for x in 0..<640 { uvSum += abs(Int(a.uv[row * a.layout.strideUV + x]) - Int(b.uv[row * b.layout.strideUV + x])) } }
        let yDiff = Double(ySum) / Double(640 * 480), uvDiff = Double(uvSum) / Double(640 * 240)
        #expect(yDiff < 3.0, "\(subsampling): mean |ΔY| \(yDiff)")
        if subsampling == .gray {
            #expect(b.uv[0] == 128 && b.uv[1] == 128, "grey JPEG: neutral chroma")
        } else {
            #expect(uvDiff < 3.0, "\(subsampling): mean |ΔUV| \(uvDiff)")
        }
    }

    // MARK: corrupt MJPEG: dropped and counted, never a crash

    /// What a camera buffer goes through end to end: the capture thread's intake, then a worker's
    /// conversion into a model input that sits inside a canary (writes outside it show).
    final class CameraToInput {
        let intake: CameraFrameIntake
        let worker: ModelInputConverter
        let input: NV12Buffer
        static let inputSide = 64
        /// Frames the worker refused (corrupt MJPEG), counted as the pipeline counts them.
        var rejected = 0

        init(format: CameraPixelFormat = .mjpeg, width: Int, height: Int, sizeImage: Int = 0) {
            intake = CameraFrameIntake(converter: CameraFrameConverter(format: format, width: width, height: height,
                                                                       bytesPerLine: 0, sizeImage: sizeImage))
            worker = ModelInputConverter(maxWidth: width, maxHeight: height, inputWidth: Self.inputSide, inputHeight: Self.inputSide)
            input = CameraFrameTests.canaryPool(width: Self.inputSide, height: Self.inputSide)
        }

        /// The outcome, with a worker's refusal reported as a corrupt drop.
        func take(_ raw: UnsafeRawBufferPointer, used: Int, sequence: UInt32) -> (delivered: Bool, dropped: CameraDropKind?, sourceDropped: UInt32) {
            let o = intake.take(raw, bytesUsed: UInt32(used), flags: 0, sequence: sequence)
            guard o.delivered, let payload = o.payload else { return (false, o.dropped, 0) }
            let target = input.view.cropped(width: Self.inputSide, height: Self.inputSide)
            do throws(FrameConversionError) {
                try worker.convert(payload, into: target, mode: .crop)
            } catch {
                rejected += 1
                return (false, .corrupt, o.sourceDropped)
            }
            return (true, nil, o.sourceDropped)
        }

        var canaryIntact: Bool { CameraFrameTests.canaryIntact(input, width: Self.inputSide, height: Self.inputSide) }
    }

    static func smallJPEG(width: Int = 96, height: Int = 64) throws -> [UInt8] {
        try JPEGEncoder.encode(try photoFrame(width: width, height: height).view.readOnly, subsampling: .s422, quality: 80)
    }

    @Test func truncatedJPEGsAreAllDropped() throws {
        let jpeg = try JPEGEncoder.encode(try Self.photoFrame(width: 640, height: 480).view.readOnly, subsampling: .s422)
        let path = CameraToInput(width: 640, height: 480, sizeImage: jpeg.count)
        var cuts = Array(stride(from: 0, to: jpeg.count - 2, by: max(1, jpeg.count / 60)))
        cuts += [1, 2, 3, 4, 10, 100, 600, jpeg.count - 2, jpeg.count - 1]
        var seq: UInt32 = 0
        for cut in cuts {
            let o = jpeg.withUnsafeBytes { raw in
                path.take(UnsafeRawBufferPointer(rebasing: raw[0..<cut]), used: cut, sequence: seq)
            }
            seq += 1
            if cut == 0 { #expect(o.dropped == .empty) } else { #expect(o.dropped == .corrupt, "a JPEG cut at \(cut) of \(jpeg.count) bytes was delivered") }
        }
        let s = path.intake.stats
        #expect(s.corruptFrames + s.emptyBuffers + path.rejected == cuts.count)
        #expect(path.canaryIntact)
        // The whole JPEG still decodes after all that (the decoder state is not poisoned).
        let ok = jpeg.withUnsafeBytes { path.take($0, used: jpeg.count, sequence: seq) }
        #expect(ok.delivered)
    }

    @Test func flippedBytesAreDroppedOrDecodedButNeverCrash() throws {
        let jpeg = try Self.smallJPEG()
        let path = CameraToInput(width: 96, height: 64)
        var delivered = 0
        // Every byte position, one bit flipped (markers, tables, entropy-coded data alike).
        for position in 0..<jpeg.count {
            var damaged = jpeg
            damaged[position] ^= 0x10
            let o = damaged.withUnsafeBytes { path.take($0, used: $0.count, sequence: UInt32(position)) }
            if o.delivered { delivered += 1 } else { #expect(o.dropped == .corrupt) }
        }
        let corrupt = path.intake.stats.corruptFrames + path.rejected
        print("flipped bits: \(jpeg.count) positions, \(corrupt) dropped, \(delivered) still decoded")
        #expect(corrupt == jpeg.count - delivered)
        #expect(corrupt > 0, "no flipped byte was detected at all")
        #expect(path.canaryIntact)
    }

    @Test func tenThousandFuzzedFramesAreDroppedAndCountedNeverACrash() throws {
        let base = try Self.smallJPEG()
        let other = try Self.smallJPEG(width: 128, height: 96)  // the wrong size for this camera
        let path = CameraToInput(width: 96, height: 64)
        var rng = SplitMix(state: 0xC0FFEE)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)  // a driver buffer: fixed size, reused
        var delivered = 0, dropped = 0
        let n = 10_000
        for i in 0..<n {
            var frame = Int.random(in: 0..<10, using: &rng) == 0 ? other : base
            switch Int.random(in: 0..<6, using: &rng) {
            case 0:  // random bytes flipped
                for _ in 0..<Int.random(in: 1...16, using: &rng) {
                    frame[Int.random(in: 0..<frame.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:  // truncated
                frame = Array(frame[0..<Int.random(in: 0..<frame.count, using: &rng)])
            case 2:  // a chunk deleted
                let a = Int.random(in: 2..<frame.count, using: &rng), b = min(frame.count, a + Int.random(in: 1...256, using: &rng))
                frame.removeSubrange(a..<b)
            case 3:  // a chunk duplicated (like a USB packet delivered twice)
                let a = Int.random(in: 0..<frame.count, using: &rng), b = min(frame.count, a + Int.random(in: 1...512, using: &rng))
                frame.insert(contentsOf: frame[a..<b], at: a)
            case 4:  // header fields (SOI, APP0/DQT/SOF/DHT live in the first ~600 bytes) scrambled
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    frame[Int.random(in: 0..<min(frame.count, 640), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            default:  // pure noise, sometimes behind a valid SOI marker
                frame = (0..<Int.random(in: 0...4096, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if frame.count > 2 && Bool.random(using: &rng) { frame[0] = 0xFF; frame[1] = 0xD8 }
            }
            let count = min(frame.count, buffer.count)
            buffer.withUnsafeMutableBufferPointer { b in frame.withUnsafeBufferPointer { f in
                if count > 0 { b.baseAddress!.update(from: f.baseAddress!, count: count) }
            } }
            let o = buffer.withUnsafeBytes { path.take($0, used: count, sequence: UInt32(i)) }
            if o.delivered { delivered += 1 } else { dropped += 1 }
        }
        let s = path.intake.stats
        print("fuzzed MJPEG: \(n) frames, \(dropped) dropped (corrupt \(s.corruptFrames + path.rejected), empty \(s.emptyBuffers)), \(delivered) still decoded")
        #expect(delivered + dropped == n)
        #expect(s.corruptFrames + path.rejected + s.emptyBuffers == dropped)
        #expect(dropped > n / 2, "only \(dropped) of \(n) damaged frames were detected")
        #expect(s.sequenceGaps == 0)
        #expect(path.canaryIntact, "a damaged frame wrote outside the model input")
        // A clean frame right after the storm is delivered.
        let ok = base.withUnsafeBytes { path.take($0, used: $0.count, sequence: UInt32(n)) }
        #expect(ok.delivered)
    }

    // MARK: raw formats

    @Test func nv12HonoursBytesPerLineAndHeightPadding() throws {
        let w = 64, h = 36, bpl = 96, paddedH = 48
        let src = NV12Buffer(width: w, height: h)
        for row in 0..<h { for x in 0..<w { src.view.y[row * src.layout.strideY + x] = UInt8((row * 7 + x) & 0xFF) } }
        for row in 0..<h / 2 { for x in 0..<w { src.view.uv[row * src.layout.strideUV + x] = UInt8((200 + row + x) & 0xFF) } }
        for (yRows, sizeImage) in [(h, bpl * h * 3 / 2), (paddedH, bpl * paddedH * 3 / 2)] {
            // The driver's buffer: rows bpl apart, the UV plane after `yRows` (padded) rows.
            var driver = [UInt8](repeating: 0xEE, count: sizeImage)
            for row in 0..<h { for x in 0..<w { driver[row * bpl + x] = src.view.y[row * src.layout.strideY + x] } }
            for row in 0..<h / 2 { for x in 0..<w { driver[yRows * bpl + row * bpl + x] = src.view.uv[row * src.layout.strideUV + x] } }
            let converter = CameraFrameConverter(format: .nv12, width: w, height: h, bytesPerLine: bpl, sizeImage: sizeImage)
            let out = NV12Buffer(width: w, height: h)
            try driver.withUnsafeBytes { try converter.convert($0, into: out.view) }
            #expect(memcmp(out.bytes, src.bytes, src.layout.byteCount) == 0, "UV plane after \(yRows) rows")
            // One byte short of the last UV row: dropped as truncated, not read past the end.
            #expect(converter.minimumBytes == yRows * bpl + (h / 2) * bpl)
            #expect(throws: FrameDropReason.truncated(got: converter.minimumBytes - 1, need: converter.minimumBytes)) {
                try driver.withUnsafeBytes {
                    try converter.convert(UnsafeRawBufferPointer(rebasing: $0[0..<(converter.minimumBytes - 1)]), into: out.view)
                }
            }
        }
    }

    @Test func yuyvWithStrideMatchesThePerPixelDefinition() throws {
        let w = 34, h = 10, bpl = 80  // odd pair count and row padding
        var yuyv = [UInt8](repeating: 0x33, count: bpl * h)
        for row in 0..<h { for x in 0..<w {
            yuyv[row * bpl + 2 * x] = UInt8((x * 5 + row * 3) & 0xFF)
            yuyv[row * bpl + 2 * x + 1] = x % 2 == 0 ? UInt8(60 + row * 4) : UInt8(180 - row * 4)
        } }
        let converter = CameraFrameConverter(format: .yuyv, width: w, height: h, bytesPerLine: bpl, sizeImage: bpl * h)
        let out = NV12Buffer(width: w, height: h)
        try yuyv.withUnsafeBytes { try converter.convert($0, into: out.view) }
        let v = out.view
        for row in 0..<h { for x in 0..<w { #expect(v.y[row * v.layout.strideY + x] == yuyv[row * bpl + 2 * x]) } }
        for row in 0..<h / 2 { for pair in 0..<w / 2 {
            let u = (Int(yuyv[2 * row * bpl + 4 * pair + 1]) + Int(yuyv[(2 * row + 1) * bpl + 4 * pair + 1]) + 1) / 2
            let vv = (Int(yuyv[2 * row * bpl + 4 * pair + 3]) + Int(yuyv[(2 * row + 1) * bpl + 4 * pair + 3]) + 1) / 2
            #expect(abs(Int(v.uv[row * v.layout.strideUV + 2 * pair]) - u) <= 1)
            #expect(abs(Int(v.uv[row * v.layout.strideUV + 2 * pair + 1]) - vv) <= 1)
        } }
    }

    @Test func oddSizesAreCroppedToEven() throws {
        let converter = CameraFrameConverter(format: .yuyv, width: 641, height: 481, bytesPerLine: 641 * 2, sizeImage: 641 * 2 * 481)
        #expect(converter.outputWidth == 640 && converter.outputHeight == 480)
        let bytes = [UInt8](repeating: 128, count: 641 * 2 * 481)
        let out = NV12Buffer(width: 640, height: 480)
        try bytes.withUnsafeBytes { try converter.convert($0, into: out.view) }
        #expect(out.view.y[0] == 128)
    }

    // MARK: intake bookkeeping

    @Test func sequenceGapsErrorFlagAndEmptyBuffersAreCountedAndReachSourceDropped() throws {
        let w = 16, h = 8
        let frame = [UInt8](repeating: 100, count: w * h * 3 / 2)
        let intake = CameraFrameIntake(converter: CameraFrameConverter(format: .nv12, width: w, height: h, bytesPerLine: w,
                                                                         sizeImage: frame.count))
        func take(_ seq: UInt32, flags: UInt32 = 0, used: Int? = nil) -> IntakeOutcome {
            frame.withUnsafeBytes { intake.take($0, bytesUsed: UInt32(used ?? frame.count), flags: flags, sequence: seq) }
        }
        #expect(take(0).delivered && take(1).sourceDropped == 0)
        let gap = take(4)  // the driver skipped 2 and 3
        #expect(gap.delivered && gap.gap == 2 && gap.sourceDropped == 2)
        #expect(take(5, flags: CV4L2_BUF_FLAG_ERROR).dropped == .errorFlag)
        #expect(take(6, used: 0).dropped == .empty)
        #expect(take(7, used: 10).dropped == .corrupt)  // too short for NV12
        let next = take(8)
        #expect(next.delivered && next.sourceDropped == 3)
        var s = intake.stats
        #expect(s.frames == 4 && s.sequenceGaps == 2 && s.errorBuffers == 1 && s.emptyBuffers == 1 && s.corruptFrames == 1)
        #expect(s.dropped == 5)
        // Wrap-around and a restarted stream are not losses.
        #expect(take(UInt32.max).gap == 0)  // 8 → max: a jump backwards in effect, not a loss
        #expect(take(0).gap == 0)
        intake.streamRestarted()
        #expect(take(100).gap == 0 && take(101).gap == 0)
        s = intake.stats
        #expect(s.sequenceGaps == 2)
    }
}
