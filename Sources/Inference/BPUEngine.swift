import CHBDNN
import Glibc
import ImageOps
import Logging
import Support

/// Options for the BPU backend (RDK X3/X5, hbDNN 1.x through `libdnn.so`).
public struct BPUOptions: Sendable {
    /// Passed to dlopen as is: a bare name uses the loader's search path, a path with '/' is a file.
    public var libraryPath = "libdnn.so"
    /// Which model of a packed `.bin` to run; nil = the only one (an error lists them when several).
    public var modelName: String?
    /// Tasks in flight, one worker thread each. 4 is what the seed measurements use to keep the BPU busy.
    public var workers = 4
    /// hbDNNWaitTaskDone timeout; <= 0 waits forever (not recommended: a hung BPU then hangs a worker).
    public var timeoutMs = 1000
    /// hbDNNInferCtrlParam.priority, 0 (lowest) … 255 (highest, pre-empting); clamped to that range.
    public var priority = 0
    public init() {}
}

/// The BPU backend. The model's single IMG_NV12 input tensor lives in BPU-visible cached memory
/// (hbSysAllocCachedMem) and *is* the slot's `input`: the pipeline's scale writes straight into it at
/// the tensor's aligned row stride, so nothing is copied between pre-processing and the BPU.
/// Each slot owns its input and output tensors (allocated once) and runs one task at a time:
/// CLEAN input → hbDNNInfer → hbDNNWaitTaskDone → hbDNNReleaseTask → INVALIDATE outputs → decode.
///
/// Lifetime: the library and the model handle stay alive while the engine or any of its slots does;
/// the last one to go frees the tensors (hbSysFreeMem), releases the model (hbDNNRelease) and
/// unloads the library.
/// Thread context: init/deinit on one thread; each slot then belongs to one worker thread.
public final class BPUEngine: InferenceEngine, @unchecked Sendable {
    public let info: EngineInfo
    public let slots: [any InferenceSlot]
    /// The library as given to dlopen, and what its hbDNNGetVersion says.
    public let libraryPath: String
    public let libraryVersion: String
    /// The model run (a name from the `.bin`), and every name the `.bin` holds.
    public let modelName: String
    public let modelNames: [String]
    /// The model's properties as logged at start, one line per tensor (like `hrt_model_exec model_info`).
    public let modelInfo: [String]
    private let runtime: BPURuntime

