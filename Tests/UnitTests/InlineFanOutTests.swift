import CamclassTestSupport
import Client
import Foundation
import Glibc
import Logging
@testable import Publishing
import Support
import Testing

/// The publishing worker fans a record out itself while the socket's I/O thread sleeps (at most
/// `inlineFanOutMaxSubscribers` subscribers), so a record costs no I/O-thread wake-up; otherwise
/// the I/O thread does it. Unit tests: a real Unix socket in a temporary directory.
@Suite struct InlineFanOutTests {
    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Publishes `count` numbered lines 1 ms apart and returns what each subscriber read (its
    /// `n` values, in order) and the I/O thread's passes meanwhile.
    static func publishNumbered(_ count: Int, subscribers: Int) throws -> (read: [[Int]], passes: Int) {
        let dir = TestEnv.tempDir("inline")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = UnixSocketPublisher(options: SocketOptions(path: dir + "/s.sock"), logger: quiet)
        try socket.start()
        defer { socket.stop(flushTimeoutMs: 1000) }
        let connections = try (0..<subscribers).map { _ in try SubscriberConnection(path: dir + "/s.sock") }
        #expect(socket.waitForSubscribers(subscribers, timeoutNs: 10_000_000_000))
        for c in connections {
            let hello = try c.readLine(timeoutMs: 5000)
            #expect(hello?.contains("\"type\":\"hello\"") == true)
        }
        // Readers read as records arrive (a reader that does not fills its socket, and then the
        // I/O thread must wait for POLLOUT).
        let results = connections.map { _ in Shared<[Int]>([]) }
        let readers = zip(connections, results).map { c, result in
            DedicatedThread(name: "test-reader") {
                var got: [Int] = []
                while got.count < count, let line = try? c.readLine(timeoutMs: 5000) {
                    guard let range = line.range(of: "\"n\":") else { continue }
                    got.append(Int(line[range.upperBound...].prefix { $0.isNumber }) ?? -1)
                }
                result.value.withLock { [got] in $0 = got }
            }
        }
        let passesBefore = socket.ioPasses.load(ordering: .relaxed)
        for i in 0..<count {
            let line = "{\"type\":\"classification\",\"n\":\(i)}\n"
            line.utf8CString.withUnsafeBytes { raw in
                socket.publish(UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 1)]))
            }
            usleep(1000)
        }
        readers.forEach { $0.join() }
        let read = results.map { $0.value.withLock { $0 } }
        return (read, socket.ioPasses.load(ordering: .relaxed) - passesBefore)
    }

    @Test func aFewReadersGetEveryRecordWithoutWakingTheIOThread() throws {
        let (read, passes) = try Self.publishNumbered(200, subscribers: 2)
        for got in read { #expect(got == Array(0..<200)) }
        // One pass a record before inline delivery; a few are allowed for a reader's socket that
        // was momentarily full (then the I/O thread waits for POLLOUT).
        #expect(passes < 20, "the I/O thread woke \(passes) times for 200 records")
    }

    @Test func manyReadersAreServedByTheIOThread() throws {
        let n = UnixSocketPublisher.inlineFanOutMaxSubscribers + 1
        let (read, passes) = try Self.publishNumbered(100, subscribers: n)
        for got in read { #expect(got == Array(0..<100)) }
        #expect(passes >= 50, "with \(n) subscribers the I/O thread fans out (\(passes) passes for 100 records)")
    }
}
