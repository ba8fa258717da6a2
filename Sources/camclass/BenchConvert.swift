import ArgumentParser
import CamclassDaemon
import CamclassTools
import Client
import Foundation
import Inference
import Logging
import Support

/// `camclass bench-convert`: per-frame CPU time from driver buffer to model input: the capture-thread
/// conversion + scale (before), `ModelInputConverter` on the worker (after), and naive Swift loops.
struct BenchConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-convert",
        abstract: "CPU time per frame, driver buffer → model input, NV12/YUYV/MJPEG at 640x480/1280x720/1920x1080: before (pool buffer + scale), after (ModelInputConverter), naive Swift loops.")

    @Option(name: .long, help: "Frames per measurement (the median of --runs measurements is shown).")
    var frames = 100
    @Option(name: .long, help: "Measurements per row.")
    var runs = 5
    @Option(name: .long, help: "A photo for the frame content (default: the first of ./samples).")
    var photo = "samples/chelsea.jpg"
    @Option(name: .long, parsing: .upToNextOption,
            help: "Only these rows, FORMAT:WxH (e.g. mjpeg:1920x1080); default every format at 640x480, 1280x720, 1920x1080.")
    var rows: [String] = []
    @Option(name: .long, help: "Columns to measure, comma-separated: before, after, naive (default all).")
    var columns = "before,after,naive"
    @Option(name: .long, help: ArgumentHelp("Write each MJPEG row's JPEG (the bytes measured) to DIR/mjpeg-WxH.jpg, to measure other decoders on the same input.", valueName: "DIR"))
    var saveMjpeg: String?

    func validate() throws {
        _ = try parsedRows()
        _ = try parsedColumns()
    }

    func parsedRows() throws -> [ConvertBenchmark.RowSpec] {
        try rows.map { text in
            guard let row = ConvertBenchmark.RowSpec(text) else {
                throw ValidationError("--rows \(text): expected FORMAT:WxH with FORMAT nv12, yuyv or mjpeg and even sizes 2…8192")
            }
            return row
        }
    }

    func parsedColumns() throws -> Set<ConvertBenchmark.Column> {
        let names = columns.split(separator: ",").map(String.init)
        let set = Set(names.compactMap(ConvertBenchmark.Column.init(rawValue:)))
        guard set.count == names.count, !set.isEmpty else {
            throw ValidationError("--columns \(columns): expected a comma-separated list of before, after, naive")
        }
        return set
    }

    func run() throws {
        var options = ConvertBenchmark.Options()
        options.frames = frames
        options.runs = runs
        options.photo = photo
        if !rows.isEmpty { options.rows = try parsedRows() }
        options.columns = try parsedColumns()
        options.saveMJPEGDirectory = saveMjpeg
        Console.out("CPU time per frame (thread CPU time on one thread, median of \(runs) x \(frames) frames), driver buffer →\n")
        Console.out("224x224 model input, centre crop. before: full-size conversion into the NV12 pool buffer + scale;\n")
        Console.out("after: ModelInputConverter (MJPEG: DCT-scaled decode of the kept region, range table on the input only); gain = before/after;\n")
        Console.out("naive Swift: the before work as per-pixel loops. MJPEG: real JPEG bytes (4:2:2, quality 85).\n")
        Console.out(ConvertBenchmark.header + "\n")
        // On a named thread of its own, as the daemon's workers are: the allocation counter
        // (Tests/StandIns/malloc_count.so) attributes allocations by thread name, which is how the
        // tests check that converting a frame allocates nothing.
        let outcome = BenchOutcome()
        let thread = DedicatedThread(name: "camclass-bench") { [options] in
            do { _ = try ConvertBenchmark(options: options).run { Console.out($0 + "\n") } } catch { outcome.error = error }
        }
        thread.join()
        if let error = outcome.error { throw error }
    }
}

/// The benchmark thread's error, read after `join` (the join orders the write before the read).
private final class BenchOutcome: @unchecked Sendable {
    var error: (any Error)?
}
