import Foundation
import Glibc
import Logging
import Support
import Synchronization
import Testing

/// Inputs the integration tests need (models, samples, OpenVINO, built binaries). Each comes from
/// its `CAMCLASS_TEST_*` variable (`make test` sets them all), else from where `make deps models
/// standin` and `swift build` put it in this repository. A missing one fails the test with a
/// message saying how to provide it: never a silent skip.
public enum TestEnv {
    public struct MissingInput: Error {
        public let name: String
        public init(name: String) { self.name = name }
    }

    /// The variable's value, else `fallback` when that exists, else a recorded issue and a throw.
    public static func require(_ name: String, _ hint: String, fallback: String? = nil) throws -> String {
        if let v = ProcessInfo.processInfo.environment[name], !v.isEmpty { return v }
        if let fallback, FileManager.default.fileExists(atPath: fallback) { return fallback }
        Issue.record("\(name) is not set\(fallback.map { " and \($0) does not exist" } ?? ""): \(hint)")
        throw MissingInput(name: name)
    }

    public static func model() throws -> String {
        try require("CAMCLASS_TEST_MODEL", "run `make models` (it prepares models/efficientnet_lite0.model.yaml)",
                    fallback: repoRoot + "/models/efficientnet_lite0.model.yaml")
    }

    public static func tinyModel() throws -> String {
        try require("CAMCLASS_TEST_TINY_MODEL", "run `make models` (it prepares models/tiny_classifier.model.yaml)",
                    fallback: repoRoot + "/models/tiny_classifier.model.yaml")
    }

    public static func samples() throws -> String {
        try require("CAMCLASS_TEST_SAMPLES", "run `make models` (it prepares samples/)", fallback: repoRoot + "/samples")
    }

    public static func venv() throws -> String {
        try require("CAMCLASS_TEST_VENV", "run `make deps` (it builds .venv with OpenVINO, onnxruntime and pillow)",
                    fallback: repoRoot + "/.venv")
    }

    public static func standInDNN() throws -> String {
        try require("CAMCLASS_TEST_STANDIN_DNN", "run `make standin` (it builds Tests/StandIns/libdnn.so, a test double)",
                    fallback: repoRoot + "/Tests/StandIns/libdnn.so")
    }

    public static func mallocCount() throws -> String {
        try require("CAMCLASS_TEST_MALLOC_COUNT", "run `make standin` (it builds Tests/StandIns/malloc_count.so)",
                    fallback: repoRoot + "/Tests/StandIns/malloc_count.so")
    }

    /// OpenVINO's library directory: CAMCLASSD_OPENVINO_LIB, else the wheel in ./.venv.
    public static func openVINO() throws -> String {
        if let v = ProcessInfo.processInfo.environment["CAMCLASSD_OPENVINO_LIB"], !v.isEmpty { return v }
        let lib = repoRoot + "/.venv/lib"
        if let python = try? FileManager.default.contentsOfDirectory(atPath: lib).first(where: { $0.hasPrefix("python3") }) {
            let dir = "\(lib)/\(python)/site-packages/openvino/libs"
            if FileManager.default.fileExists(atPath: dir) {
                setenv("CAMCLASSD_OPENVINO_LIB", dir, 1)  // the daemons and engines under test find it too
                return dir
            }
        }
        Issue.record("CAMCLASSD_OPENVINO_LIB is not set and .venv has no OpenVINO: run `make deps`")
        throw MissingInput(name: "CAMCLASSD_OPENVINO_LIB")
    }

