import CamclassTestSupport
import CamclassDaemon
import Capture
import Foundation
import Support
import PropertyBased
import Testing

/// Several sources (issue 13): the `sources:` list, its inheritance from `source:`/`camera:`, its
/// errors, the `--source [NAME=]PATH` flags and what a reload sees. Unit tests: text in (and a few
/// symlinks in a temp dir), no camera, no model.
@Suite struct SourcesConfigTests {
    static let twoCameras = """
        source:
          fps: 10
        camera:
          width: 1280
          height: 720
          formats: [MJPEG]
        sources:
          - name: front
            path: /dev/v4l/by-id/usb-Front-video-index0
          - name: rear
            path: /dev/v4l/by-id/usb-Rear-video-index0
            weight: 2
            fps: 5
            camera:
              width: 640
              height: 360
        """

    func refusal(_ yaml: String, overrides: [ConfigOverride] = [], sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        do {
            _ = try DaemonConfig.parse(yaml: yaml, file: "c.yaml", overrides: overrides)
            Issue.record("accepted: \(yaml)", sourceLocation: sourceLocation)
        } catch {
            return error
        }
        return nil
    }

    @Test func entriesInheritTheTopLevelSectionsAndOverrideThem() throws {
        let c = try DaemonConfig.parse(yaml: Self.twoCameras, file: "c.yaml")
        #expect(c.sources.map(\.name) == ["front", "rear"])
        let front = c.sources[0], rear = c.sources[1]
        #expect(front.options.path == "/dev/v4l/by-id/usb-Front-video-index0" && front.options.name == "front")
        // Top-level camera: and source: keys are every entry's defaults...
        #expect(front.camera.width == 1280 && front.camera.height == 720 && front.camera.formats == [.mjpeg])
        #expect(front.options.fps == 10 && front.options.weight == 1)
        // ...and an entry's own keys win, key by key.
        #expect(rear.camera.width == 640 && rear.camera.height == 360 && rear.camera.formats == [.mjpeg])
        #expect(rear.options.fps == 5 && rear.options.weight == 2 && rear.options.loop)
        // The defaults sections stay as written.
        #expect(c.camera.width == 1280 && c.source.path == "auto")
    }

    @Test func withoutAListThereIsOneSourceNamedAfterItsPath() throws {
        #expect(DaemonConfig().sources.map(\.name) == ["auto"])
        let c = try DaemonConfig.parse(yaml: "source:\n  path: /dev/video2\n  fps: 7\ncamera:\n  width: 320\n", file: "c.yaml")
        #expect(c.sources.count == 1)
        #expect(c.sources[0].name == "video2" && c.sources[0].options.path == "/dev/video2" && c.sources[0].options.fps == 7)
        #expect(c.sources[0].camera.width == 320 && c.sources[0].options.weight == 1)
        let named = try DaemonConfig.parse(yaml: "source:\n  path: /dev/video2\n  name: wrist\n", file: "c.yaml")
        #expect(named.sources.map(\.name) == ["wrist"])
        // Code that sets source.path (the integration tests) still gets that one source.
        var d = DaemonConfig()
        d.source.path = "/srv/photos/"
        #expect(d.sources.map(\.name) == ["photos"] && d.sources[0].options.path == "/srv/photos/")
    }

    @Test(arguments: [
        ("/dev/video0", "video0"), ("samples", "samples"), ("/dev/v4l/by-id/usb-Logi_C920-video-index0", "usb-logi_c920-video-index0"),
        ("auto", "auto"), ("/srv/photos/", "photos"), ("cat photo.JPG", "cat-photo-jpg"), ("/", "source"), (".", "source"),
        ("/x/" + String(repeating: "a", count: 40), String(repeating: "a", count: 32)), ("Kamera-Ü", "kamera--"),
    ])
    func derivedNames(path: String, name: String) {
        #expect(SourceSpec.derivedName(path: path) == name)
        #expect(SourceSpec.isValidName(SourceSpec.derivedName(path: path)))
    }

