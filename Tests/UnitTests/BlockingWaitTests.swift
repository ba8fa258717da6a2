import CamclassTestSupport
import Client
import Foundation
import Glibc
import Logging
import Publishing
import Support
import Synchronization
import Testing

/// Waits that block on an event instead of sleeping in a loop: the socket's subscriber wait (the
/// fan-out benchmark starts once its readers are in) and the start barrier of benchmark threads.
/// Unit tests: no environment (a real Unix socket in a temporary directory).
@Suite struct SubscriberWaitTests {
    @Test func waitForSubscribersReturnsOnceTheyAreConnected() throws {
        let dir = TestEnv.tempDir("subwait")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = UnixSocketPublisher(options: SocketOptions(path: dir + "/s.sock"),
                                         logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try socket.start()
        defer { socket.stop(flushTimeoutMs: 0) }
        #expect(!socket.waitForSubscribers(1, timeoutNs: 50_000_000), "nobody connected yet")
        let first = try SubscriberConnection(path: dir + "/s.sock")
        let second = try SubscriberConnection(path: dir + "/s.sock")
        let t0 = Clock.monotonicNs()
        #expect(socket.waitForSubscribers(2, timeoutNs: 10_000_000_000))
        #expect(Clock.monotonicNs() - t0 < 5_000_000_000, "returned well before the 10 s timeout")
        #expect(socket.subscriberCount == 2)
        // A third never comes: the wait gives up after its timeout.
        let t1 = Clock.monotonicNs()
        #expect(!socket.waitForSubscribers(3, timeoutNs: 200_000_000))
        #expect(Clock.monotonicNs() - t1 >= 190_000_000)
        withExtendedLifetime((first, second)) {}
    }

    /// A subscriber that connects while another thread is already waiting wakes it.
    @Test func aWaitingThreadIsWokenByTheConnection() throws {
        let dir = TestEnv.tempDir("subwait2")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = UnixSocketPublisher(options: SocketOptions(path: dir + "/s.sock"),
                                         logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try socket.start()
        defer { socket.stop(flushTimeoutMs: 0) }
        let result = Atomic<Int>(-1)  // -1: still waiting, 0: timed out, 1: subscribers came
        let waiter = DedicatedThread(name: "test-subwait") { [socket] in
            result.store(socket.waitForSubscribers(1, timeoutNs: 10_000_000_000) ? 1 : 0, ordering: .releasing)
        }
        let c = try SubscriberConnection(path: dir + "/s.sock")
        waiter.join()
        #expect(result.load(ordering: .acquiring) == 1)
        withExtendedLifetime(c) {}
    }
}

@Suite struct ThreadBarrierTests {
    /// No thread passes before the last one arrives; then all pass; the barrier serves a second round.
    @Test func threadsPassTogether() {
        let barrier = ThreadBarrier(parties: 4)
        let arrived = Atomic<Int>(0), passed = Atomic<Int>(0)
        for round in 1...2 {
            let threads = (0..<3).map { i in
                DedicatedThread(name: "test-barrier\(i)") {
                    arrived.add(1, ordering: .sequentiallyConsistent)
                    barrier.arriveAndWait()
                    passed.add(1, ordering: .sequentiallyConsistent)
                }
            }
            #expect(waitUntil { arrived.load(ordering: .sequentiallyConsistent) == 3 * round })
            usleep(50_000)  // time for a broken barrier to let them through
            #expect(passed.load(ordering: .sequentiallyConsistent) == 3 * (round - 1), "nobody passes before the last party")
            barrier.arriveAndWait()
            threads.forEach { $0.join() }
            #expect(passed.load(ordering: .sequentiallyConsistent) == 3 * round)
        }
    }
}
