import CamclassTestSupport
import Client
import WireFormat
import Foundation
import Glibc
import Testing

/// Issue 11 against the real daemon process: SIGPIPE and closed pipes (F8), a symbolic link at
/// the log path and a second writer of one log (F6, log lock) at start-up.
/// Environment: a built camclassd binary (CAMCLASS_TEST_CAMCLASSD, or .build/debug/camclassd),
/// OpenVINO (CAMCLASSD_OPENVINO_LIB), the default model and the sample photos (`make test` sets them).
@Suite(.serialized) struct HardeningDaemonTests {
    func classificationCount(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
            .filter { $0.hasPrefix("{\"type\":\"classification\"") }.count
    }

    /// F8: `kill -PIPE`, and `--print` into a pipe whose reader left, used to end the daemon with
    /// 141 (no shutdown record, stale socket). Both are now harmless: it keeps classifying, then
    /// stops cleanly on SIGTERM.
    @Test func sigpipeAndAClosedStdoutDoNotEndTheDaemon() async throws {
        let dir = TestEnv.tempDir("f8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 20)
        let pipe = Pipe()
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--print"],
                                       environment: ["CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO()],
                                       dir: dir, stdoutHandle: pipe.fileHandleForWriting)
        try pipe.fileHandleForWriting.close()
        let log = dir + "/log/classifications.log"
        #expect(await eventually(60) { classificationCount(log) >= 3 }, "no classification; stderr:\n\(daemon.stderr)")
        // Like `| head -2`: read two lines, then the reader goes away.
        let firstBytes = pipe.fileHandleForReading.availableData
        #expect(!firstBytes.isEmpty, "--print printed nothing")
        try pipe.fileHandleForReading.close()
        daemon.signal(SIGPIPE)
        let before = classificationCount(log)
        #expect(await eventually(10) { classificationCount(log) >= before + 20 }, "classification stopped after SIGPIPE / closed stdout")
        #expect(daemon.process.isRunning, "the daemon ended; stderr:\n\(daemon.stderr)")
        daemon.signal(SIGTERM)
        let status = await daemon.waitExit(timeout: 20)
        #expect(status == 0, "exit \(String(describing: status)); stderr:\n\(daemon.stderr)")
        let last = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").last ?? ""
        #expect(last.contains("\"type\":\"shutdown\""), "last log line: \(last)")
        #expect(access(dir + "/camclassd.sock", F_OK) != 0, "socket file left behind")
    }

    /// F6: a symbolic link at the log path → exit 73 with a message naming the link; the target
    /// is untouched. Log lock: a second daemon on the same log (own socket) → exit 73, "in use".
    @Test func logSymlinkAndSecondWriterExit73() async throws {
        let dir = TestEnv.tempDir("f6d")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = ["CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO()]
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 20)
        try FileManager.default.createDirectory(atPath: dir + "/log", withIntermediateDirectories: true)
        let victim = dir + "/victim.txt"
        try "precious\n".write(toFile: victim, atomically: true, encoding: .utf8)
        symlink(victim, dir + "/log/classifications.log")
        let linked = try DaemonProcess(arguments: ["--config", dir + "/c.yaml"], environment: env, dir: dir)
        let rc = await linked.waitExit(timeout: 60)
        #expect(rc == 73, "exit \(String(describing: rc)); stderr:\n\(linked.stderr)")
        #expect(linked.stderr.contains("symbolic link"))
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        unlink(dir + "/log/classifications.log")

        let first = try DaemonProcess(arguments: ["--config", dir + "/c.yaml"], environment: env, dir: dir)
        #expect(await eventually(60) { classificationCount(dir + "/log/classifications.log") >= 1 }, "stderr:\n\(first.stderr)")
        let second = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--socket", dir + "/other.sock"], environment: env, dir: dir)
        let rc2 = await second.waitExit(timeout: 60)
        #expect(rc2 == 73, "exit \(String(describing: rc2)); stderr:\n\(second.stderr)")
        #expect(second.stderr.contains("in use by another running camclassd"))
        first.signal(SIGTERM)
        #expect(await first.waitExit(timeout: 20) == 0)
    }

    /// F9: fd limit 256, `max_subscribers: 4096 (the range allows at most that)`, 400 connections: accept(2) fails with EMFILE
    /// and the socket thread used to spin at ~100 % CPU. Now it pauses accepting (one warning)
    /// and accepts the waiting clients once descriptors are free again.
    @Test func outOfDescriptorsPausesAcceptingInsteadOfSpinning() async throws {
        let dir = TestEnv.tempDir("f9")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 5, extra: "")
        var yaml = try String(contentsOfFile: dir + "/c.yaml", encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "publish:\n", with: "publish:\n  max_subscribers: 4096\n")
        try yaml.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml"],
                                       environment: ["CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO()], dir: dir)
        // The daemon's own limit lowered from outside (util-linux prlimit(1); Glibc's module has no prlimit(2)).
        let setLimit = Process()
        setLimit.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        setLimit.arguments = ["--pid", "\(daemon.pid)", "--nofile=256:256"]
        try setLimit.run()
        setLimit.waitUntilExit()
        try #require(setLimit.terminationStatus == 0, "prlimit failed")
        #expect(await eventually(60) { classificationCount(dir + "/log/classifications.log") >= 1 }, "stderr:\n\(daemon.stderr)")
        var clients: [Int32] = []
        defer { for c in clients { close(c) } }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array((dir + "/camclassd.sock").utf8) + [0]) }
        let connecting = Date()
        for _ in 0..<400 {
            let c = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            try #require(c >= 0)
            clients.append(c)
            // A full backlog says EAGAIN: give the daemon a moment to accept, a few times (once it
            // is out of descriptors the backlog stays full).
            for _ in 0..<3 {
                let rc = withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
                if rc == 0 { break }
                if errno != EAGAIN { Issue.record("connect: errno \(errno)"); break }
                usleep(10_000)
            }
        }
        let daemonFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count) ?? 0
        #expect(daemonFDs >= 250, "the daemon has \(daemonFDs) descriptors: the limit was not reached")
        try await Task.sleep(for: .seconds(1))
        let t0 = Self.socketThreadTicks(daemon.pid)
        try await Task.sleep(for: .seconds(2))
        let ticks = Self.socketThreadTicks(daemon.pid) - t0
        // Spinning burns ~200 ticks (100 Hz) in 2 s; serving ~240 idle subscribers at 5 FPS, a few.
        #expect(ticks < 40, "socket thread used \(ticks) ticks in 2 s")
        let warnings = daemon.stderr.components(separatedBy: "cannot accept subscribers").count - 1
        // One line per 10 s (socket.warning_interval_ms) however often accept fails.
        let allowed = 1 + Int(Date().timeIntervalSince(connecting) / 10)
        #expect(warnings >= 1 && warnings <= allowed, "\(warnings) 'cannot accept' warnings (at most \(allowed)); stderr:\n\(daemon.stderr.suffix(2000))")
        #expect(daemon.process.isRunning)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: 20) == 0, "stderr:\n\(daemon.stderr.suffix(2000))")
    }

    /// utime + stime (clock ticks) of `pid`'s thread named camclass-sock.
    static func socketThreadTicks(_ pid: Int32) -> Int {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return 0 }
        var total = 0
        for t in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == "camclass-sock",
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
            if fields.count > 12 { total += (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) }
        }
        return total
    }
}
