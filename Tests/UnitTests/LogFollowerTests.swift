import CamclassTestSupport
import Client
import Foundation
import Glibc
import Support
import Synchronization
import Testing
import WireFormat

/// `camclass tail`'s follower blocks on inotify: a change to the log wakes a waiting `poll` at
/// once, and nothing else does (no periodic wake-ups); catching up after rotations reads every
/// rotated file, also while the writer's renames are half done. Real files in a temporary
/// directory. Unit tests: no environment.
@Suite struct LogFollowerTests {
    /// A follower's `poll` running on a thread of its own, with what it returned and how long it took.
    final class BlockedPoll: @unchecked Sendable {
        private let state = Mutex<(lines: [String], elapsedNs: UInt64, done: Bool)>(([], 0, false))
        private let tidPath = Mutex<String?>(nil)
        private var thread: DedicatedThread?

        /// Polls with `timeoutMs` until `count` lines came (or one poll returns nothing).
        init(_ follower: LogFollower, timeoutMs: Int, count: Int) {
            thread = DedicatedThread(name: "test-follow") { [self] in
                tidPath.withLock { $0 = LogFollowerTests.threadProcPath() }
                let t0 = Clock.monotonicNs()
                var lines: [String] = []
                while lines.count < count {
                    let got = follower.poll(timeoutMs: timeoutMs)
                    if got.isEmpty { break }
                    lines += got
                }
                let elapsed = Clock.monotonicNs() - t0
                state.withLock { $0 = (lines, elapsed, true) }
            }
        }

        /// Waits until the thread sleeps in the kernel (blocked in poll), so what the test does next
        /// happens while the follower is waiting.
        func waitUntilBlocked() -> Bool {
            waitUntil(timeoutMs: 5000) {
                guard let p = tidPath.withLock({ $0 }), let stat = readTextFile(p + "/stat"),
                      let close = stat.lastIndex(of: ")") else { return false }
                return stat[stat.index(close, offsetBy: 2)] == "S"
            }
        }

        func join() -> (lines: [String], elapsedMs: Double) {
            thread?.join()
            let s = state.withLock { $0 }
            return (s.lines, Double(s.elapsedNs) / 1e6)
        }
    }

