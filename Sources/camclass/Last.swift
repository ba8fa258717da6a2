import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass last`: the latest classification, at once.
struct Last: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the latest classification the daemon published.")
    @OptionGroup var target: SocketOption
    @Flag(name: .long, help: "Print the record (one JSON line) instead of a human-readable line.")
    var json = false

    func run() throws {
        do {
            let line = try CamclassClient.last(socket: target.socket)
            Console.out((json ? line : HumanLine.format(jsonLine: line)) + "\n")
        } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(error.status)
        }
    }
}
