import Client
import CamclassDaemon
import WireFormat
import Capture
import Glibc
import ImageOps
import Inference
import Logging
import Pipeline
import Publishing
import Support
import Synchronization

/// `camclass bench-fanout`: what subscribers cost. The daemon's path (unpaced 640x480 replay →
/// real engine → workers, which publish in order → socket + rolling log) with 1, 8 and 64 subscribers reading, in
/// alternating rounds of one run (this machine is shared and noisy), plus the JSON encoder's bytes
/// and CPU time per record.
public struct FanoutBenchmark: SetUpBenchmark {
    public struct Options: Sendable {
        public var subscribers = [1, 8, 64]
        public var rounds = 3
        public var secondsPerRun = 3.0
        public var samplesDir: String?
        public init() {}
    }

    public struct Row: Sendable {
        public var subscribers: Int
        public var fps: [Double] = []
        /// CPU time of the socket's I/O thread per published record (filters, copies, sends), µs.
        public var ioThreadUs: [Double] = []
        /// Publishing per record: stable label, encoding, hand-off to all sinks, on the worker
        /// that emits it (mean wall time, which includes being preempted by the threads it
        /// wakes), µs.
        public var publishUs: [Double] = []
        /// CPU per record of the daemon's own threads (`camclass-*`: capture, workers with
        /// conversion, waits and publishing, socket, log) — all of it but the inference
        /// library's threads, µs.
        public var ownCPUUs: [Double] = []
        /// CPU per record of the benchmark's readers (one thread for all subscribers; it shares
        /// the machine's cores with the daemon, as real subscribers would), µs.
        public var readersCPUUs: [Double] = []
        /// The daemon's CPU time per published record (all its threads; not the benchmark's
        /// readers), µs: what a subscriber costs when inference is CPU-bound.
        public var daemonCPUUs: [Double] = []
        /// Records a subscriber lost (should be 0: the readers keep up).
        public var dropped = 0
        public var fpsMedian: Double { median(fps) }
    }

    public struct Result: Sendable {
        public var engine: String
        public var rows: [Row]
        public var jsonBytesPerRecord: Double
        public var jsonCPUNsPerRecord: Double
        public var textBytesPerRecord: Double
        public var textCPUNsPerRecord: Double
        /// fps with the most subscribers relative to the fewest (1.0 = no cost).
        public var ratio: Double {
            guard let a = rows.first?.fpsMedian, let b = rows.last?.fpsMedian, a > 0 else { return 0 }
            return b / a
        }
        /// Median over rounds of (fps with the most subscribers / fps with the fewest) measured
        /// back to back in the same round: robust to slow drifts in machine load.
        public var pairedRatio: Double {
            guard let a = rows.first, let b = rows.last else { return 0 }
            return median(zip(a.fps, b.fps).map { $0.0 > 0 ? $0.1 / $0.0 : 0 })
        }
        /// The fps the most subscribers leave when CPU-bound, from CPU per record (1.0 = no cost):
        /// less sensitive than `ratio` to other load on a shared machine.
        public var cpuRatio: Double {
            guard let a = rows.first.map({ median($0.daemonCPUUs) }), let b = rows.last.map({ median($0.daemonCPUUs) }), b > 0 else { return 0 }
            return a / b
        }
        /// The same from the daemon's own threads only: total CPU per record with the fewest
        /// subscribers over that plus what the daemon's threads spend extra with the most.
        /// Inference CPU (which varies with machine load) cancels out.
        public var ownCPURatio: Double {
            guard let first = rows.first, let last = rows.last else { return 0 }
            let total = median(first.daemonCPUUs), extra = median(last.ownCPUUs) - median(first.ownCPUUs)
            return total > 0 ? total / (total + max(0, extra)) : 0
        }
    }

    let setup: BenchmarkSetup
    let options: Options

    public init(config: DaemonConfig, options: Options, logger: Logger) {
        (setup, self.options) = (BenchmarkSetup(config: config, logger: logger), options)
    }

