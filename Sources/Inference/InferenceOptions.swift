import Support

/// Which engine runs the model.
public enum InferenceBackend: String, ConfigEnum {
    /// Any CPU (or GPU/NPU) through OpenVINO's C API.
    case openvino
    /// The RDK X5's BPU through the vendor's libdnn.so (hbDNN).
    case bpu
}

/// OpenVINO's inference precision; `auto` keeps the device default (bf16 on CPUs that have it).
public enum InferencePrecision: String, ConfigEnum {
    case auto, bf16, f16, f32
}

/// OpenVINO's performance hint.
public enum PerformanceHint: String, ConfigEnum {
    case throughput, latency
}

/// The `inference:` section: the backend and its settings. A reload compares it whole: any change
/// reloads the engine.
public struct InferenceOptions: ConfigSection {
    public static let section = "inference"
    public var backend: InferenceBackend = .openvino
    /// OpenVINO device: CPU, GPU, NPU, AUTO, … (passed to OpenVINO as is).
    public var device = "CPU"
    public var precision: InferencePrecision = .auto
    public var performanceHint: PerformanceHint = .throughput
    /// Requests (OpenVINO) or tasks (BPU) in flight, one worker each; 0 = the engine's choice
    /// (OpenVINO: `OpenVINOEngine.defaultRequests`; 4 on the BPU, which keeps one BPU core busy).
    public var workers = 0
    /// libopenvino_c.so or its directory; "" = search (CAMCLASSD_OPENVINO_LIB, the wheel, …).
    public var openVINOLibrary = ""
    /// Passed to dlopen as is: a bare name uses the loader's search path, a path with '/' is a file.
    public var bpuLibrary = "libdnn.so"
    /// Which model of a packed `.bin` to run; "" = the only one.
    public var bpuModelName = ""
    /// hbDNNWaitTaskDone timeout.
    public var bpuTimeoutMs = 1000
    /// hbDNNInferCtrlParam.priority, 0 (lowest) … 255 (pre-empting).
    public var bpuPriority = 0

    public init() {}

    public init(reader r: inout ConfigSectionReader) throws(ConfigError) {
        self.init()
        backend = try r.choice("backend", backend)
        device = try r.string("device", device, maxBytes: 64, allowEmpty: false)
        if !Self.isDeviceName(device) {
            throw r.invalid("device", device, "expected an OpenVINO device: CPU, GPU, GPU.<n>, NPU, or AUTO/HETERO/MULTI/BATCH:<devices>")
        }
        precision = try r.choice("precision", precision)
        performanceHint = try r.choice("performance_hint", performanceHint)
        workers = try r.int("workers", workers, 0...64, unit: "(0 = the engine's choice)")
        openVINOLibrary = try r.path("openvino_library", openVINOLibrary)
        bpuLibrary = try r.path("bpu_library", bpuLibrary)
        bpuModelName = try r.string("bpu_model_name", bpuModelName, maxBytes: 256)
        bpuTimeoutMs = try r.int("bpu_timeout_ms", bpuTimeoutMs, 1...600_000, unit: "ms")
        bpuPriority = try r.int("bpu_priority", bpuPriority, 0...255)
    }

    /// OpenVINO's device names: a plain device (optionally `.index`), or a virtual device over a
    /// comma-separated list of them.
    static func isDeviceName(_ s: String) -> Bool {
        func plain(_ d: Substring) -> Bool {
            let parts = d.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            guard ["CPU", "GPU", "NPU"].contains(String(parts[0])) else { return false }
            return parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy(\.isNumber))
        }
        if plain(Substring(s)) || s == "AUTO" { return true }
        guard let colon = s.firstIndex(of: ":"), ["AUTO", "HETERO", "MULTI", "BATCH"].contains(String(s[..<colon])) else { return false }
        let list = s[s.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false)
        return !list.isEmpty && list.allSatisfy(plain)
    }

    /// The OpenVINO engine's options.
    public var openVINO: OpenVINOOptions {
        var o = OpenVINOOptions()
        o.device = device
        o.precision = precision.rawValue
        o.performanceHint = performanceHint.rawValue
        o.workers = workers
        o.libraryPath = openVINOLibrary.isEmpty ? nil : openVINOLibrary
        return o
    }

    /// The BPU engine's options.
    public var bpu: BPUOptions {
        var o = BPUOptions()
        o.libraryPath = bpuLibrary.isEmpty ? "libdnn.so" : bpuLibrary
        o.modelName = bpuModelName.isEmpty ? nil : bpuModelName
        if workers > 0 { o.workers = workers }
        o.timeoutMs = bpuTimeoutMs
        o.priority = bpuPriority
        return o
    }
}
