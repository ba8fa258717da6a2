@testable import CamclassDaemon
import CamclassTestSupport
import Client
import WireFormat
import Capture
import Foundation
import Glibc
import ImageOps
import Logging
import ServiceLifecycle
import Support
import Synchronization
import Testing

/// A replay-like test double that emulates a camera's capture side without frames: while "lost"
/// its capture thread waits for the device and shows life every 200 ms (a re-open attempt);
/// "stuck", it blocks for good without a sign of life (a thread hung in the driver).
final class LostCameraDouble: FrameSource, @unchecked Sendable {
    enum Mode { case waiting, stuck }
    let mode: Mode
    private let activity = Atomic<UInt64>(0)
    private let stop = AtomicFlag()
    private var thread: DedicatedThread?

    init(mode: Mode) { self.mode = mode }

    var name: String { "/dev/video-double" }
    var maxFrameSize: (width: Int, height: Int) { (64, 64) }
    var fileNames: [String] { [] }
    var isLive: Bool { true }
    var liveness: SourceLiveness? { SourceLiveness(waiting: true, lastActivityNs: activity.load(ordering: .relaxed)) }

    func open() throws {}
    func nextFrame() throws -> FrameLease? { nil }
    func requestStop() { stop.set() }
    func close() {}

    /// Runs the capture side on its own thread, as the pipeline's capture thread would.
    func startCaptureThread() {
        activity.store(Clock.monotonicNs(), ordering: .relaxed)
        thread = DedicatedThread(name: "camclass-capdbl") { [self] in
            switch mode {
            case .waiting:
                while !stop.isSet {
                    usleep(200_000)  // the backoff between re-open attempts
                    activity.store(Clock.monotonicNs(), ordering: .relaxed)
                }
            case .stuck:
                while !stop.isSet { usleep(50_000) }  // no sign of life: stuck
            }
        }
    }

    func join() { stop.set(); thread?.join() }
}

/// The service watchdog and a lost camera (issue 11, known item): a source that waits for its
/// device keeps the WATCHDOG=1 pings going (no restart after WatchdogSec), while a stuck capture
/// thread or a pipeline that simply stopped lets them stop. The real notify socket, the real
/// service; a test double for the camera.
/// Environment: none.
@Suite(.serialized) struct HardeningWatchdogTests {
    /// Runs the liveness service for `seconds` with WATCHDOG_USEC = 1 s; returns the pings' times
    /// (seconds since start).
    func pings(for source: LostCameraDouble?, seconds: Double) async throws -> [Double] {
        let dir = TestEnv.tempDir("wdlive")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try NotifyListener(abstract: true, dir: dir)
        defer { listener.stop() }
        let notifier = ProgressNotifier(notifier: SystemdNotifier(socket: listener.name, watchdogUsec: "1000000", watchdogPid: nil))
        source?.startCaptureThread()
        defer { source?.join() }
        let service = LivenessWatchdogService(notifier: notifier, liveness: { source?.liveness })
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)],
                                                      logger: Logger(label: "wd", factory: { _ in SwiftLogNoOpLogHandler() })))
        let start = Date()
        let run = Task { try await group.run() }
        try await Task.sleep(for: .seconds(seconds))
        await group.triggerGracefulShutdown()
        try await run.value
        return listener.messages.filter { $0.fields["WATCHDOG"] == "1" }.map { $0.time.timeIntervalSince(start) }
    }

    @Test func aCameraWaitedForKeepsTheWatchdogFedBeyondWatchdogSec() async throws {
        let times = try await pings(for: LostCameraDouble(mode: .waiting), seconds: 3)
        #expect(times.count >= 6, "\(times.count) pings in 3 s with WatchdogSec 1 s")
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        #expect((gaps.max() ?? 9) < 1.0, "a \(gaps.max() ?? 9) s gap: systemd would have killed the daemon")
        #expect((times.last ?? 0) > 2.5, "pings stopped at \(times.last ?? 0) s")
    }

    @Test func aStuckCaptureThreadStopsThePings() async throws {
        let times = try await pings(for: LostCameraDouble(mode: .stuck), seconds: 3)
        // Its last sign of life is at the start: pings may continue for the freshness window
        // (1.2 s), never to the end.
        #expect((times.last ?? 0) < 1.6, "pinged at \(times.last ?? 0) s for a capture thread silent since 0 s")
    }

    @Test func aSourceThatDoesNotWaitNeverFeedsTheWatchdog() async throws {
        let times = try await pings(for: nil, seconds: 1.5)
        #expect(times.isEmpty, "a stalled pipeline (no waiting source) pinged: \(times)")
    }

    /// The daemon's `source: auto` without a camera and without a `samples` folder (the installed
    /// service) waits for a camera instead of a relative folder it does not have.
    @Test func autoWithoutCameraOrSamplesWaitsForACamera() throws {
        let missing = TestEnv.tempDir("auto") + "/no-samples"
        #expect(autoSourcePath(found: nil, samples: missing) == autoDefaultCamera)
        #expect(autoSourcePath(found: "/dev/video3", samples: missing) == "/dev/video3")
        let present = TestEnv.tempDir("auto-samples")
        #expect(autoSourcePath(found: nil, samples: present) == present)
        #expect(isCameraPath(autoDefaultCamera), "the default camera is waited for as a camera")
    }
}
