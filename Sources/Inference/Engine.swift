import ImageOps

/// What a loaded engine tells the rest of the daemon.
public struct EngineInfo: Sendable {
    public var backend: String          // "openvino", "bpu"
    public var device: String           // "CPU", "BPU", …
    public var precision: String        // what actually runs: "bf16", "f32", "int8", …
    public var inputWidth: Int
    public var inputHeight: Int
    public var classes: Int
    /// Inference requests/tasks that can be in flight at once (one per worker thread).
    public var slots: Int
    /// Whether `InferenceSlot.infer` yields logits (softmax follows) or probabilities.
    public var outputsLogits: Bool
    public var summary: String           // one line for the log
}

/// A classifier that takes NV12 at its input size.
/// Thread context: created and destroyed on one thread; its slots are then used concurrently,
/// one thread per slot.
public protocol InferenceEngine: AnyObject, Sendable {
    var info: EngineInfo { get }
    /// One slot per in-flight request; `info.slots` of them, created once at start-up.
    var slots: [any InferenceSlot] { get }
}

/// One in-flight inference: an input NV12 buffer the pre-processing writes into (the only copy
/// between a frame and the engine), and an output score vector.
/// Thread context: used by exactly one thread at a time (a pipeline worker); `infer` blocks.
public protocol InferenceSlot: AnyObject, Sendable {
    /// Where pre-processing writes the model input (model-sized NV12, engine-owned memory).
    var input: NV12MutableView { get }
    /// Runs the model on `input` and writes `classes` raw scores into `scores`.
    /// - Throws: `InferenceError` (the frame is dropped and counted; the slot stays usable).
    func infer(scores: UnsafeMutableBufferPointer<Float>) throws
}

public enum InferenceError: Error, CustomStringConvertible {
    case libraryMissing(String)
    case modelMissing(String)
    case badModel(String)
    case call(name: String, status: Int32, message: String)
    case timeout(String)
    case unhealthy(String)
    /// The model's scores for one frame held NaN or ±infinity (`count` of `of`; the first at `index`).
    case nonFiniteOutput(index: Int, value: Float, count: Int, of: Int)

    public var description: String {
        switch self {
        case .libraryMissing(let s), .modelMissing(let s), .badModel(let s), .timeout(let s), .unhealthy(let s): return s
        case .call(let name, let status, let message):
            return "\(name) failed with status \(status)" + (message.isEmpty ? "" : ": \(message)")
        case .nonFiniteOutput(let index, let value, let count, let of):
            return "the model output \(count) non-finite score(s) of \(of) (score \(index) is \(value)): frame dropped"
        }
    }
}