    @Test(arguments: [
        ("sources:\n  - {name: a, path: /dev/video0}\n  - {name: a, path: /dev/video1}\n", "sources[1].name"),
        ("sources:\n  - {path: /dev/video0}\n  - {path: /srv/video0}\n", "sources[1].name"),
        ("sources:\n  - {name: Front, path: /dev/video0}\n", "sources[0].name"),
        ("sources:\n  - {name: " + String(repeating: "a", count: 33) + ", path: /dev/video0}\n", "sources[0].name"),
        ("sources:\n  - {name: a, path: /dev/video0}\n  - {name: b, path: /dev/video1, weight: 101}\n", "sources[1].weight"),
        ("sources:\n  - {name: a, path: /dev/video0, weight: 0}\n", "sources[0].weight"),
        ("sources:\n  - {name: a, path: /dev/video0}\n  - {name: b, path: /dev/video1, camera: {width: 9000}}\n", "sources[1].camera.width"),
        ("sources:\n  - {name: a, path: /dev/video0, camera: {exposure: 3}}\n", "sources[0].camera.exposure"),
        ("sources:\n  - {name: a, path: /dev/video0, camera: 5}\n", "sources[0].camera"),
        ("sources:\n  - {name: a, path: /dev/video0, colour: red}\n", "sources[0].colour"),
        ("sources:\n  - {name: a}\n", "sources[0].path"),
        ("sources:\n  - /dev/video0\n", "sources[0]"),
        ("sources:\n  - {name: a, path: /dev/video0}\n  - {name: b, path: /dev/video0}\n", "sources[1].path"),
        ("sources:\n  - {name: a, path: auto}\n  - {name: b, path: auto}\n", "sources[1].path"),
        ("sources: []\n", "sources"),
        ("sources:\n", "sources"),
        ("sources: {a: /dev/video0}\n", "sources"),
        ("sources:\n" + (0..<17).map { "  - {name: s\($0), path: /dev/video\($0)}\n" }.joined(), "sources"),
        ("source:\n  path: /dev/video0\nsources:\n  - {name: a, path: /dev/video1}\n", "source.path"),
        ("source:\n  name: x\nsources:\n  - {name: a, path: /dev/video1}\n", "source.name"),
        ("source:\n  weight: 2\n", "source.weight"),
        ("source:\n  name: no/slash\n", "source.name"),
    ])
    func badListsNameTheKey(yaml: String, key: String) throws {
        let e = try #require(refusal(yaml))
        #expect(e.file == "c.yaml" && e.key == key, "\(e)")
        #expect(!e.reason.isEmpty)
    }

    @Test func theErrorSaysWhichSourceAndValue() throws {
        let e = try #require(refusal("sources:\n  - {name: a, path: /dev/video0}\n  - {name: a, path: /dev/video1}\n"))
        #expect(e.value == "a" && e.reason.contains("sources[0]"), "\(e)")
        let w = try #require(refusal("sources:\n  - {name: a, path: /dev/video0, weight: 500}\n"))
        #expect(w.value == "500" && w.reason.contains("1…100"), "\(w)")
        let both = try #require(refusal("source:\n  path: /dev/video0\nsources:\n  - {name: a, path: /dev/video1}\n"))
        #expect(both.reason.contains("use either source.path") && both.reason.contains("sources list"), "\(both)")
    }

    @Test func oneCameraThroughTwoLinksIsRefusedAReplayFolderTwiceIsNot() throws {
        let dir = TestEnv.tempDir("links")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Two different links to one character device (as by-id and by-path links are to /dev/videoN).
        try FileManager.default.createSymbolicLink(atPath: dir + "/by-id-cam", withDestinationPath: "/dev/null")
        try FileManager.default.createSymbolicLink(atPath: dir + "/by-path-cam", withDestinationPath: dir + "/by-id-cam")
        let e = try #require(refusal("sources:\n  - {name: a, path: \(dir)/by-id-cam}\n  - {name: b, path: \(dir)/by-path-cam}\n"))
        #expect(e.key == "sources[1].path" && e.value == dir + "/by-path-cam" && e.reason.contains("/dev/null"), "\(e)")
        // Replay is read-only: one folder may feed two sources, under different names.
        try FileManager.default.createDirectory(atPath: dir + "/photos", withIntermediateDirectories: true)
        let c = try DaemonConfig.parse(yaml: "sources:\n  - {name: a, path: \(dir)/photos}\n  - {name: b, path: \(dir)/photos, fps: 1}\n",
                                       file: "c.yaml")
        #expect(c.sources.map(\.name) == ["a", "b"] && c.sources[1].options.fps == 1)
    }

