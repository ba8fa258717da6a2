import Foundation
import Glibc
import Support

/// The programs a benchmark runs as whole processes (camclassd, mosquitto, a bridge): started
/// outside any service manager, stopped with SIGTERM (then SIGKILL), waited for, their stderr kept.
enum BenchProcess {
    struct StartFailure: Error, CustomStringConvertible { let description: String }

    static func spawn(_ path: String, _ args: [String], environment: [String: String] = [:], stderr: String) throws -> Process {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw StartFailure(description: "'\(path)' is not an executable camclassd (build it: swift build -c release --product camclassd)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        // Not under this shell's service manager, whatever runs the benchmark.
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { env[key] = nil }
        for (k, v) in environment { env[k] = v }
        p.environment = env
        _ = FileManager.default.createFile(atPath: stderr, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: stderr)
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { throw StartFailure(description: "cannot start \(path): \(error)") }
        return p
    }

    static func stopProcess(_ p: Process) {
        guard p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        if !waitFor(seconds: 15, { !p.isRunning }) { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    static func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Clock.monotonicNs() + UInt64(seconds * 1e9)
        while Clock.monotonicNs() < deadline {
            if condition() { return true }
            CPUBenchmark.pause(seconds: 0.05)
        }
        return condition()
    }

    /// The end of a child's stderr file, for an error message.
    static func tail(_ path: String) -> String { String((readTextFile(path) ?? "").suffix(1500)) }
}