    /// Loads the library, the model and allocates `options.workers` slots.
    /// - Parameter classes: the labels' count when they come from a file (nil: don't check).
    /// - Throws: `InferenceError.libraryMissing` (the loader's one-line message), `.modelMissing`,
    ///   `.badModel` (unsupported input/output, model name not found, class count mismatch) or
    ///   `.call` naming the hbDNN/hbSys function that failed and its status.
    public init(model: ModelDescriptor, classes expectedClasses: Int?, options: BPUOptions, logger: Logger) throws {
        guard access(model.modelPath, R_OK) == 0 else {
            throw InferenceError.modelMissing("BPU model file '\(model.modelPath)' not found or not readable")
        }
        let rt = try BPURuntime(libraryPath: options.libraryPath)
        runtime = rt
        libraryPath = options.libraryPath
        libraryVersion = rt.version
        let api = rt.api

        var packed: hbPackedDNNHandle_t?
        let status = model.modelPath.withCString { file -> Int32 in
            var files: [UnsafePointer<CChar>?] = [file]
            return files.withUnsafeMutableBufferPointer { api.hbDNNInitializeFromFiles(&packed, $0.baseAddress, 1) }
        }
        try BPUStatus.check(status, "hbDNNInitializeFromFiles(\(model.modelPath))")
        rt.packed = packed

        // Model selection: by name from config, else the only one.
        var list: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        try BPUStatus.check(api.hbDNNGetModelNameList(&list, &count, packed), "hbDNNGetModelNameList")
        let names = (0..<Int(max(0, count))).compactMap { i in list?[i].map { String(cString: $0) } }
        modelNames = names
        let chosen: String
        if let wanted = options.modelName, !wanted.isEmpty {
            guard names.contains(wanted) else {
                throw InferenceError.badModel("'\(model.modelPath)' has no model named '\(wanted)' (inference.bpu_model_name); " +
                                              "it holds: \(names.joined(separator: ", "))")
            }
            chosen = wanted
        } else {
            guard names.count == 1 else {
                throw InferenceError.badModel("'\(model.modelPath)' holds \(names.count) models (\(names.joined(separator: ", "))): " +
                                              "choose one with inference.bpu_model_name")
            }
            chosen = names[0]
        }
        modelName = chosen
        var handle: hbDNNHandle_t?
        try BPUStatus.check(chosen.withCString { api.hbDNNGetModelHandle(&handle, packed, $0) }, "hbDNNGetModelHandle(\(chosen))")
        rt.model = handle

        // Tensors: counts, names, properties.
        var inputCount: Int32 = 0, outputCount: Int32 = 0
        try BPUStatus.check(api.hbDNNGetInputCount(&inputCount, handle), "hbDNNGetInputCount")
        try BPUStatus.check(api.hbDNNGetOutputCount(&outputCount, handle), "hbDNNGetOutputCount")
        func tensorName(_ input: Bool, _ i: Int32) -> String {
            var p: UnsafePointer<CChar>?
            let s = input ? api.hbDNNGetInputName(&p, handle, i) : api.hbDNNGetOutputName(&p, handle, i)
            return s == 0 ? p.map { String(cString: $0) } ?? "?" : "?"
        }
        var inputs: [hbDNNTensorProperties] = []
        var outputs: [hbDNNTensorProperties] = []
        for i in 0..<inputCount {
            var p = hbDNNTensorProperties()
            try BPUStatus.check(api.hbDNNGetInputTensorProperties(&p, handle, i), "hbDNNGetInputTensorProperties(\(i))")
            inputs.append(p)
        }
        for i in 0..<outputCount {
            var p = hbDNNTensorProperties()
            try BPUStatus.check(api.hbDNNGetOutputTensorProperties(&p, handle, i), "hbDNNGetOutputTensorProperties(\(i))")
            outputs.append(p)
        }
        var lines = ["BPU model '\(chosen)' from '\(model.modelPath)' (\(rt.version), library '\(options.libraryPath)'): " +
                     "\(inputCount) input(s), \(outputCount) output(s)"]
        lines += inputs.enumerated().map { "  input[\($0)] '\(tensorName(true, Int32($0)))': \(BPUTensorText.describe($1))" }
        lines += outputs.enumerated().map { "  output[\($0)] '\(tensorName(false, Int32($0)))': \(BPUTensorText.describe($1))" }
        modelInfo = lines
        // Logged before validation, so an unsupported model shows what it is.
        for line in lines { logger.info("\(line)") }

        var input = try BPUInputLayout(inputs: inputs, inputName: tensorName(true, 0))
        guard !outputs.isEmpty else { throw InferenceError.badModel("BPU model '\(chosen)' has no outputs") }
        let decoder = try BPUOutputDecoder(properties: outputs[0], name: tensorName(false, 0))
        if outputs.count > 1 {
            logger.info("BPU model has \(outputs.count) outputs: classifying with output[0], the others are computed and ignored")
        }
        if let expectedClasses, expectedClasses != decoder.classes {
            let hint = model.sidecarPath == nil
                ? "a .bin without a sidecar is taken as an ImageNet-1k classifier; write \(BPUEngine.sidecarName(model.modelPath)) with its labels"
                : "fix 'labels' in \(model.sidecarPath!)"
            throw InferenceError.badModel("BPU model '\(chosen)' outputs \(decoder.classes) scores but its labels have \(expectedClasses) names: \(hint)")
        }
        if model.sidecarPath != nil && (model.inputWidth != input.width || model.inputHeight != input.height) {
            logger.warning("model sidecar says \(model.inputWidth)x\(model.inputHeight) but the BPU model's input is \(input.width)x\(input.height); using the model's")
        }
        if let padded = input.modelAlignedShape {
            logger.info("BPU model input is padded (alignedShape \(padded), validShape \(input.properties.validShape.dims)): writing packed NV12 with alignedShape = validShape, as the vendor's binding does")
        }
        input.properties.tensorType = CHBDNN_TYPE_IMG_NV12

        let workers = max(1, options.workers)
        let priority = Int32(min(255, max(0, options.priority)))
        var made: [BPUSlot] = []
        for _ in 0..<workers {
            // On failure, the tensors made so far free their memory as they go out of scope.
            let tensors = try BPUTensors(runtime: rt, input: input, outputs: outputs, output0Bytes: decoder.byteCount, priority: priority)
            made.append(BPUSlot(tensors: tensors, layout: input, decoder: decoder, timeoutMs: Int32(clamping: options.timeoutMs),
                                fresh: { try BPUTensors(runtime: rt, input: input, outputs: outputs, output0Bytes: decoder.byteCount,
                                                        priority: priority) }))
        }
        slots = made
        let outType = BPUTensorText.typeName(outputs[0].tensorType)
        info = EngineInfo(
            backend: "bpu", device: "BPU", precision: "int8",
            inputWidth: input.width, inputHeight: input.height, classes: decoder.classes, slots: workers,
            outputsLogits: model.outputsLogits,
            summary: "hbDNN BPU (\(rt.version)), model '\(chosen)', input NV12 \(input.width)x\(input.height) " +
                "(row stride \(input.rowStride)), output \(outType) \(decoder.quantText), \(decoder.classes) classes, " +
                "\(workers) tasks in flight, priority \(priority), timeout \(options.timeoutMs) ms")
    }

    static func sidecarName(_ modelPath: String) -> String {
        let base = modelPath.split(separator: "/").last.map(String.init) ?? modelPath
        let stem = base.lastIndex(of: ".").map { String(base[..<$0]) } ?? base
        return stem + ".model.yaml"
    }
}

