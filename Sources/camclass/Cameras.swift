import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass cameras`: what V4L2 capture cameras are present and what they can do; with
/// `--stream`, one camera through camclassd's capture path for a number of frames.
struct Cameras: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List V4L2 capture cameras: driver, card, bus, formats, sizes, frame rates and stable paths.",
        discussion: "--stream PATH captures --frames frames from one camera the way camclassd does (no model) and " +
            "reports the negotiated format, the frame rate, drops and timestamps.")

    @Flag(name: .long, help: "Also list video nodes that are not usable cameras, with the reason.")
    var all = false
    @Option(name: .long, help: "Capture from this camera (/dev/videoN or a /dev/v4l/by-id link) instead of listing.")
    var stream: String?
    @Option(name: .long, help: "Frames to capture with --stream.")
    var frames = 100
    @Option(name: .long, help: "With --stream: formats in order of preference (comma-separated).")
    var formats = "NV12,YUYV,MJPEG"
    @Option(name: .long, help: "With --stream: requested width.")
    var width = "640"
    @Option(name: .long, help: "With --stream: requested height.")
    var height = "480"
    @Option(name: .long, help: "With --stream: requested frame rate.")
    var fps = "30"
    @Flag(name: .long, help: "With --stream: plain ioctls instead of libv4l2.")
    var raw = false

    func run() throws {
        guard let stream else {
            let listing = CameraListing.list(showAll: all)
            Console.out(listing.text)
            if !listing.found { throw ExitCode(ExitStatus.failure) }
            return
        }
        // Validated by the `camera:` section type, like the daemon's settings.
        let flags = [("--formats", "formats", formats), ("--width", "width", width), ("--height", "height", height),
                     ("--fps", "fps", fps), ("--raw", "raw", raw ? "true" : "false")]
        let config: DaemonConfig
        do {
            config = try DaemonConfig.resolve(file: nil, overrides: flags.map {
                ConfigOverride(flag: $0.0, section: "camera", key: $0.1, value: $0.2) }, systemFile: false)
        } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(ExitStatus.config)
        }
        var logger = Logger(label: "camclass", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        let (text, ok) = CameraProbe.stream(path: stream, config: config, frames: frames, logger: logger)
        Console.out(text)
        if !ok { throw ExitCode(ExitStatus.failure) }
    }
}
