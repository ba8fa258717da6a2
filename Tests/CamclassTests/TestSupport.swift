import Foundation
import Testing

/// Inputs the suite needs from `make test` (models, samples, OpenVINO). Missing ones fail the
/// test with a message saying how to provide them — never a silent skip.
enum TestEnv {
    static func require(_ name: String, _ hint: String) throws -> String {
        guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
            Issue.record("\(name) is not set: \(hint)")
            throw MissingInput(name: name)
        }
        return v
    }

    struct MissingInput: Error { let name: String }

    static func model() throws -> String {
        try require("CAMCLASS_TEST_MODEL", "run the suite with `make test` (it prepares models/efficientnet_lite0.model.yaml)")
    }

    static func samples() throws -> String {
        try require("CAMCLASS_TEST_SAMPLES", "run the suite with `make test` (it prepares samples/)")
    }

    static func openVINO() throws -> String {
        try require("CAMCLASSD_OPENVINO_LIB", "run the suite with `make test` (it installs OpenVINO into .venv)")
    }

    /// The repository root (for shipped files such as config/camclassd.yaml).
    static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    static func tempDir(_ tag: String = "t") -> String {
        let path = NSTemporaryDirectory() + "camclass-\(tag)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