    @Test func checkFilesNamesTheEntryOfAMissingReplayFolder() throws {
        let dir = TestEnv.tempDir("srcchk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "model: m.onnx\n".write(toFile: dir + "/m.model.yaml", atomically: true, encoding: .utf8)
        let yaml = "model:\n  path: \(dir)/m.model.yaml\nlog:\n  path: \(dir)/x.log\nsources:\n  - {name: a, path: \(dir)}\n  - {name: b, path: \(dir)/gone}\n"
        let c = try DaemonConfig.parse(yaml: yaml, file: dir + "/c.yaml")
        #expect { try c.checkFiles() } throws: { e in
            let e = e as? ConfigError
            return e?.key == "sources[1].path" && e?.value == dir + "/gone" && e?.file == dir + "/c.yaml"
        }
        let f = try DaemonConfig.parse(yaml: "model:\n  path: \(dir)/m.model.yaml\nlog:\n  path: \(dir)/x.log\n", file: dir + "/c.yaml",
                                       overrides: DaemonConfig.sourceFlags(["a=\(dir)", "b=\(dir)/gone"]))
        #expect { try f.checkFiles() } throws: { e in
            let e = e as? ConfigError
            return e?.file == "command line" && e?.key == "--source (sources[1].path)" && e?.value == dir + "/gone"
        }
    }

    @Test func namedSourceFlagsReplaceTheListAndInheritTheSections() throws {
        let flags = try DaemonConfig.sourceFlags(["front=/dev/video0", "rear=/dev/v4l/by-id/usb-x=y"])
        let c = try DaemonConfig.parse(yaml: Self.twoCameras, file: "c.yaml", overrides: flags)
        #expect(c.sources.map(\.name) == ["front", "rear"])
        #expect(c.sources.map(\.options.path) == ["/dev/video0", "/dev/v4l/by-id/usb-x=y"])
        // Defaults from the file's top-level sections, not from the replaced entries.
        #expect(c.sources.allSatisfy { $0.camera.width == 1280 && $0.options.fps == 10 && $0.options.weight == 1 })
        #expect(c.written["sources.rear.path"] == "/dev/v4l/by-id/usb-x=y" && c.written["sources.rear.weight"] == nil)
        // Without a file.
        let d = try DaemonConfig.resolve(file: nil, overrides: DaemonConfig.sourceFlags(["a=/x", "b=/y"]), systemFile: false)
        #expect(d.sources.map(\.name) == ["a", "b"] && d.sources.map(\.options.path) == ["/x", "/y"])
    }

    @Test func aBareSourceFlagIsSourcePathAsBefore() throws {
        let flags = try DaemonConfig.sourceFlags(["samples"])
        #expect(flags == [ConfigOverride(flag: "--source", section: "source", key: "path", value: "samples")])
        let c = try DaemonConfig.parse(yaml: Self.twoCameras, file: "c.yaml", overrides: flags)
        #expect(c.source.path == "samples" && c.sources.map(\.name) == ["samples"] && c.sources[0].camera.width == 1280)
        // A value whose text before '=' is not a name is a path; so is an '=' after a '/'.
        for path in ["./a=b", "/srv/x=y", "Front=/dev/video0", "=x"] {
            #expect(try DaemonConfig.sourceFlags([path]) == [ConfigOverride(flag: "--source", section: "source", key: "path", value: path)])
        }
        // Several bare paths: one source each, named after its path.
        let two = try DaemonConfig.resolve(file: nil, overrides: DaemonConfig.sourceFlags(["/dev/video0", "/dev/video2"]), systemFile: false)
        #expect(two.sources.map(\.name) == ["video0", "video2"])
    }

    @Test func badSourceFlagsNameTheFlag() throws {
        for values in [["a=/dev/video0", "/dev/video1"], [String(repeating: "a", count: 33) + "=/dev/video0"]] {
            #expect { _ = try DaemonConfig.sourceFlags(values) } throws: { e in
                let e = e as? ConfigError
                return e?.file == "command line" && e?.key == "--source"
            }
        }
        for (values, bad) in [(["a=/dev/video0", "a=/dev/video1"], "a=/dev/video1"), (["a=/dev/video0", "b=/dev/video0"], "b=/dev/video0"),
                              (["/dev/video0", "/srv/video0"], "/srv/video0"), (["a="], "a=")] {
            #expect {
                _ = try DaemonConfig.resolve(file: nil, overrides: DaemonConfig.sourceFlags(values), systemFile: false)
            } throws: { e in
                let e = e as? ConfigError
                return e?.file == "command line" && e?.key.hasPrefix("--source") == true && (e?.value == bad || e?.value == "")
            }
        }
    }

    @Test func otherFlagsApplyToEverySource() throws {
        let c = try DaemonConfig.parse(yaml: Self.twoCameras, file: "c.yaml", overrides: [
            ConfigOverride(flag: "--fps", section: "source", key: "fps", value: "2"),
            ConfigOverride(flag: "--once", section: "source", key: "loop", value: "false"),
        ])
        #expect(c.sources.allSatisfy { $0.options.fps == 2 && !$0.options.loop })
        #expect(c.sources[1].options.weight == 2)
    }

    @Test func writtenNamesTheSourceAndAReloadCanDiffByName() throws {
        let a = try DaemonConfig.parse(yaml: Self.twoCameras, file: "c.yaml")
        #expect(a.written["sources.front.path"] == "/dev/v4l/by-id/usb-Front-video-index0")
        #expect(a.written["sources.rear.weight"] == "2" && a.written["sources.rear.fps"] == "5")
        #expect(a.written["sources.rear.camera.width"] == "640" && a.written["sources.rear.camera.height"] == "360")
        #expect(a.written["sources.front.camera.width"] == nil && a.written["camera.width"] == "1280")
        // The same entries in another order, one changed: compared by name, only `rear` differs.
        let b = try DaemonConfig.parse(yaml: """
            source:
              fps: 10
            camera:
              width: 1280
              height: 720
              formats: [MJPEG]
            sources:
              - name: rear
                path: /dev/v4l/by-id/usb-Rear-video-index0
                weight: 2
                fps: 5
                camera:
                  width: 800
                  height: 360
              - name: front
                path: /dev/v4l/by-id/usb-Front-video-index0
            """, file: "c.yaml")
        let old = Dictionary(uniqueKeysWithValues: a.sources.map { ($0.name, $0) })
        let new = Dictionary(uniqueKeysWithValues: b.sources.map { ($0.name, $0) })
        #expect(old["front"] == new["front"] && old["rear"] != new["rear"])
        #expect(a != b)
        let changed = Set(a.written.keys).union(b.written.keys).filter { a.written[$0] != b.written[$0] }
        #expect(changed == ["sources.rear.camera.width"])
    }
}

