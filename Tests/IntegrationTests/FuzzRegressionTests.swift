import CamclassTestSupport
import Foundation
import FuzzTargets
import Testing

/// The fuzz targets' seed corpus and findings, fed through the same entry points `make fuzz` uses
/// (`FuzzTarget.run`): each input must come back accepted or rejected with a message, as noted —
/// a trap or a broken invariant (error without the file, reply that is not one JSON line) fails.
@Suite("Fuzz corpus and findings")
struct FuzzRegressionTests {
    static let root = TestEnv.repoRoot + "/Tests/Fuzz"

    static func input(_ dir: String, _ name: String) throws -> [UInt8] {
        let path = "\(root)/\(dir)/\(name)"
        guard let data = FileManager.default.contents(atPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        return [UInt8](data)
    }

    static func files(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(dir)")) ?? []).sorted()
    }

    @Test("every seed of every target goes through without a trap", arguments: FuzzTarget.allCases)
    func seeds(_ target: FuzzTarget) throws {
        let names = Self.files("corpus/\(target.rawValue)")
        #expect(names.count >= 2, "the seed corpus of \(target.rawValue) is missing")
        for name in names {
            let outcome = target.run(try Self.input("corpus/\(target.rawValue)", name))
            if case .rejected(let why) = outcome { #expect(!why.isEmpty, "\(name)") }
        }
    }

    /// The valid seeds are accepted (so the targets reach past the first check), the broken ones
    /// are refused with the error the user would see.
    @Test("seed outcomes", arguments: [
        (FuzzTarget.requestParser, "subscribe-all", nil), (.requestParser, "subscribe-full", nil),
        (.requestParser, "subscribe-labels", nil), (.requestParser, "status-last", nil),
        (.requestParser, "bad-values", "max_rate_hz"), (.requestParser, "bad-requests", "unknown request 'nope'"),
        (.config, "camclassd.yaml", nil), (.config, "small.yaml", nil), (.config, "aliases.yaml", "unknown section"),
        (.coarseGroups, "coarse-groups.yaml", nil), (.coarseGroups, "small.yaml", nil),
        (.mqttConfig, "mqtt.yaml", nil), (.mqttConfig, "small.yaml", nil),
        (.cameraIntake, "mjpeg-32x24", nil), (.cameraIntake, "nv12-16x8", nil), (.cameraIntake, "yuyv-16x8-pad4", nil),
        (.replayJPEG, "chelsea-32x24.jpg", nil), (.replayJPEG, "gray-17x9.jpg", nil), (.replayJPEG, "cmyk-8x8.jpg", nil),
        (.replayJPEG, "progressive-444-16x16.jpg", nil), (.replayJPEG, "422-20x10.jpg", nil),
        (.nv12File, "crop_8x4", nil), (.nv12File, "wrong-size", "NV12 needs 24"), (.nv12File, "bad-name", "must be named"),
    ] as [(FuzzTarget, String, String?)])
    func seedOutcome(_ target: FuzzTarget, _ name: String, _ rejection: String?) throws {
        let outcome = target.run(try Self.input("corpus/\(target.rawValue)", name))
        if let rejection {
            guard case .rejected(let why) = outcome else { Issue.record("\(name) was accepted"); return }
            #expect(why.contains(rejection), "\(name): \(why)")
        } else {
            #expect(outcome == .accepted, "\(name): \(outcome)")
        }
    }

    /// `make fuzz` findings (Tests/Fuzz/regressions/<target>/): both so far broke the nv12-file
    /// harness's own file naming (a name over 255 bytes once invalid UTF-8 became U+FFFD; a "/"
    /// hidden in a Character with a combining mark), not camclassd; the name is now made safe and
    /// the replay source refuses the files with its own errors.
    @Test("fuzz findings are refused with a clear error", arguments: [
        (FuzzTarget.nv12File, "long-invalid-utf8-name", "empty file"),
        (.nv12File, "slash-with-combining-mark", "empty file"),
    ])
    func findings(_ target: FuzzTarget, _ name: String, _ rejection: String) throws {
        #expect(Self.files("regressions/\(target.rawValue)").contains(name))
        let outcome = target.run(try Self.input("regressions/\(target.rawValue)", name))
        guard case .rejected(let why) = outcome else { Issue.record("\(name) was accepted"); return }
        #expect(why.contains(rejection), "\(name): \(why)")
    }

    @Test("a truncated MJPEG frame is dropped as corrupt, not delivered")
    func truncatedMJPEG() throws {
        let whole = try Self.input("corpus/camera-intake", "mjpeg-32x24")
        let outcome = FuzzTarget.cameraIntake.run(Array(whole.prefix(200)))
        guard case .rejected(let why) = outcome else { Issue.record("accepted"); return }
        #expect(why.contains("corrupt"), "\(why)")
    }
}
