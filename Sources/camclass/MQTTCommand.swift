import CamclassTools
import ArgumentParser
import CamclassDaemon
import Foundation
import Glibc
import Logging
import MQTTBridge
import Support

/// `camclass mqtt`: the MQTT bridge (systemd/camclass-mqtt.service runs it).
struct MQTT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt",
        abstract: "Publish camclassd's results to an MQTT broker (topics under <prefix>/<robot>/).",
        discussion: """
            Settings come from --config (default /etc/camclassd/mqtt.yaml when it exists; see config/mqtt.yaml), \
            then these flags. The password is read from auth.password_file or $CREDENTIALS_DIRECTORY/mqtt-password, \
            never from the command line.
            """)

    @Option(name: .long, help: "The daemon's socket (daemon.socket).")
    var socket: String?
    @Option(name: .long, help: "mqtt://HOST:PORT or mqtts://HOST:PORT (broker.url).")
    var broker: String?
    @Option(name: .long, help: "The robot id in topics (topics.robot; default: the host name).")
    var robot: String?
    @Option(name: .long, help: "The topic prefix (topics.prefix; default camclass).")
    var prefix: String?
    @Option(name: .long, help: "The YAML config file.")
    var config: String?
    @Option(name: .long, help: "trace, debug, info, notice, warning, error, critical (log.level).")
    var logLevel: String?
    @Flag(name: .long, help: "Validate the config, flags and credentials, then exit (0 = valid, 78 = invalid).")
    var checkConfig = false

    func run() throws {
        let c: MQTTConfig
        do { c = try MQTTCommandSupport.load(config: config, overrides: { c throws(ConfigError) in
            if let socket { c.daemon.socket = socket }
            if let broker { c.broker.url = broker }
            if let robot { c.topics.robot = robot }
            if let prefix { c.topics.prefix = prefix }
            if let logLevel {
                guard let l = BridgeLogLevel(rawValue: logLevel) else {
                    throw ConfigError(file: "command line", key: "--log-level", value: logLevel,
                                          reason: "expected one of " + BridgeLogLevel.allCases.map(\.rawValue).joined(separator: ", "))
                }
                c.log.level = l
            }
        })
            try c.validate()
            _ = try Credentials.resolve(c)
        } catch {
            Console.err("camclass mqtt: \(error)\n")
            throw ExitCode(78)
        }
        if checkConfig {
            let topics = TopicMap(prefix: c.topics.prefix, robot: c.robotID)
            Console.out("\(c.file ?? "command line"): valid; broker \(c.broker.url), socket \(c.daemon.socket), topics \(topics.base)/…\n")
            return
        }
        // Signals are taken by sigwait on a thread of their own: block them before any thread starts.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        _ = DaemonLogging.bootstrap(level: Logger.Level(rawValue: c.log.level.rawValue) ?? .info)
        let logger = Logger(label: "camclass-mqtt")
        let bridge: MQTTBridge
        do { bridge = try MQTTBridge(config: c, logger: logger) } catch {
            Console.err("camclass mqtt: \(error)\n")
            throw ExitCode(78)
        }
        bridge.start()
        let signals = set
        _ = DedicatedThread(name: "mqtt-signals") {
            var s = signals
            var sig: Int32 = 0
            while sigwait(&s, &sig) != 0 {}
            bridge.requestStop(reason: sig == SIGINT ? "SIGINT" : "SIGTERM")
        }
        let (reason, code) = bridge.waitForStop()
        logger.info("stopping", metadata: ["reason": "\(reason)"])
        bridge.stop()
        if code != 0 { throw ExitCode(code) }
    }
}

enum MQTTCommandSupport {
    /// --config, else the system file when it exists, else the defaults; then the flags.
    static func load(config: String?, overrides: (inout MQTTConfig) throws(ConfigError) -> Void) throws(ConfigError) -> MQTTConfig {
        var c = MQTTConfig()
        if let config {
            c = try MQTTConfig.load(file: config)
        } else if access(MQTTConfig.systemFile, F_OK) == 0 {
            c = try MQTTConfig.load(file: MQTTConfig.systemFile)
        }
        try overrides(&c)
        return c
    }
}

/// `camclass bench-mqtt`: capture → MQTT subscriber latency and the bridge's CPU per message.
struct BenchMQTT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-mqtt",
        abstract: "Capture → MQTT subscriber latency (p50/p99) and the bridge's CPU per message, with a real mosquitto and camclassd.")
    @Option(name: .long, help: "The camclassd binary.")
    var camclassd = ".build/release/camclassd"
    @OptionGroup var modelOption: ModelOption
    @Option(name: .long, help: "Photos to replay.")
    var source = "samples"
    @Option(name: .long, help: "Replay rate.")
    var fps = 30.0
    @Option(name: .long, help: "Measured seconds (after a 3 s warm-up).")
    var seconds = 20.0
    @Option(name: .long, help: "QoS of the classification topic (0 or 1).")
    var qos = 0
    @Option(name: .long, help: "The mosquitto broker binary.")
    var mosquitto = "/usr/sbin/mosquitto"

    func run() throws {
        guard (0...1).contains(qos), fps > 0, fps <= 1000, seconds > 0, seconds <= 3600 else {
            Console.err("camclass bench-mqtt: expected --qos 0 or 1, --fps in (0, 1000], --seconds in (0, 3600]\n")
            throw ExitCode(64)
        }
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var o = MQTTBenchmark.Options(camclassd: camclassd, camclass: me, model: modelOption.model, source: source)
        o.fps = fps
        o.seconds = seconds
        o.qos = qos
        o.mosquitto = mosquitto
        let r: MQTTBenchmark.Result
        do { r = try MQTTBenchmark.run(o) { Console.err("bench-mqtt: \($0)\n") } } catch {
            Console.err("camclass bench-mqtt: \(error)\n")
            throw ExitCode(70)
        }
        func ms(_ p: (p50: Double, p90: Double, p99: Double, max: Double)) -> String {
            String(format: "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms", p.p50, p.p90, p.p99, p.max)
        }
        Console.out("""
            bench-mqtt: \(fps) FPS replay, max_rate_hz 0, QoS \(qos), \(String(format: "%.1f", r.seconds)) s
              capture → socket subscriber : \(ms(r.socketMs))  (\(r.socketRecords) records)
              capture → MQTT subscriber   : \(ms(r.mqttMs))  (\(r.messages) messages)
              bridge CPU                  : \(String(format: "%.1f", r.bridgeCPUPerMessageUs)) µs per message, \(String(format: "%.2f", 100 * r.bridgeCPUSeconds / max(r.seconds, 0.001))) % of one core
            {"fps":\(fps),"messages":\(r.messages),"mqtt_p50_ms":\(String(format: "%.3f", r.mqttMs.p50)),"mqtt_p99_ms":\(String(format: "%.3f", r.mqttMs.p99)),"socket_p50_ms":\(String(format: "%.3f", r.socketMs.p50)),"socket_p99_ms":\(String(format: "%.3f", r.socketMs.p99)),"bridge_cpu_us_per_message":\(String(format: "%.1f", r.bridgeCPUPerMessageUs))}

            """)
    }
}
