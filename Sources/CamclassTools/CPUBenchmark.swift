import Client
import Foundation
import Glibc
import Capture
import ImageOps
import Support

/// What one process's threads have used so far, read from /proc: CPU time and context switches
/// per thread (`/proc/PID/task/TID/{stat,schedstat,status}`) and the resident set.
/// Thread context: any thread (reads files).
public struct ProcessSample: Sendable {
    public struct Thread: Sendable {
        public var tid: Int32
        /// `comm`: the name the thread gave itself (`camclass-capture`, …); Swift's cooperative
        /// pool and the runtime's own threads keep the process name.
        public var name: String
        /// Time on a CPU in ns: `schedstat`'s first field when the kernel has it (ns resolution),
        /// else utime+stime from `stat` (clock ticks, usually 10 ms).
        public var cpuNs: UInt64
        /// utime+stime from `stat`, in ns (tick resolution), for cross-checking.
        public var tickCPUNs: UInt64
        /// voluntary_ctxt_switches + nonvoluntary_ctxt_switches: each is the thread going off the
        /// CPU, so each is one wake-up to come (or a preemption).
        public var switches: UInt64
    }
    public var threads: [Thread] = []
    public var rssBytes: Int = 0
    public var timeNs: UInt64 = 0

    public var cpuNs: UInt64 { threads.reduce(0) { $0 + $1.cpuNs } }
    public var switches: UInt64 { threads.reduce(0) { $0 + $1.switches } }

    /// Reads `pid`'s threads now; nil when the process is gone.
    public static func read(pid: Int32) -> ProcessSample? {
        var s = ProcessSample()
        s.timeNs = Clock.monotonicNs()
        guard let status = readTextFile("/proc/\(pid)/status") else { return nil }
        s.rssBytes = (field(status, "VmRSS:").flatMap { Int($0) } ?? 0) * 1024
        let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return nil }
        for t in tids {
            guard let tid = Int32(t) else { continue }
            let dir = "/proc/\(pid)/task/\(t)"
            // A thread that ended between the listing and the reads is skipped.
            guard let stat = readTextFile(dir + "/stat"), let open = stat.firstIndex(of: "("),
                  let close = stat.lastIndex(of: ")"), let st = readTextFile(dir + "/status") else { continue }
            let name = String(stat[stat.index(after: open)..<close])
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let u = UInt64(fields[11]), let k = UInt64(fields[12]) else { continue }
            let tickNs = (u + k) * (1_000_000_000 / ticks)
            let schedNs = readTextFile(dir + "/schedstat").flatMap { $0.split(separator: " ").first.flatMap { UInt64($0) } }
            let v = field(st, "voluntary_ctxt_switches:").flatMap { UInt64($0) } ?? 0
            let n = field(st, "nonvoluntary_ctxt_switches:").flatMap { UInt64($0) } ?? 0
            s.threads.append(Thread(tid: tid, name: name, cpuNs: schedNs ?? tickNs, tickCPUNs: tickNs, switches: v + n))
        }
        return s
    }

    /// The value after `key` on its line of a /proc status file (first word).
    static func field(_ text: String, _ key: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            return line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
        }
        return nil
    }

    /// What happened between `earlier` and `self`, per thread name (threads of one name added up;
    /// a thread that started meanwhile counts from zero, one that ended is missing from both).
    public func since(_ earlier: ProcessSample) -> Delta {
        let before = Dictionary(earlier.threads.map { ($0.tid, $0) }, uniquingKeysWith: { a, _ in a })
        var byName: [String: Delta.Thread] = [:]
        var order: [String] = []
        for t in threads {
            let b = before[t.tid]
            let cpu = t.cpuNs &- min(t.cpuNs, b?.cpuNs ?? 0)
            let sw = t.switches &- min(t.switches, b?.switches ?? 0)
            if byName[t.name] == nil { order.append(t.name); byName[t.name] = Delta.Thread(name: t.name) }
            byName[t.name]!.count += 1
            byName[t.name]!.cpuNs += cpu
            byName[t.name]!.switches += sw
        }
        let threads = order.compactMap { byName[$0] }
        return Delta(seconds: Double(timeNs &- earlier.timeNs) / 1e9, cpuNs: threads.reduce(0) { $0 + $1.cpuNs },
                     switches: threads.reduce(0) { $0 + $1.switches }, threads: threads, rssBytes: rssBytes)
    }

    public struct Delta: Sendable {
        public struct Thread: Sendable {
            public var name: String
            public var count = 0
            public var cpuNs: UInt64 = 0
            public var switches: UInt64 = 0
        }
        public var seconds: Double
        public var cpuNs: UInt64
        public var switches: UInt64
        public var threads: [Thread]
        public var rssBytes: Int
        public var switchesPerSecond: Double { seconds > 0 ? Double(switches) / seconds : 0 }
    }
}

