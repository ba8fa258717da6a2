import CamclassTestSupport
import Foundation
import Testing

/// The hot path (capture → scale → infer → publish) allocates nothing per frame in steady state.
/// The real camclassd binary runs twice — 100 and 400 frames — under an allocation counter
/// (Tests/StandIns/malloc_count.c, LD_PRELOAD) that attributes every allocation to the thread and to
/// who asked: the daemon's own code or a library it calls. The daemon's own allocations on its
/// pipeline threads must not grow with the number of frames.
@Suite(.serialized) struct HotPathAllocationTests {
    static let hotThreads = ["camclass-captur", "camclass-infer0", "camclass-infer1",
                             "camclass-sock", "camclass-log"]

    /// What runs: one replayed source (decoded once, NV12 leases), or two sources whose JPEGs are
    /// handed over compressed and decoded on the workers per frame, as an MJPEG camera's are.
    enum Path: String, CaseIterable, Sendable { case nv12OneSource, mjpegTwoSources }

    func run(frames: Int, dir: String, path: Path) throws -> [String: Int] {
        // The release build: what runs in production. (A debug build allocates in unspecialised
        // generic code, e.g. iterating the sinks, which says nothing about the shipped daemon.)
        let binary = try TestEnv.require("CAMCLASS_TEST_CAMCLASSD_RELEASE", "run the suite with `make test` (it builds the release camclassd)")
        let counter = try TestEnv.require("CAMCLASS_TEST_MALLOC_COUNT", "run the suite with `make test` (it builds Tests/StandIns/malloc_count.so)")
        let out = dir + "/alloc-\(path.rawValue)-\(frames).json"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        let samples = try TestEnv.samples()
        let sources = path == .nv12OneSource ? ["--source", samples]
            : ["--source", "a=" + samples, "--source", "b=" + samples, "--debug-replay-mjpeg"]
        p.arguments = sources + ["--model", try TestEnv.model(), "--socket", dir + "/s.sock",
                       "--log", dir + "/c-\(frames).log", "--fps", "100", "--frames", "\(frames)", "--workers", "2",
                       "--log-level", "error"]
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = counter
        env["MALLOC_COUNT_FILE"] = out
        env["MALLOC_COUNT_PROCESS"] = "camclassd"
        env["CAMCLASSD_OPENVINO_LIB"] = try TestEnv.openVINO()
        p.environment = env
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "camclassd exited with \(p.terminationStatus)")
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Int])
    }

    @Test(arguments: Path.allCases)
    func pipelineThreadsDoNotAllocatePerFrame(path: Path) throws {
        let dir = TestEnv.tempDir("alloc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let short = try run(frames: 100, dir: dir, path: path)
        let long = try run(frames: 400, dir: dir, path: path)
        // Sanity: the counter saw the daemon's threads (inference threads exist and called libraries).
        #expect((long["camclass-infer0.lib"] ?? 0) > 0, "the allocation counter saw no inference thread: \(long)")
        // The workers are counted together: whichever publishes first in a run does the one-time
        // set-up of publishing (a few allocations), and that is not always the same worker.
        let workers = Self.hotThreads.filter { $0.hasPrefix("camclass-infer") }
        let groups = [workers] + Self.hotThreads.filter { !workers.contains($0) }.map { [$0] }
        for group in groups {
            let a = group.reduce(0) { $0 + (short[$1 + ".own"] ?? 0) }, b = group.reduce(0) { $0 + (long[$1 + ".own"] ?? 0) }
            // 300 more frames: any per-frame allocation would add ≥ 300 on the workers together
            // (≥ 150 on one of them); a few allow for periodic work (status lines every few seconds).
            #expect(b - a <= 5, "\(group.joined(separator: " + ")): own allocations grew from \(a) to \(b) for 300 more frames")
        }
        // For the record: what libraries (libyuv's scalers, OpenVINO's infer) allocate per frame.
        let libGrowth = Self.hotThreads.reduce(0) { $0 + (long[$1 + ".lib"] ?? 0) - (short[$1 + ".lib"] ?? 0) }
        print("\(path): library allocations on pipeline threads: \(Double(libGrowth) / 300) per frame (libyuv row buffers, libjpeg-turbo, OpenVINO)")
    }
}