    /// Thread context: blocking; call from a command-line main.
    public func run(progress: (String) -> Void) throws -> Result {
        let (model, labels, engine) = try setup.engine()
        var bench = PipelineBenchmark.Options()
        bench.samplesDir = options.samplesDir
        let frames = try PipelineBenchmark(config: config, options: bench, logger: logger).benchFrames()
        let vocabulary = try config.recordVocabulary(labels: labels)
        let encoding = Self.encodingCost(vocabulary: vocabulary, topK: config.model.topK)
        progress(String(format: "JSON encoding: %.0f bytes/record, %.2f µs CPU/record", encoding.jsonBytes, encoding.jsonNs / 1000))
        var rows = options.subscribers.map { Row(subscribers: $0) }
        for round in 1...options.rounds {
            // Alternate the order so a drift in machine load does not favour one count.
            let order = round % 2 == 1 ? Array(rows.indices) : Array(rows.indices.reversed())
            for i in order {
                let r = try pipelineRun(engine: engine, labels: labels, model: model, frames: frames, vocabulary: vocabulary,
                                        subscribers: rows[i].subscribers)
                rows[i].fps.append(r.fps)
                rows[i].ioThreadUs.append(r.ioThreadUs)
                rows[i].publishUs.append(r.publishUs)
                rows[i].daemonCPUUs.append(r.daemonCPUUs)
                rows[i].ownCPUUs.append(r.ownCPUUs)
                rows[i].readersCPUUs.append(r.readersCPUUs)
                rows[i].dropped += r.dropped
                progress(String(format: "round %d: %2d subscribers: %.1f FPS, daemon %.0f µs CPU/record, socket thread %.1f µs", round,
                                rows[i].subscribers, r.fps, r.daemonCPUUs, r.ioThreadUs))
            }
        }
        return Result(engine: engine.info.summary, rows: rows, jsonBytesPerRecord: encoding.jsonBytes,
                      jsonCPUNsPerRecord: encoding.jsonNs, textBytesPerRecord: encoding.textBytes, textCPUNsPerRecord: encoding.textNs)
    }

    /// Bytes and thread CPU time per record of the JSON (and text) encoders on a typical result:
    /// top-k entries with real labels, a stable label, a file name.
    static func encodingCost(vocabulary: RecordVocabulary, topK: Int) -> (jsonBytes: Double, jsonNs: Double, textBytes: Double, textNs: Double) {
        let encoder = RecordEncoder(source: "/dev/video0", model: "efficientnet_lite0", vocabulary: vocabulary,
                                    fileNames: ["frame0.nv12"], maxTopK: max(1, topK))
        let text = TextRecordEncoder(vocabulary: vocabulary)
        let r = ClassificationResult(maxTopK: max(1, topK))
        r.topCount = max(1, topK)
        for i in 0..<r.topCount {
            r.topClasses[i] = Int32((281 + i * 97) % max(1, vocabulary.labels.count))
            r.topScores[i] = 0.4 / Float(i + 1)
        }
        r.fileIndex = 0
        r.hasStable = true
        r.stableLabel = 0
        r.stableScore = 0.8
        r.preprocessNs = 812_345
        r.inferenceNs = 9_876_543
        r.totalNs = 11_234_567
        let n = 200_000
        var bytes = 0, textBytes = 0
        func threadCPU() -> UInt64 {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        }
        let t0 = threadCPU()
        for i in 0..<n {
            r.seq = UInt64(i)
            r.captureNs = 1_000_000_000 + UInt64(i) * 33_333_333
            r.realtimeNs = 1_795_425_600_000_000_000 + r.captureNs
            bytes += encoder.classification(r).count
        }
        let t1 = threadCPU()
        for i in 0..<n {
            r.seq = UInt64(i)
            let line = encoder.classification(r)
            textBytes += text.encode(PublishedRecord(kind: .classification, json: line, result: r))?.count ?? 0
        }
        let t2 = threadCPU()
        let json = Double(t1 - t0) / Double(n)
        return (Double(bytes) / Double(n), json, Double(textBytes) / Double(n), max(0, Double(t2 - t1) / Double(n) - json))
    }

    struct Run {
        var fps: Double
        var ioThreadUs: Double
        var publishUs: Double
        var daemonCPUUs: Double
        var ownCPUUs: Double
        var readersCPUUs: Double
        var dropped: Int
    }