/// hbDNN status codes as names, for error messages (the set CHBDNN.h declares).
enum BPUStatus {
    static let names: [Int32: String] = [
        CHBDNN_DNN_INVALID_ARGUMENT: "HB_DNN_INVALID_ARGUMENT", CHBDNN_DNN_INVALID_MODEL: "HB_DNN_INVALID_MODEL",
        CHBDNN_DNN_MODEL_NUMBER_EXCEED_LIMIT: "HB_DNN_MODEL_NUMBER_EXCEED_LIMIT",
        CHBDNN_DNN_INVALID_PACKED_DNN_HANDLE: "HB_DNN_INVALID_PACKED_DNN_HANDLE",
        CHBDNN_DNN_INVALID_DNN_HANDLE: "HB_DNN_INVALID_DNN_HANDLE", CHBDNN_DNN_CAN_NOT_OPEN_FILE: "HB_DNN_CAN_NOT_OPEN_FILE",
        CHBDNN_DNN_OUT_OF_MEMORY: "HB_DNN_OUT_OF_MEMORY", CHBDNN_DNN_TIMEOUT: "HB_DNN_TIMEOUT",
        CHBDNN_DNN_TASK_NUM_EXCEED_LIMIT: "HB_DNN_TASK_NUM_EXCEED_LIMIT",
        CHBDNN_DNN_TASK_BATCH_SIZE_EXCEED_LIMIT: "HB_DNN_TASK_BATCH_SIZE_EXCEED_LIMIT",
        CHBDNN_DNN_INVALID_TASK_HANDLE: "HB_DNN_INVALID_TASK_HANDLE", CHBDNN_DNN_RUN_TASK_FAILED: "HB_DNN_RUN_TASK_FAILED",
        CHBDNN_DNN_MODEL_IS_RUNNING: "HB_DNN_MODEL_IS_RUNNING", CHBDNN_DNN_INCOMPATIBLE_MODEL: "HB_DNN_INCOMPATIBLE_MODEL",
        CHBDNN_DNN_API_USE_ERROR: "HB_DNN_API_USE_ERROR", CHBDNN_DNN_MULTI_PROGRESS_USE_ERROR: "HB_DNN_MULTI_PROGRESS_USE_ERROR",
        CHBDNN_SYS_INVALID_ARGUMENT: "HB_SYS_INVALID_ARGUMENT", CHBDNN_SYS_OUT_OF_MEMORY: "HB_SYS_OUT_OF_MEMORY",
    ]

    static func error(_ status: Int32, _ name: String, detail: String = "") -> InferenceError {
        var message = names[status] ?? ""
        if !detail.isEmpty { message += message.isEmpty ? detail : " (\(detail))" }
        return .call(name: name, status: status, message: message)
    }

    @inline(__always)
    static func check(_ status: Int32, _ name: @autoclosure () -> String) throws {
        if status != 0 { throw error(status, name()) }
    }
}

/// The loaded library and the model handles. Freed last (slots keep it alive).
final class BPURuntime: @unchecked Sendable {
    /// Resolved functions; the required ones are non-nil after a successful load.
    let api: BPUFunctions
    private let table: UnsafeMutablePointer<chbdnn_api>
    let version: String
    var packed: hbPackedDNNHandle_t?
    var model: hbDNNHandle_t?
    /// Memory of slots whose task timed out: freed after hbDNNRelease (see BPUTensors.quarantine).
    private var quarantined: [hbSysMem] = []
    private let quarantineLock = Condition()
    /// Quarantined buffers so far (each input or output buffer counts one).
    var quarantinedCount: Int { quarantineLock.locked { quarantined.count } }

    func quarantine(_ mems: [hbSysMem]) { quarantineLock.locked { quarantined += mems } }

