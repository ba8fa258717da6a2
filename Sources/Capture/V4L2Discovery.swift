import Glibc

/// One /dev/video* node as `camclass cameras` shows it.
public struct CameraDescription: Sendable {
    public var path: String
    /// udev's stable links to this node (/dev/v4l/by-id/…, /dev/v4l/by-path/…).
    public var links: [String]
    public var capabilities: V4L2Capabilities?
    public var formats: [FormatOption]
    /// Why the node cannot be opened or used (nil for a usable capture camera).
    public var problem: String?
    public var isCamera: Bool { problem == nil }
}

/// Finds V4L2 capture cameras (for `source: auto` and `camclass cameras`).
/// Thread context: any thread; it opens each node briefly.
public enum V4L2Discovery {
    /// /dev/video0, /dev/video1, … in numeric order.
    public static func videoNodes(in dir: String = "/dev") -> [String] {
        listDirectory(dir).compactMap { name -> (Int, String)? in
            guard name.hasPrefix("video"), let n = Int(name.dropFirst(5)) else { return nil }
            return (n, dir + "/" + name)
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Resolved node → the stable links udev made for it.
    public static func stableLinks() -> [String: [String]] {
        var out: [String: [String]] = [:]
        for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
            for name in listDirectory(dir).sorted() {
                let link = dir + "/" + name
                out[resolvedPath(link), default: []].append(link)
            }
        }
        return out
    }

    /// Describes every video node; unusable ones say why.
    public static func describeAll(raw: Bool = true) -> [CameraDescription] {
        let links = stableLinks()
        return videoNodes().map { describe($0, links: links[$0] ?? [], raw: raw) }
    }

    public static func describe(_ path: String, links: [String], raw: Bool = true) -> CameraDescription {
        var d = CameraDescription(path: path, links: links, capabilities: nil, formats: [], problem: nil)
        do throws(CameraError) {
            let dev = try V4L2Device(path: path, raw: raw)
            let caps = try dev.capabilities()
            d.capabilities = caps
            if let why = caps.unusableReason {
                d.problem = why
            } else {
                d.formats = try dev.formats()
            }
        } catch {
            d.problem = "\(error)"
        }
        return d
    }

    /// The first usable capture camera, preferring its by-id link (stable across replugs and
    /// renumbering); nil when there is none. Nodes that cannot be opened are reported in `skipped`.
    public static func firstCamera() -> (path: String?, skipped: [String]) {
        let links = stableLinks()
        var skipped: [String] = []
        for node in videoNodes() {
            do throws(CameraError) {
                let dev = try V4L2Device(path: node, raw: true)
                let caps = try dev.capabilities()
                guard caps.unusableReason == nil else { continue }
                let byID = (links[node] ?? []).first { $0.hasPrefix("/dev/v4l/by-id/") }
                return (byID ?? node, skipped)
            } catch {
                skipped.append("\(error)")
            }
        }
        return (nil, skipped)
    }

    static func listDirectory(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
