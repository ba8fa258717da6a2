import Client
import CamclassTools
import ArgumentParser
import CamclassDaemon
import Foundation
import Inference
import Logging
import WireFormat
import Support

/// camclass: the client and tools. Subcommands parse flags and call library code.
@main
struct Camclass: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camclass",
        abstract: "Client and tools for camclassd.",
        subcommands: [Subscribe.self, Bench.self, Models.self, Cameras.self, BenchConvert.self, Eval.self,
                      Status.self, Last.self, Tail.self, BenchFanout.self, MQTT.self, Fleet.self, BenchMQTT.self, BenchCPU.self])
}
