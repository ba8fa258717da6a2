import Glibc
import Logging
import Client
import WireFormat
import Support
import Synchronization

/// `camclass mqtt`: reads camclassd's socket and publishes to an MQTT broker (topics: `TopicMap`).
///
/// Threads: the socket reader (`ReconnectingSubscriber`) routes lines and hands messages to
/// libmosquitto without waiting for the network; the MQTT network thread (`MosquittoClient`)
/// writes them, reconnects, and flushes the outage buffer after a reconnect; a timer thread asks
/// the daemon for its status every `topics.status_interval_s`. Shared state is under one lock.
public final class MQTTBridge: @unchecked Sendable {
    /// What the bridge did, for its log line at exit and for tests.
    public struct Counters: Sendable, Equatable {
        public var published: [OutgoingMessage.Kind: Int] = [:]
        /// QoS 1 messages kept while the broker was unreachable.
        public var buffered = 0
        /// Buffered messages dropped (oldest first) because `broker.buffer_messages` was reached.
        public var bufferDropped = 0
        /// Classifications (QoS 0) not sent because the broker was unreachable.
        public var droppedDisconnected = 0
        /// Records the daemon dropped for this subscriber (its `dropped` records).
        public var missed = 0
    }

    public let config: MQTTConfig
    public let topics: TopicMap
    private let logger: Logger
    private let client: MosquittoClient
    private var subscriber: ReconnectingSubscriber!
    private var statusThread: DedicatedThread?
    private let stopping = AtomicFlag()
    private let timer = Condition()

    private struct Shared {
        var brokerConnected = false
        var buffer: OutageBuffer<OutgoingMessage>
        var droppedAtDisconnect = 0
        var availability = Availability.daemonUnreachable
        var status: OutgoingMessage?
        var counters = Counters()
        var daemonDownSince: UInt64?
    }
    private let shared: Mutex<Shared>
    // Reader thread only.
    private var router: RecordRouter
    // Network thread only: failed attempts since the last connection (for rate-limited logging).
    private var brokerFailures = 0

    /// Stop requests (signals, fatal conditions), waited for by `waitForStop`.
    private let stopRequest = Condition()
    private var stopReason: (reason: String, exitCode: Int32)?

    /// - Throws: `ConfigError` (invalid settings, unreadable or insecure credentials) or
    ///   `MosquittoError` (TLS files libmosquitto refuses).
    public init(config: MQTTConfig, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.logger = logger
        topics = TopicMap(prefix: config.topics.prefix, robot: config.robotID)
        router = RecordRouter(topics: topics, classificationQoS: Int32(config.topics.classificationQoS))
        shared = Mutex(Shared(buffer: OutageBuffer(capacity: config.broker.bufferMessages)))
        var o = MosquittoClient.Options(url: try BrokerURL.parse(config.broker.url), clientID: config.clientID())
        o.protocolVersion = config.broker.protocolVersion
        o.keepaliveS = config.broker.keepaliveS
        o.credentials = try Credentials.resolve(config)
        o.caFile = config.tls.caFile
        o.certFile = config.tls.certFile
        o.keyFile = config.tls.keyFile
        o.will = router.availability(.offline)
        o.backoffInitialMs = config.broker.backoffInitialMs
        o.backoffMaxMs = config.broker.backoffMaxMs
        client = try MosquittoClient(options: o)
        subscriber = ReconnectingSubscriber(path: config.daemon.socket, subscribeRequest: Self.subscribeRequest(config.classification),
                                            backoff: Backoff(initialMs: config.daemon.backoffInitialMs, maxMs: config.daemon.backoffMaxMs)) { [unowned self] e in
            self.daemonEvent(e)
        }
        client.onEvent = { [unowned self] e in self.brokerEvent(e) }
    }

