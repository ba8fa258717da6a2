import CamclassTestSupport
import Client
import WireFormat
import Foundation
import ImageOps
import Inference
import Logging
import Testing

/// Issue 11, BPU: padded NV12 input written packed (alignedShape = validShape, as the vendor's
/// binding does), a timed-out task's late write never reaching a later result, and output strides
/// read as bytes (or as elements when only that fits).
/// Needs the stand-in libdnn.so (CAMCLASS_TEST_STANDIN_DNN, built by `make standin`).
@Suite("Hardening: BPU backend against the vendor's conventions", .serialized)
struct HardeningBPUTests {
    let quiet = Logger(label: "bpu-hardening", factory: { _ in SwiftLogNoOpLogHandler() })

    func engine(_ model: BPUFakeModel, _ standIn: StandInDNN, workers: Int = 1, timeoutMs: Int = 10_000) throws -> BPUEngine {
        var o = BPUOptions()
        o.libraryPath = standIn.path
        o.workers = workers
        o.timeoutMs = timeoutMs
        return try BPUEngine(model: ModelDescriptor(name: "standin", modelPath: model.path), classes: nil, options: o, logger: quiet)
    }

    func classify(_ slot: any InferenceSlot, luma: Int, _ scores: UnsafeMutableBufferPointer<Float>) throws -> Int {
        NV12Ops.scale(bpuConstantFrame(luma: UInt8(luma)).view.readOnly, into: slot.input, mode: .crop)
        try slot.infer(scores: scores)
        var best = 0
        for i in scores.indices where scores[i] > scores[best] { best = i }
        return best
    }

    /// Padded NV12 inputs, NCHW and NHWC: the slot writes packed NV12 (row stride = width) and
    /// passes alignedShape = validShape; the NHWC model reports stride[1] = 3·Wa, which is not a
    /// row stride. Before: the row stride came from stride[] (768 for NHWC 200 wide), so the NHWC
    /// model was refused ("needs N bytes but alignedByteSize is …").
    @Test(arguments: ["NCHW", "NHWC"])
    func paddedNV12InputIsWrittenPacked(_ layout: String) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["input_layout": layout, "input_stride_align": "64", "width": "200", "height": "150",
                                  "output": "S16_SCALE", "pad": "8"])
        defer { model.remove() }
        do {
            let e = try engine(model, standIn)
            #expect(e.info.inputWidth == 200 && e.info.inputHeight == 150)
            let slot = e.slots[0]
            #expect(slot.input.layout.strideY == 200 && slot.input.uv == slot.input.y + 200 * 150, "packed NV12")
            #expect(e.modelInfo.contains { $0.contains("stride (\(layout == "NHWC" ? "57600,768,3,1" : "57600,38400,256,1"))") },
                    "\(e.modelInfo)")
            let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e.info.classes)
            defer { scores.deallocate() }
            for luma in [0, 37, 128, 200, 255] {
                #expect(try classify(slot, luma: luma, scores) == model.expectedClass(luma: luma), "luma \(luma)")
            }
        }
        let s = standIn.stats()
        #expect(s["inputs_packed"] == 5, "every task passed alignedShape = validShape: \(s)")
        #expect(s["invalid_calls"] == 0 && s["infer_errors"] == 0)
    }

    /// A timed-out task, released, still writes its result later (stand-in late_write=1: right
    /// after the next task that uses the same output memory). The slot must not reuse that memory:
    /// the frame after the timeout gets its own class. Before: it got the timed-out frame's class.
    @Test func lateWriteOfATimedOutTaskDoesNotReachALaterResult() throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(["timeout_every": "2", "late_write": "1"])
        defer { model.remove() }
        do {
            let e = try engine(model, standIn, timeoutMs: 100)
            let slot = e.slots[0]
            let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e.info.classes)
            defer { scores.deallocate() }
            #expect(try classify(slot, luma: 37, scores) == model.expectedClass(luma: 37))    // task 1
            #expect {
                try classify(slot, luma: 200, scores)                                            // task 2: stuck
            } throws: { "\($0)".contains("HB_DNN_TIMEOUT") }
            #expect(try classify(slot, luma: 100, scores) == model.expectedClass(luma: 100),  // task 3
                    "the late write of the timed-out frame (class \(model.expectedClass(luma: 200))) must not land here")
            #expect(throws: InferenceError.self) { try classify(slot, luma: 50, scores) }      // task 4: stuck
            #expect(try classify(slot, luma: 129, scores) == model.expectedClass(luma: 129))  // task 5
            #expect(standIn.stats()["late_writes_over_result"] == 0)
        }
        // The engine is gone: the quarantined memory was freed after hbDNNRelease, when the late
        // writes had landed (freeing it earlier fails in the stand-in).
        let s = standIn.stats()
        #expect(s["late_writes"] == 2 && s["late_writes_over_result"] == 0, "\(s)")
        #expect(s["free_errors"] == 0 && s["allocs_live"] == 0, "every buffer freed, none too early: \(s)")
        #expect(s["allocs"] == 6, "2 at start + 2 fresh after each of the 2 timeouts: \(s)")
    }

    /// Output strides: bytes (the stand-in's default) and elements (output_stride_unit=elements),
    /// dense and padded, NCHW and NHWC. Before: element strides were read as bytes (S16 score i
    /// at byte i instead of 2i) and gave wrong scores.
    @Test(arguments: [
        ["output": "S16_SCALE", "pad": "16", "output_stride_unit": "elements"],
        ["output": "S32_SCALE", "layout": "NHWC", "pad": "8", "output_stride_unit": "elements"],
        ["output": "F32", "output_stride_unit": "elements"],
        ["output": "S16_SCALE", "pad": "16"],
        ["output": "F32", "layout": "NHWC"],
    ])
    func outputStridesInBytesOrElements(_ keys: [String: String]) throws {
        let standIn = try StandInDNN.open()
        standIn.reset()
        let model = BPUFakeModel(keys)
        defer { model.remove() }
        let e = try engine(model, standIn)
        let unit = keys["output_stride_unit"] ?? "bytes"
        #expect(e.info.summary.contains("strides in \(unit)"), "\(e.info.summary)")
        #expect(e.info.classes == model.classes)
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: e.info.classes)
        defer { scores.deallocate() }
        for luma in [0, 37, 128, 129, 255] {
            let want = model.expectedClass(luma: luma)
            #expect(try classify(e.slots[0], luma: luma, scores) == want, "luma \(luma)")
            #expect(abs(scores[want] - 8) < 0.01 && abs(scores[(want + 1) % model.classes] - 1) < 0.01)
        }
    }
}
