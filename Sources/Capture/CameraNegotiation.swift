import CV4L2

/// The camera pixel formats the capture loop converts to NV12 (straight into a pool buffer).
public enum CameraPixelFormat: String, Sendable, CaseIterable, Equatable {
    case nv12 = "NV12"
    case yuyv = "YUYV"
    case mjpeg = "MJPEG"

    /// Config spelling, case-insensitive; the usual aliases (YUY2, MJPG, JPEG) are accepted.
    public init?(configName: String) {
        switch configName.uppercased() {
        case "NV12": self = .nv12
        case "YUYV", "YUY2": self = .yuyv
        case "MJPEG", "MJPG", "JPEG": self = .mjpeg
        default: return nil
        }
    }

    /// The format a driver fourcc stands for (UVC cameras say MJPG, some drivers JPEG).
    public init?(fourcc: UInt32) {
        switch fourcc {
        case CV4L2_PIX_FMT_NV12: self = .nv12
        case CV4L2_PIX_FMT_YUYV: self = .yuyv
        case CV4L2_PIX_FMT_MJPEG, CV4L2_PIX_FMT_JPEG: self = .mjpeg
        default: return nil
        }
    }
}

/// "YUYV" from 0x56595559 (V4L2 fourccs are four ASCII bytes, little-endian).
public func fourccString(_ v: UInt32) -> String {
    let bytes = (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    let printable = bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    return printable ? String(decoding: bytes, as: UTF8.self).trimmingTrailingSpaces : "0x" + String(v, radix: 16)
}

extension String {
    fileprivate var trimmingTrailingSpaces: String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// A frame interval (seconds per frame as a fraction, as V4L2 states it).
public struct FrameInterval: Sendable, Equatable {
    public var numerator: UInt32
    public var denominator: UInt32
    public init(numerator: UInt32, denominator: UInt32) {
        self.numerator = numerator
        self.denominator = denominator
    }
    /// The interval closest to `fps` frames per second (millisecond-fraction precision).
    public init(fps: Double) {
        numerator = 1000
        // fps comes from configuration: NaN, infinities and out-of-range values clamp, never trap.
        let d = (fps * 1000).rounded()
        denominator = d.isNaN ? 1000 : UInt32(max(1, min(Double(UInt32.max), d)))
    }
    public var fps: Double { numerator == 0 ? 0 : Double(denominator) / Double(numerator) }
}

/// The frame rates a driver offers at one frame size.
public enum FrameIntervals: Sendable, Equatable {
    case discrete([FrameInterval])
    /// Stepwise or continuous: any rate between the two (`fastest` has the smaller interval).
    case range(fastest: FrameInterval, slowest: FrameInterval)
    /// The driver does not enumerate intervals (VIDIOC_ENUM_FRAMEINTERVALS unsupported).
    case unknown
}

/// A frame size the driver offers, with its rates.
public struct FrameSizeOption: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var intervals: FrameIntervals
    public init(width: Int, height: Int, intervals: FrameIntervals) {
        self.width = width
        self.height = height
        self.intervals = intervals
    }
}

/// A stepwise/continuous frame size range, as VIDIOC_ENUM_FRAMESIZES states it.
public struct StepwiseSize: Sendable, Equatable {
    public var minWidth, maxWidth, stepWidth: Int
    public var minHeight, maxHeight, stepHeight: Int
    public init(minWidth: Int, maxWidth: Int, stepWidth: Int, minHeight: Int, maxHeight: Int, stepHeight: Int) {
        self.minWidth = minWidth; self.maxWidth = maxWidth; self.stepWidth = max(1, stepWidth)
        self.minHeight = minHeight; self.maxHeight = maxHeight; self.stepHeight = max(1, stepHeight)
    }
}

/// One VIDIOC_ENUM_FMT entry with its sizes. For a stepwise range, `sizes` holds the candidate(s)
/// worth considering (the size closest to the request, with its rates) and `stepwise` the range.
public struct FormatOption: Sendable, Equatable {
    public var fourcc: UInt32
    public var description: String
    public var compressed: Bool
    /// Converted by libv4l2 in user space, not produced by the driver: never chosen (it would cost
    /// a second conversion on the capture thread).
    public var emulated: Bool
    public var sizes: [FrameSizeOption]
    public var stepwise: StepwiseSize?
    public init(fourcc: UInt32, description: String, compressed: Bool = false, emulated: Bool = false,
                sizes: [FrameSizeOption], stepwise: StepwiseSize? = nil) {
        self.fourcc = fourcc
        self.description = description
        self.compressed = compressed
        self.emulated = emulated
        self.sizes = sizes
        self.stepwise = stepwise
    }
}

/// What the configuration asks of a camera.
public struct CameraRequest: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var fps: Double
    /// Preference order: the first one that delivers the requested size and rate wins.
    public var formats: [CameraPixelFormat]
    /// The largest frame the pipeline's pool can hold (set when renegotiating after a replug).
    public var maxWidth: Int?
    public var maxHeight: Int?
    public init(width: Int, height: Int, fps: Double, formats: [CameraPixelFormat],
                maxWidth: Int? = nil, maxHeight: Int? = nil) {
        self.width = width
        self.height = height
        self.fps = fps
        self.formats = formats
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
    }
}

