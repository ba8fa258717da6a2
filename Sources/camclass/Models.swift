import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What the model catalogue knows (the 15 RDK X5 seed models) and what is available locally.")

    @Option(name: .long, help: "Model catalogue (default: config/models.yaml, else /etc/camclassd or /usr/share/camclassd).")
    var catalogue: String?
    @Option(name: .long, help: "Directory of local models (*.model.yaml, *.bin, *.onnx).")
    var dir = "models"
    @Flag(name: .long, help: "Print each catalogue model's download URL.")
    var urls = false

    func run() throws {
        let cat: ModelCatalogue
        do { cat = try ModelCatalogue.load(path: catalogue) } catch {
            Console.err("camclass models: \(error)\n")
            throw ExitCode(ExitStatus.noInput)
        }
        Console.out(cat.report(directory: dir, urls: urls).joined(separator: "\n") + "\n")
    }
}
