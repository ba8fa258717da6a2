import CamclassTestSupport
import Client
import Foundation
import Glibc
import Support
import Synchronization
import Testing

/// `camclass tail`'s follower blocks on inotify: a change to the log wakes a waiting `poll` at
/// once, and nothing else does (no periodic wake-ups). Real files in a temporary directory.
/// Unit tests: no environment.
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
                    let got = (try? follower.poll(timeoutMs: timeoutMs)) ?? []
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

    final class Shared<T: Sendable>: Sendable {
        let value: Mutex<T>
        init(_ v: T) { value = Mutex(v) }
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

    @Test func aBlockedFollowerWakesWhenALineIsAppended() throws {
        let dir = TestEnv.tempDir("follow-wake")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "first\n")
        let follower = try LogFollower(path: log, lastLines: nil)
        #expect(try follower.poll(timeoutMs: 0) == ["first"])
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
        let follower = try LogFollower(path: log, lastLines: nil)
        #expect(try follower.poll(timeoutMs: 0) == ["one"])
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
        #expect(try follower.poll(timeoutMs: 5000) == ["five"])
    }

    /// A file that does not exist yet, in a directory that does not exist yet (the daemon's
    /// log directory is created when it first starts): followed from its start once it appears.
    @Test func aBlockedFollowerSeesTheLogAndItsDirectoryAppear() throws {
        let dir = TestEnv.tempDir("follow-new")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/logs/camclassd/c.log"
        let follower = try LogFollower(path: log, lastLines: 10)
        #expect(try follower.poll(timeoutMs: 0).isEmpty)
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
        let follower = try LogFollower(path: log, lastLines: nil)
        #expect(try follower.poll(timeoutMs: 0) == ["whole"])
        #expect(try follower.poll(timeoutMs: 50).isEmpty)
        let blocked = BlockedPoll(follower, timeoutMs: 10_000, count: 1)
        #expect(blocked.waitUntilBlocked())
        Self.append(log, "f\n")
        #expect(blocked.join().lines == ["half"])
        #expect(truncate(log, 0) == 0)
        #expect(try follower.poll(timeoutMs: 50).isEmpty)
        Self.append(log, "again\n")
        #expect(try follower.poll(timeoutMs: 5000) == ["again"])
    }

    /// Nothing polls: a follower waiting 1 s on a log nobody writes to sleeps in the kernel once,
    /// instead of waking every few milliseconds (the old 20 ms loop woke ~50 times). Other files
    /// in the directory do not wake it either.
    @Test func anIdleFollowerDoesNotWakeUp() throws {
        let dir = TestEnv.tempDir("follow-idle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/c.log"
        Self.append(log, "x\n")
        let follower = try LogFollower(path: log, lastLines: 0)
        let result = Shared<(lines: [String], switches: Int?, elapsedMs: Double)>(([], nil, 0))
        let t = DedicatedThread(name: "test-idle") {
            let before = Self.voluntarySwitches()
            let t0 = Clock.monotonicNs()
            let lines = (try? follower.poll(timeoutMs: 1000)) ?? ["error"]
            let elapsed = Double(Clock.monotonicNs() - t0) / 1e6
            let after = Self.voluntarySwitches()
            result.value.withLock { $0 = (lines, before.flatMap { b in after.map { $0 - b } }, elapsed) }
        }
        t.join()
        let (lines, switches, ms) = result.value.withLock { $0 }
        #expect(lines.isEmpty)
        #expect(ms >= 990, "the timeout is honoured (\(ms) ms)")
        let s = try #require(switches, "voluntary_ctxt_switches readable in /proc/thread-self/status")
        #expect(s <= 2, "\(s) voluntary context switches while waiting 1 s")
    }
}
