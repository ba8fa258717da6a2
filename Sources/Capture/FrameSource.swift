import ImageOps
@_exported import Support

/// A camera-like producer of frames, each handed over as a lease on the source's own memory (a
/// driver buffer, an in-memory image): the source copies nothing.
/// Thread context: `open`, `nextFrame` and `close` are called from the pipeline's dedicated capture
/// thread only (they block); `requestStop` may be called from any thread and makes a blocked
/// `nextFrame` return promptly.
public protocol FrameSource: AnyObject, Sendable {
    /// Short name used in records and logs (a folder, a device path).
    var name: String { get }
    /// The largest frame this source can deliver; the workers size their conversion scratch from it.
    var maxFrameSize: (width: Int, height: Int) { get }
    /// File names of a replay, indexed by `FrameInfo.fileIndex` (empty for cameras).
    var fileNames: [String] { get }
    /// Live sources (cameras, paced replays) lose the oldest queued frame when the pipeline is
    /// behind; non-live ones (an unpaced replay) wait for room instead, so every frame is classified.
    var isLive: Bool { get }

    /// How many of its frames the pipeline may hold at once (queued, being converted, being
    /// handed over). A camera requests that many driver buffers plus two for the driver, so it
    /// never runs dry while the pipeline holds its share. Called before `open`.
    func reserveLeases(_ count: Int)
    func open() throws
    /// The next frame (`info` filled except `seq`), or nil at the end of the stream (a
    /// non-looping replay) or after `requestStop`.
    func nextFrame() throws -> FrameLease?
    func requestStop()
    func close()
    /// The capture side's sign of life while it delivers no frames by design (a camera unplugged
    /// and being re-opened); nil for sources that never wait (replays). The service watchdog is
    /// fed from it while the source waits, so a lost camera is not taken for a hang.
    var liveness: SourceLiveness? { get }
}

extension FrameSource {
    public var liveness: SourceLiveness? { nil }
    public func reserveLeases(_ count: Int) {}
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