    /// `/proc/self/task/TID` of the calling thread.
    static func threadProcPath() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/thread-self", &buf, buf.count - 1)
        return n > 0 ? "/proc/" + String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/proc/thread-self"
    }

    /// The calling thread's voluntary context switches (each block in the kernel is one).
    static func voluntarySwitches() -> Int? {
        guard let status = readTextFile("/proc/thread-self/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
            return Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    static func append(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(path)")
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// Polls until `count` lines came (the old file's last lines come in one `poll`, the files
    /// after a rotation in the next), at most 50 polls.
    static func collect(_ follower: LogFollower, _ count: Int) -> [String] {
        var lines: [String] = []
        for _ in 0..<50 where lines.count < count { lines += follower.poll(timeoutMs: 100) }
        return lines
    }

    @Test func aBlockedFollowerWakesWhenALineIsAppended() throws {
        let dir = TestEnv.tempDir("follow-wake")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "first\n")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["first"])
        let blocked = BlockedPoll(follower, timeoutMs: 10_000, count: 1)
        #expect(blocked.waitUntilBlocked())
        Self.append(log, "second\n")
        let (lines, ms) = blocked.join()
        #expect(lines == ["second"])
        #expect(ms < 5000, "returned after \(ms) ms of a 10 s timeout")
    }

    @Test func aBlockedFollowerFollowsARotation() throws {
        let dir = TestEnv.tempDir("follow-rot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "one\n")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["one"])
        let blocked = BlockedPoll(follower, timeoutMs: 10_000, count: 3)
        #expect(blocked.waitUntilBlocked())
        // As the rolling log rotates: the last line into the old file, rename it away, and (a
        // moment later) a new file at the path.
        Self.append(log, "two\n")
        #expect(rename(log, log + ".1") == 0)
        usleep(100_000)  // the follower finds no file at the path meanwhile, and waits on
        Self.append(log, "three\nfour\n")
        let (lines, ms) = blocked.join()
        #expect(lines == ["two", "three", "four"])
        #expect(ms < 5000, "returned after \(ms) ms of a 10 s timeout")
        // Still following the new file.
        Self.append(log, "five\n")
        #expect(follower.poll(timeoutMs: 5000) == ["five"])
    }

    /// A file that does not exist yet, in a directory that does not exist yet (the daemon's
    /// log directory is created when it first starts): followed from its start once it appears.
    @Test func aBlockedFollowerSeesTheLogAndItsDirectoryAppear() throws {
        let dir = TestEnv.tempDir("follow-new")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/logs/camclassd/c.log"
        let follower = LogFollower(path: log, lastLines: 10)
        #expect(follower.poll(timeoutMs: 0).isEmpty)
        let blocked = BlockedPoll(follower, timeoutMs: 10_000, count: 2)
        #expect(blocked.waitUntilBlocked())
        try FileManager.default.createDirectory(atPath: dir + "/logs/camclassd", withIntermediateDirectories: true)
        Self.append(dir + "/logs/camclassd/other.log", "not this one\n")
        Self.append(log, "a\nb\n")
        let (lines, ms) = blocked.join()
        #expect(lines == ["a", "b"])
        #expect(ms < 5000)
    }

    /// Only complete lines come out: a line written in two parts arrives once, whole; a file
    /// truncated in place is read again from its start.
    @Test func partialLinesAndTruncation() throws {
        let dir = TestEnv.tempDir("follow-part")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "whole\nhal")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["whole"])
        #expect(follower.poll(timeoutMs: 50).isEmpty)
        let blocked = BlockedPoll(follower, timeoutMs: 10_000, count: 1)
        #expect(blocked.waitUntilBlocked())
        Self.append(log, "f\n")
        #expect(blocked.join().lines == ["half"])
        #expect(truncate(log, 0) == 0)
        #expect(follower.poll(timeoutMs: 50).isEmpty)
        Self.append(log, "again\n")
        #expect(follower.poll(timeoutMs: 5000) == ["again"])
    }

    /// The voluntary context switches of a thread that polls an idle log for 1 s.
    static func idleSwitches(_ waiting: LogFollower.Waiting) throws -> (lines: [String], switches: Int, elapsedMs: Double) {
        let dir = TestEnv.tempDir("follow-idle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "x\n")
        let follower = LogFollower(path: log, lastLines: 0, waiting: waiting)
        #expect(follower.waiting == waiting)
        let result = Shared<(lines: [String], switches: Int?, elapsedMs: Double)>(([], nil, 0))
        let t = DedicatedThread(name: "test-idle") {
            let before = Self.voluntarySwitches()
            let t0 = Clock.monotonicNs()
            let lines = follower.poll(timeoutMs: 1000)
            let elapsed = Double(Clock.monotonicNs() - t0) / 1e6
            let after = Self.voluntarySwitches()
            result.value.withLock { $0 = (lines, before.flatMap { b in after.map { $0 - b } }, elapsed) }
        }
        t.join()
        let (lines, switches, ms) = result.value.withLock { $0 }
        let s = try #require(switches, "voluntary_ctxt_switches readable in /proc/thread-self/status")
        return (lines, s, ms)
    }

    /// Nothing polls: a follower waiting 1 s on a log nobody writes to sleeps in the kernel once
    /// (measured: 1), instead of waking every 20 ms (polling: ~50, see the next test).
    @Test func anIdleFollowerDoesNotWakeUp() throws {
        let (lines, switches, ms) = try Self.idleSwitches(.inotify)
        #expect(lines.isEmpty)
        #expect(ms >= 990, "the timeout is honoured (\(ms) ms)")
        #expect(switches < 10, "\(switches) voluntary context switches while waiting 1 s")
    }

    /// The bound above tells the two apart: the polling fallback wakes every 20 ms.
    @Test func aPollingFollowerWakesEvery20Ms() throws {
        let (lines, switches, ms) = try Self.idleSwitches(.polling)
        #expect(lines.isEmpty)
        #expect(ms >= 990, "the timeout is honoured (\(ms) ms)")
        #expect(switches >= 20, "\(switches) voluntary context switches while polling 1 s")
    }

    /// Polling (inotify refused, or asked for) follows rotations just the same.
    @Test func aPollingFollowerFollowsARotation() throws {
        let dir = TestEnv.tempDir("follow-pollrot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "one\n")
        let follower = LogFollower(path: log, lastLines: nil, waiting: .polling)
        #expect(follower.poll(timeoutMs: 0) == ["one"])
        Self.append(log, "two\n")
        #expect(rename(log, log + ".1") == 0)
        Self.append(log, "three\n")
        #expect(Self.collect(follower, 2) == ["two", "three"])
    }

    /// The writer halted in the middle of a rotation (it shifts `c.log.N … c.log.1` up by one,
    /// then renames `c.log` to `c.log.1`), with the follower two rotations behind: the picture
    /// has a hole at `.1` and the followed file at `.3`. The follower reads every file at once, in
    /// order, without waiting for the writer (which may stay descheduled for long on a busy
    /// machine), then follows the rest of the rotation.
    @Test func aRotationHaltedHalfwayLosesNothing() throws {
        let dir = TestEnv.tempDir("follow-halt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "x1\n")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["x1"])
        Self.append(log, "x2\n")
        #expect(rename(log, log + ".1") == 0)  // rotation 1 (complete)
        Self.append(log, "f1\n")
        #expect(rename(log + ".1", log + ".2") == 0)  // rotation 2 (complete)
        #expect(rename(log, log + ".1") == 0)
        Self.append(log, "f2\n")
        #expect(rename(log + ".2", log + ".3") == 0)  // rotation 3: halted after two of its renames
        #expect(rename(log + ".1", log + ".2") == 0)
        let t0 = Clock.monotonicNs()
        #expect(Self.collect(follower, 3) == ["x2", "f1", "f2"])
        #expect(Clock.monotonicNs() - t0 < 2_000_000_000, "no waiting for the halted writer")
        // The writer goes on: the rest of rotation 3, then a new file.
        #expect(rename(log, log + ".1") == 0)
        #expect(follower.poll(timeoutMs: 50).isEmpty, "no file at the path yet")
        Self.append(log, "f3\n")
        #expect(follower.poll(timeoutMs: 5000) == ["f3"])
    }

    /// Caught up while the log is renamed away and not re-created yet (the writer renames, then
    /// creates): the follower keeps track through the newest rotated file, so rotations that
    /// pass before it looks again lose nothing (following "nothing" until the new file appeared
    /// would have skipped the files rotated meanwhile).
    @Test func rotationsWhileTheLogIsMissingLoseNothing() throws {
        let dir = TestEnv.tempDir("follow-gap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "x1\n")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["x1"])
        func rotate() {
            for j in stride(from: 9, through: 1, by: -1) where access("\(log).\(j)", F_OK) == 0 {
                #expect(rename("\(log).\(j)", "\(log).\(j + 1)") == 0)
            }
            #expect(rename(log, log + ".1") == 0)
        }
        Self.append(log, "x2\n")
        rotate()
        Self.append(log, "f1\n")
        rotate()  // the follower is two behind, and there is no c.log
        #expect(Self.collect(follower, 2) == ["x2", "f1"])
        #expect(follower.poll(timeoutMs: 20).isEmpty)
        // Two more rotations before it looks again.
        Self.append(log, "f2\n")
        rotate()
        Self.append(log, "f3\n")
        rotate()
        Self.append(log, "f4\n")
        #expect(Self.collect(follower, 3) == ["f2", "f3", "f4"])
        Self.append(log, "f5\n")
        #expect(follower.poll(timeoutMs: 5000) == ["f5"])
    }

    /// Fallen behind with compressed rotated files (`log.gzip`): the followed file is now only
    /// `c.log.2.gz`; the files after it are read from `.1.gz`, then the current one.
    @Test func aCompressedRotatedFileIsRead() throws {
        let dir = TestEnv.tempDir("follow-gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "x1\n")
        let follower = LogFollower(path: log, lastLines: nil)
        #expect(follower.poll(timeoutMs: 0) == ["x1"])
        Self.append(log, "x2\n")
        func rotate() throws {
            if access(log + ".1.gz", F_OK) == 0 { #expect(rename(log + ".1.gz", log + ".2.gz") == 0) }
            #expect(rename(log, log + ".1") == 0)
            try Gzip.compress(file: log + ".1", to: log + ".1.gz")
            #expect(unlink(log + ".1") == 0)
        }
        try rotate()
        Self.append(log, "f1a\nf1b\n")
        try rotate()
        Self.append(log, "f2\n")
        #expect(Self.collect(follower, 4) == ["x2", "f1a", "f1b", "f2"])
    }
}