    /// The `subscribe` request carrying `classification:` (docs/protocol.md): the daemon filters.
    public static func subscribeRequest(_ c: ClassificationSection) -> String {
        var parts: [String] = []
        if !c.enabled {
            parts.append("\"classifications\":false")
        } else {
            if c.minScore > 0 { parts.append("\"min_score\":\(c.minScore)") }
            if !c.labels.isEmpty { parts.append("\"labels\":[" + c.labels.map(jsonString).joined(separator: ",") + "]") }
            if c.topK > 0 { parts.append("\"top_k\":\(c.topK)") }
            if c.everyN > 1 { parts.append("\"every_n\":\(c.everyN)") }
            if c.maxRateHz > 0 { parts.append("\"max_rate_hz\":\(c.maxRateHz)") }
        }
        parts.append("\"events\":[\"change\",\"camera\"]")
        return "{\"subscribe\":{" + parts.joined(separator: ",") + "}}"
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    public var counters: Counters { shared.withLock { $0.counters } }

    /// Connects to the broker and the daemon (both in the background, retrying).
    public func start() {
        logger.info("bridge starting", metadata: ["broker": "\(config.broker.url)", "socket": "\(config.daemon.socket)",
                                                  "topics": "\(topics.base)/…", "protocol": "\(config.broker.protocolVersion.rawValue)"])
        client.start()
        subscriber.start()
        let interval = UInt64(config.topics.statusIntervalS) * 1_000_000_000
        statusThread = DedicatedThread(name: "mqtt-status") { [self] in
            while !stopping.isSet {
                if timer.wait(timeoutNs: interval, until: { stopping.isSet }) { break }
                subscriber.send(line: #"{"status":{}}"#)
            }
        }
    }

    /// Asks `waitForStop` to return (signals, fatal conditions). The first reason wins.
    public func requestStop(reason: String, exitCode: Int32 = 0) {
        stopRequest.locked { if stopReason == nil { stopReason = (reason, exitCode) } }
        stopRequest.broadcast()
    }

    /// Blocks until `requestStop`; returns its reason and exit code.
    public func waitForStop() -> (reason: String, exitCode: Int32) {
        stopRequest.wait { stopReason != nil }
        return stopRequest.locked { stopReason! }
    }

    /// Stops reading, publishes `offline` (retained; acknowledged or 3 s), disconnects cleanly.
    public func stop() {
        guard !stopping.isSet else { return }
        stopping.set()
        timer.broadcast()
        statusThread?.join()
        subscriber.stop()
        let connected = shared.withLock { s in
            s.availability = .offline
            return s.brokerConnected
        }
        if connected && !client.publishAndWait(router.availability(.offline), timeoutMs: 3000) {
            logger.warning("the broker did not acknowledge 'offline' within 3 s")
        }
        client.stop()
        let c = counters
        logger.info("bridge stopped", metadata: [
            "mqtt.classifications": "\(c.published[.classification] ?? 0)", "mqtt.changes": "\(c.published[.change] ?? 0)",
            "mqtt.camera": "\(c.published[.camera] ?? 0)", "mqtt.status": "\(c.published[.status] ?? 0)",
            "mqtt.buffer_dropped": "\(c.bufferDropped)", "mqtt.dropped_disconnected": "\(c.droppedDisconnected)",
            "daemon.missed": "\(c.missed)",
        ])
    }

    // MARK: the daemon's side (reader thread)

    private func daemonEvent(_ e: ReconnectingSubscriber.Event) {
        switch e {
        case .connected(let hello):
            router.hello(hello)
            let wasDown = shared.withLock { s -> UInt64? in
                defer { s.daemonDownSince = nil }
                return s.daemonDownSince
            }
            logger.info("reading camclassd", metadata: ["socket": "\(config.daemon.socket)", "source": "\(router.source)",
                                                          "down_s": "\(wasDown.map { String(format: "%.1f", Double(Clock.monotonicNs() - $0) / 1e9) } ?? "0")"])
            setAvailability(.online)
            subscriber.send(line: #"{"status":{}}"#)
        case .subscribed(let line):
            logger.debug("filter accepted", metadata: ["reply": "\(line)"])
        case .rejected(let line):
            let why = RecordRouter.object(line)?["error"] as? String ?? line
            logger.error("camclassd refused the classification filter: \(why) — fix classification.* in the config")
            requestStop(reason: "filter refused", exitCode: 78)
        case .line(let line):
            switch router.route(line) {
            case .publish(let m): send(m)
            case .missed(let n):
                let total = shared.withLock { s in s.counters.missed += n; return s.counters.missed }
                if RateLimit.worthLogging(total, n) {
                    logger.warning("the bridge fell behind camclassd: records lost", metadata: ["count": "\(n)", "total": "\(total)"])
                }
            case .shutdown(let reason):
                logger.info("camclassd is shutting down", metadata: ["reason": "\(reason)"])
            case .ignore: break
            }
        case .disconnected(let reason):
            daemonDown(reason: reason, attempt: 1)
        case .unreachable(let reason, let attempt, let retryInMs):
            daemonDown(reason: reason, attempt: attempt, retryInMs: retryInMs)
        }
    }

    private func daemonDown(reason: String, attempt: Int, retryInMs: Int? = nil) {
        let first = shared.withLock { s -> Bool in
            guard s.daemonDownSince == nil else { return false }
            s.daemonDownSince = Clock.monotonicNs()
            return true
        }
        if first {
            logger.warning("camclassd unreachable: \(reason)", metadata: ["socket": "\(config.daemon.socket)"])
            setAvailability(.daemonUnreachable)
            send(router.unreachableStatus(reason: reason, sinceRealtimeNs: Clock.realtimeNs()))
        } else if RateLimit.worthLogging(attempt) {
            logger.notice("camclassd still unreachable: \(reason)", metadata: ["attempts": "\(attempt)", "retry_ms": "\(retryInMs ?? 0)"])
        }
    }

    private func setAvailability(_ a: Availability) {
        let m = router.availability(a)
        shared.withLock { s in
            guard !stopping.isSet else { return }
            s.availability = a
            if s.brokerConnected { publish(m, &s) }
        }
    }

    /// Hands one message to libmosquitto now, or keeps it for after the outage.
    private func send(_ m: OutgoingMessage) {
        shared.withLock { s in
            switch m.kind {
            case .status:
                s.status = m  // state: only the latest matters, sent again on reconnect
                if s.brokerConnected { publish(m, &s) }
            case .availability:
                if s.brokerConnected { publish(m, &s) }
            case .classification:
                if s.brokerConnected && m.qos == 0 {
                    publish(m, &s)
                } else if s.brokerConnected && s.buffer.isEmpty {
                    publish(m, &s)
                } else if m.qos == 0 {
                    s.counters.droppedDisconnected += 1
                } else {
                    buffer(m, &s)
                }
            case .change, .camera:
                if s.brokerConnected && s.buffer.isEmpty {
                    publish(m, &s)
                } else {
                    buffer(m, &s)
                }
            }
        }
    }

    private func buffer(_ m: OutgoingMessage, _ s: inout Shared) {
        s.counters.buffered += 1
        if s.buffer.append(m) {
            s.counters.bufferDropped += 1
            let lost = s.buffer.dropped - s.droppedAtDisconnect
            if RateLimit.worthLogging(lost) {
                logger.warning("outage buffer full: dropping the oldest QoS 1 messages", metadata: [
                    "capacity": "\(s.buffer.capacity)", "dropped": "\(lost)"])
            }
        }
    }

    private func publish(_ m: OutgoingMessage, _ s: inout Shared) {
        let (rc, _) = client.publish(m)
        if rc == 0 {
            s.counters.published[m.kind, default: 0] += 1
        } else if m.qos == 0 {
            s.counters.droppedDisconnected += 1
        } else {
            // libmosquitto refused it outright (too large, out of memory): say so, once in a while.
            if RateLimit.worthLogging(s.counters.published[m.kind] ?? 1) {
                logger.warning("publish failed", metadata: ["topic": "\(m.topic)", "error": "\(MosquittoError("mosquitto_publish", rc).detail)"])
            }
        }
    }

    // MARK: the broker's side (network thread)

    private func brokerEvent(_ e: MosquittoClient.Event) {
        switch e {
        case .connected:
            // State first (availability, the latest status), then what was kept, in order.
            let (sent, dropped) = shared.withLock { s -> (Int, Int) in
                publish(router.availability(s.availability == .offline ? .online : s.availability), &s)
                if let st = s.status { publish(st, &s) }
                let kept = s.buffer.removeAll()
                for m in kept { publish(m, &s) }
                s.brokerConnected = true
                let dropped = s.buffer.dropped - s.droppedAtDisconnect
                s.droppedAtDisconnect = s.buffer.dropped
                return (kept.count, dropped)
            }
            brokerFailures = 0
            logger.info("connected to the broker", metadata: ["broker": "\(config.broker.url)", "resent": "\(sent)",
                                                                "mqtt.buffer_dropped": "\(dropped)"])
        case .refused(let code, let reason):
            markDisconnected()
            brokerFailures += 1
            guard RateLimit.worthLogging(brokerFailures) else { return }
            logger.error("the broker refused the connection: \(reason) (code \(code)) — check auth.username and the password file",
                         metadata: ["broker": "\(config.broker.url)", "attempts": "\(brokerFailures)"])
        case .disconnected(let reason):
            markDisconnected()
            logger.warning("lost the broker: \(reason); keeping up to \(config.broker.bufferMessages) QoS 1 messages",
                           metadata: ["broker": "\(config.broker.url)"])
        case .connectFailed(let reason):
            markDisconnected()
            brokerFailures += 1
            guard RateLimit.worthLogging(brokerFailures) else { return }
            logger.warning("cannot reach the broker: \(reason)", metadata: ["attempts": "\(brokerFailures)"])
        case .retrying(let attempt, let retryInMs):
            if attempt > 1 && RateLimit.worthLogging(attempt) {
                logger.notice("still no broker", metadata: ["attempts": "\(attempt)", "retry_ms": "\(retryInMs)"])
            }
        }
    }

    private func markDisconnected() {
        shared.withLock { s in s.brokerConnected = false }
    }
}

/// Logs repeated conditions on the 1st, 2nd, 4th, 8th… occurrence: a condition that persists
/// costs a few lines per hour, not one per attempt.
public enum RateLimit {
    public static func worthLogging(_ occurrence: Int) -> Bool { occurrence > 0 && occurrence & (occurrence - 1) == 0 }
    /// For running totals growing by `step`: true when the total crossed a power of two.
    public static func worthLogging(_ total: Int, _ step: Int) -> Bool {
        guard total > 0, step > 0 else { return false }
        let before = total - step
        return before <= 0 || (Int.bitWidth - before.leadingZeroBitCount) != (Int.bitWidth - total.leadingZeroBitCount)
    }
}
