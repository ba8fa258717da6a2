import CamclassTestSupport
import Foundation
import Testing

/// `ModelInputConverter.convert` (a camera frame → the model input, on the worker) allocates nothing
/// per frame, for NV12, YUYV and MJPEG. `camclass bench-convert` runs it on its named thread
/// "camclass-bench" under the allocation counter (Tests/StandIns/malloc_count.c, LD_PRELOAD) for 10
/// and for 60 frames per row; the program's own allocations on that thread must not grow with the
/// frames (libjpeg-turbo's own per-image pools are a library's, counted apart and only printed).
@Suite(.serialized) struct ModelInputAllocationTests {
    static let rows = ["nv12:640x480", "yuyv:640x480", "mjpeg:640x480", "mjpeg:1280x720"]

    func run(frames: Int, dir: String) throws -> [String: Int] {
        let binary = try TestBinary.camclass()
        let counter = try TestEnv.mallocCount()
        let out = dir + "/alloc-\(frames).json"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["bench-convert", "--rows"] + Self.rows + ["--columns", "after", "--frames", "\(frames)", "--runs", "1",
                                                                 "--photo", try TestEnv.samples() + "/chelsea.jpg"]
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = counter
        env["MALLOC_COUNT_FILE"] = out
        env["MALLOC_COUNT_PROCESS"] = "camclass"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "camclass bench-convert exited with \(p.terminationStatus)")
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Int])
    }

    @Test func convertingAFrameAllocatesNothing() throws {
        let dir = TestEnv.tempDir("convert-alloc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let short = try run(frames: 10, dir: dir)
        let long = try run(frames: 60, dir: dir)
        // Sanity: the counter saw the benchmark thread (it allocates while setting up each row).
        #expect((long["camclass-bench.own"] ?? 0) > 0, "the allocation counter saw no camclass-bench thread: \(long)")
        let a = short["camclass-bench.own"] ?? 0, b = long["camclass-bench.own"] ?? 0
        // 4 rows x 50 more frames: one allocation per frame anywhere would add ≥ 200.
        #expect(b - a <= 2, "own allocations on the converting thread grew from \(a) to \(b) for 200 more frames")
        let lib = (long["camclass-bench.lib"] ?? 0) - (short["camclass-bench.lib"] ?? 0)
        print("library allocations per converted frame: \(Double(lib) / 200), averaged over the four rows (libjpeg-turbo's per-image pools: MJPEG rows only)")
    }
}
