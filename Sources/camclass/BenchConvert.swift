import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass bench-convert`: per-frame CPU time of camera frame conversion + scaling, libyuv vs naive.
struct BenchConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-convert",
        abstract: "CPU time per frame: driver buffer → NV12 pool buffer → model input, NV12/YUYV/MJPEG, libyuv vs naive Swift loops.")

    @Option(name: .long, help: "Frames per measurement (the median of --runs measurements is shown).")
    var frames = 100
    @Option(name: .long, help: "Measurements per row.")
    var runs = 5
    @Option(name: .long, help: "A photo for the frame content (default: the first of ./samples).")
    var photo = "samples/chelsea.jpg"

    func run() throws {
        var options = ConvertBenchmark.Options()
        options.frames = frames
        options.runs = runs
        options.photo = photo
        Console.out("CPU time per frame (thread CPU, median of \(runs) x \(frames) frames): convert into the NV12 pool buffer\n")
        Console.out("+ centre-crop/scale to the 224x224 model input. MJPEG: real JPEG bytes (4:2:2, quality 85).\n")
        Console.out(ConvertBenchmark.header + "\n")
        _ = try ConvertBenchmark(options: options).run { Console.out($0 + "\n") }
    }
}
