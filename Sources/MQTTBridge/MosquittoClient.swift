import CMosquitto
import Glibc
import Client
import WireFormat
import Support
import Synchronization

/// An MQTT error from libmosquitto: the call, its code and libmosquitto's explanation.
public struct MosquittoError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let detail: String

    init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
        if code == Int32(MOSQ_ERR_ERRNO.rawValue) {
            detail = String(cString: strerror(errno))
        } else {
            detail = String(cString: mosquitto_strerror(code))
        }
    }

    public var description: String { "\(call): \(detail)" }
}

/// libmosquitto, initialised once per process (it is not safe to do it twice concurrently).
enum MosquittoLibrary {
    static let initialised: Bool = { mosquitto_lib_init() == Int32(MOSQ_ERR_SUCCESS.rawValue) }()
}

/// One MQTT connection with libmosquitto, kept up by a network thread of its own: connect, run
/// libmosquitto's loop (it blocks in poll on the socket and a wake-up pipe that publishes from
/// other threads write to), and after any failure wait a jittered exponential backoff and connect
/// again. libmosquitto's own reconnect has no jitter, hence this thread instead of `loop_start`.
///
/// Thread context: `onEvent` and `onMessage` run on the network thread, in order. `publish`,
/// `subscribe` and `stop` may be called from any thread (libmosquitto locks internally).
public final class MosquittoClient: @unchecked Sendable {
    public struct Options: Sendable {
        public var url: BrokerURL
        public var clientID: String
        public var protocolVersion = MQTTProtocolVersion.v311
        public var keepaliveS = 30
        public var credentials: Credentials?
        public var caFile = ""
        public var certFile = ""
        public var keyFile = ""
        /// The Last Will (published by the broker when the connection dies without DISCONNECT).
        public var will: OutgoingMessage?
        public var backoffInitialMs = 500
        public var backoffMaxMs = 30_000

        public init(url: BrokerURL, clientID: String) {
            self.url = url
            self.clientID = clientID
        }
    }

    public enum Event: Sendable {
        /// CONNACK accepted. Called on the network thread after libmosquitto resent its own
        /// in-flight messages, so that what the handler publishes comes after them.
        case connected
        /// CONNACK refused (bad credentials, not authorised…): the reason, e.g. "not authorised".
        case refused(code: Int32, reason: String)
        /// An established connection ended.
        case disconnected(reason: String)
        /// A connection attempt failed before CONNACK (DNS, TCP, TLS).
        case connectFailed(reason: String)
        /// The next attempt follows in `retryInMs`.
        case retrying(attempt: Int, retryInMs: Int)
    }

    public struct Message: Sendable {
        public var topic: String
        public var payload: [UInt8]
        public var qos: Int32
        public var retain: Bool
    }

    public let options: Options
    public var onEvent: @Sendable (Event) -> Void = { _ in }
    public var onMessage: @Sendable (Message) -> Void = { _ in }

    private let mosq: OpaquePointer
    private let stopping = AtomicFlag()
    private let wake = Condition()
    private var thread: DedicatedThread?
    // Written by libmosquitto's callbacks (network thread), read by the network thread.
    fileprivate var connackCode: Int32?
    fileprivate var lastDisconnectRC: Int32 = 0
    // Acknowledged message ids (for `publishAndWait`), guarded by `acks`.
    private let acks = Condition()
    fileprivate var acked = Set<Int32>()

