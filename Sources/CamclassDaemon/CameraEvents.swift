import WireFormat
import Capture
import Publishing

/// Camera state records, published on the same sinks as classifications (socket and rolling log):
///
///     {"type":"camera","state":"lost","time":"…","source":"/dev/video0","reason":"VIDIOC_DQBUF: No such device"}
///     {"type":"camera","state":"streaming","time":"…","source":"/dev/video0","device":"/dev/video0",
///      "driver":"uvcvideo","card":"…","bus":"usb-…","format":"MJPEG","width":640,"height":480,
///      "fps":30.000,"buffers":4,"downtime_ms":1234}
///
/// `downtime_ms` appears when streaming resumes after a loss. Events are rare: encoding may allocate.
public enum CameraEventRecord {
    public static func encode(_ e: CameraStateChange, into w: inout ByteWriter) {
        w.reset()
        w.ascii("{\"type\":\"camera\",\"state\":")
        w.jsonString(e.state.rawValue)
        w.ascii(",\"time\":\"")
        w.rfc3339(realtimeNs: e.realtimeNs)
        w.ascii("\",\"source\":")
        w.jsonString(e.source)
        if let reason = e.reason {
            w.ascii(",\"reason\":")
            w.jsonString(reason)
        }
        if let f = e.format {
            w.ascii(",\"device\":")
            w.jsonString(f.device)
            w.ascii(",\"driver\":")
            w.jsonString(f.driver)
            w.ascii(",\"card\":")
            w.jsonString(f.card)
            w.ascii(",\"bus\":")
            w.jsonString(f.busInfo)
            w.ascii(",\"format\":")
            w.jsonString(f.format.rawValue)
            w.ascii(",\"width\":")
            w.int(Int64(f.width))
            w.ascii(",\"height\":")
            w.int(Int64(f.height))
            w.ascii(",\"fps\":")
            if let fps = f.fps { w.fixed(fps, decimals: 3) } else { w.ascii("null") }
            w.ascii(",\"buffers\":")
            w.int(Int64(f.buffers))
        }
        if let d = e.downtimeNs {
            w.ascii(",\"downtime_ms\":")
            w.uint(d / 1_000_000)
        }
        w.ascii("}\n")
    }

    /// An event handler for `V4L2Camera.setEventHandler` that publishes on `sinks`.
    public static func publisher(to sinks: [any RecordSink]) -> @Sendable (CameraStateChange) -> Void {
        { event in
            let line = ByteWriter.whole(capacity: 4096) { encode(event, into: &$0) }
            line.withUnsafeBytes { raw in for sink in sinks { sink.publish(raw) } }
        }
    }
}
