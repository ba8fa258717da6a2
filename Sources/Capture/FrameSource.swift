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
}

