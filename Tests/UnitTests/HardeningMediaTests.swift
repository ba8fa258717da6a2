import CamclassTestSupport
import Client
import WireFormat
import CTurboJPEG
import Capture
import Foundation
import Glibc
import ImageOps
import Logging
import Support
import Synchronization
import Testing

/// Issue 11, media intake: F7 (pixel bomb), F13 (bad files in a replay folder), F14 (CMYK),
/// F15 (FIFO named *.jpg). Needs no environment: every JPEG is made here with libjpeg-turbo.
@Suite("Hardening: replay and MJPEG intake", .serialized)
struct HardeningMediaTests {
    // MARK: test images

    /// A real JPEG of `width` x `height` (a gradient), made with libjpeg-turbo.
    static func jpeg(width: Int = 64, height: Int = 48) throws -> [UInt8] {
        let b = NV12Buffer(width: width, height: height)
        let v = b.view
        for y in 0..<height { for x in 0..<width { v.y[y * v.layout.strideY + x] = UInt8((x * 3 + y) & 0xFF) } }
        for y in 0..<height / 2 { (v.uv + y * v.layout.strideUV).update(repeating: 128, count: width) }
        return try JPEGEncoder.encode(v.readOnly, subsampling: .s420, quality: 80)
    }

    /// The same small JPEG with its SOF header patched to claim `width` x `height`: a few hundred
    /// bytes that ask a naive decoder for width*height*3 bytes (the outsider's 631-byte file).
    static func pixelBomb(width: Int = 60000, height: Int = 60000) throws -> [UInt8] {
        var bytes = try jpeg(width: 16, height: 16)
        guard let sof = (0..<bytes.count - 9).first(where: { bytes[$0] == 0xFF && (bytes[$0 + 1] == 0xC0 || bytes[$0 + 1] == 0xC2) }) else {
            throw JPEGDecodeError.corrupt("no SOF marker in the test JPEG")
        }
        // FF C0, length (2), precision (1), height (2), width (2).
        bytes[sof + 5] = UInt8(height >> 8); bytes[sof + 6] = UInt8(height & 0xFF)
        bytes[sof + 7] = UInt8(width >> 8); bytes[sof + 8] = UInt8(width & 0xFF)
        return bytes
    }

