import ArgumentParser
import Glibc
import MQTTBridge
import Support
import Synchronization

/// `camclass fleet`: a live table of the robots publishing to a broker.
struct Fleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the robots on an MQTT broker: availability, each source's state, fps, stable label.",
        discussion: "Subscribes to <prefix>/+/status and <prefix>/+/availability. TLS and credentials come from --config (the tls: and auth: sections of mqtt.yaml).")

    @Option(name: .long, help: "mqtt://HOST:PORT or mqtts://HOST:PORT.")
    var broker: String?
    @Option(name: .long, help: "The topic prefix (default camclass).")
    var prefix: String?
    @Option(name: .long, help: "An mqtt.yaml for broker, tls and auth settings.")
    var config: String?
    @Flag(name: .long, help: "Print the table once (after --wait seconds of retained messages) and exit.")
    var once = false
    @Option(name: .long, help: "With --once: seconds to collect messages after connecting.")
    var wait = 2.0

    func run() throws {
        let c: MQTTConfig
        let credentials: Credentials?
        let url: BrokerURL
        do {
            c = try MQTTCommandSupport.load(config: config) { c throws(ConfigError) in
                if let broker { c.broker.url = broker }
                if let prefix { c.topics.prefix = prefix }
            }
            try c.validate()
            credentials = try Credentials.resolve(c)
            url = try BrokerURL.parse(c.broker.url)
        } catch {
            Console.err("camclass fleet: \(error)\n")
            throw ExitCode(78)
        }
        guard wait > 0 && wait <= 3600 else {
            Console.err("camclass fleet: --wait \(wait): expected seconds in 0…3600\n")
            throw ExitCode(64)
        }
        var o = MosquittoClient.Options(url: url, clientID: "fleet-\(getpid())")
        o.protocolVersion = c.broker.protocolVersion
        o.credentials = credentials
        o.caFile = c.tls.caFile
        o.certFile = c.tls.certFile
        o.keyFile = c.tls.keyFile
        o.backoffInitialMs = c.broker.backoffInitialMs
        o.backoffMaxMs = c.broker.backoffMaxMs
        let client: MosquittoClient
        do { client = try MosquittoClient(options: o) } catch {
            Console.err("camclass fleet: \(error)\n")
            throw ExitCode(78)
        }
        let table = Mutex(FleetTable(prefix: c.topics.prefix))
        let changed = Condition()
        let state = Mutex((connected: false, dirty: true, error: String?.none))
        client.onMessage = { m in
            if table.withLock({ $0.apply(topic: m.topic, payload: m.payload) }) {
                state.withLock { $0.dirty = true }
                changed.broadcast()
            }
        }
        let patterns = table.withLock { $0.patterns }
        client.onEvent = { e in
            switch e {
            case .connected:
                for p in patterns { _ = client.subscribe(p, qos: 1) }
                state.withLock { $0.connected = true }
            case .refused(_, let reason): state.withLock { $0.error = "the broker refused the connection: \(reason)" }
            case .connectFailed(let reason): state.withLock { $0.error = reason }
            case .disconnected(let reason): state.withLock { $0.error = "lost the broker: \(reason)" }
            case .retrying: break
            }
            changed.broadcast()
        }
        client.start()
        if once {
            // Retained messages arrive right after subscribing: collect them for --wait seconds.
            let connected = changed.wait(timeoutNs: 10_000_000_000) { state.withLock { $0.connected } }
            guard connected else {
                client.stop()
                Console.err("camclass fleet: cannot connect to \(url): \(state.withLock { $0.error } ?? "timed out")\n")
                throw ExitCode(69)
            }
            let quiet = Condition()
            _ = quiet.wait(timeoutNs: UInt64(wait * 1e9)) { false }
            client.stop()
            Console.out(table.withLock { $0.render() })
            return
        }
        let tty = isatty(STDOUT_FILENO) == 1
        while true {
            changed.wait { state.withLock { $0.dirty || $0.error != nil } }
            let (dirty, error) = state.withLock { s -> (Bool, String?) in
                defer { s.dirty = false; s.error = nil }
                return (s.dirty, s.error)
            }
            if let error { Console.err("camclass fleet: \(error)\n") }
            if dirty {
                let text = table.withLock { $0.render() }
                Console.out(tty ? "\u{1B}[H\u{1B}[2J\(text)" : text + "\n")
            }
            // At most two redraws per second however busy the fleet is.
            _ = Condition().wait(timeoutNs: 500_000_000) { false }
        }
    }
}
