import CV4L2
import Glibc
import Support

/// What VIDIOC_QUERYCAP says about a node.
public struct V4L2Capabilities: Sendable, Equatable {
    public var driver: String
    public var card: String
    public var busInfo: String
    public var version: UInt32
    public var capabilities: UInt32
    public var deviceCaps: UInt32

    /// The node's own capabilities: `capabilities` covers the whole device (all its nodes) when
    /// the driver sets V4L2_CAP_DEVICE_CAPS, so `device_caps` is the one that describes this node.
    public var effective: UInt32 { capabilities & CV4L2_CAP_DEVICE_CAPS != 0 ? deviceCaps : capabilities }
    public var isCapture: Bool { effective & CV4L2_CAP_VIDEO_CAPTURE != 0 }
    public var isStreaming: Bool { effective & CV4L2_CAP_STREAMING != 0 }
    public var versionString: String { "\(version >> 16).\((version >> 8) & 0xFF).\(version & 0xFF)" }

    /// Why this node cannot be a camera for the capture loop, or nil when it can.
    public var unusableReason: String? {
        if isCapture && isStreaming { return nil }
        if isCapture { return "it has no streaming I/O (V4L2_CAP_STREAMING)" }
        if effective & CV4L2_CAP_META_CAPTURE != 0 { return "it is a metadata node (UVC cameras add one next to the video node)" }
        if effective & CV4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 { return "it captures multi-planar buffers only, which camclassd does not support" }
        return "it has no video capture capability"
    }
}

/// The format the driver set (S_FMT's answer, which may differ from the request).
public struct V4L2Format: Sendable, Equatable {
    public var fourcc: UInt32
    public var width: Int
    public var height: Int
    public var bytesPerLine: Int
    public var sizeImage: Int
}

/// An open V4L2 node and, once streaming, its mmap'ed driver buffers. Owning the descriptor
/// and the mappings, it is not copyable: the one owner stops the stream, unmaps and closes in
/// `deinit` (also after a hot-unplug, when every call fails with ENODEV — errors are ignored there).
/// Thread context: one thread at a time (the capture thread, or the caller of `describe`).
public struct V4L2Device: ~Copyable {
    public let fd: Int32
    public let path: String
    let raw: Int32
    private var mappings: [UnsafeMutableRawBufferPointer] = []
    private var streaming = false