    /// The repository root (for shipped files such as config/camclassd.yaml).
    public static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    public static func tempDir(_ tag: String = "t") -> String {
        let path = NSTemporaryDirectory() + "camclass-\(tag)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// The executables under test: the project's own builds, and system programs.
public enum TestBinary {
    /// The debug camclassd `make test` builds (CAMCLASS_TEST_CAMCLASSD), else .build/debug/camclassd.
    public static func camclassd() throws -> String {
        try built("CAMCLASS_TEST_CAMCLASSD", TestEnv.repoRoot + "/.build/debug/camclassd", hint: "swift build --product camclassd")
    }

    /// The release camclassd (the allocation test measures it), else .build/release/camclassd.
    public static func camclassdRelease() throws -> String {
        try built("CAMCLASS_TEST_CAMCLASSD_RELEASE", TestEnv.repoRoot + "/.build/release/camclassd",
                  hint: "swift build -c release --product camclassd")
    }

    /// The debug camclass (CAMCLASS_TEST_CAMCLASS), else .build/debug/camclass.
    public static func camclass() throws -> String {
        try built("CAMCLASS_TEST_CAMCLASS", TestEnv.repoRoot + "/.build/debug/camclass", hint: "swift build --product camclass")
    }

    /// A program from the system's packages (`make test-deps` installs them).
    public static func system(_ name: String, package: String) throws -> String {
        for d in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"]
        where FileManager.default.isExecutableFile(atPath: d + "/" + name) {
            return d + "/" + name
        }
        Issue.record("\(name) not found: install \(package) (make test-deps)")
        throw TestEnv.MissingInput(name: name)
    }

    private static func built(_ variable: String, _ fallback: String, hint: String) throws -> String {
        let path = ProcessInfo.processInfo.environment[variable] ?? fallback
        guard FileManager.default.isExecutableFile(atPath: path) else {
            Issue.record("'\(path)' not found: run the suite with `make test`, or `\(hint)` (\(variable))")
            throw TestEnv.MissingInput(name: variable)
        }
        return path
    }
}

/// What a finished command printed and how it ended.
public struct CommandOutput: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when it was killed for running longer than its limit.
    public var timedOut = false
    public var description: String {
        "exit \(status)\(timedOut ? " (killed: time limit)" : "")\nstdout: \(stdout.suffix(3000))\nstderr: \(stderr.suffix(3000))"
    }
}

/// Starts `p` from a thread with no blocked signals. A child inherits the signal mask of the thread
/// that spawns it, and Swift's cooperative threads block SIGTERM and SIGINT: a child spawned from a
/// test would otherwise ignore SIGTERM forever.
public func startUnmasked(_ p: Process) throws {
    let failure = Mutex<(any Error)?>(nil)
    let t = DedicatedThread(name: "test-spawn") {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        do { try p.run() } catch { failure.withLock { $0 = error } }
    }
    t.join()
    if let e = failure.withLock({ $0 }) { throw e }
}

/// Runs `path` with `args` to completion on the calling thread (both pipes read while it runs, so
/// a chatty child never blocks), killed after `timeoutSeconds`.
/// - Parameters:
///   - env: added to the test's environment; `removing` names variables the child must not see.
///   - mergeOutput: stderr into stdout, in the order written.
public func runCommand(_ path: String, _ args: [String], cwd: String = TestEnv.repoRoot, env: [String: String] = [:],
                       removing: [String] = [], mergeOutput: Bool = false, timeoutSeconds: Double = 120) throws -> CommandOutput {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    var e = ProcessInfo.processInfo.environment
    for k in removing { e[k] = nil }
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = mergeOutput ? out : err
    try startUnmasked(p)
    let pid = p.processIdentifier
    let finished = AtomicFlag(), killed = AtomicFlag()
    let guardThread = DedicatedThread(name: "test-limit") {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while !finished.isSet && Date() < deadline { usleep(20_000) }
        if !finished.isSet { killed.set(); kill(pid, SIGKILL) }
    }
    let errData = Mutex(Data())
    let errReader = DedicatedThread(name: "test-stderr") {
        let d = mergeOutput ? Data() : err.fileHandleForReading.readDataToEndOfFile()
        errData.withLock { $0 = d }
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    finished.set()
    errReader.join()
    guardThread.join()
    return CommandOutput(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                         stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self), timedOut: killed.isSet)
}

/// `runCommand` from async tests: the blocking waits run on a dedicated thread, never on Swift's
/// cooperative pool (2 threads here), which in-process daemons of other suites need.
public func runCommand(_ path: String, _ args: [String], cwd: String = TestEnv.repoRoot, env: [String: String] = [:],
                       removing: [String] = [], mergeOutput: Bool = false, timeoutSeconds: Double = 120) async throws -> CommandOutput {
    try await onDedicatedThread("test-command") {
        try runCommand(path, args, cwd: cwd, env: env, removing: removing, mergeOutput: mergeOutput, timeoutSeconds: timeoutSeconds)
    }
}

/// Polls `condition` every `pollMs` until it holds or `timeoutMs` passes (tests only: they wait for
/// another process or thread to do something observable).
public func waitUntil(timeoutMs: Int = 5000, pollMs: UInt32 = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
    while Date() < deadline {
        if condition() { return true }
        usleep(pollMs * 1000)
    }
    return condition()
}

/// The async form: sleeps with `Task.sleep`, so the cooperative pool is not blocked.
public func eventually(_ timeout: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// A logger whose lines the test reads back (level and message).
public final class LogCapture: @unchecked Sendable {
    private let lines = Mutex<[(Logger.Level, String)]>([])
    public init() {}
    public var all: [(Logger.Level, String)] { lines.withLock { $0 } }
    public func append(_ level: Logger.Level, _ s: String) { lines.withLock { $0.append((level, s)) } }

    public var logger: Logger {
        Logger(label: "test") { _ in Handler(capture: self) }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { capture.append(event.level, "\(event.message)") }
    }
}

/// A value shared between a test and the threads it starts (a `Mutex` in a class, so closures
/// and arrays can hold it).
public final class Shared<T: Sendable>: Sendable {
    public let value: Mutex<T>
    public init(_ v: T) { value = Mutex(v) }
}
