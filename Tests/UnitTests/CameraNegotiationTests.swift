import CamclassTestSupport
import Capture
import CV4L2
import Glibc
import Testing

/// Format, size and rate selection as pure functions, on format lists shaped like real drivers'.
@Suite struct CameraNegotiationTests {
    static func intervals(_ fps: [Double]) -> FrameIntervals {
        .discrete(fps.map { $0 == 12.5 ? FrameInterval(numerator: 2, denominator: 25) : FrameInterval(numerator: 1, denominator: UInt32($0)) })
    }

    static func format(_ fourcc: UInt32, _ sizes: [(Int, Int, [Double])], emulated: Bool = false) -> FormatOption {
        FormatOption(fourcc: fourcc, description: fourccString(fourcc), emulated: emulated,
                     sizes: sizes.map { FrameSizeOption(width: $0.0, height: $0.1, intervals: intervals($0.2)) })
    }

    /// vivid's webcam input: YUYV and NV12 (among many), 640x480 at up to 25 fps.
    static let vivid: [FormatOption] = [
        format(CV4L2_PIX_FMT_YUYV, [(320, 180, [60, 30, 25]), (640, 480, [25, 15, 12.5, 5]), (1280, 720, [12.5, 5])]),
        format(fourccFrom("RGB3"), [(640, 480, [25])]),
        format(CV4L2_PIX_FMT_NV12, [(320, 180, [60, 30, 25]), (640, 480, [25, 15, 12.5, 5]), (1280, 720, [12.5, 5])]),
    ]

    /// A typical UVC webcam: YUYV is USB-bandwidth limited at large sizes, MJPEG is not.
    static let uvc: [FormatOption] = [
        format(CV4L2_PIX_FMT_YUYV, [(640, 480, [30, 15]), (1280, 720, [10, 5])]),
        format(CV4L2_PIX_FMT_MJPEG, [(640, 480, [30, 15]), (1280, 720, [30, 15]), (1920, 1080, [30])]),
    ]

