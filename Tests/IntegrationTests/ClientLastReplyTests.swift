import CamclassTestSupport
import Client
import Foundation
import Testing

/// `camclass last` takes the daemon's reply, not a record broadcast to the new connection before
/// its quiet subscribe took effect (both are classifications; only the reply says `reply:"last"`).
@Suite struct ClientLastReplyTests {
    @Test func lastSkipsABroadcastRecordThatArrivesFirst() async throws {
        let dir = TestEnv.tempDir("lastreply")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try FakeDaemonSocket(path: dir + "/fake.sock",
                                        hello: #"{"type":"hello","protocol":1,"daemon":"camclassd","version":"0.1.0","source":"cam","requests":["subscribe","status","last"]}"#)
        defer { fake.close() }
        let asked = Spawned { () -> String in try CamclassClient.last(socket: dir + "/fake.sock").line }
        // Answer only once the request is in: first a record broadcast to every subscriber, then the reply.
        #expect(await eventually(10) { fake.received.contains { $0.hasPrefix(#"{"last""#) } }, "no last request: \(fake.received)")
        fake.write(#"{"type":"classification","seq":41,"source":"cam","top":[]}"#)
        fake.write(#"{"type":"classification","reply":"last","seq":40,"source":"cam","top":[]}"#)
        let line = try await asked.value
        let reply = try #require(CamclassClient.object(line))
        #expect(reply["reply"] as? String == "last" && reply["seq"] as? Int == 40, "took \(line)")
    }
}
