@testable import CamclassDaemon
import CamclassTestSupport
import Client
import WireFormat
import Foundation
import Glibc
import Inference
import Logging
import Support
import Testing

/// Issue 11, models: F20 (unreadable network, size mismatch), F21 (NaN/inf output), F22 (two
/// inputs), F23 (bad sidecar → exit 78), over-long labels.
/// Environment: the sidecar and labels tests need none; the network tests need OpenVINO
/// (CAMCLASSD_OPENVINO_LIB), the tiny and default models (CAMCLASS_TEST_TINY_MODEL,
/// CAMCLASS_TEST_MODEL) and the venv's `onnx` package (CAMCLASS_TEST_VENV) to build the odd models.
@Suite("Hardening: model files, sidecars and labels", .serialized)
struct HardeningModelTests {
    let quiet = Logger(label: "model-hardening", factory: { _ in SwiftLogNoOpLogHandler() })

    static func write(_ text: String, _ path: String) { _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) }

    /// A sidecar beside an (empty) network file; returns the sidecar path.
    static func sidecar(_ dir: String, _ body: String) -> String {
        _ = FileManager.default.createFile(atPath: dir + "/net.onnx", contents: Data([1]))
        let path = dir + "/bad.model.yaml"
        write(body, path)
        return path
    }

    /// A small ONNX classifier made with the venv's `onnx`: x[1,3,S,S] → GlobalAveragePool →
    /// Flatten → MatMul(3x10); `kind` "nan" multiplies the scores by NaN, "inf" adds infinity to
    /// one, "two_inputs" adds a second image input. Written to `dir/<kind>.onnx` with a sidecar.
    static func onnx(_ kind: String, size: Int = 32, dir: String) throws -> String {
        let venv = try TestEnv.venv()
        let script = """
        import sys, numpy as np, onnx
        from onnx import helper as h, TensorProto as T
        kind, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        W = h.make_tensor("W", T.FLOAT, [3, 10], np.linspace(-1, 1, 30).astype(np.float32).tolist())
        inits, nodes = [W], []
        inputs = [h.make_tensor_value_info("x", T.FLOAT, [1, 3, size, size])]
        src = "x"
        if kind == "two_inputs":
            inputs.append(h.make_tensor_value_info("y", T.FLOAT, [1, 3, size, size]))
            nodes.append(h.make_node("Add", ["x", "y"], ["xy"])); src = "xy"
        nodes += [h.make_node("GlobalAveragePool", [src], ["p"]), h.make_node("Flatten", ["p"], ["f"]),
                  h.make_node("MatMul", ["f", "W"], ["s"])]
        if kind in ("nan", "inf"):
            c = np.zeros((1, 10), np.float32)
            if kind == "nan": c[:] = np.nan
            else: c[0, 3] = np.inf
            inits.append(h.make_tensor("C", T.FLOAT, [1, 10], c.flatten().tolist()))
            nodes.append(h.make_node("Add", ["s", "C"], ["scores"]))
        else:
            nodes.append(h.make_node("Identity", ["s"], ["scores"]))
        g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("scores", T.FLOAT, [1, 10])], inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)]); m.ir_version = 8
        onnx.checker.check_model(m); onnx.save(m, out)
        """
        let out = dir + "/\(kind).onnx"
        let (status, _, err) = try TestEnv.run(venv + "/bin/python3", ["-c", script, kind, "\(size)", out])
        guard status == 0 else {
            Issue.record("building the \(kind) ONNX failed: \(err)")
            throw TestEnv.MissingInput(name: "onnx")
        }
        let labels = dir + "/labels.txt"
        write((0..<10).map { "label \($0)" }.joined(separator: "\n") + "\n", labels)
        write("model: \(kind).onnx\ninput:\n  width: 32\n  height: 32\n  mean: 127.5\n  scale: 127.5\nlabels: labels.txt\n",
              dir + "/\(kind).model.yaml")
        return dir + "/\(kind).model.yaml"
    }

    func openVINO(_ sidecar: String, classes: Int? = nil) throws -> OpenVINOEngine {
        var o = OpenVINOOptions()
        o.libraryPath = try TestEnv.openVINO()
        o.workers = 1
        return try OpenVINOEngine(model: try ModelDescriptor.load(path: sidecar), classes: classes, options: o, logger: quiet)
    }

    // MARK: F23

    /// F23: a sidecar that is there but wrong stops start-up with exit 78 (EX_CONFIG, systemd does
    /// not restart in a loop) naming the file, key and value; huge numbers are range errors, not
    /// traps. Before: exit 66 (EX_NOINPUT), and `mean: 1e300` passed as infinity.
    @Test(arguments: [
        ("model: [unclosed\n", "not valid YAML"),
        ("input: {width: 32, height: 32}\n", "key 'model'"),
        ("model: net.onnx\ninput: {width: 33, height: 32}\n", "key 'input.width'"),
        ("model: net.onnx\ninput: {width: 32, height: 32, scale: 0}\n", "key 'input.scale'"),
        ("model: net.onnx\ninput: {width: 99999999999999999999, height: 32}\n", "key 'input.width'"),
        ("model: net.onnx\ninput: {width: 9223372036854775806, height: 32}\n", "key 'input.width'"),
        ("model: net.onnx\ninput: {width: 32, height: 32, mean: 1e300}\n", "key 'input.mean'"),
        ("model: net.onnx\ninput: {width: 32, height: 32, scale: [1, .nan, 1]}\n", "key 'input.scale'"),
        ("model: net.onnx\nparams: -5\ninput: {width: 32, height: 32}\n", "key 'params'"),
    ])
    func badSidecarIsAConfigurationError(_ body: String, _ says: String) throws {
        let dir = TestEnv.tempDir("sidecar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = DaemonConfig()
        config.model.path = Self.sidecar(dir, body)
        #expect {
            _ = try loadEngineParts(config: config, logger: quiet)
        } throws: { error in
            guard let e = error as? DaemonError else { return false }
            return e.status.code == ExitStatus.config.code && e.message.contains(says) && e.message.contains("bad.model.yaml")
        }
    }

    /// F23's boundary: a sidecar naming a network that does not exist is still "missing" (66).
    @Test func missingNetworkStaysNoInput() throws {
        let dir = TestEnv.tempDir("sidecar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = DaemonConfig()
        config.model.path = Self.sidecar(dir, "model: absent.onnx\ninput: {width: 32, height: 32}\n")
        #expect { _ = try loadEngineParts(config: config, logger: quiet) } throws: {
            ($0 as? DaemonError)?.status.code == ExitStatus.noInput.code
        }
    }

    // MARK: labels

    /// A 20,000-character label is published truncated to 256 bytes ending in "…" (cut at a
    /// character boundary), not as an empty string; the others are untouched. Before: kept whole
    /// (and the record that carried it came out empty).
    @Test func overlongLabelsAreTruncatedWithAMarker() throws {
        let dir = TestEnv.tempDir("labels")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "x", count: 20_000)
        let wide = String(repeating: "é", count: 5_000)  // 2 bytes each: the cut must not split one
        Self.write("cat\n\(long)\n\(wide)\ndog\n", dir + "/labels.txt")
        let labels = try LabelSet(path: dir + "/labels.txt")
        #expect(labels.count == 4)
        #expect(labels.names[0] == "cat" && labels.names[3] == "dog")
        for i in [1, 2] {
            let n = labels.names[i]
            #expect(n.utf8.count <= LabelSet.maxLabelBytes && n.utf8.count >= LabelSet.maxLabelBytes - 4, "\(n.utf8.count) bytes")
            #expect(n.hasSuffix("…") && !n.contains("\u{FFFD}"))
            #expect(labels.jsonEscaped[i] == Array(n.utf8))
        }
        #expect(labels.truncated == 2 && labels.firstTruncated == 1)
    }

    // MARK: F20

    /// F20: empty, truncated and random network files are reported in the project's words —
    /// the file, its size and what is wrong — not as OpenVINO's bare source location.
    @Test func unreadableNetworksAreNamedWithTheReason() throws {
        let tiny = try ModelDescriptor.load(path: try TestEnv.tinyModel())
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tiny.modelPath)))
        let dir = TestEnv.tempDir("onnx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "is empty (0 bytes)"),
            ("truncated", Array(good.prefix(good.count / 2)), "truncated, corrupt or not an ONNX"),
            ("random", (0..<5000).map { UInt8(truncatingIfNeeded: ($0 &* 2654435761) >> 7) }, "truncated, corrupt or not an ONNX"),
        ]
        for (name, bytes, says) in cases {
            _ = FileManager.default.createFile(atPath: dir + "/\(name).onnx", contents: Data(bytes))
            Self.write("model: \(name).onnx\ninput: {width: 32, height: 32}\n", dir + "/\(name).model.yaml")
            #expect { _ = try openVINO(dir + "/\(name).model.yaml") } throws: { error in
                let text = "\(error)"
                return text.contains("\(name).onnx") && text.contains(says) && !text.hasPrefix("Exception from")
            }
        }
    }

    /// F20: a 224x224 network with a sidecar saying 32x32: both sizes and the sidecar named.
    /// Before: only an OpenVINO check string from the compile step.
    @Test func inputSizeMismatchNamesBothSizes() throws {
        let lite0 = try ModelDescriptor.load(path: try TestEnv.model())
        let dir = TestEnv.tempDir("size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.write("model: \(lite0.modelPath)\ninput: {width: 32, height: 32}\n", dir + "/small.model.yaml")
        #expect { _ = try openVINO(dir + "/small.model.yaml") } throws: { error in
            let text = "\(error)"
            return text.contains("takes 224x224") && text.contains("32x32") && text.contains("small.model.yaml")
        }
    }

    // MARK: F22

    /// F22: a network with two inputs is refused with a clear error. Before: it ran and published.
    @Test func twoInputNetworkIsRefused() throws {
        let dir = TestEnv.tempDir("two")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sidecar = try Self.onnx("two_inputs", dir: dir)
        #expect { _ = try openVINO(sidecar) } throws: { error in
            guard case InferenceError.badModel(let s) = error else { return false }
            return s.contains("has 2 inputs") && s.contains("two_inputs.onnx")
        }
        // The same network with one input runs (so the refusal is about the inputs).
        let plain = try Self.onnx("plain", dir: dir)
        #expect(try openVINO(plain, classes: 10).info.classes == 10)
    }

    // MARK: F21

    /// F21: NaN or infinite scores are an inference error (the pipeline drops and counts the
    /// frame), never a result; the top-k of a good model is unaffected. Before: infer returned
    /// the NaN scores and the record had `"top":[]`.
    @Test(arguments: ["nan", "inf"])
    func nonFiniteOutputIsAnInferenceError(_ kind: String) throws {
        let dir = TestEnv.tempDir(kind)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let engine = try openVINO(try Self.onnx(kind, dir: dir), classes: 10)
        let slot = engine.slots[0]
        let v = slot.input
        for row in 0..<v.layout.height { (v.y + row * v.layout.strideY).update(repeating: 90, count: v.layout.width) }
        for row in 0..<v.layout.height / 2 { (v.uv + row * v.layout.strideUV).update(repeating: 128, count: v.layout.width) }
        let scores = UnsafeMutableBufferPointer<Float>.allocate(capacity: 10)
        defer { scores.deallocate() }
        #expect { try slot.infer(scores: scores) } throws: { error in
            guard case InferenceError.nonFiniteOutput(_, _, let count, let of) = error else { return false }
            return of == 10 && count == (kind == "nan" ? 10 : 1)
        }
    }
}
