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
/// `downtime_ms` appears when streaming resumes after a loss. With a source name (several
/// sources), `source` is that name and `path` the configured path the event names:
///
///     {"type":"camera","state":"lost","time":"…","source":"front","path":"/dev/video0","reason":"…"}
///
/// Events are rare: encoding may allocate.
public enum CameraEventRecord {
    /// - Parameter name: the source's configured name; nil = the event's path is the `source`.
    public static func encode(_ e: CameraStateChange, name: String? = nil, into w: inout ByteWriter) {
        w.reset()
        w.ascii("{\"type\":\"camera\",\"state\":")
        w.jsonString(e.state.rawValue)
        w.ascii(",\"time\":\"")
        w.rfc3339(realtimeNs: e.realtimeNs)
        w.ascii("\",\"source\":")
        if let name {
            w.jsonString(name)
            w.ascii(",\"path\":")
        }
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
    /// - Parameter sourceName: the camera's configured source name: the record's `source` (so a
    ///   subscriber's `sources` filter applies to it); nil = the event's path, and the record goes
    ///   to every subscriber (one source, as before names).
    public static func publisher(to sinks: [any RecordSink], sourceName: String? = nil) -> @Sendable (CameraStateChange) -> Void {
        { event in
            let line = ByteWriter.whole(capacity: 4096) { encode(event, name: sourceName, into: &$0) }
            line.withUnsafeBytes { raw in
                let record = PublishedRecord(kind: .camera, json: raw, source: sourceName ?? "")
                for sink in sinks { sink.publish(record) }
            }
        }
    }
}