/// The negotiation's answer, before S_FMT/S_PARM (the driver may still adjust).
public struct CameraChoice: Sendable, Equatable {
    public var format: CameraPixelFormat
    public var fourcc: UInt32
    public var width: Int
    public var height: Int
    /// nil when the driver does not enumerate rates (S_PARM is then asked for the requested fps).
    public var interval: FrameInterval?
    /// Exactly the requested size at (about) the requested rate.
    public var exact: Bool
}

/// Format, size and rate selection as pure functions (unit-tested without a device).
public enum CameraNegotiation {
    /// A rate within this fraction below the request counts as meeting it (25 fps for 30 requested
    /// does not; 29.97 does).
    static let fpsTolerance = 0.05

    /// Picks the format, size and rate for `request` among `formats`.
    /// Rule: in preference order, the first format that offers the requested size at (about) the
    /// requested rate wins. If none does, the closest match wins: smallest size difference, then
    /// smallest rate shortfall, then preference. Emulated formats and formats not in the request's
    /// list are never chosen. Returns nil when nothing usable is offered (or nothing fits the limit).
    public static func choose(from formats: [FormatOption], request: CameraRequest) -> CameraChoice? {
        var best: (choice: CameraChoice, score: (Int, Double, Int))?
        for (preference, wanted) in request.formats.enumerated() {
            guard let offered = formats.first(where: { !$0.emulated && CameraPixelFormat(fourcc: $0.fourcc) == wanted }),
                  let size = closestSize(offered.sizes, width: request.width, height: request.height,
                                         maxWidth: request.maxWidth, maxHeight: request.maxHeight)
            else { continue }
            let interval = closestInterval(size.intervals, fps: request.fps)
            let fps = interval?.fps ?? request.fps  // unknown rates: assume the driver honours S_PARM
            let shortfall = max(0, request.fps - fps) / max(request.fps, 1e-9)
            let exactSize = size.width == request.width && size.height == request.height
            let exact = exactSize && shortfall <= fpsTolerance
            let choice = CameraChoice(format: wanted, fourcc: offered.fourcc, width: size.width, height: size.height,
                                      interval: interval, exact: exact)
            if exact { return choice }
            let score = (sizeDistance(size.width, size.height, request.width, request.height), shortfall, preference)
            if best == nil || score < best!.score { best = (choice, score) }
        }
        return best?.choice
    }

    static func sizeDistance(_ w: Int, _ h: Int, _ rw: Int, _ rh: Int) -> Int { abs(w - rw) + abs(h - rh) }

    /// The offered size closest to the request (|Δw| + |Δh|; ties go to the larger size, which
    /// scales down better), among those within the limit.
    public static func closestSize(_ sizes: [FrameSizeOption], width: Int, height: Int,
                                   maxWidth: Int? = nil, maxHeight: Int? = nil) -> FrameSizeOption? {
        var best: FrameSizeOption?
        for s in sizes {
            if let maxWidth, s.width > maxWidth { continue }
            if let maxHeight, s.height > maxHeight { continue }
            guard let b = best else { best = s; continue }
            let d = sizeDistance(s.width, s.height, width, height), bd = sizeDistance(b.width, b.height, width, height)
            if d < bd || (d == bd && s.width * s.height > b.width * b.height) { best = s }
        }
        return best
    }

    /// The offered rate closest to `fps` (ties go to the faster one); nil when rates are unknown.
    public static func closestInterval(_ intervals: FrameIntervals, fps: Double) -> FrameInterval? {
        switch intervals {
        case .unknown:
            return nil
        case .discrete(let list):
            var best: FrameInterval?
            for i in list where i.numerator > 0 && i.denominator > 0 {
                guard let b = best else { best = i; continue }
                let d = abs(i.fps - fps), bd = abs(b.fps - fps)
                if d < bd - 1e-9 || (abs(d - bd) <= 1e-9 && i.fps > b.fps) { best = i }
            }
            return best
        case .range(let fastest, let slowest):
            let clamped = min(max(fps, slowest.fps), fastest.fps)
            if clamped == fastest.fps { return fastest }
            if clamped == slowest.fps { return slowest }
            return FrameInterval(fps: clamped)
        }
    }

    /// The size of a stepwise range closest to the request: clamped, then rounded to the step.
    public static func stepwiseSize(_ s: StepwiseSize, width: Int, height: Int) -> (width: Int, height: Int) {
        func fit(_ v: Int, _ lo: Int, _ hi: Int, _ step: Int) -> Int {
            // Driver answers: a zero step (seen for "continuous" ranges) or hi < lo must not trap.
            let step = max(1, step), hi = max(lo, hi)
            let c = min(max(v, lo), hi)
            let steps = (c - lo + step / 2) / step
            return min(hi, lo + steps * step)
        }
        return (fit(width, s.minWidth, s.maxWidth, s.stepWidth), fit(height, s.minHeight, s.maxHeight, s.stepHeight))
    }
}
