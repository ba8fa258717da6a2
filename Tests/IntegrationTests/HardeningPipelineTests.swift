import CamclassTestSupport
import Client
import WireFormat
import Capture
import Foundation
import Glibc
import ImageOps
@testable import Inference
import Logging
import Pipeline
import Support
import Synchronization
import Testing

/// A test double for a flaky accelerator: every second inference fails (like the BPU in issue 11
/// F19), the others return constant probabilities. Not a real model.
final class AlternatelyFailingEngineDouble: InferenceEngine, @unchecked Sendable {
    final class Slot: InferenceSlot, @unchecked Sendable {
        let buffer = NV12Buffer(width: 224, height: 224)
        let calls: Counter
        init(calls: Counter) { self.calls = calls }
        var input: NV12MutableView { buffer.view }
        func infer(scores out: UnsafeMutableBufferPointer<Float>) throws {
            usleep(1000)
            if calls.value.add(1, ordering: .relaxed).newValue % 2 == 0 {
                throw InferenceError.call(name: "hbDNNInfer", status: -6000001, message: "task failed (test double)")
            }
            for i in 0..<out.count { out[i] = i == 285 ? 0.9 : 0.0001 }
        }
    }

    final class Counter: Sendable { let value = Atomic<Int>(0) }
    let calls = Counter()
    let info: EngineInfo
    let slots: [any InferenceSlot]

    init() {
        info = EngineInfo(backend: "double", device: "none", precision: "f32", inputWidth: 224, inputHeight: 224,
                          classes: 1000, slots: 2, outputsLogits: false, summary: "AlternatelyFailingEngineDouble")
        slots = (0..<2).map { [calls] _ in Slot(calls: calls) }
    }
}

/// Issue 11 F19, the pipeline side: an engine failing every second inference logs one line per
/// interval with a count, not a line per failure.
/// Environment: none (a test-double engine and an in-memory replay, in process).
@Suite(.serialized) struct HardeningPipelineTests {
    @Test func inferenceFailuresAreRateLimited() async throws {
        let capture = HardeningLogCapture()
        let frames = (0..<4).map { _ in NV12Buffer(width: 320, height: 240) }
        let source = ReplaySource(name: "double", images: frames, fileNames: ["0", "1", "2", "3"], fps: 0, loop: true)
        var po = PipelineOptions()
        po.frameLimit = 150
        let pipeline = ClassificationPipeline(source: source, engine: AlternatelyFailingEngineDouble(),
                                              labels: LabelSet(names: (0..<1000).map { "c\($0)" }),
                                              modelName: "double", sinks: [], options: po, logger: capture.logger)
        try pipeline.start()
        try await onThread { pipeline.wait() }
        let errors = pipeline.counters.inferenceErrors
        #expect(errors >= 100, "only \(errors) failures: the double did not fail every second time")
        let lines = capture.count(.warning, containing: "inference failed")
        #expect(lines == 1, "\(lines) 'inference failed' lines for \(errors) failures")
        #expect(pipeline.error == nil, "alternating failures are not 'unhealthy': \(String(describing: pipeline.error))")
    }
}