    /// A CMYK JPEG (Adobe marker, YCCK inside) of one colour, made with tjCompress2 from CMYK
    /// pixels stored as Adobe does: inverted, 255 = no ink.
    static func cmykJPEG(width: Int = 32, height: Int = 32, stored cmyk: (UInt8, UInt8, UInt8, UInt8)) throws -> [UInt8] {
        var pixels = [UInt8]()
        for _ in 0..<(width * height) { pixels += [cmyk.0, cmyk.1, cmyk.2, cmyk.3] }
        guard let h = tjInitCompress() else { throw JPEGDecodeError.corrupt("tjInitCompress") }
        defer { tjDestroy(h) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let rc = tjCompress2(h, pixels, Int32(width), 0, Int32(height), Int32(TJPF_CMYK.rawValue), &out, &size,
                             Int32(TJSAMP_444.rawValue), 95, 0)
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else { throw JPEGDecodeError.corrupt("tjCompress2(CMYK) failed") }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    static func write(_ bytes: [UInt8], to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    // MARK: F7

    /// F7: a replay file whose header claims 60000x60000 is refused from the header, with a clear
    /// error, instead of allocating ~10 GB. Before: NV12Buffer(60000x60000) then 25 GB of RGB/ARGB.
    @Test func pixelBombInReplayIsRefusedFromItsHeader() throws {
        let dir = TestEnv.tempDir("bomb")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.write(try Self.pixelBomb(), to: dir + "/bomb.jpg")
        #expect(try Self.pixelBomb().count < 1024)
        let start = Clock.monotonicNs()
        do {
            _ = try ReplaySource(path: dir, fps: 0, loop: false)
            Issue.record("a replay of only a pixel bomb must fail")
        } catch let ReplayError.noUsableFiles(path: _, skipped: skipped) {
            #expect(skipped.count == 1)
            #expect(skipped.first?.reason.contains("60000x60000") == true)
            #expect(skipped.first?.reason.contains("limit of 40000000 pixels") == true, "\(skipped)")
            let e = ReplayError.noUsableFiles(path: dir, skipped: skipped)
            #expect("\(e)".contains("bomb.jpg"))
        }
        #expect(Clock.monotonicNs() - start < 5_000_000_000, "refused from the header, not after decoding")
    }

    /// F7: the limit is a setting (ReplaySource's `maxPixels`): a 64x48 photo is over a 1000-pixel limit.
    @Test func replayPixelLimitIsConfigurable() throws {
        let dir = TestEnv.tempDir("limit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.write(try Self.jpeg(width: 64, height: 48), to: dir + "/a.jpg")
        #expect(throws: ReplayError.self) { try ReplaySource(path: dir, fps: 0, loop: false, maxPixels: 1000) }
        let ok = try ReplaySource(path: dir, fps: 0, loop: false, maxPixels: 64 * 48)
        #expect(ok.fileNames == ["a.jpg"])
        // Raw NV12 named with an absurd size: refused by the limit, no overflow trap on W*H.
        Self.write([0, 0, 0], to: dir + "/huge_4000000000x4000000000.nv12")
        let mixed = try ReplaySource(path: dir, fps: 0, loop: false)
        #expect(mixed.fileNames == ["a.jpg"])
        #expect(mixed.skipped.map(\.reason).first?.contains("over the limit") == true, "\(mixed.skipped)")
    }

    /// F7, camera side: an MJPEG frame whose header claims another size than the negotiated one is
    /// refused by the worker's decoder from its header (no 60000x60000 decode), and the next good
    /// frame still converts. MJPEG frames are judged on the worker, so the capture side delivers both.
    @Test func mjpegFrameWithForeignHeaderSizeIsRefusedBeforeDecoding() throws {
        let converter = CameraFrameConverter(format: .mjpeg, width: 64, height: 48, bytesPerLine: 0, sizeImage: 64 * 48 * 2)
        let intake = CameraFrameIntake(converter: converter)
        let worker = ModelInputConverter(maxWidth: 64, maxHeight: 48, inputWidth: 32, inputHeight: 32)
        let input = NV12Buffer(width: 32, height: 32)
        let bomb = try Self.pixelBomb()
        try bomb.withUnsafeBytes { raw in
            let out = intake.take(raw, bytesUsed: UInt32(raw.count), flags: 0, sequence: 1)
            #expect(out.delivered)
            let payload = try #require(out.payload)
            #expect(throws: FrameConversionError.self) { try worker.convert(payload, into: input.view, mode: .crop) }
            do { try worker.convert(payload, into: input.view, mode: .crop) } catch {
                #expect("\(error)".contains("60000x60000"), "\(error)")
            }
        }
        let good = try Self.jpeg(width: 64, height: 48)
        try good.withUnsafeBytes { raw in
            let next = intake.take(raw, bytesUsed: UInt32(raw.count), flags: 0, sequence: 2)
            #expect(next.delivered)
            try worker.convert(try #require(next.payload), into: input.view, mode: .crop)
        }
    }

    // MARK: F13

    /// F13: one empty, one corrupt, one text and one truncated file among good photos: the replay
    /// runs on the good ones, each bad file logged once (warning) and listed in `skipped`.
    /// Before: the first bad file refused the whole replay (exit 66).
    @Test func badFilesInReplayFolderAreSkippedAndCounted() throws {
        let dir = TestEnv.tempDir("mixed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try Self.jpeg(width: 64, height: 48)
        Self.write(good, to: dir + "/a-good.jpg")
        Self.write(try Self.jpeg(width: 32, height: 32), to: dir + "/z-good.jpeg")
        Self.write([], to: dir + "/b-empty.jpg")
        Self.write((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }, to: dir + "/c-random.jpg")
        Self.write(Array("this is not a photo\n".utf8), to: dir + "/d-text.jpg")
        Self.write(Array(good.prefix(good.count / 2)), to: dir + "/e-truncated.jpg")
        let capture = LogCapture()
        let replay = try ReplaySource(path: dir, fps: 0, loop: false, logger: capture.logger)
        #expect(replay.fileNames == ["a-good.jpg", "z-good.jpeg"])
        #expect(replay.skipped.map { ($0.file as NSString).lastPathComponent } ==
                ["b-empty.jpg", "c-random.jpg", "d-text.jpg", "e-truncated.jpg"])
        #expect(replay.skipped.first?.reason == "empty file")
        let warnings = capture.all.filter { $0.0 == .warning }
        #expect(warnings.count == 4, "one line per skipped file: \(capture.all)")
        // Only bad files: a clear error naming them.
        let bad = TestEnv.tempDir("allbad")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        Self.write([], to: bad + "/x.jpg")
        #expect { try ReplaySource(path: bad, fps: 0, loop: false) } throws: { error in
            "\(error)".contains("no usable image") && "\(error)".contains("x.jpg: empty file")
        }
    }

    // MARK: F14

    /// F14: a CMYK JPEG decodes (CMYK → RGB → NV12) instead of failing with libjpeg-turbo's
    /// "Unsupported color conversion request". Stored (255, 0, 0, 255) is no cyan, full magenta
    /// and yellow, no black: red, whose BT.601 limited-range NV12 is Y≈82, U≈90, V≈240.
    @Test func cmykJPEGDecodesAsRGB() throws {
        let jpeg = try Self.cmykJPEG(stored: (255, 0, 0, 255))
        let decoder = JPEGDecoder(maxWidth: 2, maxHeight: 2)
        let info = try jpeg.withUnsafeBytes { try decoder.headerInfo($0) }
        #expect(info.colorspace == Int32(TJCS_YCCK.rawValue) || info.colorspace == Int32(TJCS_CMYK.rawValue))
        let out = NV12Buffer(width: 32, height: 32)
        try jpeg.withUnsafeBytes { try decoder.decodeExact($0, into: out.view) }
        let v = out.view
        let y = Int(v.y[16 * v.layout.strideY + 16]), u = Int(v.uv[8 * v.layout.strideUV + 16]), vv = Int(v.uv[8 * v.layout.strideUV + 17])
        #expect(abs(y - 82) <= 4 && abs(u - 90) <= 4 && abs(vv - 240) <= 4, "red expected, got Y \(y) U \(u) V \(vv)")
        // And in a replay folder it is one more usable photo.
        let dir = TestEnv.tempDir("cmyk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.write(jpeg, to: dir + "/print.jpg")
        let replay = try ReplaySource(path: dir, fps: 0, loop: false)
        #expect(replay.fileNames == ["print.jpg"] && replay.skipped.isEmpty)
    }

    // MARK: F15

    /// F15: a FIFO named `*.jpg` is skipped as "not a regular file" instead of blocking open()
    /// forever. Loaded on its own thread: if open() blocks (the old code), the test fails after
    /// 10 s and unblocks it by opening the FIFO's write end.
    @Test func fifoInReplayFolderIsSkipped() throws {
        let dir = TestEnv.tempDir("fifo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.write(try Self.jpeg(), to: dir + "/a.jpg")
        #expect(mkfifo(dir + "/pipe.jpg", 0o600) == 0)
        let done = Condition()
        let result = Mutex<Result<ReplaySource, any Error>?>(nil)
        let path = dir
        let thread = DedicatedThread(name: "fifo-replay") {
            let r = Result { try ReplaySource(path: path, fps: 0, loop: false) }
            done.locked { result.withLock { $0 = r } }
            done.broadcast()
        }
        let finished = done.wait(timeoutNs: 10_000_000_000) { result.withLock { $0 != nil } }
        if !finished {
            Issue.record("ReplaySource blocked on the FIFO for 10 s")
            let w = open(dir + "/pipe.jpg", O_WRONLY | O_NONBLOCK)
            if w >= 0 { close(w) }
        }
        thread.join()
        let replay = try #require(try result.withLock { $0 }?.get())
        #expect(replay.fileNames == ["a.jpg"])
        #expect(replay.skipped.map(\.reason) == ["not a regular file"])
    }
}
