import COpenVINO
import Glibc
import ImageOps
import Logging

/// Options for the CPU (or any OpenVINO device) backend.
public struct OpenVINOOptions: Sendable {
    public var device = "CPU"
    /// "auto" keeps the device default (bf16 on CPUs that have it), or "bf16", "f16", "f32".
    public var precision = "auto"
    /// "throughput" or "latency" (OpenVINO's performance hint).
    public var performanceHint = "throughput"
    /// In-flight requests; 0 = `OpenVINOEngine.defaultRequests(optimal:hint:)`.
    public var workers = 0
    /// libopenvino_c.so path (a file or the directory holding it); nil = search.
    public var libraryPath: String?
    public init() {}
}

/// Finds and loads OpenVINO's C library at run time.
public enum OpenVINOLibrary {
    public static let installHint =
        "install OpenVINO with `python3 -m venv .venv && .venv/bin/pip install openvino` (or `make deps`), then set " +
        "inference.openvino_library (or CAMCLASSD_OPENVINO_LIB) to the wheel's openvino/libs directory"

    /// Candidate files, most specific first: configured path, CAMCLASSD_OPENVINO_LIB, the repo's
    /// `.venv`, the wheel in user/system site-packages, and the standard install locations.
    public static func candidates(configured: String?) -> [String] {
        var dirsOrFiles: [String] = []
        // An explicit setting is the only candidate: falling back elsewhere would hide its mistake.
        if let configured, !configured.isEmpty {
            dirsOrFiles.append(configured)
        } else {
            if let env = getenv("CAMCLASSD_OPENVINO_LIB") { dirsOrFiles.append(String(cString: env)) }
            for root in [".venv", "/opt/camclassd/venv", "/usr/lib/camclassd/venv"] {
                dirsOrFiles += pythonLibDirs(under: root + "/lib")
            }
            dirsOrFiles += pythonLibDirs(under: "/usr/local/lib") + pythonLibDirs(under: "/usr/lib")
            dirsOrFiles += ["/opt/intel/openvino/runtime/lib/intel64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                            "/usr/local/lib"]
        }
        var files: [String] = []
        for entry in dirsOrFiles {
            var st = stat()
            guard stat(entry, &st) == 0 else {
                if entry == configured { files.append(entry) }  // let dlopen say why
                continue
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                files += listing(entry).filter { $0.hasPrefix("libopenvino_c.so") }.sorted().map { entry + "/" + $0 }
            } else {
                files.append(entry)
            }
        }
        return files
    }

    static func pythonLibDirs(under lib: String) -> [String] {
        listing(lib).filter { $0.hasPrefix("python3") }.sorted().flatMap { py in
            ["site-packages", "dist-packages"].map { "\(lib)/\(py)/\($0)/openvino/libs" }
        }
    }

    static func listing(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            names.append(withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
        }
        return names
    }

    /// - Throws: `InferenceError.libraryMissing` with one line saying what was tried and how to install.
    public static func load(configured: String?) throws -> (UnsafeMutablePointer<cov_api>, String) {
        let api = UnsafeMutablePointer<cov_api>.allocate(capacity: 1)
        var errors: [String] = []
        for file in candidates(configured: configured) {
            var err = [CChar](repeating: 0, count: 512)
            if cov_load(file, api, &err, err.count) == 0 { return (api, file) }
            errors.append(err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        api.deallocate()
        let tried = errors.isEmpty ? "no libopenvino_c.so found" : errors.joined(separator: "; ")
        throw InferenceError.libraryMissing("OpenVINO C library not available (\(tried)): \(installHint)")
    }
}

/// The OpenVINO backend. The network's RGB float input is replaced, inside the compiled model, by
/// two u8 NV12 planes (Y, UV) with colour conversion and mean/scale done by OpenVINO's
/// pre-processing, so every backend receives NV12 as the BPU does.
/// Thread context: init/deinit on one thread; each slot then belongs to one worker thread.
public final class OpenVINOEngine: InferenceEngine, @unchecked Sendable {
    public let info: EngineInfo
    public let slots: [any InferenceSlot]
    public let libraryFile: String
    public let openVINOVersion: String
    private let api: UnsafeMutablePointer<cov_api>
    private var core: OpaquePointer?
    private var compiled: OpaquePointer?
    private let requestSlots: [OpenVINOSlot]

    public init(model: ModelDescriptor, classes expectedClasses: Int?, options: OpenVINOOptions, logger: Logger) throws {
        (api, libraryFile) = try OpenVINOLibrary.load(configured: options.libraryPath)
        var version = cov_version(build_number: nil, description: nil)
        var ov = "unknown"
        if api.pointee.get_openvino_version(&version) == 0 {
            ov = version.build_number.map { String(cString: $0) } ?? "unknown"
            api.pointee.version_free(&version)
        }
        openVINOVersion = ov
        let api = self.api
        func check(_ status: cov_status, _ name: String) throws {
            guard status == 0 else { throw OpenVINOEngine.error(api, status, name) }
        }

        var corePtr: OpaquePointer?
        try check(api.pointee.core_create(&corePtr), "ov_core_create")
        core = corePtr
        var original: OpaquePointer?
        try Self.checkNetworkFile(model.modelPath)
        let read = api.pointee.core_read_model(corePtr, model.modelPath, nil, &original)
        guard read == 0 else {
            // OpenVINO's own text starts with its source location; say first what is wrong with the file.
            let reason = OpenVINOEngine.error(api, read, "ov_core_read_model").description
            throw InferenceError.badModel("cannot read the network '\(model.modelPath)' (\(Self.fileSize(model.modelPath)) bytes): " +
                                          "it is truncated, corrupt or not an ONNX/OpenVINO IR model (\(reason))")
        }
        defer { api.pointee.model_free(original) }
        try Self.checkInputs(api, original, model)

        // NV12 (two u8 planes, NHWC) → colour → f32 → (x - mean) / scale → model layout NCHW.
        var ppp: OpaquePointer?
        try check(api.pointee.ppp_create(original, &ppp), "ov_preprocess_prepostprocessor_create")
        defer { api.pointee.ppp_free(ppp) }
        var inputInfo: OpaquePointer?
        try check(api.pointee.ppp_get_input_info_by_index(ppp, 0, &inputInfo), "get_input_info_by_index(0)")
        defer { api.pointee.ppp_input_info_free(inputInfo) }
        var tensorInfo: OpaquePointer?
        try check(api.pointee.ppp_input_info_get_tensor_info(inputInfo, &tensorInfo), "input_info_get_tensor_info")
        defer { api.pointee.ppp_input_tensor_info_free(tensorInfo) }
        try check(api.pointee.ppp_input_tensor_info_set_element_type(tensorInfo, Int32(COV_ELEMENT_U8)), "tensor_info_set_element_type(u8)")
        try check(cov_set_nv12_two_planes(api, tensorInfo, "y", "uv"), "tensor_info_set_color_format(NV12_TWO_PLANES)")
        try check(api.pointee.ppp_input_tensor_info_set_spatial_static_shape(tensorInfo, model.inputHeight, model.inputWidth),
                  "tensor_info_set_spatial_static_shape")
        var steps: OpaquePointer?
        try check(api.pointee.ppp_input_info_get_preprocess_steps(inputInfo, &steps), "input_info_get_preprocess_steps")
        defer { api.pointee.ppp_steps_free(steps) }
        try check(api.pointee.ppp_steps_convert_element_type(steps, Int32(COV_ELEMENT_F32)), "convert_element_type(f32)")
        try check(api.pointee.ppp_steps_convert_color(steps, Int32(model.color == "BGR" ? COV_COLOR_BGR : COV_COLOR_RGB)),
                  "convert_color(\(model.color))")
        try check(model.mean.withUnsafeBufferPointer { api.pointee.ppp_steps_mean_multi_channels(steps, $0.baseAddress, 3) },
                  "mean_multi_channels")
        try check(model.scale.withUnsafeBufferPointer { api.pointee.ppp_steps_scale_multi_channels(steps, $0.baseAddress, 3) },
                  "scale_multi_channels")
        var modelInfo: OpaquePointer?
        try check(api.pointee.ppp_input_info_get_model_info(inputInfo, &modelInfo), "input_info_get_model_info")
        defer { api.pointee.ppp_model_info_free(modelInfo) }
        var nchw: OpaquePointer?
        try check(api.pointee.layout_create("NCHW", &nchw), "ov_layout_create(NCHW)")
        defer { api.pointee.layout_free(nchw) }
        try check(api.pointee.ppp_model_info_set_layout(modelInfo, nchw), "model_info_set_layout(NCHW)")
        var built: OpaquePointer?
        try check(api.pointee.ppp_build(ppp, &built), "ov_preprocess_prepostprocessor_build")
        defer { api.pointee.model_free(built) }

        var keys: [String] = ["PERFORMANCE_HINT"]
        var values: [String] = [options.performanceHint.uppercased()]
        if options.precision != "auto" {
            keys.append("INFERENCE_PRECISION_HINT")
            values.append(options.precision)
        }
        var compiledPtr: OpaquePointer?
        let status = withCStrings(keys) { k in
            withCStrings(values) { v in
                cov_compile_model(api, corePtr, built, options.device, keys.count, k, v, &compiledPtr)
            }
        }
        try check(status, "ov_core_compile_model(\(options.device))")
        compiled = compiledPtr

        func property(_ key: String) -> String? {
            var value: UnsafeMutablePointer<CChar>?
            guard api.pointee.compiled_model_get_property(compiledPtr, key, &value) == 0, let value else { return nil }
            defer { api.pointee.free_string(value) }
            return String(cString: value)
        }
        let optimal = Int(property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") ?? "") ?? 1
        let precision = property("INFERENCE_PRECISION_HINT") ?? options.precision
        let workers = options.workers > 0 ? options.workers
            : Self.defaultRequests(optimal: optimal, hint: options.performanceHint)

        var made: [OpenVINOSlot] = []
        for _ in 0..<workers {
            made.append(try OpenVINOSlot(api: api, compiled: compiledPtr, width: model.inputWidth, height: model.inputHeight))
        }
        let classes = made[0].classes
        if let expectedClasses, expectedClasses != classes {
            throw InferenceError.badModel("model '\(model.modelPath)' outputs \(classes) scores but its labels file has \(expectedClasses) names")
        }
        requestSlots = made
        slots = made
        info = EngineInfo(
            backend: "openvino", device: options.device, precision: precision,
            inputWidth: model.inputWidth, inputHeight: model.inputHeight, classes: classes, slots: workers,
            outputsLogits: model.outputsLogits,
            summary: "OpenVINO \(ov) on \(options.device), precision \(precision), hint \(options.performanceHint), " +
                "\(workers) requests in flight (optimal \(optimal)), input NV12 \(model.inputWidth)x\(model.inputHeight), \(classes) classes")
        logger.debug("OpenVINO library loaded", metadata: ["openvino.library": "\(libraryFile)"])
    }

    /// Requests in flight when `workers` is 0. Under the throughput hint, twice OpenVINO's optimum:
    /// a worker converts its next frame and publishes its last result between two inferences, and
    /// with only the optimum in flight the stream it feeds stands idle meanwhile (end-to-end FPS was
    /// 0.87–0.93 × the raw engine's for Lite0 on 2 cores; 0.98 with twice as many). The latency hint
    /// keeps the optimum: a second request would only queue behind the first.
    public static func defaultRequests(optimal: Int, hint: String) -> Int {
        let one = max(1, optimal)
        return hint.lowercased() == "throughput" ? 2 * one : one
    }

    deinit {
        // Requests before the compiled model, the compiled model before the core.
        for slot in requestSlots { slot.release() }
        if let compiled { api.pointee.compiled_model_free(compiled) }
        if let core { api.pointee.core_free(core) }
        // The library stays mapped: OpenVINO's plugins keep threads that outlive the core briefly.
        api.deallocate()
    }

    static func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }

    /// The network file is a regular, non-empty file (OpenVINO's own error for an empty one is only
    /// a source location).
    static func checkNetworkFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw InferenceError.modelMissing("network file '\(path)' not found") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw InferenceError.badModel("network file '\(path)' is not a regular file") }
        guard st.st_size > 0 else { throw InferenceError.badModel("network file '\(path)' is empty (0 bytes): prepare it again (`make models`)") }
    }

    /// One input, and when its shape is static (N, C, H, W), H and W equal the sidecar's: the
    /// pre-processing feeds exactly one image of that size. Said in our words, not OpenVINO's check strings.
    static func checkInputs(_ api: UnsafeMutablePointer<cov_api>, _ net: OpaquePointer?, _ model: ModelDescriptor) throws {
        var inputs = 0, outputs = 0
        guard api.pointee.model_inputs_size(net, &inputs) == 0, api.pointee.model_outputs_size(net, &outputs) == 0 else {
            throw InferenceError.badModel("network '\(model.modelPath)': OpenVINO cannot list its inputs and outputs")
        }
        guard inputs == 1 else {
            throw InferenceError.badModel("network '\(model.modelPath)' has \(inputs) inputs; camclassd feeds exactly one image input " +
                                          "(export the classifier with a single input)")
        }
        guard outputs >= 1 else { throw InferenceError.badModel("network '\(model.modelPath)' has no output") }
        guard !api.pointee.model_is_dynamic(net) else { return }  // the pre-processing fixes H and W
        var port: OpaquePointer?
        guard api.pointee.model_const_input_by_index(net, 0, &port) == 0 else { return }
        defer { api.pointee.output_const_port_free(port) }
        var shape = cov_shape(rank: 0, dims: nil)
        guard api.pointee.const_port_get_shape(port, &shape) == 0 else { return }
        defer { _ = api.pointee.shape_free(&shape) }
        let dims = (0..<Int(max(0, min(shape.rank, 8)))).map { shape.dims[$0] }
        let sidecar = model.sidecarPath.map { "its sidecar '\($0)'" } ?? "the default sidecar values"
        guard dims.count == 4 else {
            throw InferenceError.badModel("network '\(model.modelPath)' takes an input of shape \(dims); an image classifier " +
                                          "takes [1, 3, height, width]")
        }
        let (c, h, w) = (dims[1], dims[2], dims[3])
        guard c == 3 else {
            throw InferenceError.badModel("network '\(model.modelPath)' takes \(c) channels (input shape \(dims)); camclassd feeds " +
                                          "3-channel images in NCHW layout")
        }
        guard h == Int64(model.inputHeight), w == Int64(model.inputWidth) else {
            throw InferenceError.badModel("network '\(model.modelPath)' takes \(w)x\(h) images (input shape \(dims)) but \(sidecar) " +
                                          "says input.width x input.height = \(model.inputWidth)x\(model.inputHeight): make them equal")
        }
    }

    static func error(_ api: UnsafeMutablePointer<cov_api>, _ status: cov_status, _ name: String) -> InferenceError {
        var message = ""
        if let last = api.pointee.get_last_err_msg?(), last.pointee != 0 {
            // OpenVINO's message opens with "Exception from src/…:84:" and "Check '…' failed at …":
            // locations, not reasons. The first line that is neither says what went wrong.
            let lines = String(cString: last).split(separator: "\n").map { String($0.drop(while: { $0 == " " || $0 == "\t" })) }.filter { !$0.isEmpty }
            let reason = lines.first { !$0.hasPrefix("Exception from") && !$0.hasPrefix("Check '") && !$0.hasPrefix("[") }
            message = reason ?? lines.first ?? ""
        }
        if message.isEmpty, let info = api.pointee.get_error_info(status) { message = String(cString: info) }
        return .call(name: name, status: status, message: message)
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let dup = strings.map { UnsafePointer(strdup($0)) }
    defer { dup.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return dup.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// One OpenVINO infer request whose input tensors wrap our own NV12 memory (host pointers) and
/// whose output tensor wraps our own float buffer: set once, so inference allocates nothing.
final class OpenVINOSlot: InferenceSlot, @unchecked Sendable {
    private let api: UnsafeMutablePointer<cov_api>
    private var request: OpaquePointer?
    private var yTensor: OpaquePointer?
    private var uvTensor: OpaquePointer?
    private var outTensor: OpaquePointer?
    private let buffer: NV12Buffer
    private let output: UnsafeMutableBufferPointer<Float>
    let classes: Int

    init(api: UnsafeMutablePointer<cov_api>, compiled: OpaquePointer?, width: Int, height: Int) throws {
        self.api = api
        func check(_ status: cov_status, _ name: String) throws {
            guard status == 0 else { throw OpenVINOEngine.error(api, status, name) }
        }
        // Dense planes (stride == width): that is the tensor shape OpenVINO expects.
        buffer = NV12Buffer(width: width, height: height, rowAlignment: 2)
        var req: OpaquePointer?
        try check(api.pointee.compiled_model_create_infer_request(compiled, &req), "create_infer_request")
        request = req
        func tensor(_ dims: [Int64], _ ptr: UnsafeMutableRawPointer, _ type: Int32) throws -> OpaquePointer? {
            var shape = cov_shape(rank: 0, dims: nil)
            try check(dims.withUnsafeBufferPointer { api.pointee.shape_create(Int64(dims.count), $0.baseAddress, &shape) },
                      "ov_shape_create")
            defer { _ = api.pointee.shape_free(&shape) }
            var t: OpaquePointer?
            try check(api.pointee.tensor_create_from_host_ptr(type, shape, ptr, &t), "ov_tensor_create_from_host_ptr")
            return t
        }
        let view = buffer.view
        yTensor = try tensor([1, Int64(height), Int64(width), 1], UnsafeMutableRawPointer(view.y), Int32(COV_ELEMENT_U8))
        uvTensor = try tensor([1, Int64(height / 2), Int64(width / 2), 2], UnsafeMutableRawPointer(view.uv), Int32(COV_ELEMENT_U8))
        try check(api.pointee.infer_request_set_input_tensor_by_index(req, 0, yTensor), "set_input_tensor(y)")
        try check(api.pointee.infer_request_set_input_tensor_by_index(req, 1, uvTensor), "set_input_tensor(uv)")

        // Learn the output's shape from the request's own tensor, then substitute ours.
        var own: OpaquePointer?
        try check(api.pointee.infer_request_get_output_tensor_by_index(req, 0, &own), "get_output_tensor(0)")
        var count = 0
        var elementType: Int32 = 0
        var shape = cov_shape(rank: 0, dims: nil)
        _ = api.pointee.tensor_get_size(own, &count)
        _ = api.pointee.tensor_get_element_type(own, &elementType)
        _ = api.pointee.tensor_get_shape(own, &shape)
        api.pointee.tensor_free(own)
        defer { _ = api.pointee.shape_free(&shape) }
        guard elementType == Int32(COV_ELEMENT_F32), count > 1 else {
            throw InferenceError.badModel("the model's first output must be f32 class scores, got element type \(elementType) x \(count)")
        }
        classes = count
        output = .allocate(capacity: count)
        output.initialize(repeating: 0)
        var t: OpaquePointer?
        try check(api.pointee.tensor_create_from_host_ptr(Int32(COV_ELEMENT_F32), shape, output.baseAddress, &t),
                  "ov_tensor_create_from_host_ptr(output)")
        outTensor = t
        try check(api.pointee.infer_request_set_output_tensor_by_index(req, 0, t), "set_output_tensor(0)")
    }

    var input: NV12MutableView { buffer.view }

    func infer(scores: UnsafeMutableBufferPointer<Float>) throws {
        let status = api.pointee.infer_request_infer(request)
        guard status == 0 else { throw OpenVINOEngine.error(api, status, "ov_infer_request_infer") }
        let n = min(scores.count, classes)
        scores.baseAddress!.update(from: output.baseAddress!, count: n)
        try Postprocess.requireFinite(UnsafeBufferPointer(rebasing: scores[0..<n]))
    }

    func release() {
        if let request { api.pointee.infer_request_free(request) }
        request = nil
        for t in [yTensor, uvTensor, outTensor] where t != nil { api.pointee.tensor_free(t) }
        yTensor = nil; uvTensor = nil; outTensor = nil
    }

    deinit {
        release()
        output.deallocate()
    }
}
