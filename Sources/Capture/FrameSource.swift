import ImageOps
@_exported import Support

/// A camera-like producer of NV12 frames.
/// Thread context: `open`, `nextFrame` and `close` are called from the pipeline's dedicated capture
/// thread only (they block); `requestStop` may be called from any thread and makes a blocked
/// `nextFrame` return promptly.
public protocol FrameSource: AnyObject, Sendable {
    /// Short name used in records and logs (a folder, a device path).
    var name: String { get }
    /// The largest frame this source can deliver; the pipeline sizes its pool from it.
    var maxFrameSize: (width: Int, height: Int) { get }
    /// File names of a replay, indexed by `FrameInfo.fileIndex` (empty for cameras).
    var fileNames: [String] { get }
    /// Live sources (cameras, paced replays) lose the oldest queued frame when the pipeline is
    /// behind; non-live ones (an unpaced replay) wait for room instead, so every frame is classified.
    var isLive: Bool { get }

    func open() throws
    /// Writes the next frame into `frame.buffer` and fills `frame.info` (except `seq`).
    /// Returns false at the end of the stream (a non-looping replay) or after `requestStop`.
    func nextFrame(into frame: inout NV12Frame) throws -> Bool
    func requestStop()
    func close()
    /// The capture side's sign of life while it delivers no frames by design (a camera unplugged
    /// and being re-opened); nil for sources that never wait (replays). The service watchdog is
    /// fed from it while the source waits, so a lost camera is not taken for a hang.
    var liveness: SourceLiveness? { get }
}

extension FrameSource {
    public var liveness: SourceLiveness? { nil }
}

/// What a waiting source reports about its capture thread.
public struct SourceLiveness: Sendable, Equatable {
    /// The source waits for its device (no frames meanwhile, by design).
    public var waiting: Bool
    /// CLOCK_MONOTONIC of the capture thread's last sign of life (a frame or a re-open attempt).
    public var lastActivityNs: UInt64

    public init(waiting: Bool, lastActivityNs: UInt64) {
        self.waiting = waiting
        self.lastActivityNs = lastActivityNs
    }
}

