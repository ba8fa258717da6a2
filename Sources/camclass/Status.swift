import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass status`: what the daemon is doing, from the `status` request.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Uptime, fps, per-stage latency, drops (totals and per source), subscribers and the log, from a running camclassd.")
    @OptionGroup var target: SocketOption
    @Flag(name: .long, help: "Print the status record (one JSON line) instead of the summary.")
    var json = false

    func run() throws {
        do { Console.out(try CamclassClient.status(socket: target.socket, json: json)) } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(error.status)
        }
    }
}
