import CamclassTestSupport
import WireFormat
import Client
import Foundation
import MQTTBridge
import Publishing
import Support
import Testing

/// The MQTT bridge's parts that need no broker: config sections, topics, routing, the outage
/// buffer, backoff, the subscribe request, the fleet table.
@Suite struct MQTTUnitTests {
    // MARK: config

    @Test func shippedConfigIsValidAndDocumentsEveryKeyWithItsDefault() throws {
        let path = TestEnv.repoRoot + "/config/mqtt.yaml"
        let shipped = try MQTTConfig.load(file: path)
        var defaults = MQTTConfig()
        defaults.file = path
        #expect(shipped == defaults, "config/mqtt.yaml must show the defaults")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        func keys<S: ConfigSection>(_: S.Type) throws -> [String] {
            var r = try ConfigSectionReader(section: S.section, node: nil, file: path)
            _ = try S(reader: &r)
            return r.knownKeys.map { "\(S.section).\($0)" }
        }
        let all = try keys(BrokerSection.self) + keys(TLSSection.self) + keys(AuthSection.self) + keys(TopicsSection.self)
            + keys(ClassificationSection.self) + keys(DaemonSection.self) + keys(LogSection.self)
        #expect(all.count >= 25)
        for k in all {
            let key = k.split(separator: ".")[1]
            #expect(text.contains("\n  \(key):"), "config/mqtt.yaml does not document \(k)")
        }
    }

    @Test func errorsNameFileKeyValueAndTheAllowedRange() {
        func error(_ yaml: String) -> String {
            do { _ = try MQTTConfig.parse(yaml: yaml, file: "m.yaml"); return "no error" } catch { return error.description }
        }
        #expect(error("broker:\n  keepalive_s: 2\n") == "m.yaml: key 'broker.keepalive_s': value '2': expected an integer 5…3600 seconds")
        #expect(error("broker:\n  keepalive: 30\n").hasPrefix("m.yaml: key 'broker.keepalive': value '30': unknown key (known in broker: backoff_initial_ms"))
        #expect(error("brokr:\n  url: x\n").hasPrefix("m.yaml: key 'brokr': value '': unknown section (known: auth, broker"))
        #expect(error("broker:\n  protocol: 4\n") == "m.yaml: key 'broker.protocol': value '4': expected one of: 3.1.1, 5")
        #expect(error("classification:\n  max_rate_hz: -1\n").hasPrefix("m.yaml: key 'classification.max_rate_hz': value '-1': expected a number 0.001…1000"))
        #expect(error("classification:\n  min_score: high\n").contains("expected a number 0…1"))
        #expect(error("classification:\n  every_n: 2.5\n").contains("expected an integer 1…1000000"))
        #expect(error("auth:\n  allow_insecure: yes please\n").contains("expected true or false"))
        #expect(error("topics:\n  robot: a/b\n").contains("key 'topics.robot': value 'a/b': expected one topic level"))
        #expect(error("topics:\n  prefix: fleet/#\n").contains("key 'topics.prefix'"))
        #expect(error("broker:\n  url: http://x\n").contains("key 'broker.url': value 'http://x'"))
        #expect(error("log:\n  level: loud\n").contains("expected one of: trace, debug, info"))
        #expect(error("broker: 3\n").hasPrefix("m.yaml: key 'broker': value '3': must be a mapping"))
        #expect(error("- a\n").contains("the top level must be a mapping"))
        #expect(error("") == "no error")
    }

    @Test func crossKeyRules() throws {
        var c = try MQTTConfig.parse(yaml: "tls:\n  cert_file: c.pem\n", file: "m.yaml")
        c.broker.url = "mqtts://h:8883"
        #expect(throws: ConfigError.self) { try c.validate() }
        c = try MQTTConfig.parse(yaml: "broker:\n  backoff_initial_ms: 5000\n  backoff_max_ms: 1000\n  url: mqtt://h\n", file: "m.yaml")
        #expect(throws: ConfigError.self) { try c.validate() }
        c = MQTTConfig()
        do { try c.validate(); Issue.record("no broker must be an error") } catch {
            #expect(error.key == "broker.url" && error.reason.contains("--broker"))
        }
    }

    @Test func brokerURLs() throws {
        #expect(try BrokerURL.parse("mqtt://10.0.0.5:1884") == BrokerURL(tls: false, host: "10.0.0.5", port: 1884))
        #expect(try BrokerURL.parse("mqtts://broker.example") == BrokerURL(tls: true, host: "broker.example", port: 8883))
        #expect(try BrokerURL.parse("mqtt://[::1]:1999") == BrokerURL(tls: false, host: "::1", port: 1999))
        for bad in ["tcp://h:1", "mqtt://h:0", "mqtt://h:70000", "mqtt://h:x", "mqtt://", "mqtt://user:pw@h:1883"] {
            #expect(throws: BrokerURL.Invalid.self, "\(bad)") { try BrokerURL.parse(bad) }
        }
    }

    @Test func passwordsComeFromFilesAndNeverCrossPlainTCPUnlessAllowed() throws {
        let dir = TestEnv.tempDir("mqtt-cred")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "s3cret\nignored\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
        var c = MQTTConfig()
        c.file = "m.yaml"
        c.auth.username = "robot"
        c.auth.passwordFile = dir + "/pw"
        c.broker.url = "mqtts://h"
        #expect(try Credentials.resolve(c, environment: [:]) == Credentials(username: "robot", password: "s3cret"))
        c.broker.url = "mqtt://h"
        do { _ = try Credentials.resolve(c, environment: [:]); Issue.record("plain TCP with a password must be refused") } catch {
            #expect(error.key == "broker.url" && error.reason.contains("clear text") && error.reason.contains("allow_insecure"), "\(error)")
        }
        c.auth.allowInsecure = true
        #expect(try Credentials.resolve(c, environment: [:])?.password == "s3cret")
        // systemd credentials: $CREDENTIALS_DIRECTORY/mqtt-password when no password_file is set.
        try FileManager.default.createDirectory(atPath: dir + "/creds", withIntermediateDirectories: true)
        try "from-systemd".write(toFile: dir + "/creds/mqtt-password", atomically: true, encoding: .utf8)
        c.auth.passwordFile = ""
        #expect(try Credentials.resolve(c, environment: ["CREDENTIALS_DIRECTORY": dir + "/creds"])?.password == "from-systemd")
        #expect(try Credentials.resolve(c, environment: [:]) == Credentials(username: "robot", password: nil))
        c.auth.passwordFile = dir + "/missing"
        #expect(throws: ConfigError.self) { try Credentials.resolve(c, environment: [:]) }
        c.auth.username = ""
        c.auth.passwordFile = dir + "/pw"
        #expect(throws: ConfigError.self) { try Credentials.resolve(c, environment: [:]) }
    }

    // MARK: topics and routing

    @Test func topicsAndSourceLevels() {
        let t = TopicMap(prefix: "fleet/site-a", robot: "r7")
        #expect(t.status == "fleet/site-a/r7/status")
        #expect(t.availability == "fleet/site-a/r7/availability")
        #expect(t.classification(source: "/dev/video0") == "fleet/site-a/r7/video0/classification")
        #expect(t.change(source: "/srv/photos/") == "fleet/site-a/r7/photos/change")
        #expect(t.camera(source: "/dev/v4l/by-id/usb-Cam_123-video-index0") == "fleet/site-a/r7/usb-Cam_123-video-index0/camera")
        #expect(TopicMap.sourceLevel("a+b#c d") == "a_b_c_d")
        #expect(TopicMap.sourceLevel("/") == "default")
        #expect(TopicMap.isValidPrefix("a/b") && !TopicMap.isValidPrefix("/a") && !TopicMap.isValidPrefix("a//b") && !TopicMap.isValidPrefix("a/+"))
    }

    @Test func routerRepublishesRecordBytesOnTheRightTopicsWithQoSAndRetain() {
        var r = RecordRouter(topics: TopicMap(prefix: "camclass", robot: "r1"), classificationQoS: 0)
        r.hello(#"{"type":"hello","protocol":1,"source":"/dev/video0","model":{"id":"m","source":"nested"}}"#)
        let cls = #"{"type":"classification","seq":5,"time":"t","capture_ns":9,"source":"/dev/video2","model":"m","top":[{"class":1,"label":"a \"q\"","score":0.5}],"dropped":0}"#
        guard case .publish(let m) = r.route(cls) else { Issue.record("classification not published"); return }
        #expect(m.payload == Array(cls.utf8), "bytes unchanged")
        #expect(m.topic == "camclass/r1/video2/classification" && m.qos == 0 && !m.retain)
        let change = #"{"type":"change","seq":6,"stable":"dog","score":0.6,"previous":"cat","previous_ms":10.0}"#
        #expect(r.route(change) == .publish(OutgoingMessage(kind: .change, topic: "camclass/r1/video0/change", payload: Array(change.utf8), qos: 1, retain: false)))
        let camera = #"{"type":"camera","state":"lost","time":"t","source":"/dev/video0","reason":"gone"}"#
        #expect(r.route(camera) == .publish(OutgoingMessage(kind: .camera, topic: "camclass/r1/video0/camera", payload: Array(camera.utf8), qos: 1, retain: true)))
        let status = #"{"type":"status","source":{"name":"/dev/video0","state":"streaming"}}"#
        #expect(r.route(status) == .publish(OutgoingMessage(kind: .status, topic: "camclass/r1/status", payload: Array(status.utf8), qos: 1, retain: true)))
        #expect(r.route(#"{"type":"dropped","count":4,"total":9}"#) == .missed(4))
        #expect(r.route(#"{"type":"shutdown","reason":"SIGTERM"}"#) == .shutdown("SIGTERM"))
        #expect(r.route(#"{"type":"subscribed","filter":{}}"#) == .ignore)
        #expect(r.route("not json") == .ignore)
        #expect(r.availability(.offline) == OutgoingMessage(kind: .availability, topic: "camclass/r1/availability", payload: Array("offline".utf8), qos: 1, retain: true))
        let down = r.unreachableStatus(reason: "connect: refused", sinceRealtimeNs: 1_795_425_600_123_456_000)
        let o = try? JSONSerialization.jsonObject(with: Data(down.payload)) as? [String: Any]
        #expect(o?["daemon"] as? String == "unreachable" && o?["since"] as? String == "2026-11-23T09:20:00.123456Z" && down.retain)
    }

    @Test func subscribeRequestCarriesTheFilters() throws {
        var c = ClassificationSection()
        #expect(MQTTBridge.subscribeRequest(c) == #"{"subscribe":{"max_rate_hz":1.0,"events":["change","camera"]}}"#)
        c.minScore = 0.3
        c.labels = ["cat", "esp\"resso"]
        c.topK = 2
        c.everyN = 3
        c.maxRateHz = 0
        let o = try #require(try JSONSerialization.jsonObject(with: Data(MQTTBridge.subscribeRequest(c).utf8)) as? [String: [String: Any]])
        let f = try #require(o["subscribe"])
        #expect(f["min_score"] as? Double == 0.3 && f["labels"] as? [String] == ["cat", "esp\"resso"] && f["top_k"] as? Int == 2)
        #expect(f["every_n"] as? Int == 3 && f["max_rate_hz"] == nil && f["events"] as? [String] == ["change", "camera"])
        c.enabled = false
        #expect(MQTTBridge.subscribeRequest(c) == #"{"subscribe":{"classifications":false,"events":["change","camera"]}}"#)
    }

    // MARK: outage buffer, backoff, rate limit

    @Test func outageBufferKeepsOrderDropsOldestAndCounts() {
        var b = OutageBuffer<Int>(capacity: 100)
        for i in 0..<250 { b.append(i) }
        #expect(b.count == 100 && b.dropped == 150)
        #expect(b.removeAll() == Array(150..<250))
        #expect(b.isEmpty)
        for i in 0..<3 { let dropped = b.append(i); #expect(!dropped) }
        #expect(b.removeAll() == [0, 1, 2] && b.dropped == 150)
        var one = OutageBuffer<String>(capacity: 1)
        one.append("a")
        let droppedA = one.append("b")
        #expect(droppedA)
        #expect(one.removeAll() == ["b"] && one.dropped == 1)
    }

    @Test func backoffDoublesWithJitterUpToTheMaximumAndResets() {
        var b = Backoff(initialMs: 100, maxMs: 1000)
        var bounds: [Int] = []
        for _ in 0..<8 {
            let bound = b.currentMs
            let d = b.next()
            #expect(d >= bound / 2 && d <= bound, "\(d) outside [\(bound / 2), \(bound)]")
            bounds.append(bound)
        }
        #expect(bounds == [100, 200, 400, 800, 1000, 1000, 1000, 1000])
        b.reset()
        #expect(b.currentMs == 100)
        // Jitter: many clients do not retry in step.
        let draws = Set((0..<50).map { _ in var x = Backoff(initialMs: 1000, maxMs: 1000); return x.next() })
        #expect(draws.count > 10)
    }

    @Test func rateLimitLogsOnPowersOfTwo() {
        #expect((1...20).filter(RateLimit.worthLogging) == [1, 2, 4, 8, 16])
        #expect(RateLimit.worthLogging(5, 5) && !RateLimit.worthLogging(6, 1) && RateLimit.worthLogging(9, 3))
    }

    // MARK: fleet

    @Test func fleetTableShowsEachRobot() {
        var t = FleetTable(prefix: "camclass")
        #expect(t.patterns == ["camclass/+/status", "camclass/+/availability"])
        let c1 = t.apply(topic: "camclass/r2/availability", payload: Array("online".utf8))
        let status = #"{"type":"status","time":"2026-11-23T09:20:00Z","source":{"name":"/dev/video0","state":"streaming"},"fps":{"in":30.0,"out":29.97},"stable":"cat"}"#
        let c2 = t.apply(topic: "camclass/r2/status", payload: Array(status.utf8))
        let c3 = t.apply(topic: "camclass/r2/status", payload: Array(status.utf8))
        #expect(c1 && c2 && !c3, "same message twice: no change")
        t.apply(topic: "camclass/r1/availability", payload: Array("daemon_unreachable".utf8))
        t.apply(topic: "camclass/r1/status", payload: Array(#"{"type":"status","daemon":"unreachable","since":"x","source":{"name":"s","state":"unknown"}}"#.utf8))
        let other = t.apply(topic: "other/r1/status", payload: [])
        #expect(!other)
        let lines = t.render().split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(lines)")
        #expect(lines[0].hasPrefix("ROBOT"))
        #expect(lines[1].hasPrefix("r1") && lines[1].contains("daemon_unreachable") && lines[1].contains("daemon unreachable"), "\(lines[1])")
        #expect(lines[2].hasPrefix("r2") && lines[2].contains("online") && lines[2].contains("/dev/video0") && lines[2].contains("streaming")
                && lines[2].contains("30.0") && lines[2].contains("cat"), "\(lines[2])")
    }
}
