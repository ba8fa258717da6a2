import CamclassTestSupport
import Foundation
import Glibc
import Testing

/// Issue 11 ("RSS grows ~27 KB per real reload"): each SIGHUP ran the reload on a thread that was
/// neither joined nor detached, so every reload left a dead thread's stack mapped. Counted here as
/// the daemon's memory mappings across many reloads. Environment: the built camclassd, OpenVINO.
@Suite(.serialized) struct HardeningReloadLeakTests {
    static func mappings(_ pid: Int32) -> Int {
        // Read to the end: /proc files report size 0, and a one-shot read stops at the first page.
        let data = FileHandle(forReadingAtPath: "/proc/\(pid)/maps")?.readDataToEndOfFile() ?? Data()
        return data.split(separator: 0x0A).count
    }

    @Test func reloadsLeaveNoThreadStacksBehind() async throws {
        let dir = TestEnv.tempDir("leak")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/c.yaml"
        try writeDaemonConfig(config, dir: dir, fps: 5)
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        let daemon = try DaemonProcess(arguments: ["--config", config], environment: [
            "NOTIFY_SOCKET": listener.name, "CAMCLASSD_OPENVINO_LIB": try TestEnv.openVINO(),
        ], dir: dir)
        // READY=1: the services run, SIGHUP is trapped (before that it would end the process).
        try #require(await eventually(60) { listener.messages.contains { $0.fields["READY"] == "1" } }, "stderr:\n\(daemon.stderr)")
        func reloads() -> Int { daemon.stderr.components(separatedBy: "configuration reloaded").count - 1 }
        // A few reloads first: allocators and caches settle.
        for i in 1...5 {
            daemon.signal(SIGHUP)
            #expect(await eventually(10) { reloads() == i })
        }
        let before = Self.mappings(daemon.pid)
        let count = 60
        for i in 1...count {
            daemon.signal(SIGHUP)
            #expect(await eventually(10) { reloads() == 5 + i }, "reload \(i): \(daemon.stderr.suffix(500))")
        }
        let after = Self.mappings(daemon.pid)
        #expect(before > 100 && daemon.process.isRunning)
        print("reload leak check: mappings \(before) → \(after) after \(count) reloads")
        // A leaked stack is one or two mappings (stack + guard page) per reload: 60-120 here.
        #expect(after - before < count / 3, "mappings \(before) → \(after) after \(count) reloads")
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: 20) == 0)
    }
}