/// `camclass bench-cpu`: what the real `camclassd` process costs in CPU time and wake-ups, per
/// frame and per thread, at 1 FPS (nearly idle), 30 FPS (a camera) and unpaced, for each backend.
/// Each configuration runs its own daemon (the release binary, as a child process) replaying
/// 640x480 photos; the figures are /proc deltas over the measured window, after a warm-up.
/// Prints figures; not a test.
public enum CPUBenchmark {
    public struct Backend: Sendable {
        public var name: String
        public var model: String
        /// Extra `camclassd` flags (`--backend bpu`, …).
        public var arguments: [String] = []
        /// Config file text for settings without a flag (the BPU library path); nil = none.
        public var configYAML: String?
        public var environment: [String: String] = [:]
        public init(name: String, model: String, arguments: [String] = [], configYAML: String? = nil,
                    environment: [String: String] = [:]) {
            self.name = name
            self.model = model
            self.arguments = arguments
            self.configYAML = configYAML
            self.environment = environment
        }
    }

    public struct Options: Sendable {
        public var camclassd: String
        public var backends: [Backend] = []
        /// Replay rates; 0 = unpaced.
        public var rates: [Double] = [1, 30, 0]
        public var seconds = 20.0
        public var warmupSeconds = 3.0
        /// Photos scaled (crop) to 640x480 and written as JPEG for the daemon to replay.
        public var samples = "samples"
        public var frameWidth = 640
        public var frameHeight = 480
        public init(camclassd: String) { self.camclassd = camclassd }
    }

    public struct Row: Sendable {
        public var backend: String
        public var rate: Double
        public var frames: Int
        public var delta: ProcessSample.Delta
        public var fps: Double { delta.seconds > 0 ? Double(frames) / delta.seconds : 0 }
        public var cpuMsPerFrame: Double { frames > 0 ? Double(delta.cpuNs) / 1e6 / Double(frames) : 0 }
        public var cpuPercent: Double { delta.seconds > 0 ? Double(delta.cpuNs) / 1e7 / delta.seconds : 0 }
        /// Wake-ups per frame (all threads' context switches over frames published).
        public var switchesPerFrame: Double { frames > 0 ? Double(delta.switches) / Double(frames) : 0 }
        /// The threads of the BPU stand-in (a test double loaded into the process; it names its
        /// threads `standin-…`): on the board this is the vendor runtime's cost, not camclassd's.
        public var standIn: [ProcessSample.Delta.Thread] { delta.threads.filter { $0.name.hasPrefix("standin-") } }
        /// CPU ms per frame of camclassd's own threads (the whole process minus the stand-in's).
        public var daemonCPUMsPerFrame: Double {
            frames > 0 ? Double(delta.cpuNs - standIn.reduce(0) { $0 + $1.cpuNs }) / 1e6 / Double(frames) : 0
        }
        /// Wake-ups per second of camclassd's own threads.
        public var daemonSwitchesPerSecond: Double {
            delta.seconds > 0 ? Double(delta.switches - standIn.reduce(0) { $0 + $1.switches }) / delta.seconds : 0
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs every backend at every rate, one daemon each. Blocking: call from a plain thread.
    public static func run(_ o: Options, log: (String) -> Void) throws -> [Row] {
        let dir = NSTemporaryDirectory() + "camclass-bench-cpu-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/photos", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let photos = try preparePhotos(from: o.samples, into: dir + "/photos", width: o.frameWidth, height: o.frameHeight)
        log("\(photos) photos at \(o.frameWidth)x\(o.frameHeight) in the replay folder")
        var rows: [Row] = []
        for backend in o.backends {
            for rate in o.rates {
                log("\(backend.name) at \(rate == 0 ? "unpaced" : "\(fmt(rate, 0)) FPS"): warm-up \(fmt(o.warmupSeconds, 0)) s, measuring \(fmt(o.seconds, 0)) s…")
                rows.append(try measure(o, backend: backend, rate: rate, dir: dir))
            }
        }
        return rows
    }

    static func measure(_ o: Options, backend: Backend, rate: Double, dir: String) throws -> Row {
        let run = dir + "/run-\(backend.name)-\(Int(rate))"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: run) }
        let socket = run + "/s.sock"
        var args = ["--source", dir + "/photos", "--model", backend.model, "--socket", socket, "--log", run + "/c.log",
                    "--fps", rate == 0 ? "0" : fmt(rate, 3)] + backend.arguments
        if let yaml = backend.configYAML {
            // Large enough that the log never rotates during a run (rotation is not what is measured).
            try (yaml + "\nlog:\n  max_bytes: 0\n").write(toFile: run + "/camclassd.yaml", atomically: true, encoding: .utf8)
            args += ["--config", run + "/camclassd.yaml"]
        }
        let daemon = try BenchProcess.spawn(o.camclassd, args, environment: backend.environment, stderr: run + "/camclassd.log")
        defer { BenchProcess.stopProcess(daemon) }
        let pid = daemon.processIdentifier
        guard BenchProcess.waitFor(seconds: 180, { FileManager.default.fileExists(atPath: socket) || !daemon.isRunning }), daemon.isRunning else {
            throw Failure(description: "camclassd did not open \(socket): \(BenchProcess.tail(run + "/camclassd.log"))")
        }
        guard BenchProcess.waitFor(seconds: 30, { ((try? published(socket: socket)) ?? 0) > 0 }) else {
            throw Failure(description: "camclassd published nothing: \(BenchProcess.tail(run + "/camclassd.log"))")
        }
        pause(seconds: o.warmupSeconds)
        // The status requests are outside the window: a request is a wake-up of its own.
        let p0 = try published(socket: socket)
        guard let s0 = ProcessSample.read(pid: pid) else { throw Failure(description: "camclassd exited: \(BenchProcess.tail(run + "/camclassd.log"))") }
        pause(seconds: o.seconds)
        guard let s1 = ProcessSample.read(pid: pid) else { throw Failure(description: "camclassd exited: \(BenchProcess.tail(run + "/camclassd.log"))") }
        let p1 = try published(socket: socket)
        return Row(backend: backend.name, rate: rate, frames: max(0, p1 - p0), delta: s1.since(s0))
    }

