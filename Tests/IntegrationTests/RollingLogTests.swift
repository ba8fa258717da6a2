import CamclassTestSupport
import CamclassDaemon
import CamclassTools
import Client
import WireFormat
import Foundation
import Glibc
import Publishing
import Support
import Synchronization
import Testing

/// A wall clock the test moves by hand (daily rotation without waiting a day).
final class FakeClock: Sendable {
    private let ns: Atomic<UInt64>
    init(_ start: UInt64) { ns = Atomic(start) }
    var now: UInt64 { ns.load(ordering: .relaxed) }
    func advance(_ d: UInt64) { ns.add(d, ordering: .relaxed) }
    func set(_ v: UInt64) { ns.store(v, ordering: .relaxed) }
}

/// A write(2) that fails with a chosen errno while armed (a full disk, an I/O error).
final class WriteFaults: Sendable {
    private let errnoValue = Atomic<Int32>(0)
    /// Bytes still accepted before the fault hits (a partial write), when armed.
    private let allowance = Atomic<Int>(0)
    let failures = Atomic<Int>(0)

    func arm(_ e: Int32, afterBytes: Int = 0) {
        allowance.store(afterBytes, ordering: .relaxed)
        errnoValue.store(e, ordering: .relaxed)
    }
    func disarm() { errnoValue.store(0, ordering: .relaxed) }

    var write: @Sendable (Int32, UnsafeRawPointer, Int) -> Int {
        { [self] fd, p, n in
            let e = errnoValue.load(ordering: .relaxed)
            if e != 0 {
                let left = allowance.load(ordering: .relaxed)
                if left > 0 {
                    let k = min(left, n)
                    allowance.store(left - k, ordering: .relaxed)
                    return Glibc.write(fd, p, k)
                }
                failures.add(1, ordering: .relaxed)
                errno = e
                return -1
            }
            return Glibc.write(fd, p, n)
        }
    }
}

enum LogFiles {
    /// Every line of `path` and its rotated files (`.N[.gz]` … `.1[.gz]`, then the live file), oldest first.
    static func lines(_ path: String) throws -> [String] {
        let dir = (path as NSString).deletingLastPathComponent, base = (path as NSString).lastPathComponent
        var rotated: [(Int, String)] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) where name.hasPrefix(base + ".") {
            let rest = name.dropFirst(base.count + 1)
            let num = rest.hasSuffix(".gz") ? rest.dropLast(3) : rest
            if let n = Int(num) { rotated.append((n, name)) }
        }
        var out: [String] = []
        for (_, name) in rotated.sorted(by: { $0.0 > $1.0 }) + [(0, base)] {
            let full = dir + "/" + name
            guard FileManager.default.fileExists(atPath: full) else { continue }
            let bytes = name.hasSuffix(".gz") ? try Gzip.decompress(file: full) : Array(try Data(contentsOf: URL(fileURLWithPath: full)))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.isEmpty || text.hasSuffix("\n"), "\(name) ends mid-record")
            out += text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        }
        return out
    }

    static func seqs(_ lines: [String]) throws -> [Int] {
        try lines.compactMap { line in
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "torn or invalid line: \(line.prefix(120))")
            return o["type"] as? String == "classification" ? o["seq"] as? Int : nil
        }
    }
}

@Suite struct RollingLogTests {
    static let day: UInt64 = 86_400_000_000_000
    /// 2026-11-23T00:00:00Z
    static let monday: UInt64 = 1_795_392_000 * 1_000_000_000

    static func waitWritten(_ log: RollingLog, _ n: Int) -> Bool {
        ProtocolTestEnv.waitUntil(timeoutMs: 20_000) { log.currentStats.recordsWritten + log.currentStats.lostRecords >= n }
    }

