import CamclassTestSupport
import Client
import WireFormat
import Foundation
import Glibc
import Logging
import Publishing
import Support
import Testing

/// Issue 11, the rolling log: symbolic links, a second writer, rotation that cannot rename, and
/// `camclass tail` across gzipped rotations.
/// Environment: none (real files in a temporary directory, in process).
@Suite(.serialized) struct HardeningLogTests {
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// F6: the log path is a symbolic link to another file → refused, the target untouched.
    @Test func symlinkAtTheLogPathIsRefused() throws {
        let dir = TestEnv.tempDir("f6")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim.txt"
        try "precious\n".write(toFile: victim, atomically: true, encoding: .utf8)
        symlink(victim, dir + "/x.log")
        let log = RollingLog(options: RollingLogOptions(path: dir + "/x.log"), logger: ProtocolTestEnv.quiet)
        do {
            try log.start()
            log.stop()
            Issue.record("a symbolic link at the log path was accepted")
        } catch let e as RollingLogError {
            guard case .symbolicLink = e else { Issue.record("wrong error: \(e)"); return }
            #expect("\(e)".contains("symbolic link"))
        }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
    }

    /// F6: a link planted at the gzip temporary name (`x.log.1.gz.tmp`) is never written through.
    @Test func symlinkAtTheGzipTemporaryIsNotWrittenThrough() throws {
        let dir = TestEnv.tempDir("f6gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim.txt"
        try "precious\n".write(toFile: victim, atomically: true, encoding: .utf8)
        symlink(victim, dir + "/x.log.1.gz.tmp")
        var o = RollingLogOptions(path: dir + "/x.log")
        o.maxBytes = 2000
        o.gzip = true
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        for _ in 0..<20 { feeder.publish(top: [(285, 0.9)]) }
        log.stop()
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n", "the link's target was overwritten")
        #expect(log.currentStats.gzipped >= 1)
        let unpacked = try Gzip.decompress(file: dir + "/x.log.1.gz")
        #expect(String(decoding: unpacked, as: UTF8.self).hasPrefix("{\"type\":\"classification\""))
    }

    /// Log lock: a second writer of the same log is refused (clear error); free again after stop.
    @Test func secondWriterOfTheSameLogIsRefused() throws {
        let dir = TestEnv.tempDir("lock")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = RollingLog(options: RollingLogOptions(path: dir + "/x.log"), logger: ProtocolTestEnv.quiet)
        try first.start()
        let second = RollingLog(options: RollingLogOptions(path: dir + "/x.log"), logger: ProtocolTestEnv.quiet)
        do {
            try second.start()
            second.stop()
            Issue.record("two writers on one log")
        } catch let e as RollingLogError {
            guard case .inUse = e else { Issue.record("wrong error: \(e)"); return }
            #expect("\(e)".contains("in use by another running camclassd"))
        }
        first.stop()
        let third = RollingLog(options: RollingLogOptions(path: dir + "/x.log"), logger: ProtocolTestEnv.quiet)
        try third.start()
        third.stop()
    }

    /// F10: rotation whose rename fails (here `x.log.1` is a directory: EISDIR, even for root) used
    /// to retry for every record at 100 % CPU. Now: counted, logged once, the file keeps growing
    /// (nothing lost), and rotation is retried later and recovers.
    @Test func failedRotationBacksOffAndRecovers() async throws {
        let capture = HardeningLogCapture()
        let dir = TestEnv.tempDir("f10")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/x.log.1/blocker", withIntermediateDirectories: true)
        var o = RollingLogOptions(path: dir + "/x.log")
        o.maxBytes = 4000
        o.keep = 1
        o.rotationRetryMs = 300
        let log = RollingLog(options: o, logger: capture.logger)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        for _ in 0..<200 {
            feeder.publish(top: [(285, 0.9)])
            usleep(2000)
        }
        #expect(await eventually(5) { log.currentStats.recordsWritten == 200 }, "records not written while rotation fails")
        let failing = log.currentStats
        #expect(failing.rotationErrors >= 1)
        #expect(failing.rotationErrors <= 10, "\(failing.rotationErrors) rotation attempts in ~0.5 s")
        #expect(failing.rotations == 0)
        #expect(capture.count(.error, containing: "log rotation failed") == 1)
        #expect(Self.lines(dir + "/x.log").count == 200)
        // The obstacle goes away: the next retry rotates.
        try FileManager.default.removeItem(atPath: dir + "/x.log.1")
        try await Task.sleep(for: .milliseconds(400))
        for _ in 0..<5 { feeder.publish(top: [(285, 0.9)]) }
        #expect(await eventually(5) { log.currentStats.rotations >= 1 })
        log.stop()
        #expect(log.currentStats.rotations == 1)
        #expect(Self.lines(dir + "/x.log.1").count == 200, "the grown file rotated whole")
        #expect(Self.lines(dir + "/x.log").count == 5)
        #expect(capture.count(.notice, containing: "log rotation works again") == 1)
    }

    /// `camclass tail`: a follower that fell behind while files rotated and were gzipped reads the
    /// skipped files from the .gz, so every record arrives, in order.
    @Test func followerRecoversRecordsFromGzippedRotations() throws {
        let dir = TestEnv.tempDir("tailgz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = RollingLogOptions(path: dir + "/x.log")
        o.maxBytes = 3000
        o.keep = 20
        o.gzip = true
        let log = RollingLog(options: o, logger: ProtocolTestEnv.quiet)
        try log.start()
        let feeder = RecordFeeder(sinks: [log])
        feeder.publish(top: [(285, 0.9)])
        #expect(ProtocolTestEnv.waitUntil { log.currentStats.recordsWritten == 1 })
        let follower = LogFollower(path: dir + "/x.log", lastLines: nil)
        var seqs: [Int] = []
        func take(_ lines: [String]) {
            for l in lines {
                guard let r = l.range(of: "\"seq\":") else { continue }
                seqs.append(Int(l[r.upperBound...].prefix { $0.isNumber }) ?? -1)
            }
        }
        take(follower.poll(timeoutMs: 0))
        // Many rotations while the follower does not read: each rotated file is gzipped.
        for _ in 0..<120 { feeder.publish(top: [(285, 0.9)]) }
        #expect(ProtocolTestEnv.waitUntil { log.currentStats.recordsWritten == 121 })
        #expect(log.currentStats.gzipped >= 5)
        for _ in 0..<20 {
            take(follower.poll(timeoutMs: 50))
            if seqs.count >= 121 { break }
        }
        log.stop()
        #expect(seqs == Array(0..<121), "missing: \(Set(0..<121).subtracting(seqs).sorted().prefix(20))")
    }
}
