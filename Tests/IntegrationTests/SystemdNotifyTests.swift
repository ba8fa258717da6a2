@testable import CamclassDaemon
import CamclassTestSupport
import Foundation
import Glibc
import Logging
import Testing

/// sd_notify as systemd sees it: the real camclassd with NOTIFY_SOCKET pointing at the test's own
/// datagram socket (the abstract namespace, as systemd's can be), WATCHDOG_USEC set.
@Suite(.serialized) struct SystemdNotifyTests {
    @Test func readyStatusWatchdogStoppingInOrder() async throws {
        let dir = TestEnv.tempDir("sdnotify")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 20)
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml"], environment: [
            "NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "1000000", "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
        ], dir: dir)

        // STATUS comes every 5 s: wait for one with a rate in it.
        let sawStatus = await eventually(20) {
            listener.messages.contains { $0.fields["STATUS"]?.contains("fps") == true && $0.fields["READY"] == nil }
        }
        #expect(sawStatus, "no periodic STATUS with the rate; got \(listener.messages.map(\.text))")
        daemon.signal(SIGTERM)
        let status = await daemon.waitExit(timeout: 15)
        #expect(status == 0, "camclassd exited with \(String(describing: status)); stderr:\n\(daemon.stderr)")
        _ = await eventually(1) { listener.messages.contains { $0.fields["STOPPING"] == "1" } }

        let m = listener.messages
        let ready = m.firstIndex { $0.fields["READY"] == "1" }
        let firstPing = m.firstIndex { $0.fields["WATCHDOG"] == "1" }
        let stopping = m.firstIndex { $0.fields["STOPPING"] == "1" }
        let status1 = m.firstIndex { $0.fields["STATUS"]?.contains("fps") == true }
        #expect(ready != nil && firstPing != nil && stopping != nil && status1 != nil, "messages: \(m.map(\.text))")
        guard let ready, let firstPing, let stopping, let status1 else { return }
        #expect(ready <= firstPing, "WATCHDOG=1 before READY=1")
        #expect(ready < status1 && status1 < stopping)
        #expect(stopping == m.count - 1, "STOPPING=1 is the last message: \(m.suffix(3).map(\.text))")
        #expect(m[ready].fields["STATUS"]?.contains("efficientnet_lite0") == true, "READY carries a STATUS naming the model")
        // Pinged about every quarter of WATCHDOG_USEC (1 s) while running: not per frame (20 FPS),
        // not too rarely. (Bounds leave room for a busy 2-core machine running the whole suite.)
        let pings = m.filter { $0.fields["WATCHDOG"] == "1" }
        let runningSeconds = m[stopping].time.timeIntervalSince(m[ready].time)
        #expect(Double(pings.count) >= runningSeconds * 1.5, "\(pings.count) pings in \(runningSeconds) s")
        #expect(Double(pings.count) <= runningSeconds * 5 + 2, "\(pings.count) pings in \(runningSeconds) s: too many")
        let gaps = zip(pings.dropFirst(), pings).map { $0.time.timeIntervalSince($1.time) }
        #expect((gaps.max() ?? 0) < 1.5, "a \(gaps.max() ?? 0) s gap between pings (interval 0.25 s, WATCHDOG_USEC 1 s)")

        // The rolling log ends with the shutdown record, after the last classification.
        let log = try String(contentsOfFile: dir + "/log/classifications.log", encoding: .utf8)
        let last = try #require(log.split(separator: "\n").last)
        #expect(last.contains("\"type\":\"shutdown\"") && last.contains("\"reason\":\"stop requested\""), "last log line: \(last)")
    }

    /// A source that stops delivering (the hidden test hook: after 30 frames it blocks like a hung
    /// camera) stops the watchdog pings while the process lives on: systemd would restart it.
    @Test func stalledSourceStopsWatchdogPings() async throws {
        let dir = TestEnv.tempDir("sdstall")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try NotifyListener(abstract: false, dir: dir)   // the path form of NOTIFY_SOCKET
        defer { listener.stop() }
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 30)
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--debug-stall-after", "30"], environment: [
            "NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "1000000", "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
        ], dir: dir)
        let sawStalled = await eventually(20) { listener.messages.contains { $0.fields["STATUS"]?.hasPrefix("stalled") == true } }
        #expect(sawStalled, "no 'stalled' STATUS; messages: \(listener.messages.map(\.text))")
        let m = listener.messages
        let pings = m.filter { $0.fields["WATCHDOG"] == "1" }
        #expect(pings.count >= 1, "pinged while frames flowed")
        let lastPing = try #require(pings.last).time
        let stalledAt = try #require(m.first { $0.fields["STATUS"]?.hasPrefix("stalled") == true }).time
        // Frames stop after 1 s (30 at 30 fps); the stall is reported ≥ 3 s after the last record,
        // and no ping came in between: systemd's WatchdogSec=1s would have fired.
        #expect(stalledAt.timeIntervalSince(lastPing) >= 2.0, "pinged \(stalledAt.timeIntervalSince(lastPing)) s before the stall report")
        #expect(daemon.process.isRunning, "the daemon itself keeps running: restarting is systemd's job")
        #expect(daemon.stderr.contains("pipeline stalled"), "the stall is logged once as a warning")

        // A stalled source still shuts down promptly.
        let t0 = Date()
        daemon.signal(SIGTERM)
        let status = await daemon.waitExit(timeout: 15)
        #expect(status == 0, "stderr:\n\(daemon.stderr)")
        #expect(Date().timeIntervalSince(t0) < 5, "graceful shutdown took \(Date().timeIntervalSince(t0)) s")
        #expect(listener.messages.last?.fields["STOPPING"] == "1")
    }

    /// Under the journal (JOURNAL_STREAM names stderr), lines carry `<N>` syslog priorities and no
    /// timestamps, and nothing is logged per frame; a config error is priority 3 and exits 78.
    @Test func journalStyleLogging() async throws {
        let dir = TestEnv.tempDir("sdjournal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for broken in [false, true] {
            let path = dir + "/stderr-\(broken).txt"
            FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try #require(FileHandle(forWritingAtPath: path))
            var st = stat()
            #expect(fstat(handle.fileDescriptor, &st) == 0)
            try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 50, extra: broken ? "pipeline: {queue_capacity: 0}" : "")
            let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--frames", "40"], environment: [
                "JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)", "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
                "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
            ], dir: dir, stderrHandle: handle)
            let status = await daemon.waitExit(timeout: 60)
            try handle.close()
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let lines = text.split(separator: "\n")
            #expect(!lines.isEmpty)
            for line in lines {
                #expect(line.range(of: #"^<[0-7]>"#, options: .regularExpression) != nil, "no priority prefix: \(line)")
                #expect(line.range(of: #"\d{4}-\d\d-\d\dT\d\d:"#, options: .regularExpression) == nil, "timestamp under the journal: \(line)")
            }
            if broken {
                #expect(status == 78, "a config error exits 78 (EX_CONFIG), got \(String(describing: status))")
                #expect(text.hasPrefix("<3>"), "a config error is logged at priority 3: \(text)")
                #expect(text.contains("pipeline.queue_capacity"), "names the key: \(text)")
            } else {
                #expect(status == 0, "stderr:\n\(text)")
                #expect(lines.contains { $0.hasPrefix("<6>camclassd running") })
                // Nothing per frame at info: 40 frames, a fixed handful of lines.
                #expect(lines.count < 25, "\(lines.count) lines for 40 frames:\n\(text)")
            }
        }
    }

    /// Every way start-up can fail exits with the sysexits code that names the cause.
    @Test func exitCodesFollowSysexits() async throws {
        let dir = TestEnv.tempDir("sdexit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ov = try TestEnv.openVINO()
        try FileManager.default.createDirectory(atPath: dir + "/not-a-socket", withIntermediateDirectories: true)
        let cases: [(String, [String], String, Int32)] = [
            ("unknown key", [], "model: {topk: 3}", 78),
            ("bad value", [], "inference: {backend: tpu}", 78),
            ("missing model", ["--model", dir + "/nope.model.yaml"], "", 66),
            ("missing replay folder", ["--source", dir + "/no-such-folder"], "", 66),
            ("missing OpenVINO library", [], "inference: {openvino_library: \(dir)/libopenvino_c.so}", 69),
            ("socket path is a directory", ["--socket", dir + "/not-a-socket"], "", 73),
            ("log in an unwritable place", ["--log", "/proc/camclass/log"], "", 73),
        ]
        for (what, args, extra, code) in cases {
            try writeDaemonConfig(dir + "/c.yaml", dir: dir, extra: extra)
            let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--frames", "2"] + args,
                                           environment: ["CAMCLASSD_OPENVINO_LIB": ov], dir: dir)
            let status = await daemon.waitExit(timeout: 60)
            #expect(status == code, "\(what): exit \(String(describing: status)), expected \(code); stderr:\n\(daemon.stderr)")
        }
    }

    /// The unit's SystemCallFilter= (emulated with seccomp exactly as declared, errno EPERM) lets the
    /// daemon start, notify, reload and stop with OpenVINO. (Measured with strace: OpenVINO pins its
    /// threads and binds memory — sched_setaffinity, mbind — which is why the unit re-allows those
    /// two from @resources.)
    @Test func unitSystemCallFilterLetsTheDaemonRun() async throws {
        let dir = TestEnv.tempDir("sdseccomp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 30)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestEnv.repoRoot + "/Tests/systemd/unit-syscall-filter.py")
        p.arguments = [TestEnv.repoRoot + "/systemd/camclassd.service", try DaemonProcess.binary(), "--config", dir + "/c.yaml"]
        var env = ProcessInfo.processInfo.environment
        for key in ["WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID"] { env[key] = nil }
        env["NOTIFY_SOCKET"] = listener.name
        env["CAMCLASSD_OPENVINO_LIB"] = try TestEnv.openVINO()
        p.environment = env
        let errPath = dir + "/stderr.txt"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func stderr() -> String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
        #expect(await eventually(60) { listener.messages.contains { $0.fields["READY"] == "1" } }, "no READY=1; stderr:\n\(stderr())")
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 30, topK: 3)
        kill(p.processIdentifier, SIGHUP)
        #expect(await eventually(20) { stderr().contains("configuration reloaded") }, "stderr:\n\(stderr())")
        kill(p.processIdentifier, SIGTERM)
        #expect(await eventually(15) { !p.isRunning })
        #expect(!p.isRunning && p.terminationStatus == 0, "stderr:\n\(stderr())")
        #expect(stderr().contains("system calls allowed"), "the filter was applied: \(stderr())")
    }

    /// An engine that fails every inference at run time (the stand-in libdnn.so, told to) stops the
    /// daemon after `max_consecutive_failures` with 69, so `Restart=on-failure` restarts it.
    @Test func engineFailingAtRunTimeExitsUnavailable() async throws {
        let dir = TestEnv.tempDir("sdunhealthy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let standin = try TestEnv.require("CAMCLASS_TEST_STANDIN_DNN", "run the suite with `make test` (it builds Tests/StandIns/libdnn.so)")
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 50, extra: """
            inference: {backend: bpu, bpu_library: \(standin)}
            pipeline: {max_consecutive_failures: 5}
            """)
        let daemon = try DaemonProcess(arguments: ["--config", dir + "/c.yaml", "--model", TestEnv.repoRoot + "/Tests/StandIns/bench_b2.model"],
                                       environment: ["STANDIN_DNN_FAIL_INFER_EVERY": "1"], dir: dir)
        let status = await daemon.waitExit(timeout: 60)
        #expect(status == 69, "exit \(String(describing: status)); stderr:\n\(daemon.stderr)")
        #expect(daemon.stderr.contains("inference engine unhealthy"), "\(daemon.stderr)")
    }

    /// What the kernel says when OpenVINO compiles under MemoryDenyWriteExecute (measured with the
    /// kernel's own switch, PR_SET_MDWE, the same rule systemd applies): the CPU plugin's JIT needs
    /// W+X memory, so the OpenVINO unit needs the drop-in; without the switch the same run works.
    @Test func openVINOJITNeedsWriteExecuteMemory() async throws {
        let dir = TestEnv.tempDir("sdmdwe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let wrapper = dir + "/mdwe.py"
        try """
        import ctypes, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            sys.exit("prctl(PR_SET_MDWE) failed, errno %d (kernel older than 6.3?)" % ctypes.get_errno())
        os.execv(sys.argv[1], sys.argv[1:])
        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        try writeDaemonConfig(dir + "/c.yaml", dir: dir, fps: 0)
        for mdwe in [false, true] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            let args = ["--config", dir + "/c.yaml", "--frames", "2"]
            // The same python3 exec path both times; only the prctl differs.
            let exec = mdwe ? [wrapper] : ["-c", "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"]
            p.arguments = exec + [try DaemonProcess.binary()] + args
            var env = ProcessInfo.processInfo.environment
            env["CAMCLASSD_OPENVINO_LIB"] = try TestEnv.openVINO()
            p.environment = env
            let errPath = dir + "/mdwe-\(mdwe).txt"
            FileManager.default.createFile(atPath: errPath, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: errPath)
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            while p.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            if mdwe {
                #expect(p.terminationStatus == 70, "under MDWE: exit \(p.terminationStatus): \(err)")
                #expect(err.contains("ov_core_compile_model"), "the compile is what fails: \(err)")
            } else {
                #expect(p.terminationStatus == 0, "without MDWE: exit \(p.terminationStatus): \(err)")
            }
        }
    }
}

/// The notifier and the log format, in process.
@Suite struct SystemdNotifierUnitTests {
    @Test func watchdogOnlyForThisPid() {
        #expect(SystemdNotifier(socket: nil, watchdogUsec: "2000000", watchdogPid: nil).watchdogIntervalNs == 2_000_000_000)
        #expect(SystemdNotifier(socket: nil, watchdogUsec: "2000000", watchdogPid: "\(getpid())").watchdogIntervalNs == 2_000_000_000)
        #expect(SystemdNotifier(socket: nil, watchdogUsec: "2000000", watchdogPid: "\(getpid() + 1)").watchdogIntervalNs == nil)
        #expect(SystemdNotifier(socket: nil, watchdogUsec: "0", watchdogPid: nil).watchdogIntervalNs == nil)
        #expect(SystemdNotifier(socket: nil, watchdogUsec: "x", watchdogPid: nil).watchdogIntervalNs == nil)
        #expect(!SystemdNotifier(socket: nil, watchdogUsec: nil, watchdogPid: nil).isEnabled)
        #expect(!SystemdNotifier(socket: "vsock:2:1234", watchdogUsec: nil, watchdogPid: nil).isEnabled)
    }

    @Test func sendsToPathAndAbstractSockets() async throws {
        let dir = TestEnv.tempDir("sdunit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for abstract in [true, false] {
            let listener = try NotifyListener(abstract: abstract, dir: dir)
            let n = SystemdNotifier(socket: listener.name, watchdogUsec: nil, watchdogPid: nil)
            #expect(n.send("READY=1\nSTATUS=hello"))
            #expect(await eventually(2) { listener.messages.count == 1 })
            #expect(listener.messages.first?.fields == ["READY": "1", "STATUS": "hello"])
            listener.stop()
            if !abstract { unlink(listener.name) }
        }
    }

    @Test func statusIsOneLine() {
        #expect(SystemdNotifier.status("a\nb\r\nc") == "STATUS=a b c")
        #expect(SystemdNotifier.status(String(repeating: "x", count: 1000)).utf8.count < 420)
    }

    @Test func progressNotifierCountsOnlyClassifications() async throws {
        let dir = TestEnv.tempDir("sdprog")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        let p = ProgressNotifier(notifier: SystemdNotifier(socket: listener.name, watchdogUsec: "400000", watchdogPid: nil))
        func publish(_ s: String) { Array(s.utf8).withUnsafeBytes { p.publish($0) } }
        p.armReady(status: "running")
        publish(#"{"type":"status","x":1}"# + "\n")
        publish(#"{"type":"camera","event":"lost"}"# + "\n")
        try await Task.sleep(for: .milliseconds(150))
        #expect(listener.messages.isEmpty, "status/camera records are not progress")
        publish(#"{"type":"classification","seq":1}"# + "\n")
        #expect(await eventually(2) { listener.messages.count == 2 })
        #expect(listener.messages.map(\.text) == ["READY=1\nSTATUS=running", "WATCHDOG=1"])
        publish(#"{"type":"classification","seq":2}"# + "\n")   // within a quarter interval: no ping
        try await Task.sleep(for: .milliseconds(150))
        publish(#"{"type":"classification","seq":3}"# + "\n")   // 150 ms later: ping again
        #expect(await eventually(2) { listener.messages.count == 3 })
        #expect(p.readyMonotonicNs != 0)
    }

    @Test func journalFormat() {
        let line = DaemonLogHandler.format(level: .warning, message: "two\nlines", metadata: ["b": "x y", "a": "1"],
                                           label: "camclassd", style: .journal, realtimeNs: 0)
        #expect(line == "<4>two\\nlines a=1 b=\"x y\"\n")
        #expect(DaemonLogHandler.format(level: .info, message: "m", metadata: [:], label: "camclassd", style: .systemd,
                                        realtimeNs: 0) == "info: m\n")
        #expect(DaemonLogHandler.format(level: .error, message: "m", metadata: [:], label: "camclassd", style: .terminal,
                                        realtimeNs: 1_700_000_000_123_000_000) == "2023-11-14T22:13:20.123Z error camclassd: m\n")
        #expect(DaemonLogHandler.syslogPriority(.critical) == 2 && DaemonLogHandler.syslogPriority(.trace) == 7)
        // JOURNAL_STREAM counts only when it names stderr itself.
        #expect(DaemonLogHandler.detectStyle(journalStream: "1:2", invocationID: nil) == .terminal)
        #expect(DaemonLogHandler.detectStyle(journalStream: "1:2", invocationID: "abc") == .systemd)
        var st = stat()
        fstat(STDERR_FILENO, &st)
        #expect(DaemonLogHandler.detectStyle(journalStream: "\(st.st_dev):\(st.st_ino)", invocationID: nil) == .journal)
    }

    @Test func logLevelFollowsTheSharedControl() {
        let control = LogLevelControl()
        var h = DaemonLogHandler(label: "t", style: .terminal, control: control)
        #expect(h.logLevel == .info)
        control.set(.debug)
        #expect(h.logLevel == .debug)
        h.logLevel = .error   // a logger's own level wins
        control.set(.trace)
        #expect(h.logLevel == .error)
    }
}
