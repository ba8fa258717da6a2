import CamclassTestSupport
import Client
import Foundation
import Testing

/// `camclass last` and the Python example's `--last`/`--status` take the daemon's reply, not a
/// record broadcast to the new connection before its quiet subscribe took effect (both are
/// classifications; only the reply says `reply:"last"`).
@Suite struct ClientLastReplyTests {
    static let hello = #"{"type":"hello","protocol":1,"daemon":"camclassd","version":"0.1.0","model":{"id":"m","sha256":"00","file":"m.onnx"},"source":"cam","requests":["subscribe","status","last"]}"#
    static let broadcast = #"{"type":"classification","seq":41,"source":"cam","top":[]}"#

    @Test func lastSkipsABroadcastRecordThatArrivesFirst() async throws {
        let dir = TestEnv.tempDir("lastreply")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try FakeDaemonSocket(path: dir + "/fake.sock", hello: Self.hello)
        defer { fake.close() }
        let asked = Spawned { () -> String in try CamclassClient.last(socket: dir + "/fake.sock").line }
        // Answer only once the request is in: first a record broadcast to every subscriber, then the reply.
        #expect(await eventually(10) { fake.received.contains { $0.hasPrefix(#"{"last""#) } }, "no last request: \(fake.received)")
        fake.write(Self.broadcast)
        fake.write(#"{"type":"classification","reply":"last","seq":40,"source":"cam","top":[]}"#)
        let line = try await asked.value
        let reply = try #require(CamclassClient.object(line))
        #expect(reply["reply"] as? String == "last" && reply["seq"] as? Int == 40, "took \(line)")
    }

    @Test func pythonExampleStatusSkipsABroadcastRecordThatArrivesFirst() async throws {
        let dir = TestEnv.tempDir("pystatus")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try FakeDaemonSocket(path: dir + "/fake.sock", hello: Self.hello, beforeStatusReply: Self.broadcast)
        defer { fake.close() }
        let r = try await runCommand("/usr/bin/python3", [TestEnv.repoRoot + "/examples/python/subscribe.py",
                                                           "--socket", dir + "/fake.sock", "--status"], timeoutSeconds: 30)
        let reply = CamclassClient.object(r.stdout.trimmingCharacters(in: .newlines))
        #expect(r.status == 0 && reply?["type"] as? String == "status", "\(r)")
    }

    @Test func pythonExampleLastSkipsABroadcastRecordThatArrivesFirst() async throws {
        let dir = TestEnv.tempDir("pylast")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try FakeDaemonSocket(path: dir + "/fake.sock", hello: Self.hello)
        defer { fake.close() }
        let asked = Spawned { () -> CommandOutput in
            try runCommand("/usr/bin/python3", [TestEnv.repoRoot + "/examples/python/subscribe.py",
                                                "--socket", dir + "/fake.sock", "--last"], timeoutSeconds: 30)
        }
        #expect(await eventually(20) { fake.received.contains { $0.hasPrefix(#"{"last""#) } }, "no last request: \(fake.received)")
        fake.write(Self.broadcast)
        fake.write(#"{"type":"classification","reply":"last","seq":40,"source":"cam","top":[]}"#)
        let r = try await asked.value
        let reply = CamclassClient.object(r.stdout.trimmingCharacters(in: .newlines))
        #expect(r.status == 0 && reply?["reply"] as? String == "last" && reply?["seq"] as? Int == 40, "\(r)")
    }
}
