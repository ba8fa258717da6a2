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
    @Option(name: .long, help: "The latest classification of this source (default: of any source).")
    var source: String?

    func run() throws {
        do {
            let (line, hello) = try CamclassClient.last(socket: target.socket, source: source)
            let human = HumanLine.Renderer()
            human.learn(hello: hello)
            Console.out((json ? line : human.format(jsonLine: line)) + "\n")
        } catch {
            Console.err("camclass: \(error)\n")
            throw ExitCode(error.status)
        }
    }
}