    static func fourccFrom(_ s: String) -> UInt32 {
        let b = Array(s.utf8)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    let defaultOrder: [CameraPixelFormat] = [.nv12, .yuyv, .mjpeg]

    @Test func fourccNamesAndAliases() {
        #expect(fourccString(CV4L2_PIX_FMT_YUYV) == "YUYV")
        #expect(fourccString(CV4L2_PIX_FMT_MJPEG) == "MJPG")
        #expect(CameraPixelFormat(fourcc: CV4L2_PIX_FMT_JPEG) == .mjpeg)
        #expect(CameraPixelFormat(configName: "mjpg") == .mjpeg && CameraPixelFormat(configName: "YUY2") == .yuyv)
        #expect(CameraPixelFormat(configName: "RGB24") == nil)
    }

    @Test func preferenceWinsWhenTheRequestIsMetExactly() {
        let r = CameraRequest(width: 640, height: 480, fps: 25, formats: defaultOrder)
        let c = CameraNegotiation.choose(from: Self.vivid, request: r)
        #expect(c?.format == .nv12 && c?.width == 640 && c?.height == 480 && c?.interval?.fps == 25 && c?.exact == true)
        var yuyvFirst = r
        yuyvFirst.formats = [.yuyv, .nv12]
        #expect(CameraNegotiation.choose(from: Self.vivid, request: yuyvFirst)?.format == .yuyv)
    }

    @Test func unreachableRateGivesTheClosestInPreferenceOrder() {
        // 30 fps is not offered at 640x480: every format falls short the same, so NV12 (first) wins at 25.
        let c = CameraNegotiation.choose(from: Self.vivid, request: CameraRequest(width: 640, height: 480, fps: 30, formats: defaultOrder))
        #expect(c?.format == .nv12 && c?.interval?.fps == 25 && c?.exact == false)
    }

    @Test func aFormatThatMeetsTheRequestBeatsAPreferredOneThatDoesNot() {
        // 720p30: YUYV only does 10 fps there, MJPEG does 30 — MJPEG, although YUYV is preferred.
        let hd = CameraNegotiation.choose(from: Self.uvc, request: CameraRequest(width: 1280, height: 720, fps: 30, formats: defaultOrder))
        #expect(hd?.format == .mjpeg && hd?.exact == true && hd?.interval?.fps == 30)
        // 480p30: YUYV does it, and comes before MJPEG.
        let sd = CameraNegotiation.choose(from: Self.uvc, request: CameraRequest(width: 640, height: 480, fps: 30, formats: defaultOrder))
        #expect(sd?.format == .yuyv && sd?.exact == true)
        // Without MJPEG in the list, YUYV at 10 fps is the closest.
        let yuyvOnly = CameraNegotiation.choose(from: Self.uvc, request: CameraRequest(width: 1280, height: 720, fps: 30, formats: [.yuyv]))
        #expect(yuyvOnly?.format == .yuyv && yuyvOnly?.interval?.fps == 10 && yuyvOnly?.exact == false)
    }

    @Test func emulatedAndUnlistedFormatsAreNeverChosen() {
        let formats = [Self.format(CV4L2_PIX_FMT_NV12, [(640, 480, [30])], emulated: true),
                       Self.format(CV4L2_PIX_FMT_MJPEG, [(640, 480, [30])])]
        #expect(CameraNegotiation.choose(from: formats, request: CameraRequest(width: 640, height: 480, fps: 30, formats: defaultOrder))?.format == .mjpeg)
        #expect(CameraNegotiation.choose(from: formats, request: CameraRequest(width: 640, height: 480, fps: 30, formats: [.nv12, .yuyv])) == nil)
        let rgbOnly = [Self.format(Self.fourccFrom("RGB3"), [(640, 480, [30])])]
        #expect(CameraNegotiation.choose(from: rgbOnly, request: CameraRequest(width: 640, height: 480, fps: 30, formats: defaultOrder)) == nil)
    }

    @Test func closestSizeAndTies() {
        let sizes = [(320, 240), (640, 360), (640, 480), (800, 600), (1280, 720)].map {
            FrameSizeOption(width: $0.0, height: $0.1, intervals: .unknown)
        }
        func pick(_ w: Int, _ h: Int, maxW: Int? = nil, maxH: Int? = nil) -> String? {
            CameraNegotiation.closestSize(sizes, width: w, height: h, maxWidth: maxW, maxHeight: maxH).map { "\($0.width)x\($0.height)" }
        }
        #expect(pick(640, 480) == "640x480")
        #expect(pick(648, 486) == "640x480")
        #expect(pick(1920, 1080) == "1280x720")
        #expect(pick(100, 100) == "320x240")
        // 720x540 is 200 from both 640x480 and 800x600: the larger one scales down better.
        #expect(pick(720, 540) == "800x600")
        // The pool limit after a replug excludes larger sizes.
        #expect(pick(1280, 720, maxW: 640, maxH: 480) == "640x480")
        #expect(pick(1280, 720, maxW: 100, maxH: 100) == nil)
    }

    @Test func closestRate() {
        let list = Self.intervals([30, 25, 15, 12.5, 5])
        #expect(CameraNegotiation.closestInterval(list, fps: 24)?.fps == 25)
        #expect(CameraNegotiation.closestInterval(list, fps: 100)?.fps == 30)
        #expect(CameraNegotiation.closestInterval(list, fps: 13)?.fps == 12.5)
        // 20 is 5 from both 25 and 15: the faster one.
        #expect(CameraNegotiation.closestInterval(list, fps: 20)?.fps == 25)
        #expect(CameraNegotiation.closestInterval(.unknown, fps: 30) == nil)
        let range = FrameIntervals.range(fastest: FrameInterval(numerator: 1, denominator: 60),
                                         slowest: FrameInterval(numerator: 1, denominator: 1))
        #expect(CameraNegotiation.closestInterval(range, fps: 120)?.fps == 60)
        #expect(CameraNegotiation.closestInterval(range, fps: 0.5)?.fps == 1)
        #expect(abs((CameraNegotiation.closestInterval(range, fps: 29.97)?.fps ?? 0) - 29.97) < 0.001)
    }

    @Test func stepwiseSizesClampAndRoundToTheStep() {
        let s = StepwiseSize(minWidth: 16, maxWidth: 1920, stepWidth: 16, minHeight: 16, maxHeight: 1080, stepHeight: 8)
        #expect(CameraNegotiation.stepwiseSize(s, width: 640, height: 480) == (640, 480))
        #expect(CameraNegotiation.stepwiseSize(s, width: 650, height: 483) == (656, 480))
        #expect(CameraNegotiation.stepwiseSize(s, width: 4000, height: 4000) == (1920, 1080))
        #expect(CameraNegotiation.stepwiseSize(s, width: 1, height: 1) == (16, 16))
    }

    @Test func driverThatEnumeratesNoRatesAssumesTheRequestedOne() {
        let formats = [FormatOption(fourcc: CV4L2_PIX_FMT_YUYV, description: "YUYV",
                                    sizes: [FrameSizeOption(width: 640, height: 480, intervals: .unknown)])]
        let c = CameraNegotiation.choose(from: formats, request: CameraRequest(width: 640, height: 480, fps: 30, formats: defaultOrder))
        #expect(c?.format == .yuyv && c?.interval == nil && c?.exact == true)
    }

    @Test func errorsSayWhatToDo() {
        let perm = CameraError.from(errno: EACCES, call: "open", path: "/dev/video0", opening: true)
        #expect(perm == .permissionDenied(path: "/dev/video0"))
        #expect("\(perm)".contains("'video' group"))
        let busy = CameraError.from(errno: EBUSY, call: "VIDIOC_S_FMT", path: "/dev/video0")
        #expect("\(busy)".contains("used by another process"))
        #expect(CameraError.from(errno: ENOENT, call: "open", path: "/dev/video9", opening: true) == .notFound(path: "/dev/video9"))
        #expect(CameraError.from(errno: ENODEV, call: "VIDIOC_DQBUF", path: "/dev/video0").isAbsence)
        #expect(!busy.isAbsence && !perm.isAbsence)
    }
}