    /// 100 000 records, rotated by size and by (fake) time more than 50 times: every seq exactly
    /// once across the files, in order.
    @Test func hundredThousandRecordsAcrossFiftyRotations() throws {
        let dir = TestEnv.tempDir("log100k")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = FakeClock(Self.monday + 10 * 3_600_000_000_000)
        var o = RollingLogOptions(path: dir + "/c.log")
        o.maxBytes = 400 * 1024
        o.rotateDaily = true
        o.keep = 1000
        o.bufferBytes = 2 << 20
        o.clock = { clock.now }
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log], topK: 3)
        for i in 0..<100_000 {
            feeder.publish(top: [(285, 0.4), (281, 0.3), (282, 0.1)])
            if i % 2000 == 1999 {
                // Let the writer catch up, then a new day begins.
                #expect(Self.waitWritten(log, i + 1))
                clock.advance(Self.day)
            }
        }
        log.stop()
        let s = log.currentStats
        #expect(s.lostRecords == 0)
        #expect(s.rotationsByTime >= 49, "\(s)")
        #expect(s.rotationsBySize >= 20, "\(s)")
        #expect(s.rotations >= 50)
        let seqs = try LogFiles.seqs(LogFiles.lines(dir + "/c.log"))
        #expect(seqs.count == 100_000)
        expectSeqs(seqs, 0..<100_000, "every seq once, in order")
        // No file exceeds max_bytes.
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let size = (try FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.size] as? Int) ?? 0
            #expect(size <= 400 * 1024, "\(name) is \(size) bytes")
        }
    }

    @Test func gzipRotatedFilesKeepEveryRecord() throws {
        let dir = TestEnv.tempDir("loggz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = RollingLogOptions(path: dir + "/c.log")
        o.maxBytes = 32 * 1024
        o.keep = 500
        o.gzip = true
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        for _ in 0..<10_000 { feeder.publish(top: [(1, 0.5), (2, 0.25)]) }
        log.stop()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(names.filter { $0.hasSuffix(".gz") }.count >= 50)
        #expect(!names.contains { $0.hasSuffix(".tmp") || $0 == "c.log.1" }, "\(names)")
        #expect(log.currentStats.gzipped == log.currentStats.rotations)
        expectSeqs(try LogFiles.seqs(LogFiles.lines(dir + "/c.log")), 0..<10_000, "gzipped files")
        // `gzip -t` agrees the files are valid gzip.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-t", dir + "/c.log.1.gz"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    @Test func dailyRotationAtUTCMidnight() throws {
        let dir = TestEnv.tempDir("logday")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = FakeClock(Self.monday - 1_000_000_000)  // 23:59:59 the day before
        var o = RollingLogOptions(path: dir + "/c.log")
        o.maxBytes = 0
        o.rotateDaily = true
        o.clock = { clock.now }
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        for _ in 0..<3 { feeder.publish(top: [(1, 0.5)]) }
        #expect(Self.waitWritten(log, 3))
        clock.advance(2_000_000_000)  // 00:00:01
        for _ in 0..<2 { feeder.publish(top: [(1, 0.5)]) }
        log.stop()
        #expect(log.currentStats.rotationsByTime == 1)
        #expect(log.currentStats.rotationsBySize == 0)
        let old = try String(contentsOfFile: dir + "/c.log.1", encoding: .utf8).split(separator: "\n")
        let new = try String(contentsOfFile: dir + "/c.log", encoding: .utf8).split(separator: "\n")
        #expect(old.count == 3 && new.count == 2)
    }

    @Test func textFormatForPeople() throws {
        let dir = TestEnv.tempDir("logtext")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var labels = (0..<1000).map { "class \($0)" }
        labels[285] = "Egyptian cat"
        var o = RollingLogOptions(path: dir + "/c.log")
        o.format = .text
        o.vocabulary = RecordVocabulary(labels: labels, groups: [("cat", [281, 282, 283, 284, 285])])
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log], labels: labels, groups: [("cat", [281, 282, 283, 284, 285])])
        feeder.publish(top: [(285, 0.39), (281, 0.2)], stable: 0)
        feeder.publishRaw("{\"type\":\"camera\",\"state\":\"lost\",\"time\":\"2026-11-23T09:20:01.500000Z\",\"source\":\"/dev/video0\",\"reason\":\"VIDIOC_DQBUF: No such device\"}")
        log.stop()
        let lines = try String(contentsOfFile: dir + "/c.log", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        // Feeder times: realtime = 1_795_000_000 s + capture; capture 1 s → 2026-11-18T11:06:41.000Z.
        #expect(lines[0] == "2026-11-18T11:06:41.000Z #0 Egyptian cat 0.39 (stable: cat) 6.0 ms")
        #expect(lines[1] == "2026-11-23T09:20:01.500Z camera /dev/video0: lost (VIDIOC_DQBUF: No such device)")
    }

    /// Four threads publishing at once: every line whole, nothing lost, each thread's order kept.
    @Test func concurrentPublishersNeverInterleaveOrTear() async throws {
        let dir = TestEnv.tempDir("logconc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = RollingLogOptions(path: dir + "/c.log")
        o.maxBytes = 64 * 1024
        o.keep = 10_000
        o.bufferBytes = 16 << 20
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in 0..<4 {
                group.addTask {
                    try await onThread {
                        for i in 0..<25_000 {
                            var line = "{\"type\":\"t\",\"thread\":\(t),\"i\":\(i),\"pad\":\"\(String(repeating: "abcdefgh", count: 1 + i % 17))\"}\n"
                            line.withUTF8 { log.publish(UnsafeRawBufferPointer($0)) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        log.stop()
        #expect(log.currentStats.lostRecords == 0)
        var next = [Int](repeating: 0, count: 4)
        for line in try LogFiles.lines(dir + "/c.log") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "torn: \(line.prefix(80))")
            let t = obj["thread"] as! Int, i = obj["i"] as! Int
            #expect(i == next[t], "thread \(t): \(i) after \(next[t] - 1)")
            next[t] = i + 1
            #expect((obj["pad"] as! String).count == 8 * (1 + i % 17))
        }
        #expect(next == [25_000, 25_000, 25_000, 25_000])
    }

    /// ENOSPC then EIO (injected): publishing never blocks, the writer keeps what it could not
    /// write and retries, the overflow is counted and marked, and writing resumes.
    @Test func fullDiskIsSurvivedCountedAndMarked() throws {
        for e in [ENOSPC, EIO] {
            let dir = TestEnv.tempDir("logfull")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let faults = WriteFaults()
            var o = RollingLogOptions(path: dir + "/c.log")
            o.bufferBytes = 64 * 1024
            o.retryMs = 20
            o.write = faults.write
            let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
            try log.start()
            let feeder = RecordFeeder(sinks: [log])
            for _ in 0..<100 { feeder.publish(top: [(1, 0.5), (2, 0.3)]) }
            #expect(Self.waitWritten(log, 100))
            faults.arm(e, afterBytes: 1000)  // a partial write, then the error
            var slowest: UInt64 = 0
            for _ in 0..<2000 {
                let t0 = Clock.monotonicNs()
                feeder.publish(top: [(1, 0.5), (2, 0.3)])
                slowest = max(slowest, Clock.monotonicNs() - t0)
            }
            #expect(ProtocolTestEnv.waitUntil { log.currentStats.failing })
            let during = log.currentStats
            #expect(during.writeErrors > 0)
            #expect(during.lostRecords > 1000, "the 64 KiB buffer cannot hold 2000 records: \(during)")
            #expect(during.lastError?.contains(String(cString: strerror(e))) == true, "\(during)")
            #expect(slowest < 20_000_000, "publish blocked for \(Double(slowest) / 1e6) ms")
            usleep(100_000)
            faults.disarm()  // space returns
            #expect(ProtocolTestEnv.waitUntil { !log.currentStats.failing })
            #expect(Self.waitWritten(log, 2100))
            for _ in 0..<100 { feeder.publish(top: [(1, 0.5), (2, 0.3)]) }
            log.stop()
            let after = log.currentStats
            let lines = try LogFiles.lines(dir + "/c.log")
            let seqs = try LogFiles.seqs(lines)
            #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count)
            #expect(seqs.count + after.lostRecords == 2200, "written \(seqs.count) + lost \(after.lostRecords)")
            expectSeqs(Array(seqs.prefix(100)), 0..<100, "before the fault")
            expectSeqs(Array(seqs.suffix(100)), 2100..<2200, "writing resumed")
            // One gap marker says how many are missing, where they are missing.
            let gaps = lines.compactMap { l -> (Int, Int)? in
                guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], o["type"] as? String == "log_gap" else { return nil }
                return (lines.firstIndex(of: l)!, o["lost"] as! Int)
            }
            #expect(gaps.map(\.1).reduce(0, +) == after.lostRecords)
            #expect(!gaps.isEmpty)
        }
    }

    /// A real full file system: a 64 KiB tmpfs (root only), filled, then freed.
    @Test(.enabled(if: geteuid() == 0, "mounting a tmpfs needs root; the injected-fault test covers the logic"))
    func realTmpfsFillsUpAndRecovers() throws {
        let dir = TestEnv.tempDir("tmpfs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "mount -t tmpfs failed")
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [dir]
            try? u.run()
            u.waitUntilExit()
        }
        // A filler leaves ~16 KiB free.
        let filler = dir + "/filler"
        FileManager.default.createFile(atPath: filler, contents: Data(count: 48 * 1024))
        var o = RollingLogOptions(path: dir + "/c.log")
        o.bufferBytes = 16 * 1024
        o.retryMs = 20
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        // ~50 KB of records: 16 KiB fit on the disk, the writer holds up to 16 KiB, the buffer 16 KiB, the rest is lost.
        for _ in 0..<160 {
            feeder.publish(top: [(1, 0.5), (2, 0.3)])
            usleep(1000)  // a fast camera, not one burst: the writer drains as records come
        }
        #expect(ProtocolTestEnv.waitUntil { log.currentStats.failing })
        #expect(log.currentStats.lastError?.contains("No space left") == true, "\(log.currentStats)")
        #expect(log.currentStats.lostRecords > 0)
        try FileManager.default.removeItem(atPath: filler)  // space returns
        #expect(ProtocolTestEnv.waitUntil { !log.currentStats.failing })
        #expect(Self.waitWritten(log, 160))
        for _ in 0..<20 { feeder.publish(top: [(1, 0.5), (2, 0.3)]) }
        log.stop()
        let s = log.currentStats
        let seqs = try LogFiles.seqs(LogFiles.lines(dir + "/c.log"))
        #expect(seqs.count + s.lostRecords == 180)
        #expect(seqs.last == 179)
        #expect(seqs == seqs.sorted())
    }

    @Test func fsyncPolicies() throws {
        func run(_ policy: FsyncPolicy, idleAtEndMs: UInt32 = 0) throws -> (RollingLog.Stats, beforeStop: RollingLog.Stats) {
            let dir = TestEnv.tempDir("fsync")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var o = RollingLogOptions(path: dir + "/c.log")
            o.maxBytes = 8 * 1024
            o.keep = 100
            o.fsync = policy
            let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
            try log.start()
            let feeder = RecordFeeder(sinks: [log])
            for _ in 0..<200 {
                feeder.publish(top: [(1, 0.5)])
                usleep(200)
            }
            #expect(Self.waitWritten(log, 200))
            usleep(idleAtEndMs * 1000)
            let beforeStop = log.currentStats
            log.stop()
            return (log.currentStats, beforeStop)
        }
        let never = try run(.never).0, rotation = try run(.rotation).0, always = try run(.always).0
        #expect(never.fsyncs == 0)
        #expect(rotation.fsyncs == rotation.rotations + 1, "\(rotation)")
        #expect(always.fsyncs > rotation.fsyncs, "\(always)")
        // `interval`: a file written to is fsynced within the interval even when records stop
        // coming (here: 200 ms idle, a 20 ms interval), not only at rotation and close.
        let (_, idle) = try run(.interval(ms: 20), idleAtEndMs: 200)
        #expect(idle.fsyncs >= idle.rotations + 1, "\(idle)")
    }

    /// `camclass tail`'s follower: all records once, in order, across many rotations, even when
    /// it falls behind by whole files.
    @Test func followerReadsAcrossRotations() async throws {
        let (seqs, stats) = try await followWhileWriting(records: 5000, gzip: false)
        #expect(stats.rotations > 100)
        expectSeqs(seqs, 0..<5000, "followed")
    }

    /// The same with `log.gzip`: the followed file and the ones after it are compressed (and
    /// their plain form removed) while the follower is behind; it reads them from the `.gz`.
    @Test func followerReadsAcrossCompressedRotations() async throws {
        let (seqs, stats) = try await followWhileWriting(records: 3000, gzip: true)
        #expect(stats.gzipped > 50, "\(stats)")
        expectSeqs(seqs, 0..<3000, "followed")
    }

    /// Writes `records` to a log rotating every 4 KiB while a `LogFollower` reads it, falling
    /// behind by 150 ms now and then; the seqs it read and the log's final stats.
    func followWhileWriting(records total: Int, gzip: Bool) async throws -> (seqs: [Int], stats: RollingLog.Stats) {
        let dir = TestEnv.tempDir(gzip ? "follow-gz" : "follow")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = RollingLogOptions(path: dir + "/c.log")
        o.maxBytes = 4 * 1024
        o.keep = 1000
        o.gzip = gzip
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let follower = LogFollower(path: dir + "/c.log", lastLines: 0)
        let followed = Spawned { () -> [Int] in
            var seqs: [Int] = []
            let deadline = Date().addingTimeInterval(60)
            while seqs.count < total && Date() < deadline {
                for line in follower.poll(timeoutMs: 100) {
                    if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let s = o["seq"] as? Int {
                        seqs.append(s)
                    }
                }
                if seqs.count % 1000 < 20 { usleep(150_000) }  // fall behind now and then
            }
            return seqs
        }
        let feeder = RecordFeeder(sinks: [log])
        for _ in 0..<total {
            feeder.publish(top: [(1, 0.5)])
            usleep(150)
        }
        let seqs = try await followed.value
        log.stop()
        return (seqs, log.currentStats)
    }

    @Test func followerStartsWithTheLastLines() throws {
        let dir = TestEnv.tempDir("follow-last")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = (0..<50).map { "line \($0)\n" }.joined()
        FileManager.default.createFile(atPath: dir + "/c.log", contents: Data(text.utf8))
        #expect(LogFollower(path: dir + "/c.log", lastLines: 3).poll(timeoutMs: 0) == ["line 47", "line 48", "line 49"])
        #expect(LogFollower(path: dir + "/c.log", lastLines: nil).poll(timeoutMs: 0).count == 50)
        #expect(LogFollower(path: dir + "/c.log", lastLines: 0).poll(timeoutMs: 0).isEmpty)
    }
}
