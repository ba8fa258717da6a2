import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

struct Subscribe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print classifications as they are published.")

    @OptionGroup var target: SocketOption
    @Flag(name: .long, help: "Raw JSON Lines instead of human-readable lines.")
    var json = false
    @Option(name: .long, help: "Exit after N classification records.")
    var count: Int?
    @Option(name: .long, help: "Only top entries scoring at least this (0…1); records with none left are skipped.")
    var minScore: Double?
    @Option(name: .long, parsing: .upToNextOption, help: "Only these class ids (space-separated).")
    var classes: [Int] = []
    @Option(name: .customLong("label"), help: "Only this label or coarse group (repeatable), e.g. --label espresso --label cat.")
    var labels: [String] = []
    @Option(name: .long, help: "At most this many top entries per record.")
    var topK: Int?
    @Option(name: .long, help: "Every n-th matching classification.")
    var everyN: Int?
    @Option(name: .long, help: "At most this many classifications per second.")
    var maxRate: Double?
    @Option(name: .long, help: "Events besides classifications: change,camera (default both), or none.")
    var events: String?
    @Flag(name: .long, help: "Events only: no classification records.")
    var eventsOnly = false
    @Option(name: .customLong("source"), help: "Only records of this source (repeatable), e.g. --source front --source rear.")
    var sources: [String] = []

    func run() throws {
        let connection: SubscriberConnection
        do { connection = try SubscriberConnection(path: target.socket) } catch {
            Console.err("camclass: cannot connect to camclassd at \(target.socket): \(error) (is the daemon running? see --socket)\n")
            throw ExitCode(ExitStatus.unavailable)
        }
        // Records already on their way when the daemon reads the request are not filtered: with a
        // filter, skip records until its `subscribed` reply (an `error` reply ends the command).
        var filtered = true
        if let request = CamclassClient.subscribeRequest(minScore: minScore, classes: classes, labels: labels, topK: topK, everyN: everyN,
                                                         maxRateHz: maxRate, events: events, eventsOnly: eventsOnly, sources: sources) {
            try connection.send(line: request)
            filtered = false
        }
        var seen = 0
        // Records name their source once the daemon has several (its hello says so).
        let human = HumanLine.Renderer()
        while let line = try connection.readLine() {
            if !filtered {
                if line.hasPrefix("{\"type\":\"subscribed\"") {
                    filtered = true
                    if let ack = CamclassClient.object(line), let unknown = ack["unknown_sources"] as? [String], !unknown.isEmpty {
                        Console.err("camclass: no source is named \(unknown.joined(separator: ", ")) at the moment; waiting for it (a reload may add it)\n")
                    }
                } else if line.hasPrefix("{\"type\":\"error\"") {
                    Console.err("camclass: \(HumanLine.format(jsonLine: line))\n")
                    throw ExitCode(ExitStatus.usage)
                } else if !line.hasPrefix("{\"type\":\"hello\"") {
                    continue
                }
            }
            if json {
                Console.out(line + "\n")
            } else {
                Console.out(human.format(jsonLine: line) + "\n")
            }
            if line.hasPrefix("{\"type\":\"classification\"") {
                seen += 1
                if let count, seen >= count { return }
            }
        }
    }
}
