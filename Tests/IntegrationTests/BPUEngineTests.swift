import CamclassTestSupport
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Capture
import Foundation
import Glibc
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Synchronization
import Testing


/// The test double's process-wide counters, read through its own exports. The library is dlopen'ed
/// by path here and by the engine: the loader maps it once, so both see the same state.
final class StandInDNN: @unchecked Sendable {
    let path: String
    private let handle: UnsafeMutableRawPointer
    private let statsFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int) -> Int32
    private let resetFn: @convention(c) () -> Void

    private static let cache = Mutex<StandInDNN?>(nil)

    static func open() throws -> StandInDNN {
        let path = try TestEnv.standInDNN()
        return try cache.withLock { cached in
            if let cached { return cached }
            let s = try StandInDNN(path: path)
            cached = s  // kept open for the whole run, so the counters persist between engines
            return s
        }
    }

    private init(path: String) throws {
        self.path = path
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw InferenceError.libraryMissing("dlopen(\(path)): \(String(cString: dlerror()))")
        }
        guard let s = dlsym(h, "standin_dnn_stats"), let r = dlsym(h, "standin_dnn_reset_stats") else {
            throw InferenceError.libraryMissing("\(path) is not the stand-in (no standin_dnn_stats)")
        }
        handle = h
        statsFn = unsafeBitCast(s, to: (@convention(c) (UnsafeMutablePointer<CChar>?, Int) -> Int32).self)
        resetFn = unsafeBitCast(r, to: (@convention(c) () -> Void).self)
    }

    func reset() { resetFn() }

    func stats() -> [String: Int] {
        var buf = [CChar](repeating: 0, count: 8192)
        let n = statsFn(&buf, buf.count)
        precondition(n > 0 && Int(n) < buf.count, "stand-in stats truncated")
        let json = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let obj = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:]
        return obj.compactMapValues { $0 as? Int }
    }
}

/// A fake model file (key=value lines) in a fresh temp dir.
struct BPUFakeModel {
    let dir: String
    let path: String
    let classes: Int

    init(_ keys: [String: String], file: String = "model.standin") {
        dir = TestEnv.tempDir("bpu")
        path = dir + "/" + file
        classes = Int(keys["classes"] ?? "1000")!
        let text = "# stand-in fake model written by BPUEngineTests\n" +
            keys.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value)" }.joined(separator: "\n") + "\n"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }

    /// The stand-in's deterministic function: class = mean luma * classes / 256.
    func expectedClass(luma: Int) -> Int { min(classes - 1, max(0, Int(Double(luma) * Double(classes) / 256.0))) }
}

/// A 640x480 NV12 frame of one luma (UV neutral): the stand-in's class follows the mean luma, and
/// scaling a constant image keeps it constant.
func bpuConstantFrame(luma: UInt8, width: Int = 640, height: Int = 480) -> NV12Buffer {
    let b = NV12Buffer(width: width, height: height)
    let v = b.view
    for y in 0..<height { (v.y + y * v.layout.strideY).update(repeating: luma, count: width) }
    for y in 0..<height / 2 { (v.uv + y * v.layout.strideUV).update(repeating: 128, count: width) }
    return b
}

@Suite("BPU backend on the stand-in libdnn.so", .serialized)
struct BPUEngineTests {
    let quiet = Logger(label: "bpu-test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Generous timeout by default: only the timeout tests should depend on how busy the machine is.
    func options(_ standIn: StandInDNN, workers: Int = 4, timeoutMs: Int = 10_000, modelName: String? = nil) -> BPUOptions {
        var o = BPUOptions()
        o.libraryPath = standIn.path
        o.workers = workers
        o.timeoutMs = timeoutMs
        o.modelName = modelName
        return o
    }

    func engine(_ model: BPUFakeModel, _ o: BPUOptions, logger: Logger? = nil) throws -> BPUEngine {
        try BPUEngine(model: ModelDescriptor(name: "standin", modelPath: model.path), classes: nil, options: o,
                      logger: logger ?? quiet)
    }

    /// Scales `frame` into the slot's input (the pipeline's only copy) and runs it; the top class
    /// and the raw scores.
    func classify(_ slot: any InferenceSlot, _ frame: NV12Buffer, _ scores: UnsafeMutableBufferPointer<Float>) throws -> Int {
        NV12Ops.scale(frame.view.readOnly, into: slot.input, mode: .crop)
        try slot.infer(scores: scores)
        var best = 0
        for i in scores.indices where scores[i] > scores[best] { best = i }
        return best
    }

    /// Runs `body(slotIndex)` on one thread per slot at once; returns once every thread has ended
    /// (joined, so nothing the bodies captured outlives the call).
    func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = (0..<count).map { i in DedicatedThread(name: "bpu-test\(i)") { body(i) } }
        threads.forEach { $0.join() }
    }

