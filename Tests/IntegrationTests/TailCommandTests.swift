import CamclassTestSupport
import Foundation
import Glibc
import Testing

/// `camclass tail` as its own process: it follows the log across a rotation, and when inotify is
/// refused (here: no descriptor left for it under a low `ulimit -n`) it says so once and follows
/// by polling instead of failing.
@Suite(.serialized) struct TailCommandTests {
    /// `camclass tail --log LOG` run through `sh` (for `ulimit -n`), stdout and stderr in files.
    final class TailProcess: @unchecked Sendable {
        let process = Process()
        let outPath: String, errPath: String

        init(log: String, fileLimit: Int?) throws {
            outPath = log + ".tail-out"
            errPath = log + ".tail-err"
            _ = FileManager.default.createFile(atPath: outPath, contents: nil)
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            // Descriptors 0-2 taken, 3 free for the log (none inherited there): then a limit of 4
            // leaves none for inotify.
            let limit = fileLimit.map { "exec 3>&- && ulimit -n \($0) && " } ?? ""
            process.arguments = ["-c", limit + "exec \"$0\" tail --log \"$1\" --lines 0 --json", try TestBinary.camclass(), log]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle(forWritingAtPath: outPath)
            process.standardError = FileHandle(forWritingAtPath: errPath)
            try startUnmasked(process)
        }

        var out: [String] { ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        var err: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            process.waitUntilExit()
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    static func append(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(path)")
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// Appends a line, then another after a rotation, and expects both on stdout; returns stderr.
    static func follow(fileLimit: Int?) throws -> String {
        let dir = TestEnv.tempDir("tail-cmd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        append(log, "{\"seq\":0}\n")
        let tail = try TailProcess(log: log, fileLimit: fileLimit)
        // Started (the last lines printed: none) once it waits; lines written before that would
        // be skipped by --lines 0, so wait for the process to block first.
        #expect(waitUntil(timeoutMs: 10_000) { Self.sleeping(tail.process.processIdentifier) })
        append(log, "{\"seq\":1}\n")
        #expect(waitUntil(timeoutMs: 10_000) { tail.out.count >= 1 }, "stderr: \(tail.err)")
        #expect(rename(log, log + ".1") == 0)
        append(log, "{\"seq\":2}\n")
        #expect(waitUntil(timeoutMs: 10_000) { tail.out.count >= 2 }, "stderr: \(tail.err)")
        tail.stop()
        #expect(tail.out == ["{\"seq\":1}", "{\"seq\":2}"], "stderr: \(tail.err)")
        return tail.err
    }

    /// Every thread of `pid` sleeps (the tail waits).
    static func sleeping(_ pid: Int32) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"), !tasks.isEmpty else { return false }
        return tasks.allSatisfy { t in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(close, offsetBy: 2)] == "S"
        } && ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").hasPrefix("camclass")
    }

    @Test func tailFollowsTheLogOnInotify() throws {
        let err = try Self.follow(fileLimit: nil)
        #expect(!err.contains("warning"), "\(err)")
    }

    /// With descriptors for the standard streams and the log only, inotify_init1 fails (EMFILE):
    /// one warning naming the cause, then polling follows the log all the same.
    @Test func tailFallsBackToPollingWhenInotifyIsRefused() throws {
        let err = try Self.follow(fileLimit: 4)
        let warnings = err.split(separator: "\n").filter { $0.contains("warning") }
        #expect(warnings.count == 1, "\(err)")
        #expect(err.contains("inotify_init1"), "\(err)")
        #expect(err.contains("every 20 ms"), "\(err)")
    }
}