    /// Opens `path` non-blocking (DQBUF returns EAGAIN, `poll` does the waiting).
    /// - Parameter raw: plain open/ioctl/mmap instead of libv4l2.
    public init(path: String, raw: Bool) throws(CameraError) {
        self.path = path
        self.raw = raw ? 1 : 0
        let r = self.raw
        do {
            fd = try syscall("open") { cv4l2_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, r) }
        } catch let e as SystemCallError {
            throw CameraError.from(e, path: path, opening: true)
        } catch {
            throw CameraError.system(path: path, call: "open", errno: EIO)
        }
    }

    deinit {
        var type = Int32(bitPattern: CV4L2_BUF_TYPE_VIDEO_CAPTURE)
        if streaming { _ = cv4l2_ioctl(fd, CV4L2_VIDIOC_STREAMOFF, &type, raw) }
        for m in mappings { _ = cv4l2_munmap(m.baseAddress, m.count, raw) }
        _ = cv4l2_close(fd, raw)
    }

    // MARK: calls

    /// One ioctl, EINTR retried; returns 0 or the errno. Expected failures (EINVAL ending an
    /// enumeration, EAGAIN from a non-blocking DQBUF) are answers here, not exceptions.
    @inline(__always)
    func ioctl<T>(_ request: UInt, _ arg: inout T) -> Int32 {
        let fd = self.fd, raw = self.raw
        return withUnsafeMutablePointer(to: &arg) { p in
            while true {
                if cv4l2_ioctl(fd, request, p, raw) != -1 { return 0 }
                let e = errno
                if e != EINTR { return e }
            }
        }
    }

    func check<T>(_ request: UInt, _ name: String, _ arg: inout T) throws(CameraError) {
        let e = ioctl(request, &arg)
        if e != 0 { throw CameraError.from(errno: e, call: name, path: path) }
    }

    public func capabilities() throws(CameraError) -> V4L2Capabilities {
        var cap = v4l2_capability()
        try check(CV4L2_VIDIOC_QUERYCAP, "VIDIOC_QUERYCAP", &cap)
        return V4L2Capabilities(driver: cString(cap.driver), card: cString(cap.card), busInfo: cString(cap.bus_info),
                                version: cap.version, capabilities: cap.capabilities, deviceCaps: cap.device_caps)
    }

    /// The device number of the open node (to tell whether the path still names this device).
    public var deviceNumber: UInt {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt(st.st_rdev) : 0
    }

    /// Formats with their frame sizes and rates. With a `request`, a stepwise size range is reduced
    /// to the size closest to it; without one (listing), to its smallest and largest sizes.
    /// EINVAL ends each enumeration (that is how V4L2 says "no more").
    public func formats(for request: CameraRequest? = nil) throws(CameraError) -> [FormatOption] {
        var out: [FormatOption] = []
        var index: UInt32 = 0
        while true {
            var d = v4l2_fmtdesc()
            d.index = index
            d.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
            let e = ioctl(CV4L2_VIDIOC_ENUM_FMT, &d)
            if e == EINVAL { break }
            if e != 0 { throw CameraError.from(errno: e, call: "VIDIOC_ENUM_FMT", path: path) }
            let (sizes, stepwise) = try frameSizes(fourcc: d.pixelformat, request: request)
            out.append(FormatOption(fourcc: d.pixelformat, description: cString(d.description),
                                    compressed: d.flags & CV4L2_FMT_FLAG_COMPRESSED != 0,
                                    emulated: d.flags & CV4L2_FMT_FLAG_EMULATED != 0,
                                    sizes: sizes, stepwise: stepwise))
            index += 1
        }
        return out
    }

    private func frameSizes(fourcc: UInt32, request: CameraRequest?) throws(CameraError) -> ([FrameSizeOption], StepwiseSize?) {
        var sizes: [FrameSizeOption] = []
        var index: UInt32 = 0
        while true {
            var s = v4l2_frmsizeenum()
            s.index = index
            s.pixel_format = fourcc
            let e = ioctl(CV4L2_VIDIOC_ENUM_FRAMESIZES, &s)
            if e == EINVAL || e == ENOTTY {
                if index == 0, let request {
                    // Sizes not enumerated: offer the request; S_FMT adjusts it to what the driver can do.
                    sizes.append(FrameSizeOption(width: request.width, height: request.height, intervals: .unknown))
                }
                return (sizes, nil)
            }
            if e != 0 { throw CameraError.from(errno: e, call: "VIDIOC_ENUM_FRAMESIZES", path: path) }
            if s.type == CV4L2_FRMSIZE_TYPE_DISCRETE {
                let d = cv4l2_frmsize_discrete(&s)!.pointee
                sizes.append(FrameSizeOption(width: Int(d.width), height: Int(d.height),
                                             intervals: try intervals(fourcc: fourcc, width: d.width, height: d.height)))
                index += 1
                continue
            }
            // Stepwise/continuous: one entry describes the whole range.
            let r = cv4l2_frmsize_stepwise(&s)!.pointee
            let range = StepwiseSize(minWidth: Int(r.min_width), maxWidth: Int(r.max_width), stepWidth: Int(r.step_width),
                                     minHeight: Int(r.min_height), maxHeight: Int(r.max_height), stepHeight: Int(r.step_height))
            var candidates: [(Int, Int)]
            if let request {
                let w = min(request.width, request.maxWidth ?? Int.max), h = min(request.height, request.maxHeight ?? Int.max)
                let c = CameraNegotiation.stepwiseSize(range, width: w, height: h)
                candidates = [(c.width, c.height)]
            } else {
                candidates = [(range.minWidth, range.minHeight), (range.maxWidth, range.maxHeight)]
            }
            for (w, h) in candidates {
                sizes.append(FrameSizeOption(width: w, height: h,
                                             intervals: try intervals(fourcc: fourcc, width: UInt32(clamping: w), height: UInt32(clamping: h))))
            }
            return (sizes, range)
        }
    }

    private func intervals(fourcc: UInt32, width: UInt32, height: UInt32) throws(CameraError) -> FrameIntervals {
        var list: [FrameInterval] = []
        var index: UInt32 = 0
        while true {
            var f = v4l2_frmivalenum()
            f.index = index
            f.pixel_format = fourcc
            f.width = width
            f.height = height
            let e = ioctl(CV4L2_VIDIOC_ENUM_FRAMEINTERVALS, &f)
            if e == EINVAL || e == ENOTTY { return index == 0 ? .unknown : .discrete(list) }
            if e != 0 { throw CameraError.from(errno: e, call: "VIDIOC_ENUM_FRAMEINTERVALS", path: path) }
            if f.type == CV4L2_FRMIVAL_TYPE_DISCRETE {
                let d = cv4l2_frmival_discrete(&f)!.pointee
                list.append(FrameInterval(numerator: d.numerator, denominator: d.denominator))
                index += 1
                continue
            }
            let r = cv4l2_frmival_stepwise(&f)!.pointee
            return .range(fastest: FrameInterval(numerator: r.min.numerator, denominator: r.min.denominator),
                          slowest: FrameInterval(numerator: r.max.numerator, denominator: r.max.denominator))
        }
    }

    /// S_FMT (progressive), returning what the driver actually set.
    public func setFormat(fourcc: UInt32, width: Int, height: Int) throws(CameraError) -> V4L2Format {
        var f = v4l2_format()
        f.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
        let pix = cv4l2_format_pix(&f)!
        pix.pointee.width = UInt32(clamping: width)
        pix.pointee.height = UInt32(clamping: height)
        pix.pointee.pixelformat = fourcc
        pix.pointee.field = CV4L2_FIELD_NONE
        pix.pointee.bytesperline = 0  // the driver's choice; honoured below
        try check(CV4L2_VIDIOC_S_FMT, "VIDIOC_S_FMT", &f)
        let p = cv4l2_format_pix(&f)!.pointee
        let bpl = Int(p.bytesperline)
        return V4L2Format(fourcc: p.pixelformat, width: Int(p.width), height: Int(p.height),
                          bytesPerLine: bpl, sizeImage: Int(p.sizeimage))
    }

    /// S_PARM when the driver supports frame intervals; returns the interval it set (nil: it does
    /// not let the rate be chosen, frames come at its own pace).
    public func setInterval(_ interval: FrameInterval) throws(CameraError) -> FrameInterval? {
        var parm = v4l2_streamparm()
        parm.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
        if ioctl(CV4L2_VIDIOC_G_PARM, &parm) != 0 { return nil }
        guard cv4l2_parm_capture(&parm)!.pointee.capability & CV4L2_CAP_TIMEPERFRAME != 0 else {
            let t = cv4l2_parm_capture(&parm)!.pointee.timeperframe
            return t.numerator > 0 ? FrameInterval(numerator: t.numerator, denominator: t.denominator) : nil
        }
        let c = cv4l2_parm_capture(&parm)!
        c.pointee.timeperframe.numerator = interval.numerator
        c.pointee.timeperframe.denominator = interval.denominator
        try check(CV4L2_VIDIOC_S_PARM, "VIDIOC_S_PARM", &parm)
        let t = cv4l2_parm_capture(&parm)!.pointee.timeperframe
        return t.numerator > 0 && t.denominator > 0 ? FrameInterval(numerator: t.numerator, denominator: t.denominator) : interval
    }

    /// REQBUFS (MMAP), maps and queues every buffer, STREAMON. Returns the buffer count the driver
    /// granted (it may differ from `count`).
    public mutating func startStreaming(buffers count: Int) throws(CameraError) -> Int {
        var req = v4l2_requestbuffers()
        req.count = UInt32(clamping: count)
        req.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
        req.memory = CV4L2_MEMORY_MMAP
        try check(CV4L2_VIDIOC_REQBUFS, "VIDIOC_REQBUFS", &req)
        guard req.count > 0 else { throw CameraError.system(path: path, call: "VIDIOC_REQBUFS (0 buffers granted)", errno: ENOMEM) }
        mappings.reserveCapacity(Int(req.count))
        for i in 0..<req.count {
            var b = v4l2_buffer()
            b.index = i
            b.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
            b.memory = CV4L2_MEMORY_MMAP
            try check(CV4L2_VIDIOC_QUERYBUF, "VIDIOC_QUERYBUF", &b)
            let p = cv4l2_mmap(nil, Int(b.length), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                               Int64(cv4l2_buffer_offset(&b)), raw)
            guard let p, Int(bitPattern: p) != -1 else {
                throw CameraError.from(errno: errno, call: "mmap", path: path)
            }
            mappings.append(UnsafeMutableRawBufferPointer(start: p, count: Int(b.length)))
        }
        for i in 0..<req.count {
            var b = v4l2_buffer()
            b.index = i
            b.type = CV4L2_BUF_TYPE_VIDEO_CAPTURE
            b.memory = CV4L2_MEMORY_MMAP
            try check(CV4L2_VIDIOC_QBUF, "VIDIOC_QBUF", &b)
        }
        var type = Int32(bitPattern: CV4L2_BUF_TYPE_VIDEO_CAPTURE)
        try check(CV4L2_VIDIOC_STREAMON, "VIDIOC_STREAMON", &type)
        streaming = true
        return Int(req.count)
    }

    /// Non-blocking DQBUF into `buffer` (type and memory set by the caller): 0, EAGAIN (nothing
    /// ready) or the errno that ended the stream.
    @inline(__always)
    public func dequeue(_ buffer: inout v4l2_buffer) -> Int32 { ioctl(CV4L2_VIDIOC_DQBUF, &buffer) }

    /// QBUF: hands the buffer back to the driver; 0 or errno.
    @inline(__always)
    public func requeue(_ buffer: inout v4l2_buffer) -> Int32 { ioctl(CV4L2_VIDIOC_QBUF, &buffer) }

    /// STREAMOFF: the driver stops filling buffers and gives every queued one back; the mappings
    /// stay valid (frames still leased keep their pixels) until the device is released.
    public func stopStreaming() {
        var type = Int32(bitPattern: CV4L2_BUF_TYPE_VIDEO_CAPTURE)
        _ = ioctl(CV4L2_VIDIOC_STREAMOFF, &type)
    }

    /// The driver buffer `index` as mapped (valid while this device lives).
    public func mapping(_ index: Int) -> UnsafeRawBufferPointer? {
        index >= 0 && index < mappings.count ? UnsafeRawBufferPointer(mappings[index]) : nil
    }
}

/// A fixed-size C char array (a tuple in Swift) as a String.
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