    /// Sets up the client (TLS files are checked here). Does not connect: see `start`.
    /// - Throws: `MosquittoError` naming the failing option (an unreadable CA file, a key that does not match…).
    public init(options: Options) throws(MosquittoError) {
        guard MosquittoLibrary.initialised else { throw MosquittoError("mosquitto_lib_init", Int32(MOSQ_ERR_UNKNOWN.rawValue)) }
        self.options = options
        guard let m = mosquitto_new(options.clientID, true, nil) else { throw MosquittoError("mosquitto_new", Int32(MOSQ_ERR_NOMEM.rawValue)) }
        mosq = m
        mosquitto_user_data_set(m, Unmanaged.passUnretained(self).toOpaque())
        func check(_ call: String, _ rc: Int32) throws(MosquittoError) {
            if rc != Int32(MOSQ_ERR_SUCCESS.rawValue) { throw MosquittoError(call, rc) }
        }
        do {
            try check("protocol version", cmosq_set_protocol(m, options.protocolVersion == .v5 ? cmosq_protocol_v5 : cmosq_protocol_v311))
            try check("mosquitto_threaded_set", mosquitto_threaded_set(m, true))
            _ = cmosq_set_nodelay(m, 1)
            if let c = options.credentials {
                try check("mosquitto_username_pw_set", mosquitto_username_pw_set(m, c.username, c.password))
            }
            if options.url.tls {
                let ca = options.caFile.isEmpty ? nil : options.caFile
                let caPath = ca == nil ? "/etc/ssl/certs" : nil
                let cert = options.certFile.isEmpty ? nil : options.certFile
                let key = options.keyFile.isEmpty ? nil : options.keyFile
                try check("TLS set-up (tls.ca_file '\(options.caFile)', tls.cert_file '\(options.certFile)', tls.key_file '\(options.keyFile)')",
                          mosquitto_tls_set(m, ca, caPath, cert, key, nil))
            }
            if let w = options.will {
                try check("mosquitto_will_set(\(w.topic))", w.payload.withUnsafeBytes {
                    mosquitto_will_set(m, w.topic, Int32($0.count), $0.baseAddress, w.qos, w.retain)
                })
            }
        } catch {
            mosquitto_destroy(m)
            throw error
        }
        mosquitto_connect_v5_callback_set(m) { _, obj, rc, _, _ in
            guard let obj else { return }
            Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue().connackCode = rc
        }
        mosquitto_disconnect_v5_callback_set(m) { _, obj, rc, _ in
            guard let obj else { return }
            Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue().lastDisconnectRC = rc
        }
        mosquitto_publish_v5_callback_set(m) { _, obj, mid, _, _ in
            guard let obj else { return }
            let me = Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue()
            me.acks.locked { _ = me.acked.insert(mid) }
            me.acks.broadcast()
        }
        mosquitto_message_v5_callback_set(m) { _, obj, msg, _ in
            guard let obj, let msg else { return }
            let me = Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue()
            let p = msg.pointee
            let payload = p.payload.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: Int(p.payloadlen))) } ?? []
            me.onMessage(Message(topic: String(cString: p.topic), payload: payload, qos: p.qos, retain: p.retain))
        }
    }

    deinit {
        stop()
        mosquitto_destroy(mosq)
    }

    /// Starts the network thread (connects in the background).
    public func start() {
        guard thread == nil else { return }
        thread = DedicatedThread(name: "mqtt-net") { [self] in run() }
    }

    /// Hands a message to libmosquitto (it copies the payload). Returns libmosquitto's code:
    /// MOSQ_ERR_NO_CONN for QoS 0 while disconnected. Never blocks on the network.
    @discardableResult
    public func publish(_ m: OutgoingMessage) -> (rc: Int32, mid: Int32) {
        var mid: Int32 = 0
        let rc = m.payload.withUnsafeBytes { mosquitto_publish(mosq, &mid, m.topic, Int32($0.count), $0.baseAddress, m.qos, m.retain) }
        return (rc, mid)
    }

    /// Publishes and waits until the broker acknowledged it (QoS 1) or `timeoutMs` passed.
    public func publishAndWait(_ m: OutgoingMessage, timeoutMs: Int) -> Bool {
        let (rc, mid) = publish(m)
        guard rc == Int32(MOSQ_ERR_SUCCESS.rawValue) else { return false }
        return acks.wait(timeoutNs: UInt64(timeoutMs) * 1_000_000) { acked.contains(mid) }
    }

    public func subscribe(_ pattern: String, qos: Int32) -> Int32 {
        mosquitto_subscribe(mosq, nil, pattern, qos)
    }

    /// Sends DISCONNECT (no Last Will), stops the network thread and waits for it.
    public func stop() {
        guard !stopping.isSet else { thread?.join(); return }
        stopping.set()
        mosquitto_disconnect(mosq)
        wake.broadcast()
        thread?.join()
    }

    private var success: Int32 { Int32(MOSQ_ERR_SUCCESS.rawValue) }

    private func run() {
        var backoff = Backoff(initialMs: options.backoffInitialMs, maxMs: options.backoffMaxMs)
        var failures = 0
        let protocolNumber = options.protocolVersion == .v5 ? cmosq_protocol_v5 : cmosq_protocol_v311
        while !stopping.isSet {
            connackCode = nil
            var established = false
            var rc = mosquitto_connect_async(mosq, options.url.host, Int32(options.url.port), Int32(options.keepaliveS))
            if rc == success {
                while !stopping.isSet {
                    rc = mosquitto_loop(mosq, 1000, 1)
                    // A refused CONNACK makes the loop fail: look at the code first.
                    if let code = connackCode, !established {
                        if code == 0 {
                            established = true
                            failures = 0
                            backoff.reset()
                            onEvent(.connected)
                        } else {
                            // Refused: libmosquitto closes the socket; report and back off.
                            onEvent(.refused(code: code, reason: String(cString: cmosq_connack_reason(protocolNumber, code))))
                            break
                        }
                    }
                    if rc != success { break }
                }
            }
            if stopping.isSet { break }
            if established {
                onEvent(.disconnected(reason: MosquittoError("connection", rc).detail))
            } else if connackCode == nil {
                onEvent(.connectFailed(reason: MosquittoError("connect to \(options.url)", rc).description))
            }
            mosquitto_disconnect(mosq)  // drops a half-open socket (a refused CONNACK, a TLS failure)
            failures += 1
            let delay = backoff.next()
            onEvent(.retrying(attempt: failures, retryInMs: delay))
            _ = wake.wait(timeoutNs: UInt64(delay) * 1_000_000) { stopping.isSet }
        }
        // Let libmosquitto write the DISCONNECT queued by `stop` (bounded: one pass).
        _ = mosquitto_loop(mosq, 100, 1)
    }
}
