import Client
import CamclassDaemon
import WireFormat
import Capture
import Logging
import Support

/// `camclass cameras`: the V4L2 nodes with driver, card, bus, formats, sizes and frame rates
/// (the information of `v4l2-ctl --list-formats-ext`, one line per size) and the stable links.
public enum CameraListing {
    /// Describes every /dev/video* node: the listing text, and whether any capture camera was found.
    public static func list(showAll: Bool) -> (text: String, found: Bool) {
        let cameras = V4L2Discovery.describeAll()
        return (render(cameras, showAll: showAll), cameras.contains(where: \.isCamera))
    }

    public static func render(_ cameras: [CameraDescription], showAll: Bool = false) -> String {
        var out = ""
        let usable = cameras.filter(\.isCamera)
        if cameras.isEmpty { return "no V4L2 devices (/dev/video*) found\n" }
        for d in cameras {
            guard d.isCamera else {
                if showAll { out += "\(d.path): skipped: \(d.problem ?? "?")\n" }
                continue
            }
            let c = d.capabilities!
            out += "\(d.path): \(c.card)\n"
            out += "    driver: \(c.driver) \(c.versionString), bus: \(c.busInfo)\n"
            if d.links.isEmpty {
                out += "    stable path: none (no udev /dev/v4l/by-id link)\n"
            } else {
                for link in d.links { out += "    stable path: \(link)\n" }
            }
            for (i, f) in d.formats.enumerated() {
                let usableTag = CameraPixelFormat(fourcc: f.fourcc) != nil && !f.emulated ? "  [camclassd can use]" : ""
                var flags: [String] = []
                if f.compressed { flags.append("compressed") }
                if f.emulated { flags.append("emulated by libv4l2") }
                let flagText = flags.isEmpty ? "" : " (\(flags.joined(separator: ", ")))"
                out += "    [\(i)] '\(fourccString(f.fourcc))' \(f.description)\(flagText)\(usableTag)\n"
                if let s = f.stepwise {
                    out += "        sizes: \(s.minWidth)x\(s.minHeight) to \(s.maxWidth)x\(s.maxHeight), step \(s.stepWidth)x\(s.stepHeight)\n"
                }
                if f.sizes.isEmpty { out += "        sizes: not enumerated by the driver\n" }
                for size in f.sizes {
                    out += "        \(size.width)x\(size.height): \(rates(size.intervals))\n"
                }
            }
        }
        let skipped = cameras.count - usable.count
        if usable.isEmpty { out += "no capture cameras among \(cameras.count) video node(s)\n" }
        if skipped > 0 && !showAll {
            out += "(\(skipped) other video node(s) skipped: metadata or output nodes, or not openable; --all says why)\n"
        }
        return out
    }

    static func rates(_ i: FrameIntervals) -> String {
        switch i {
        case .unknown: return "rate not enumerated"
        case .discrete(let list):
            return list.map { fps($0.fps) }.joined(separator: ", ") + " fps"
        case .range(let fastest, let slowest):
            return "\(fps(slowest.fps)) to \(fps(fastest.fps)) fps"
        }
    }

    static func fps(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(fixed: v, decimals: 3)
    }
}

/// `camclass cameras --stream PATH`: the capture path alone (no model) for N frames — what a
/// camera delivers through camclassd's own capture code: negotiated format, frame rate, drops and
/// timestamp sanity. Runs on a thread named like the daemon's capture thread.
public enum CameraProbe {
    public struct Result: Sendable {
        public var format: NegotiatedFormat?
        public var frames = 0
        public var seconds = 0.0
        public var stats = CameraStats()
        /// Every capture timestamp later than the one before.
        public var increasing = true
        public var error: String?
    }

    public static func run(options: CameraOptions, frames: Int, logger: Logger) -> Result {
        let camera = V4L2Camera(options: options, logger: logger)
        let box = ResultBox()
        let thread = DedicatedThread(name: "camclass-capture") {
            var r = Result()
            do {
                try camera.prepare()
                try camera.open()
                let start = Clock.monotonicNs()
                var last: UInt64 = 0
                while r.frames < frames {
                    guard let frame = try camera.nextFrame() else { break }
                    if frame.info.captureNs <= last { r.increasing = false }
                    last = frame.info.captureNs
                    r.frames += 1
                }
                r.seconds = Double(Clock.monotonicNs() - start) / 1e9
                r.format = camera.format
                camera.close()
            } catch {
                r.error = "\(error)"
            }
            r.stats = camera.stats
            box.set(r)
        }
        thread.join()
        return box.get()
    }

    /// `run` with the camera settings of `config`: the report, and whether frames came.
    public static func stream(path: String, config: DaemonConfig, frames: Int, logger: Logger) -> (text: String, ok: Bool) {
        let o = config.camera.at(path: path)
        let r = run(options: o, frames: frames, logger: logger)
        return (report(r, path: path), r.error == nil && r.frames == frames)
    }

    public static func report(_ r: Result, path: String) -> String {
        if let e = r.error { return "\(path): \(e)\n" }
        var s = ""
        if let f = r.format {
            s += "\(path): \(f.format.rawValue) \(f.width)x\(f.height)"
            s += f.fps.map { " at \(CameraListing.fps($0)) fps" } ?? ""
            s += " (\(f.driver), \(f.device), \(f.buffers) buffers, \(f.exact ? "as requested" : "closest to the request"))\n"
        }
        let fps = r.seconds > 0 ? Double(max(0, r.frames - 1)) / r.seconds : 0
        s += "captured \(r.frames) frames in \(String(fixed: r.seconds, decimals: 2)) s: \(String(fixed: fps, decimals: 2)) fps; "
        s += "driver skipped \(r.stats.sequenceGaps), error buffers \(r.stats.errorBuffers), empty \(r.stats.emptyBuffers), "
        s += "corrupt \(r.stats.corruptFrames), stalls \(r.stats.stalls), losses \(r.stats.losses); "
        s += r.increasing ? "timestamps increasing\n" : "timestamps NOT increasing\n"
        return s
    }

    private final class ResultBox: @unchecked Sendable {
        private let lock = Condition()
        private var value = Result()
        func set(_ r: Result) { lock.locked { value = r } }
        func get() -> Result { lock.locked { value } }
    }
}