    /// The daemon's published count from a `status` request.
    static func published(socket: String) throws -> Int {
        let text = try CamclassClient.status(socket: socket, json: true)
        guard let o = CamclassClient.object(text.trimmingCharacters(in: .newlines)),
              let frames = o["frames"] as? [String: Any], let n = frames["published"] as? Int else {
            throw Failure(description: "no frames.published in the status reply: \(text.prefix(300))")
        }
        return n
    }

    /// The sample photos cropped and scaled to the frame size, written as JPEG; returns how many.
    static func preparePhotos(from samples: String, into dir: String, width: Int, height: Int) throws -> Int {
        let replay: ReplaySource
        do { replay = try ReplaySource(path: samples, fps: 0, loop: false) } catch {
            throw Failure(description: "cannot read the sample photos in '\(samples)': \(error) (make models prepares them)")
        }
        replay.open()
        var n = 0
        while let frame = try? replay.nextFrame(), let pixels = frame.nv12 {
            let b = NV12Buffer(width: width, height: height)
            NV12Ops.scale(pixels, into: b.view, mode: .crop)
            let jpeg = try JPEGEncoder.encode(b.view.readOnly, subsampling: .s420, quality: 90)
            guard FileManager.default.createFile(atPath: dir + "/photo\(n).jpg", contents: Data(jpeg)) else {
                throw Failure(description: "cannot write \(dir)/photo\(n).jpg")
            }
            n += 1
        }
        guard n > 0 else { throw Failure(description: "no photos in '\(samples)'") }
        return n
    }

    // MARK: the child process

    static func pause(seconds: Double) {
        _ = Condition().wait(timeoutNs: UInt64(max(0, seconds) * 1e9)) { false }
    }

    /// Checks `condition` every 50 ms (the benchmark's own process, outside what is measured).


    static func fmt(_ v: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", v) }

    // MARK: report

    /// The table: one line per backend and rate, then each row's threads.
    public static func report(_ rows: [Row], threadsAbove minShare: Double = 0.005) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        var out = "backend   rate       FPS  CPU ms/frame  CPU %  wakeups/s  wakeups/frame  threads  RSS MB  camclassd's own: ms/frame  wakeups/s\n"
        for r in rows {
            out += pad(r.backend, 9) + pad(r.rate == 0 ? "unpaced" : fmt(r.rate, 0), 7)
            out += String(format: " %7.1f  %12.3f  %5.1f  %9.1f  %13.1f  %7d  %6.1f  %25.3f  %9.1f\n",
                          r.fps, r.cpuMsPerFrame, r.cpuPercent, r.delta.switchesPerSecond, r.switchesPerFrame,
                          r.delta.threads.reduce(0) { $0 + $1.count }, Double(r.delta.rssBytes) / 1_048_576,
                          r.daemonCPUMsPerFrame, r.daemonSwitchesPerSecond)
        }
        out += "(camclassd's own: without the threads of the BPU stand-in, `standin-…`: a test double whose fake inference and timers stand for the vendor runtime)\n"
        out += "\nper thread (name ×count: CPU ms/frame, wakeups/s; threads under \(fmt(minShare * 100, 1)) % of the CPU and with no wake-ups left out)\n"
        for r in rows {
            out += "\(r.backend) \(r.rate == 0 ? "unpaced" : fmt(r.rate, 0) + " FPS"):"
            let total = max(1, r.delta.cpuNs)
            let shown = r.delta.threads.filter { Double($0.cpuNs) / Double(total) >= minShare || $0.switches > 0 }
                .sorted { $0.cpuNs > $1.cpuNs }
            for t in shown {
                let ms = r.frames > 0 ? Double(t.cpuNs) / 1e6 / Double(r.frames) : 0
                let wps = r.delta.seconds > 0 ? Double(t.switches) / r.delta.seconds : 0
                out += "  \(t.name)\(t.count > 1 ? "×\(t.count)" : ""): \(fmt(ms, 3)) ms, \(fmt(wps, 1))/s;"
            }
            out += "\n"
        }
        return out
    }
}
