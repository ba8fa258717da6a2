import WireFormat
import Inference
import Publishing

/// A human-readable line for one classification (the `--print` console output and `camclass
/// subscribe`): `2026-11-23T09:20:00.123Z #123 Egyptian cat 0.39 7.1 ms`.
public struct ClassificationResultLine: Sendable {
    public var text: String
}

public enum ConsoleLine {
    public static func format(_ r: ClassificationResult, labels: LabelSet, fileName: String? = nil) -> String {
        var w = ByteWriter(capacity: 256)
        w.rfc3339Millis(realtimeNs: r.realtimeNs)
        let time = String(decoding: w.bytes, as: UTF8.self)
        var s = "\(time) #\(r.seq)"
        if r.topCount > 0 {
            s += " \(labels.name(Int(r.topClasses[0]))) \(fixed(Double(r.topScores[0]), 2))"
        }
        s += " \(fixed(Double(r.totalNs) / 1e6, 1)) ms"
        if let fileName { s += " [\(fileName)]" }
        if r.dropped > 0 { s += " (dropped \(r.dropped))" }
        return s
    }

    public static func fixed(_ v: Double, _ decimals: Int) -> String {
        var w = ByteWriter(capacity: 64)
        w.fixed(v, decimals: decimals)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// Adapts a line printer to `buildDaemon(onResult:)`.
    public static func observer(_ printer: @escaping @Sendable (ClassificationResultLine) -> Void)
        -> @Sendable (ClassificationResult, LabelSet) -> Void {
        { r, labels in printer(ClassificationResultLine(text: format(r, labels: labels))) }
    }
}
