import Capture

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
        v == v.rounded() ? String(Int(v)) : ConsoleLine.fixed(v, 3)
    }
}