    func pipelineRun(engine: any InferenceEngine, labels: LabelSet, model: ModelDescriptor, frames: [NV12Buffer],
                     vocabulary: RecordVocabulary, subscribers: Int) throws -> Run {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let source = ReplaySource(name: "bench", images: frames, fileNames: frames.indices.map { "frame\($0).nv12" }, fps: 0, loop: true)
        var so = SocketOptions(path: dir + "/bench.sock")
        so.maxSubscribers = max(64, subscribers)
        let socket = UnixSocketPublisher(options: so, logger: quiet)
        var lo = config.log
        lo.vocabulary = vocabulary
        lo.path = dir + "/bench.log"
        let log = RollingLog(options: lo, logger: quiet)
        var options = config.pipeline
        options.stable = config.stable.enabled ? config.stable : nil
        options.vocabulary = vocabulary
        let pipeline = ClassificationPipeline(source: source, engine: engine, labels: labels, modelName: model.name,
                                              sinks: [socket, log], options: options, logger: quiet)
        try log.start()
        try socket.start()
        let readers: MultiDrain
        do {
            readers = try MultiDrain(path: dir + "/bench.sock", connections: subscribers)
        } catch {
            socket.stop()
            log.stop()
            throw error
        }
        if !socket.waitForSubscribers(subscribers, timeoutNs: 5_000_000_000) {
            Console.err("fan-out benchmark: \(socket.subscriberCount) of \(subscribers) subscribers connected within 5 s; this run measures those\n")
        }
        try pipeline.start()
        Clock.sleep(untilMonotonicNs: Clock.monotonicNs() + 500_000_000)  // warm-up
        let startCount = pipeline.counters.published
        let ioBefore = ThreadCPU.ns(named: "camclass-sock")
        let processBefore = ThreadCPU.processNs(), readersBefore = ThreadCPU.ns(named: "bench-subs")
        let ownBefore = ThreadCPU.ns(prefix: "camclass-")
        let stagesBefore = pipeline.stageTimes.snapshot()
        let start = Clock.monotonicNs()
        Clock.sleep(untilMonotonicNs: start + UInt64(self.options.secondsPerRun * 1e9))
        let counted = pipeline.counters.published - startCount
        let ioAfter = ThreadCPU.ns(named: "camclass-sock")
        let processAfter = ThreadCPU.processNs(), readersAfter = ThreadCPU.ns(named: "bench-subs")
        let ownAfter = ThreadCPU.ns(prefix: "camclass-")
        let stagesAfter = pipeline.stageTimes.snapshot()
        let elapsed = Double(Clock.monotonicNs() - start) / 1e9
        pipeline.stop()
        pipeline.wait()
        let dropped = socket.droppedTotal
        socket.stop()
        log.stop()
        readers.stop()
        let publishMs = stagesAfter.meanMs(.publish, since: stagesBefore) ?? 0
        let daemonNs = Double(processAfter &- processBefore) - Double(readersAfter &- readersBefore)
        return Run(fps: Double(counted) / elapsed, ioThreadUs: counted > 0 ? Double(ioAfter &- ioBefore) / Double(counted) / 1000 : 0,
                   publishUs: publishMs * 1000, daemonCPUUs: counted > 0 ? daemonNs / Double(counted) / 1000 : 0,
                   ownCPUUs: counted > 0 ? Double(ownAfter &- ownBefore) / Double(counted) / 1000 : 0,
                   readersCPUUs: counted > 0 ? Double(readersAfter &- readersBefore) / Double(counted) / 1000 : 0, dropped: dropped)
    }
}

/// Subscribers for benchmarks: `connections` connections read by one thread (poll), so the
/// client side costs little next to what is measured (the daemon's fan-out).
final class MultiDrain: @unchecked Sendable {
    private var connections: [SubscriberConnection] = []
    private var thread: DedicatedThread?
    /// `stop` writes here: the reader thread blocks on its connections and this pipe, no timeout.
    private let wake: (read: Int32, write: Int32)

    /// - Throws: `SystemCallError` when the wake-up pipe cannot be made (out of descriptors).
    init(path: String, connections n: Int) throws {
        wake = try makeWakePipe()
        for _ in 0..<n { if let c = try? SubscriberConnection(path: path) { connections.append(c) } }
        let fds = connections.map(\.fd), wakeFD = wake.read
        thread = DedicatedThread(name: "bench-subs") {
            var polls = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
                + fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
            defer { buf.deallocate() }
            while true {
                let r = polls.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), -1) }
                if r < 0 && errno != EINTR { break }
                if polls[0].revents != 0 { break }  // stop
                if r <= 0 { continue }
                for i in polls.indices.dropFirst() where polls[i].revents != 0 {
                    if read(polls[i].fd, buf, 1 << 16) <= 0 { polls[i].fd = -1 }
                }
            }
        }
    }

    func stop() {
        guard let thread else { return }
        var one: UInt8 = 1
        _ = write(wake.write, &one, 1)
        thread.join()
        self.thread = nil
        close(wake.read)
        close(wake.write)
    }
}

/// CPU time of this process's threads by name (/proc/self/task/*/schedstat, ns), for per-thread costs.
enum ThreadCPU {
    /// CPU time of the whole process (user + system).
    static func processNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func ns(named name: String) -> UInt64 { ns { $0 == name } }
    static func ns(prefix: String) -> UInt64 { ns { $0.hasPrefix(prefix) } }

    static func ns(where matches: (String) -> Bool) -> UInt64 {
        guard let dir = opendir("/proc/self/task") else { return 0 }
        defer { closedir(dir) }
        var total: UInt64 = 0
        while let e = readdir(dir) {
            let tid = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard tid.first?.isNumber == true,
                  let comm = readTextFile("/proc/self/task/\(tid)/comm"),
                  matches(comm.trimmingCharacters(in: .newlines)),
                  let sched = readTextFile("/proc/self/task/\(tid)/schedstat"),
                  let onCPU = sched.split(separator: " ").first.flatMap({ UInt64($0) }) else { continue }
            total += onCPU  // nanoseconds on the CPU (schedstat's first field)
        }
        return total
    }
}
