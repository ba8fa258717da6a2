import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass tail`: the rolling log's last lines, then follow it across rotations.
struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the rolling log's last lines, then follow it across rotations (like tail -F).")
    @Option(name: .long, help: "The log file (default: log.path of --config, else of the system config, else the built-in path).")
    var log: String?
    @Option(name: .long, help: "Config file to take log.path from.")
    var config: String?
    @Option(name: [.short, .long], help: "Start with this many of the last lines.")
    var lines = 10
    @Flag(name: .long, help: "Print the last lines and exit instead of following.")
    var noFollow = false
    @Flag(name: .long, help: "Print JSON lines as they are (default: human-readable).")
    var json = false

    func run() throws {
        let path = try log ?? DaemonConfig.resolve(file: config).log.path
        if noFollow && access(path, R_OK) != 0 {
            Console.err("camclass: cannot read the log '\(path)': \(String(cString: strerror(errno))) (see --log)\n")
            throw ExitCode(ExitStatus.noInput)
        }
        // inotify refused (limits reached): polling still follows the log, so say so and go on.
        let follower = LogFollower(path: path, lastLines: lines, waiting: noFollow ? .polling : .inotify) { error in
            Console.err("camclass: warning: \(error); following it by looking every 20 ms instead\n")
        }
        // The log has no hello: records name their source once two sources have been seen.
        let human = HumanLine.Renderer()
        func show(_ line: String) {
            Console.out((json || !line.hasPrefix("{") ? line : human.format(jsonLine: line)) + "\n")
        }
        for line in follower.poll(timeoutMs: 0) { show(line) }
        // Blocks until the log changes (inotify): an idle log costs no wake-ups. Ctrl-C or
        // SIGTERM end the process (default dispositions), so nothing else needs waking.
        while !noFollow {
            for line in follower.poll(timeoutMs: -1) { show(line) }
        }
    }
}