    init(libraryPath: String) throws {
        table = .allocate(capacity: 1)
        table.initialize(to: chbdnn_api())
        var err = [CChar](repeating: 0, count: 512)
        guard chbdnn_load(libraryPath, table, &err, err.count) == 0 else {
            table.deallocate()
            throw InferenceError.libraryMissing(err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        api = BPUFunctions(table.pointee)
        version = api.hbDNNGetVersion().map { String(cString: $0) } ?? "unknown version"
    }

    deinit {
        // Every slot (and so every tensor and task) is gone by now: release the model, then unload.
        if let packed { _ = api.hbDNNRelease(packed) }
        // hbDNNRelease has finished the model's tasks: quarantined memory is no longer written.
        for var mem in quarantined { _ = api.hbSysFreeMem(&mem) }
        chbdnn_unload(table)
        table.deallocate()
    }
}

/// The required functions of `chbdnn_api`, unwrapped once (the loader guarantees them).
struct BPUFunctions: @unchecked Sendable {
    let hbDNNInitializeFromFiles: chbdnn_hbDNNInitializeFromFiles_fn
    let hbDNNRelease: chbdnn_hbDNNRelease_fn
    let hbDNNGetModelNameList: chbdnn_hbDNNGetModelNameList_fn
    let hbDNNGetModelHandle: chbdnn_hbDNNGetModelHandle_fn
    let hbDNNGetInputCount: chbdnn_hbDNNGetInputCount_fn
    let hbDNNGetOutputCount: chbdnn_hbDNNGetOutputCount_fn
    let hbDNNGetInputName: chbdnn_hbDNNGetInputName_fn
    let hbDNNGetOutputName: chbdnn_hbDNNGetOutputName_fn
    let hbDNNGetInputTensorProperties: chbdnn_hbDNNGetInputTensorProperties_fn
    let hbDNNGetOutputTensorProperties: chbdnn_hbDNNGetOutputTensorProperties_fn
    let hbDNNInfer: chbdnn_hbDNNInfer_fn
    let hbDNNWaitTaskDone: chbdnn_hbDNNWaitTaskDone_fn
    let hbDNNReleaseTask: chbdnn_hbDNNReleaseTask_fn
    let hbDNNGetVersion: chbdnn_hbDNNGetVersion_fn
    let hbSysAllocCachedMem: chbdnn_hbSysAllocCachedMem_fn
    let hbSysFlushMem: chbdnn_hbSysFlushMem_fn
    let hbSysFreeMem: chbdnn_hbSysFreeMem_fn

    init(_ t: chbdnn_api) {
        hbDNNInitializeFromFiles = t.hbDNNInitializeFromFiles!
        hbDNNRelease = t.hbDNNRelease!
        hbDNNGetModelNameList = t.hbDNNGetModelNameList!
        hbDNNGetModelHandle = t.hbDNNGetModelHandle!
        hbDNNGetInputCount = t.hbDNNGetInputCount!
        hbDNNGetOutputCount = t.hbDNNGetOutputCount!
        hbDNNGetInputName = t.hbDNNGetInputName!
        hbDNNGetOutputName = t.hbDNNGetOutputName!
        hbDNNGetInputTensorProperties = t.hbDNNGetInputTensorProperties!
        hbDNNGetOutputTensorProperties = t.hbDNNGetOutputTensorProperties!
        hbDNNInfer = t.hbDNNInfer!
        hbDNNWaitTaskDone = t.hbDNNWaitTaskDone!
        hbDNNReleaseTask = t.hbDNNReleaseTask!
        hbDNNGetVersion = t.hbDNNGetVersion!
        hbSysAllocCachedMem = t.hbSysAllocCachedMem!
        hbSysFlushMem = t.hbSysFlushMem!
        hbSysFreeMem = t.hbSysFreeMem!
    }
}

// MARK: - Tensor properties

extension hbDNNTensorShape {
    var dims: [Int] {
        let n = Int(min(8, max(0, numDimensions)))
        return withUnsafeBytes(of: dimensionSize) { raw in (0..<n).map { Int(raw.load(fromByteOffset: $0 * 4, as: Int32.self)) } }
    }
}

extension hbDNNTensorProperties {
    var strides: [Int] {
        let n = Int(min(8, max(0, validShape.numDimensions)))
        return withUnsafeBytes(of: stride) { raw in (0..<n).map { Int(raw.load(fromByteOffset: $0 * 4, as: Int32.self)) } }
    }
}

/// Human-readable tensor properties for the start-up log and error messages.
enum BPUTensorText {
    static let types = ["IMG_Y", "IMG_NV12", "IMG_NV12_SEPARATE", "IMG_YUV444", "IMG_RGB", "IMG_BGR", "S4", "U4", "S8",
                        "U8", "F16", "S16", "U16", "F32", "S32", "U32", "F64", "S64", "U64"]

    static func typeName(_ t: Int32) -> String { t >= 0 && Int(t) < types.count ? types[Int(t)] : "type \(t)" }

    static func layoutName(_ l: Int32) -> String {
        switch l {
        case CHBDNN_LAYOUT_NHWC: return "NHWC"
        case CHBDNN_LAYOUT_NCHW: return "NCHW"
        case CHBDNN_LAYOUT_NONE: return "NONE"
        default: return "layout \(l)"
        }
    }

    static func describe(_ p: hbDNNTensorProperties) -> String {
        func tuple(_ v: [Int]) -> String { "(" + v.map(String.init).joined(separator: ",") + ")" }
        var s = "\(typeName(p.tensorType)) \(layoutName(p.tensorLayout)) valid \(tuple(p.validShape.dims)) " +
            "aligned \(tuple(p.alignedShape.dims)) alignedByteSize \(p.alignedByteSize) stride \(tuple(p.strides))"
        switch p.quantiType {
        case CHBDNN_QUANTI_NONE: s += " quanti NONE"
        case CHBDNN_QUANTI_SHIFT: s += " quanti SHIFT axis \(p.quantizeAxis) (\(p.shift.shiftLen) shifts)"
        case CHBDNN_QUANTI_SCALE:
            s += " quanti SCALE axis \(p.quantizeAxis) (\(p.scale.scaleLen) scales, \(p.scale.zeroPointLen) zero points)"
        default: s += " quanti \(p.quantiType)"
        }
        return s
    }
}

/// Where the NV12 input goes: validated once from the model's input properties.
///
/// Always packed NV12 (row stride = width, the UV plane right after the Y plane's `height` rows),
/// as the vendor's own code does: its Python binding sets `alignedShape = validShape` before
/// inference and the model zoo's X5 sample writes packed NV12. The hbDNN 1.x documentation lets a
/// caller change only `alignedShape` and `tensorType` of an input's properties, so `stride[]` and
/// `alignedByteSize` are passed on as the model reports them and never used for addressing (for
/// NHWC NV12 inputs, `stride[1]` is 3·W, a 3-channel image's row, not the NV12 row stride). The
/// dynamic-stride convention (stride -1, the caller filling in stride and size) belongs to the
/// S100's UCP API, not to X3/X5's 1.x.
struct BPUInputLayout {
    var properties: hbDNNTensorProperties
    let width: Int
    let height: Int
    /// Bytes from one row to the next, in both planes (= width: packed).
    let rowStride: Int
    /// Offset of the interleaved UV plane from the start of the tensor.
    let uvOffset: Int
    /// Bytes to allocate.
    let byteCount: Int
    /// The model's alignedShape differed from its validShape (padded rows); replaced by validShape.
    let modelAlignedShape: [Int]?

    /// The largest input side accepted from model metadata (bounds every size computed from it).
    static let maxSide = 8192

    init(inputs: [hbDNNTensorProperties], inputName: String) throws {
        guard inputs.count == 1 else {
            throw InferenceError.badModel("the BPU model has \(inputs.count) inputs; camclassd feeds exactly one NV12 image")
        }
        var p = inputs[0]
        let what = "input[0] '\(inputName)' is \(BPUTensorText.typeName(p.tensorType))"
        switch p.tensorType {
        case CHBDNN_TYPE_IMG_NV12: break
        case CHBDNN_TYPE_IMG_Y:
            throw InferenceError.badModel("\(what) (luma only): not supported; camclassd feeds IMG_NV12 (compile the model with input_type_rt: nv12)")
        case CHBDNN_TYPE_IMG_NV12_SEPARATE:
            throw InferenceError.badModel("\(what) (Y and UV in separate buffers): not supported; camclassd feeds one contiguous IMG_NV12 tensor (input_type_rt: nv12)")
        case CHBDNN_TYPE_IMG_YUV444, CHBDNN_TYPE_IMG_RGB, CHBDNN_TYPE_IMG_BGR:
            throw InferenceError.badModel("\(what): not supported; camclassd feeds IMG_NV12 with colour conversion inside the model (input_type_rt: nv12)")
        default:
            throw InferenceError.badModel("\(what) (a feature-map input, not an image): not supported; camclassd feeds IMG_NV12 (input_type_rt: nv12)")
        }
        let valid = p.validShape.dims, aligned = p.alignedShape.dims
        guard valid.count == 4 else {
            throw InferenceError.badModel("\(what) with a \(valid.count)-D shape; expected 4-D NCHW or NHWC")
        }
        // NV12 is described as a 3-channel image; the layout says where H and W are.
        let (hAxis, wAxis): (Int, Int)
        switch p.tensorLayout {
        case CHBDNN_LAYOUT_NCHW: (hAxis, wAxis) = (2, 3)
        case CHBDNN_LAYOUT_NHWC: (hAxis, wAxis) = (1, 2)
        default: throw InferenceError.badModel("\(what) with layout \(BPUTensorText.layoutName(p.tensorLayout)); expected NCHW or NHWC")
        }
        let h = valid[hAxis], w = valid[wAxis]
        guard valid[0] == 1 else { throw InferenceError.badModel("\(what) with batch \(valid[0]); expected 1") }
        guard h > 0, w > 0, h % 2 == 0, w % 2 == 0 else {
            throw InferenceError.badModel("\(what) of \(w)x\(h): NV12 needs positive even width and height (dynamic shapes are not supported)")
        }
        guard h <= Self.maxSide, w <= Self.maxSide else {
            throw InferenceError.badModel("\(what) of \(w)x\(h): larger than \(Self.maxSide) on a side")
        }
        width = w
        height = h
        rowStride = w
        uvOffset = w * h
        let needed = w * h * 3 / 2
        // A padded model (alignedShape ≠ validShape) is told the input is packed: the one change allowed.
        modelAlignedShape = aligned == valid ? nil : aligned
        p.alignedShape = p.validShape
        if p.alignedByteSize > 0 && Int(p.alignedByteSize) < needed {
            throw InferenceError.badModel("\(what) of \(w)x\(h) needs \(needed) bytes of packed NV12 but alignedByteSize is \(p.alignedByteSize)")
        }
        // alignedByteSize <= 0 (dynamic in the model): the packed size is what is allocated.
        byteCount = max(needed, Int(p.alignedByteSize))
        properties = p
    }
}

/// Turns the output tensor into `classes` float scores: byte offsets and dequantisation factors are
/// worked out once from validShape/stride/alignedShape and quantizeAxis, so `decode` is one loop.
///
/// `stride[]` counts **bytes** (hbDNN 1.x: the offset of index i along axis d is i·stride[d] bytes;
/// the stand-in reports it so). Whether the real X5 library ever reports element strides for
/// padded outputs could not be verified, so a stride set that cannot be bytes — its smallest
/// stride is below the element size, or the last score would lie past `alignedByteSize` — but fits
/// when read as elements is taken as elements (`strideUnit` says which; logged at start).
/// Missing strides (0 or -1) mean dense over alignedShape. Dense and padded (aligned channel
/// count > valid) layouts, NCHW or NHWC, are supported either way.
/// Thread context: immutable after init; `decode` is called concurrently by every slot.
final class BPUOutputDecoder: @unchecked Sendable {
    let classes: Int
    let elementType: Int32
    /// Bytes the output memory needs: alignedByteSize, or the last score's end when larger/absent.
    let byteCount: Int
    let quantText: String
    /// "bytes", "elements" or "dense" (how stride[] was read).
    let strideUnit: String
    /// The most scores a classifier output may have (bounds every offset computed from metadata).
    static let maxClasses = 10_000_000
    private let offsets: UnsafeMutableBufferPointer<Int>
    /// nil: no dequantisation (F32, or integers with quantiType NONE).
    private let scales: UnsafeMutableBufferPointer<Float>?
    private let zeroPoints: UnsafeMutableBufferPointer<Float>?

    static func elementSize(_ t: Int32) -> Int? {
        switch t {
        case CHBDNN_TYPE_F32, CHBDNN_TYPE_S32, CHBDNN_TYPE_U32: return 4
        case CHBDNN_TYPE_S16, CHBDNN_TYPE_U16: return 2
        case CHBDNN_TYPE_S8, CHBDNN_TYPE_U8: return 1
        default: return nil
        }
    }

    init(properties p: hbDNNTensorProperties, name: String) throws {
        let what = "output[0] '\(name)' (\(BPUTensorText.typeName(p.tensorType)))"
        guard let e = Self.elementSize(p.tensorType) else {
            throw InferenceError.badModel("\(what): unsupported output type; expected F32, S32, S16, S8 (or U32, U16, U8)")
        }
        elementType = p.tensorType
        let valid = p.validShape.dims
        guard !valid.isEmpty, valid.allSatisfy({ $0 > 0 }) else {
            throw InferenceError.badModel("\(what): bad validShape \(valid)")
        }
        let n = valid.count
        // The product is checked before anything is sized from it (8 dims of 2^31 overflow Int).
        var total = 1
        for v in valid {
            let (t, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow, t <= Self.maxClasses else {
                throw InferenceError.badModel("\(what): validShape \(valid) holds more than \(Self.maxClasses) scores")
            }
            total = t
        }
        guard total > 1 else { throw InferenceError.badModel("\(what): \(total) score; a classifier has several") }
        // With total bounded, index·stride sums stay far below Int.max (< 2^24 · 2^31 · 8).
        func end(_ s: [Int]) -> Int { zip(valid, s).reduce(e) { $0 + ($1.0 - 1) * $1.1 } }
        let limit = p.alignedByteSize > 0 ? Int(p.alignedByteSize) : Int.max
        var strides = p.strides
        var unit = "bytes"
        if strides.count != n || strides.contains(where: { $0 <= 0 }) {
            // Not given (0 or -1): dense over alignedShape (the padding stays unread).
            var aligned = p.alignedShape.dims
            if aligned.count != n || zip(aligned, valid).contains(where: { $0 < $1 || $0 > Self.maxClasses }) { aligned = valid }
            strides = Array(repeating: e, count: n)
            for d in stride(from: n - 2, through: 0, by: -1) {
                strides[d] = min(strides[d + 1] * aligned[d + 1], Int(Int32.max))
            }
            unit = "dense"
        } else if e > 1 {
            let smallest = zip(valid, strides).filter { $0.0 > 1 }.map(\.1).min() ?? e
            let asElements = strides.map { $0 * e }
            if (smallest < e || end(strides) > limit) && end(asElements) <= limit {
                strides = asElements
                unit = "elements"
            }
        }
        strideUnit = unit
        classes = total
        byteCount = max(p.alignedByteSize > 0 ? Int(p.alignedByteSize) : 0, end(strides))
        let axis = Int(p.quantizeAxis)
        let quantised = p.tensorType != CHBDNN_TYPE_F32 && p.quantiType != CHBDNN_QUANTI_NONE
        // Per-axis parameters: one for the whole tensor, or one per index along quantizeAxis.
        var paramCount = 0
        if quantised {
            if p.quantiType == CHBDNN_QUANTI_SCALE {
                paramCount = Int(p.scale.scaleLen)
                guard p.scale.scaleData != nil else { throw InferenceError.badModel("\(what): SCALE without scale data") }
            } else if p.quantiType == CHBDNN_QUANTI_SHIFT {
                paramCount = Int(p.shift.shiftLen)
                guard p.shift.shiftData != nil else { throw InferenceError.badModel("\(what): SHIFT without shift data") }
            } else {
                throw InferenceError.badModel("\(what): unknown quantiType \(p.quantiType)")
            }
            guard paramCount == 1 || (axis >= 0 && axis < n && paramCount >= valid[axis]) else {
                throw InferenceError.badModel("\(what): \(paramCount) quantisation parameters along axis \(axis) of \(valid)")
            }
        }
        offsets = .allocate(capacity: total)
        scales = quantised ? .allocate(capacity: total) : nil
        let hasZeroPoints = quantised && p.quantiType == CHBDNN_QUANTI_SCALE && p.scale.zeroPointLen > 0 && p.scale.zeroPointData != nil
        zeroPoints = hasZeroPoints ? .allocate(capacity: total) : nil

        // Walk validShape in row-major order: [1,C,1,1] (NCHW) and [1,1,1,C] (NHWC) both give class order.
        var index = Array(repeating: 0, count: n)
        var maxEnd = 0
        for i in 0..<total {
            var off = 0
            for d in 0..<n { off += index[d] * strides[d] }
            offsets[i] = off
            maxEnd = max(maxEnd, off + e)
            if quantised {
                let q = paramCount == 1 ? 0 : index[axis]
                if p.quantiType == CHBDNN_QUANTI_SCALE {
                    scales![i] = p.scale.scaleData[q]
                    // The 1.x header types zero points as int8 (some later ones as int32; see CHBDNN.h).
                    if hasZeroPoints {
                        let zq = Int(p.scale.zeroPointLen) == 1 ? 0 : min(q, Int(p.scale.zeroPointLen) - 1)
                        zeroPoints![i] = Float(p.scale.zeroPointData[zq])
                    }
                } else {
                    scales![i] = Float(sign: .plus, exponent: -Int(p.shift.shiftData[q]), significand: 1)
                }
            }
            var d = n - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < valid[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        if p.alignedByteSize > 0 && maxEnd > Int(p.alignedByteSize) {
            offsets.deallocate(); scales?.deallocate(); zeroPoints?.deallocate()
            throw InferenceError.badModel("\(what): strides \(strides) reach byte \(maxEnd) beyond alignedByteSize \(p.alignedByteSize)")
        }
        if quantised {
            let kind = p.quantiType == CHBDNN_QUANTI_SCALE ? "SCALE" + (hasZeroPoints ? "+zero point" : "") : "SHIFT"
            quantText = "\(kind) along axis \(axis), strides in \(unit)"
        } else {
            quantText = "not quantised, strides in \(unit)"
        }
    }

    deinit {
        offsets.deallocate()
        scales?.deallocate()
        zeroPoints?.deallocate()
    }

    /// Writes min(classes, scores.count) scores. Allocates nothing.
    func decode(_ base: UnsafeRawPointer, into scores: UnsafeMutableBufferPointer<Float>) {
        let n = min(classes, scores.count)
        @inline(__always) func load<T: BinaryInteger>(_: T.Type) {
            for i in 0..<n { scores[i] = Float(base.loadUnaligned(fromByteOffset: offsets[i], as: T.self)) }
        }
        switch elementType {
        case CHBDNN_TYPE_F32:
            for i in 0..<n { scores[i] = base.loadUnaligned(fromByteOffset: offsets[i], as: Float.self) }
            return
        case CHBDNN_TYPE_S32: load(Int32.self)
        case CHBDNN_TYPE_U32: load(UInt32.self)
        case CHBDNN_TYPE_S16: load(Int16.self)
        case CHBDNN_TYPE_U16: load(UInt16.self)
        case CHBDNN_TYPE_S8: load(Int8.self)
        default: load(UInt8.self)
        }
        guard let scales else { return }
        if let zeroPoints {
            for i in 0..<n { scores[i] = (scores[i] - zeroPoints[i]) * scales[i] }
        } else {
            for i in 0..<n { scores[i] *= scales[i] }
        }
    }
}

// MARK: - Slot

/// The tensors of one slot and the BPU memory behind them, allocated once; freed in deinit
/// (before the runtime, which it keeps alive).
/// Thread context: owned by one slot.
final class BPUTensors: @unchecked Sendable {
    let runtime: BPURuntime
    // Everything hbDNNInfer takes by pointer lives here, so inference passes stable addresses.
    let input: UnsafeMutablePointer<hbDNNTensor>
    let outputs: UnsafeMutablePointer<hbDNNTensor>
    let outputCount: Int
    let outputList: UnsafeMutablePointer<UnsafeMutablePointer<hbDNNTensor>?>
    let task: UnsafeMutablePointer<hbDNNTaskHandle_t?>
    let ctrl: UnsafeMutablePointer<hbDNNInferCtrlParam>

    /// Properties are copied into the tensors (hbDNNInfer checks them against the model's).
    /// - Throws: `InferenceError.call("hbSysAllocCachedMem…")`; what was allocated is freed by deinit.
    init(runtime: BPURuntime, input layout: BPUInputLayout, outputs props: [hbDNNTensorProperties], output0Bytes: Int,
         priority: Int32) throws {
        self.runtime = runtime
        input = .allocate(capacity: 1)
        input.initialize(to: hbDNNTensor())
        input.pointee.properties = layout.properties
        outputCount = props.count
        outputs = .allocate(capacity: props.count)
        for (i, p) in props.enumerated() {
            (outputs + i).initialize(to: hbDNNTensor())
            outputs[i].properties = p
        }
        outputList = .allocate(capacity: 1)
        outputList.initialize(to: outputs)
        task = .allocate(capacity: 1)
        task.initialize(to: nil)
        ctrl = .allocate(capacity: 1)
        // Zero = the vendor's HB_DNN_INITIALIZE_INFER_CTRL_PARAM defaults (core ANY, lowest priority).
        ctrl.initialize(to: hbDNNInferCtrlParam())
        ctrl.pointee.bpuCoreId = CHBDNN_CORE_ANY
        ctrl.pointee.priority = priority

        try alloc(&input.pointee.sysMem.0, layout.byteCount, "hbSysAllocCachedMem(input, \(layout.byteCount) bytes)")
        for i in 0..<outputCount {
            let size = i == 0 ? max(1, output0Bytes) : max(1, Int(outputs[i].properties.alignedByteSize))
            try alloc(&outputs[i].sysMem.0, size, "hbSysAllocCachedMem(output[\(i)], \(size) bytes)")
        }
    }

    private func alloc(_ mem: inout hbSysMem, _ size: Int, _ name: String) throws {
        guard size <= Int(UInt32.max) else { throw InferenceError.badModel("\(name): too large") }
        let s = runtime.api.hbSysAllocCachedMem(&mem, UInt32(size))
        if s != 0 {
            mem = hbSysMem()
            throw BPUStatus.error(s, name)
        }
    }

    /// Hands this slot's BPU memory to the runtime, which frees it only after hbDNNRelease: a task
    /// that timed out was released but may still write it (hbDNNReleaseTask returns at once and
    /// finishes in the background). This object then frees nothing.
    func quarantine() {
        var mems = [input.pointee.sysMem.0]
        for i in 0..<outputCount { mems.append(outputs[i].sysMem.0) }
        runtime.quarantine(mems.filter { $0.virAddr != nil })
        input.pointee.sysMem.0 = hbSysMem()
        for i in 0..<outputCount { outputs[i].sysMem.0 = hbSysMem() }
    }

    deinit {
        // No task can be outstanding: `infer` releases its task before returning.
        let api = runtime.api
        if input.pointee.sysMem.0.virAddr != nil { _ = api.hbSysFreeMem(&input.pointee.sysMem.0) }
        for i in 0..<outputCount where outputs[i].sysMem.0.virAddr != nil { _ = api.hbSysFreeMem(&outputs[i].sysMem.0) }
        input.deallocate()
        outputs.deallocate()
        outputList.deallocate()
        task.deallocate()
        ctrl.deallocate()
    }
}

/// One in-flight task at a time, on tensors allocated once — and again after a timeout: the
/// timed-out task's memory is quarantined (see `BPUTensors.quarantine`) and the slot continues on
/// fresh tensors, so a late write from the abandoned task cannot land in a later result.
/// Thread context: one worker thread at a time.
final class BPUSlot: InferenceSlot, @unchecked Sendable {
    private var tensors: BPUTensors
    private let api: BPUFunctions
    private let model: hbDNNHandle_t?
    private let decoder: BPUOutputDecoder
    private let timeoutMs: Int32
    private let layout: BPUInputLayout
    private let fresh: () throws -> BPUTensors
    /// A timeout left this slot on quarantined-to-be memory that could not be replaced yet.
    private var needsFresh = false
    /// The input tensor's own memory, seen as NV12 at the tensor's row stride.
    private(set) var input: NV12MutableView

    init(tensors: BPUTensors, layout: BPUInputLayout, decoder: BPUOutputDecoder, timeoutMs: Int32,
         fresh: @escaping () throws -> BPUTensors) {
        self.tensors = tensors
        api = tensors.runtime.api
        model = tensors.runtime.model
        self.decoder = decoder
        self.timeoutMs = timeoutMs
        self.layout = layout
        self.fresh = fresh
        input = Self.view(tensors, layout)
    }

    static func view(_ t: BPUTensors, _ layout: BPUInputLayout) -> NV12MutableView {
        let base = t.input.pointee.sysMem.0.virAddr!.assumingMemoryBound(to: UInt8.self)
        return NV12MutableView(y: base, uv: base + layout.uvOffset, layout: NV12Layout(
            width: layout.width, height: layout.height, strideY: layout.rowStride, strideUV: layout.rowStride))
    }

    /// Moves to fresh tensors; the old memory goes to the runtime's quarantine. The frame already
    /// written into the old input is copied over. - Throws: the allocation's error (then retried
    /// before the next task; the old memory is not used for a task meanwhile).
    private func replaceTensors() throws {
        let next = try fresh()
        let old = tensors
        let nextInput = Self.view(next, layout)
        NV12Ops.copy(input.readOnly, into: nextInput)
        old.quarantine()
        tensors = next
        input = nextInput
        needsFresh = false
    }

    func infer(scores: UnsafeMutableBufferPointer<Float>) throws {
        if needsFresh { try replaceTensors() }
        let t = tensors
        var s = api.hbSysFlushMem(&t.input.pointee.sysMem.0, CHBDNN_MEM_CLEAN)
        if s != 0 { throw BPUStatus.error(s, "hbSysFlushMem(input, CLEAN)") }
        t.task.pointee = nil
        s = api.hbDNNInfer(t.task, t.outputList, t.input, model, t.ctrl)
        if s != 0 {
            // Not expected after a failure, but a handle handed out is ours to release.
            if let stray = t.task.pointee { _ = api.hbDNNReleaseTask(stray) }
            t.task.pointee = nil
            throw BPUStatus.error(s, "hbDNNInfer")
        }
        let waited = api.hbDNNWaitTaskDone(t.task.pointee, timeoutMs)
        // Always released, even after a failed or timed-out wait: a task handle is never leaked.
        let released = api.hbDNNReleaseTask(t.task.pointee)
        t.task.pointee = nil
        // Invalidate even after a failed task: the BPU may have written, and the CPU must not keep
        // stale cache lines over this memory for the next frame.
        var invalidated: Int32 = 0
        for i in 0..<t.outputCount {
            let r = api.hbSysFlushMem(&t.outputs[i].sysMem.0, CHBDNN_MEM_INVALIDATE)
            if invalidated == 0 { invalidated = r }
        }
        if waited == CHBDNN_DNN_TIMEOUT {
            // Released, but it may still write this slot's memory: never reuse it.
            needsFresh = true
            do { try replaceTensors() } catch {
                throw BPUStatus.error(waited, "hbDNNWaitTaskDone",
                                      detail: "no result within \(timeoutMs) ms; fresh BPU memory for the slot failed too: \(error)")
            }
        }
        if waited != 0 {
            throw BPUStatus.error(waited, "hbDNNWaitTaskDone",
                                  detail: waited == CHBDNN_DNN_TIMEOUT ? "no result within \(timeoutMs) ms" : "")
        }
        if released != 0 { throw BPUStatus.error(released, "hbDNNReleaseTask") }
        if invalidated != 0 { throw BPUStatus.error(invalidated, "hbSysFlushMem(output, INVALIDATE)") }
        decoder.decode(UnsafeRawPointer(t.outputs.pointee.sysMem.0.virAddr!), into: scores)
        try Postprocess.requireFinite(UnsafeBufferPointer(rebasing: scores[0..<min(scores.count, decoder.classes)]))
    }
}