/// The property of ConfigPropertyTests for the keys of a `sources:` entry: whatever value is
/// written, the file is accepted or the error names the file and that entry's key.
@Suite("Sources entry values, generated")
struct SourcesPropertyTests {
    static let entryKeys = ["name", "path", "fps", "loop", "max_pixels", "weight"]
    static let cameraKeys = ["width", "height", "fps", "formats", "buffers", "raw", "backoff_max_ms", "stall_timeout_ms", "max_pixels"]
    static let keys = entryKeys.map { "sources[0].\($0)" } + cameraKeys.map { "sources[0].camera.\($0)" }

    static func check(_ key: String, _ value: String) {
        let k = key.split(separator: ".").last!
        let text: String
        if key.hasPrefix("sources[0].camera.") {
            text = "sources:\n  - path: /dev/video0\n    camera:\n      \(k): \(value)\n"
        } else if k == "path" {
            text = "sources:\n  - path: \(value)\n"
        } else {
            text = "sources:\n  - path: /dev/video0\n    \(k): \(value)\n"
        }
        do {
            let c = try DaemonConfig.parse(yaml: text, file: "p.yaml")
            #expect(c.sources.count == 1 && SourceSpec.isValidName(c.sources[0].name), "\(key): \(value)")
        } catch {
            #expect(error.file == "p.yaml", "\(key): \(value) → \(error)")
            #expect(error.key == key, "\(key): \(value) → \(error)")
            #expect(!error.reason.isEmpty)
        }
    }

    @Test("every entry key: a generated value parses or names the key", arguments: keys)
    func everyKey(_ key: String) async {
        await propertyCheck(count: 100, input: ConfigValueGen.value) { value in Self.check(key, value) }
    }

    @Test("every entry key: edge values parse or name the key", arguments: keys)
    func everyKeyEdges(_ key: String) {
        for value in ConfigValueGen.edges { Self.check(key, value) }
    }
}