    /// No leaks once the engine is gone: every allocation freed, every task released, the model released.
    func expectClean(_ s: [String: Int], models: Int = 1, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(s["allocs"] == s["frees"], "allocs \(s["allocs"] ?? -1) != frees \(s["frees"] ?? -1)", sourceLocation: sourceLocation)
        #expect(s["allocs_live"] == 0, sourceLocation: sourceLocation)
        #expect(s["free_errors"] == 0, sourceLocation: sourceLocation)
        #expect(s["tasks_created"] == s["tasks_released"],
                "tasks created \(s["tasks_created"] ?? -1) != released \(s["tasks_released"] ?? -1)", sourceLocation: sourceLocation)
        #expect(s["tasks_unreleased_at_model_release"] == 0, sourceLocation: sourceLocation)
        #expect(s["in_flight"] == 0, sourceLocation: sourceLocation)
        #expect(s["models_released"] == models, sourceLocation: sourceLocation)
        #expect(s["invalid_calls"] == 0, "the engine made a call the stand-in rejected", sourceLocation: sourceLocation)
        #expect(s["unflushed_inputs"] == 0, "hbDNNInfer without CLEAN on its input", sourceLocation: sourceLocation)
        #expect(s["uninvalidated_outputs"] == 0, "output read/reused without INVALIDATE", sourceLocation: sourceLocation)
    }

    // MARK: loading

    @Test func loadsThroughTheSameDlopenPath() throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel([:])
        defer { model.remove() }
        do {
            let e = try engine(model, options(standIn))
            #expect(e.info.backend == "bpu")
            #expect(e.info.inputWidth == 224 && e.info.inputHeight == 224)
            #expect(e.info.classes == 1000)
            #expect(e.info.slots == 4 && e.slots.count == 4)
            #expect(e.info.outputsLogits)
            #expect(e.libraryVersion.contains("standin"))
            #expect(e.modelName == "standin_nv12_224" && e.modelNames == ["standin_nv12_224"])
            let s = standIn.stats()
            #expect(s["models_loaded"] == 1)
            #expect(s["allocs"] == 8, "one input and one output tensor per slot, allocated at start")
            // The slots' inputs are the tensors' own memory, each distinct.
            let inputs = Set(e.slots.map { UInt(bitPattern: $0.input.y) })
            #expect(inputs.count == 4)
            #expect(e.slots[0].input.layout.strideY == 224)
            #expect(e.slots[0].input.uv == e.slots[0].input.y + 224 * 224)
        }
        expectClean(standIn.stats())
    }

    @Test func logsTheModelPropertiesOnceAtStart() throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["output": "S8_SHIFT", "pad": "16"])
        defer { model.remove() }
        let capture = LogCapture()
        do {
            let e = try engine(model, options(standIn, workers: 1), logger: capture.logger)
            let atStart = capture.all.count
            let frame = bpuConstantFrame(luma: 90)
            let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e.info.classes)
            defer { scores.deallocate() }
            for _ in 0..<20 { _ = try classify(e.slots[0], frame, scores) }
            #expect(capture.all.count == atStart, "nothing is logged per frame")
            let text = capture.all.map(\.1)
            #expect(text.contains { $0.contains("input[0] 'input': IMG_NV12 NCHW valid (1,3,224,224)") })
            #expect(text.contains { $0.contains("output[0] 'output': S8 NCHW valid (1,1000,1,1) aligned (1,1008,1,1)") &&
                $0.contains("quanti SHIFT axis 1") })
            #expect(e.modelInfo.count == 3)
        }
        expectClean(standIn.stats())
    }

    // MARK: classification

    struct FormatCase: CustomTestStringConvertible, Sendable {
        let keys: [String: String]
        var testDescription: String { keys.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
    }

    static let formats: [FormatCase] = [
        FormatCase(keys: ["output": "F32"]),
        FormatCase(keys: ["output": "S32_SCALE"]),
        FormatCase(keys: ["output": "S8_SHIFT"]),
        FormatCase(keys: ["output": "S16_SCALE"]),
        FormatCase(keys: ["output": "F32", "layout": "NHWC"]),
        FormatCase(keys: ["output": "S32_SCALE", "layout": "NHWC", "pad": "16"]),
        FormatCase(keys: ["output": "S8_SHIFT", "pad": "64"]),
        FormatCase(keys: ["output": "S16_SCALE", "layout": "NHWC", "pad": "3"]),
        FormatCase(keys: ["output": "S32_SCALE", "input_stride_align": "64", "width": "200", "height": "150"]),
        FormatCase(keys: ["output": "S8_SHIFT", "input_stride_align": "32", "width": "320", "height": "240", "layout": "NHWC"]),
        FormatCase(keys: ["output": "F32", "classes": "10", "pad": "8"]),
    ]

    @Test(arguments: formats)
    func classifiesFramesForEachOutputFormat(_ c: FormatCase) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(c.keys)
        defer { model.remove() }
        do {
            let e = try engine(model, options(standIn, workers: 2))
            let width = Int(c.keys["width"] ?? "224")!, height = Int(c.keys["height"] ?? "224")!
            #expect(e.info.inputWidth == width && e.info.inputHeight == height, "input size from validShape")
            #expect(e.info.classes == model.classes, "classes from validShape, not the padded alignedShape")
            if c.keys["input_stride_align"] != nil {
                // Padded model input: packed NV12 with alignedShape = validShape, as the vendor's binding does.
                #expect(e.slots[0].input.layout.strideY == width, "NV12 written packed (row stride = width)")
                #expect(e.slots[0].input.uv == e.slots[0].input.y + width * height)
            }
            let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e.info.classes)
            defer { scores.deallocate() }
            // Lumas giving even and odd classes: a decoder that ignores quantizeAxis gets even ones wrong.
            for luma in [0, 1, 16, 37, 100, 128, 129, 200, 254, 255] {
                for slot in e.slots {
                    let cls = try classify(slot, bpuConstantFrame(luma: UInt8(luma)), scores)
                    let want = model.expectedClass(luma: luma)
                    #expect(cls == want, "luma \(luma): class \(cls), expected \(want)")
                    // Dequantised values, within the stand-in's quantisation error.
                    #expect(abs(scores[want] - 8) < 0.01, "luma \(luma): top score \(scores[want])")
                    let second = (want + 1) % model.classes
                    if second != want { #expect(abs(scores[second] - 1) < 0.01, "luma \(luma): second score \(scores[second])") }
                    let rest = scores.indices.filter { $0 != want && $0 != second }.map { abs(scores[$0]) }.max() ?? 0
                    #expect(rest < 0.01, "luma \(luma): other scores up to \(rest) (padding or stride read wrongly?)")
                }
            }
        }
        expectClean(standIn.stats())
    }

    // MARK: concurrency

    @Test(arguments: [2, 4])
    func keepsWorkersTasksInFlight(workers: Int) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["latency_us": "4000", "cores": "1", "output": "S32_SCALE"])
        defer { model.remove() }
        let wrong = Atomic<Int>(0), failed = Atomic<Int>(0), ready = Atomic<Int>(0)
        let perThread = 25
        do {
            let e = try engine(model, options(standIn, workers: workers))
            let start = Date()
            let slots = e.slots
            onThreads(workers) { i in
                let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1000)
                defer { scores.deallocate() }
                let luma = 20 + 50 * i  // each slot its own image: results must not cross slots
                let frame = bpuConstantFrame(luma: UInt8(luma))
                // Start together, so a thread scheduled late on a busy machine still overlaps the others.
                ready.add(1, ordering: .relaxed)
                while ready.load(ordering: .relaxed) < workers { usleep(100) }
                for _ in 0..<perThread {
                    NV12Ops.scale(frame.view.readOnly, into: slots[i].input, mode: .crop)
                    do {
                        try slots[i].infer(scores: scores)
                        var best = 0
                        for k in scores.indices where scores[k] > scores[best] { best = k }
                        if best != model.expectedClass(luma: luma) { wrong.add(1, ordering: .relaxed) }
                    } catch { failed.add(1, ordering: .relaxed) }
                }
            }
            let elapsed = Date().timeIntervalSince(start)
            let s = standIn.stats()
            #expect(s["max_in_flight"] == workers, "the double saw \(s["max_in_flight"] ?? -1) tasks in flight, want \(workers)")
            #expect(s["max_active"] == workers)
            #expect(s["tasks_created"] == workers * perThread)
            // One simulated core at 4 ms a task: the whole run is bounded below by the serial BPU time.
            #expect(elapsed >= Double(workers * perThread) * 0.004 * 0.95)
        }
        #expect(wrong.load(ordering: .relaxed) == 0)
        #expect(failed.load(ordering: .relaxed) == 0)
        expectClean(standIn.stats())
    }

    // MARK: faults

    struct FaultCase: CustomTestStringConvertible, Sendable {
        let key: String
        let every: Int
        let call: String
        let status: Int32
        var testDescription: String { "\(key)=\(every)" }
    }

    static let faults: [FaultCase] = [
        FaultCase(key: "fail_infer_every", every: 3, call: "hbDNNInfer", status: -6000012),
        FaultCase(key: "timeout_every", every: 4, call: "hbDNNWaitTaskDone", status: -6000008),
        FaultCase(key: "fail_task_status_every", every: 2, call: "hbDNNWaitTaskDone", status: -6000012),
    ]

    @Test(arguments: faults)
    func survivesInjectedFaultsWithoutLeaking(_ f: FaultCase) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel([f.key: String(f.every), "latency_us": "500", "output": "S16_SCALE"])
        defer { model.remove() }
        let workers = 4, perThread = 12
        let ok = Atomic<Int>(0), wrong = Atomic<Int>(0), expectedFailures = Atomic<Int>(0)
        let other = Mutex<[String]>([])
        do {
            // Short only where tasks are meant to hang: a loaded machine can delay a healthy task by tens of ms.
            let e = try engine(model, options(standIn, workers: workers, timeoutMs: f.key == "timeout_every" ? 250 : 10_000))
            let slots = e.slots
            onThreads(workers) { i in
                let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1000)
                defer { scores.deallocate() }
                let luma = 30 + 60 * i
                let frame = bpuConstantFrame(luma: UInt8(luma))
                for _ in 0..<perThread {
                    NV12Ops.scale(frame.view.readOnly, into: slots[i].input, mode: .crop)
                    do {
                        try slots[i].infer(scores: scores)
                        var best = 0
                        for k in scores.indices where scores[k] > scores[best] { best = k }
                        if best == model.expectedClass(luma: luma) { ok.add(1, ordering: .relaxed) } else { wrong.add(1, ordering: .relaxed) }
                    } catch InferenceError.call(let name, let status, _) where name == f.call && status == f.status {
                        expectedFailures.add(1, ordering: .relaxed)
                    } catch {
                        other.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        let total = workers * perThread
        let failures = expectedFailures.load(ordering: .relaxed)
        let s = standIn.stats()
        #expect(other.withLock { $0 } == [], "unexpected errors")
        #expect(ok.load(ordering: .relaxed) + failures == total, "the slots keep working after a failure")
        #expect(wrong.load(ordering: .relaxed) == 0)
        if f.key == "timeout_every" {
            #expect(s["tasks_stuck"] == total / f.every)
            // Every hung task times out; on a heavily loaded machine a healthy one may too, reported alike.
            #expect(failures == s["wait_timeouts"] && failures >= total / f.every, "\(failures) timeouts")
        } else {
            #expect(failures == total / f.every, "every \(f.every)th of \(total) fails")
        }
        expectClean(s)
    }

    @Test(arguments: [0, 1, 3, 7])
    func allocationFailureAtStartIsAClearErrorAndFreesWhatWasAllocated(after: Int) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["fail_alloc_after": String(after)])
        defer { model.remove() }
        #expect {
            _ = try engine(model, options(standIn, workers: 4))
        } throws: { error in
            guard case InferenceError.call(let name, let status, let message) = error else { return false }
            return name.hasPrefix("hbSysAllocCachedMem(") && status == -6000130 && message == "HB_SYS_OUT_OF_MEMORY"
        }
        let s = standIn.stats()
        #expect(s["allocs"] == after)
        expectClean(s)
    }

    // MARK: health

    @Test func consecutiveFailuresMakeTheEngineUnhealthyAndTheDaemonFail() async throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["fail_infer_every": "1"])
        defer { model.remove() }
        do {
            let e = try engine(model, options(standIn, workers: 2))
            let source = ReplaySource(name: "unhealthy", images: [bpuConstantFrame(luma: 50)], fileNames: ["a.nv12"], fps: 0, loop: true)
            var o = PipelineOptions()
            o.maxConsecutiveFailures = 7
            let pipeline = ClassificationPipeline(source: source, engine: e, labels: LabelSet(names: (0..<1000).map { "c\($0)" }),
                                                  modelName: "standin", sinks: [], options: o, logger: quiet)
            try pipeline.start()
            #expect(pipeline.waitFinished(timeoutNs: 10_000_000_000), "the pipeline stops on its own")
            pipeline.stop()
            pipeline.wait()
            guard case .engineUnhealthy(let why)? = pipeline.error else {
                Issue.record("expected engineUnhealthy, got \(String(describing: pipeline.error))")
                return
            }
            #expect(why.contains("hbDNNInfer"))
            #expect(pipeline.counters.inferenceErrors >= 7)
            #expect(pipeline.counters.published == 0)
        }
        expectClean(standIn.stats())

        // The daemon's run fails with that error (camclassd exits non-zero on it).
        standIn.reset()
        let dir = TestEnv.tempDir("bpu-unhealthy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeNV12Frames(dir: dir + "/frames", lumas: [50])
        var c = DaemonConfig()
        c.inference.backend = .bpu
        c.inference.bpuLibrary = standIn.path
        c.model.path = model.path
        c.source.path = dir + "/frames"
        c.source.fps = 0
        c.pipeline.maxConsecutiveFailures = 5
        c.publish.path = dir + "/d.sock"
        c.log.path = dir + "/d.log"
        do {
            let daemon = try buildDaemon(config: c, logger: quiet)
            do {
                try await daemon.run()
                Issue.record("the daemon ran on although every inference failed")
            } catch let e as DaemonError {
                // What camclassd exits with: non-zero, so systemd restarts it.
                #expect(e.status.code != 0)
                #expect(e.message.contains("unhealthy") && e.message.contains("hbDNNInfer"), "\(e.message)")
            } catch {
                #expect("\(error)".contains("unhealthy"), "\(error)")
            }
        }
        expectClean(standIn.stats())
    }

    // MARK: configuration errors

    @Test func aMissingLibraryIsOneClearError() throws {
        let standIn = try StandInDNN.open()  // only to fail clearly when the suite is run without `make test`
        _ = standIn
        let model = BPUFakeModel([:])
        defer { model.remove() }
        var o = BPUOptions()
        o.libraryPath = "/nonexistent/libdnn.so"
        #expect {
            _ = try BPUEngine(model: ModelDescriptor(name: "m", modelPath: model.path), classes: nil, options: o, logger: quiet)
        } throws: { error in
            guard case InferenceError.libraryMissing(let m) = error else { return false }
            return m.hasPrefix("libdnn.so not found at '/nonexistent/libdnn.so'") && m.contains("RDK board") && !m.contains("\n")
        }
        // A library that is not libdnn: names the missing symbol.
        o.libraryPath = "libm.so.6"
        #expect {
            _ = try BPUEngine(model: ModelDescriptor(name: "m", modelPath: model.path), classes: nil, options: o, logger: quiet)
        } throws: { error in
            guard case InferenceError.libraryMissing(let m) = error else { return false }
            return m.contains("lacks symbol 'hbDNNInitializeFromFiles'")
        }
        // Through the daemon: a start-up error with EX_UNAVAILABLE.
        try writeNV12Frames(dir: model.dir + "/frames", lumas: [10])
        var c = DaemonConfig()
        c.inference.backend = .bpu
        c.inference.bpuLibrary = "/nonexistent/libdnn.so"
        c.model.path = model.path
        c.source.path = model.dir + "/frames"
        do {
            _ = try buildDaemon(config: c, logger: quiet)
            Issue.record("buildDaemon succeeded without libdnn.so")
        } catch let e as DaemonError {
            #expect(e.status == .unavailable)
            #expect(e.message.contains("libdnn.so not found"))
        }
    }

    @Test func modelSelectionAndBadModelsAreClearErrors() throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["name": "EfficientNet_B2_224x224_nv12"])
        defer { model.remove() }
        #expect {
            _ = try engine(model, options(standIn, modelName: "resnet50"))
        } throws: { error in
            "\(error)".contains("no model named 'resnet50'") && "\(error)".contains("EfficientNet_B2_224x224_nv12")
        }
        #expect(try engine(model, options(standIn, modelName: "EfficientNet_B2_224x224_nv12")).modelName == "EfficientNet_B2_224x224_nv12")

        let broken = BPUFakeModel(["colour": "blue"])
        defer { broken.remove() }
        #expect {
            _ = try engine(broken, options(standIn))
        } throws: { error in
            guard case InferenceError.call(let name, let status, _) = error else { return false }
            return name.hasPrefix("hbDNNInitializeFromFiles(") && status == -6000002
        }
        #expect(throws: InferenceError.self) {
            _ = try BPUEngine(model: ModelDescriptor(name: "m", modelPath: model.dir + "/missing.bin"), classes: nil,
                              options: options(standIn), logger: quiet)
        }
        // Labels that disagree with the model's class count.
        let ten = BPUFakeModel(["classes": "10"])
        defer { ten.remove() }
        #expect {
            _ = try BPUEngine(model: ModelDescriptor(name: "m", modelPath: ten.path), classes: 1000, options: options(standIn), logger: quiet)
        } throws: { error in
            "\(error)".contains("outputs 10 scores but its labels have 1000 names")
        }
        expectClean(standIn.stats(), models: 3)
    }

    @Test func aBareBinGetsImageNetLabelsAndLogitsAndASidecarOverrides() throws {
        let dir = TestEnv.tempDir("bpu-bin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/Foo_224x224_nv12.bin", contents: Data("name = foo\n".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/imagenet1k-labels.txt",
                                       contents: Data((0..<1000).map { "label \($0)" }.joined(separator: "\n").utf8))
        let bare = try ModelDescriptor.load(path: dir + "/Foo_224x224_nv12.bin")
        #expect(bare.labelsPath == dir + "/imagenet1k-labels.txt")
        #expect(bare.outputsLogits)
        try "model: Foo_224x224_nv12.bin\ninput: {width: 224, height: 224}\noutput: probabilities\nlabels: mine.txt\n"
            .write(toFile: dir + "/Foo_224x224_nv12.model.yaml", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/mine.txt", contents: Data("a\nb\n".utf8))
        let side = try ModelDescriptor.load(path: dir + "/Foo_224x224_nv12.bin")
        #expect(side.labelsPath == dir + "/mine.txt")
        #expect(!side.outputsLogits)
    }

    @Test func theCatalogueListsTheFifteenSeedModels() throws {
        let cat = try ModelCatalogue.load(path: TestEnv.repoRoot + "/config/models.yaml")
        #expect(cat.entries.count == 15)
        let b2 = try #require(cat.entry(matching: "EfficientNet_B2_224x224_nv12"))
        #expect(b2.latencyMs == 3.31 && b2.fps4t == 376.77)
        #expect(cat.url(for: b2) == "https://archive.d-robotics.cc/downloads/rdk_model_zoo/rdk_x5/EfficientNet_B2_224x224_nv12.bin")
        #expect(cat.entry(matching: "models/EfficientViT_m5_224x224_nv12.bin")?.name == "EfficientViT_MSRA_m5")
        #expect(cat.entry(matching: "fastvit_t8")?.name == "FastViT_T8")
        #expect(cat.entry(matching: "efficientnet_lite0") == nil)
        #expect(Set(cat.entries.map(\.bin)).count == 15)
    }

    // MARK: end to end

    /// Raw `<name>_<W>x<H>.nv12` frames of constant luma, one per file.
    func writeNV12Frames(dir: String, lumas: [Int], width: Int = 320, height: Int = 240) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (i, luma) in lumas.enumerated() {
            var bytes = [UInt8](repeating: UInt8(luma), count: width * height)
            bytes += [UInt8](repeating: 128, count: width * height / 2)
            _ = FileManager.default.createFile(atPath: dir + "/frame\(i)_luma\(luma)_\(width)x\(height).nv12", contents: Data(bytes))
        }
    }

    @Test func theWholeDaemonRunsOnTheStandInOverTheSocket() async throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let dir = TestEnv.tempDir("bpu-e2e")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A "board" model: a .bin (the stand-in's text model) with its sidecar and labels.
        // 20 ms a task, 4 in flight: 150 frames take ~0.75 s, time for the subscriber (which
        // connects once the socket exists) to see most of them. (At 2 ms the zero-copy pipeline
        // finished before it had connected.)
        try "name = EfficientNet_B2_224x224_nv12\noutput = S8_SHIFT\npad = 16\nlatency_us = 20000\n"
            .write(toFile: dir + "/EfficientNet_B2_224x224_nv12.bin", atomically: true, encoding: .utf8)
        try "name: effnet-b2-standin\nmodel: EfficientNet_B2_224x224_nv12.bin\ninput: {width: 224, height: 224}\nlabels: labels.txt\n"
            .write(toFile: dir + "/EfficientNet_B2_224x224_nv12.model.yaml", atomically: true, encoding: .utf8)
        try (0..<1000).map { "thing-\($0)" }.joined(separator: "\n")
            .write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        let lumas = [37, 128, 200, 90]
        try writeNV12Frames(dir: dir + "/frames", lumas: lumas)
        let expected = Dictionary(uniqueKeysWithValues: lumas.enumerated().map {
            ("frame\($0.offset)_luma\($0.element)_320x240.nv12", min(999, $0.element * 1000 / 256))
        })

        var c = DaemonConfig()
        c.inference.backend = .bpu
        c.inference.bpuLibrary = standIn.path
        c.inference.bpuTimeoutMs = 10_000  // no frame may fail here, however busy the machine
        c.model.path = dir + "/EfficientNet_B2_224x224_nv12.model.yaml"
        c.source.path = dir + "/frames"
        c.source.fps = 0  // unpaced: every frame is classified, and the workers are saturated
        c.frameLimit = 150
        c.publish.path = dir + "/camclassd.sock"
        c.log.path = dir + "/classifications.log"
        let (lines, counters) = try await runDaemon(c)
        #expect(counters.published == c.frameLimit)
        #expect(counters.inferenceErrors == 0)
        let records = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            .filter { $0["type"] as? String == "classification" }
        #expect(records.count >= 60, "received \(records.count) of \(c.frameLimit!) records")
        for r in records {
            let file = try #require(r["file"] as? String)
            let top = try #require((r["top"] as? [[String: Any]])?.first)
            let want = try #require(expected[file])
            #expect(top["class"] as? Int == want, "\(file): \(top)")
            #expect(top["label"] as? String == "thing-\(want)")
            // Logits 8 and 1 through softmax over 1000 classes.
            let score = top["score"] as? Double ?? 0
            #expect(score > 0.7 && score < 0.8, "softmax of the logits: \(score)")
            #expect(r["model"] as? String == "effnet-b2-standin")
        }
        let s = standIn.stats()
        #expect(s["max_in_flight"] == 4, "the daemon keeps its 4 workers' tasks in flight")
        expectClean(s)  // the daemon is gone: engine, tensors and model released
    }

    /// Builds and runs the daemon until its frame limit, subscribed over its socket; the lines
    /// received and the final counters. The daemon is released on return.
    func runDaemon(_ c: DaemonConfig) async throws -> ([String], PipelineCounters) {
        let daemon = try buildDaemon(config: c, logger: quiet)
        #expect(daemon.engine.info.backend == "bpu" && daemon.engine.slots.count == 4)
        let run = Task { try await daemon.run() }
        var connection: SubscriberConnection?
        for _ in 0..<300 where connection == nil {
            connection = try? SubscriberConnection(path: c.publish.path)
            if connection == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let conn = try #require(connection, "could not connect to \(c.publish.path)")
        // Read on a thread of its own: blocking reads must not hold the cooperative pool.
        let lines: [String] = try await withCheckedThrowingContinuation { cont in
            Thread {
                var out: [String] = []
                let deadline = Date().addingTimeInterval(30)
                do {
                    while Date() < deadline, let line = try conn.readLine(timeoutMs: 5000) { out.append(line) }
                    cont.resume(returning: out)
                } catch { cont.resume(throwing: error) }
            }.start()
        }
        try await run.value
        return (lines, daemon.pipeline.counters)
    }
}
