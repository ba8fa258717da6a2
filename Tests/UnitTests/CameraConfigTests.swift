import CamclassTestSupport
import CamclassTools
import Client
import WireFormat
import CamclassDaemon
import Capture
import Foundation
import Publishing
import Testing

/// The camera.* settings and the camera records the daemon publishes.
@Suite struct CameraConfigTests {
    @Test func cameraSectionParsesListsAndStrings() throws {
        let c = try DaemonConfig.parse(yaml: """
            source:
              path: /dev/v4l/by-id/usb-Cam-video-index0
            camera:
              width: 1280
              height: 720
              fps: 15
              formats: [MJPEG, yuyv]
              buffers: 6
              raw: true
              backoff_max_ms: 5000
              stall_timeout_ms: 500
            """, file: "t.yaml")
        #expect(c.source.path == "/dev/v4l/by-id/usb-Cam-video-index0")
        #expect(c.camera.width == 1280 && c.camera.height == 720 && c.camera.fps == 15)
        #expect(c.camera.formats == [.mjpeg, .yuyv])
        #expect(c.camera.buffers == 6 && c.camera.raw && c.camera.backoffMaxMs == 5000 && c.camera.stallTimeoutMs == 500)
        let s = try DaemonConfig.parse(yaml: "camera:\n  formats: \"YUYV, NV12\"\n", file: "t.yaml")
        #expect(s.camera.formats == [.yuyv, .nv12])
        let d = DaemonConfig()
        #expect(d.camera.formats == [.nv12, .yuyv, .mjpeg] && d.camera.buffers == 4 && !d.camera.raw)
    }

    @Test func badCameraSettingsNameTheKey() {
        for (yaml, key) in [("camera:\n  formats: [RGB24]\n", "camera.formats"),
                            ("camera:\n  buffers: 1\n", "camera.buffers"),
                            ("camera:\n  fps: 0\n", "camera.fps"),
                            ("camera:\n  stall_timeout_ms: 10\n", "camera.stall_timeout_ms"),
                            ("camera:\n  exposure: 3\n", "camera.exposure")] {
            #expect {
                _ = try DaemonConfig.parse(yaml: yaml, file: "t.yaml")
            } throws: { error in
                (error as? ConfigError)?.key == key
            }
        }
    }

    @Test func shippedConfigDocumentsEveryCameraKey() throws {
        let text = try String(contentsOfFile: TestEnv.repoRoot + "/config/camclassd.yaml", encoding: .utf8)
        for key in ["width", "height", "fps", "formats", "buffers", "raw", "backoff_max_ms", "stall_timeout_ms"] {
            #expect(text.contains("  \(key):"), "config/camclassd.yaml does not show camera.\(key)")
        }
        _ = try DaemonConfig.parse(yaml: text, file: "config/camclassd.yaml")
    }

    static func json(_ e: CameraStateChange) throws -> [String: Any] {
        var w = ByteWriter(capacity: 4096)
        CameraEventRecord.encode(e, into: &w)
        let line = String(decoding: w.bytes, as: UTF8.self)
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
        return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    }

    @Test func lostAndStreamingRecords() throws {
        let lost = try Self.json(CameraStateChange(state: .lost, source: "/dev/video0", reason: "VIDIOC_DQBUF: No such device \"x\"",
                                                   format: nil, downtimeNs: nil, monotonicNs: 1, realtimeNs: 1_700_000_000_000_000_000))
        #expect(lost["type"] as? String == "camera" && lost["state"] as? String == "lost")
        #expect(lost["reason"] as? String == "VIDIOC_DQBUF: No such device \"x\"")
        #expect((lost["time"] as? String)?.hasPrefix("2023-11-14T22:13:20") == true)
        let f = NegotiatedFormat(device: "/dev/video1", driver: "uvcvideo", card: "USB Camera", busInfo: "usb-0000:00:14.0-1",
                                 format: .mjpeg, fourcc: 0x4750_4A4D, width: 1280, height: 720, bytesPerLine: 0,
                                 sizeImage: 1_843_200, fps: 30, buffers: 4, exact: true)
        let up = try Self.json(CameraStateChange(state: .streaming, source: "/dev/v4l/by-id/usb-Cam", reason: nil, format: f,
                                                 downtimeNs: 2_345_000_000, monotonicNs: 2, realtimeNs: 1_700_000_000_000_000_000))
        #expect(up["state"] as? String == "streaming" && up["source"] as? String == "/dev/v4l/by-id/usb-Cam")
        #expect(up["device"] as? String == "/dev/video1" && up["format"] as? String == "MJPEG")
        #expect(up["width"] as? Int == 1280 && up["height"] as? Int == 720 && up["fps"] as? Double == 30)
        #expect(up["buffers"] as? Int == 4 && up["downtime_ms"] as? Int == 2345 && up["reason"] == nil)
    }
}
