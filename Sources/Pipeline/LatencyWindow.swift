import WireFormat
import Support

/// Per-stage latencies of the last N seconds for `status`: a fixed-size ring of samples written
/// by the publishing worker (no allocation per frame); percentiles are computed on request.
/// Thread context: `record` from the publishing worker; `summary` from any thread (the socket's I/O
/// thread answering `status`).
public final class LatencyWindow: @unchecked Sendable {
    public struct Sample: Sendable {
        public var timeNs: UInt64 = 0       // monotonic, when the record was published
        public var preprocessNs: UInt64 = 0
        public var inferenceNs: UInt64 = 0
        /// Queueing and re-ordering: total minus preprocess and inference.
        public var waitNs: UInt64 = 0
        /// The publishing worker's time in the sinks (encode + hand-off).
        public var publishNs: UInt64 = 0
        public var totalNs: UInt64 = 0
        /// Frames captured so far (for the input rate).
        public var captured = 0
        public init() {}
    }

    public struct Summary: Sendable {
        public var windowSeconds: Double
        public var fpsIn: Double
        public var fpsOut: Double
        public var stages: [StatusReport.Stage]
    }

    public let capacity: Int
    public let windowNs: UInt64
    private let samples: UnsafeMutablePointer<Sample>
    private var head = 0
    private var count = 0
    private let lock = Condition()
    private let startNs = Clock.monotonicNs()

    /// - Parameters:
    ///   - seconds: the window `summary` covers.
    ///   - capacity: samples kept (the window is shorter when more frames than this arrive in it).
    public init(seconds: Double, capacity: Int = 8192) {
        self.capacity = max(16, capacity)
        windowNs = UInt64(max(0.1, seconds) * 1e9)
        samples = .allocate(capacity: self.capacity)
        samples.initialize(repeating: Sample(), count: self.capacity)
    }

    deinit { samples.deallocate() }

    public func record(_ s: Sample) {
        lock.locked {
            samples[(head + count) % capacity] = s
            if count < capacity { count += 1 } else { head = (head + 1) % capacity }
        }
    }

    /// Percentiles and rates over the samples of the last `windowNs` before `nowNs`.
    public func summary(nowNs: UInt64 = Clock.monotonicNs(), captured: Int) -> Summary {
        var window: [Sample] = []
        lock.locked {
            window.reserveCapacity(count)
            for i in 0..<count {
                let s = samples[(head + i) % capacity]
                if s.timeNs + windowNs >= nowNs { window.append(s) }
            }
        }
        // The window is shorter while the daemon is younger than it.
        let alive = nowNs > startNs ? nowNs - startNs : windowNs
        let span = Double(min(windowNs, alive)) / 1e9
        var fpsOut = 0.0, fpsIn = 0.0
        if let first = window.first, span > 0 {
            fpsOut = Double(window.count) / span
            let dt = Double(nowNs > first.timeNs ? nowNs - first.timeNs : 0) / 1e9
            if dt > 0 { fpsIn = Double(max(0, captured - first.captured)) / dt }
        }
        func stage(_ name: String, _ key: (Sample) -> UInt64) -> StatusReport.Stage {
            let v = window.map { Double(key($0)) / 1e6 }.sorted()
            func p(_ q: Double) -> Double {
                guard !v.isEmpty else { return 0 }
                // Nearest rank: the smallest value with at least q of the samples at or below it.
                let rank = Int((Double(v.count) * q).rounded(.up))
                return v[min(v.count - 1, max(0, rank - 1))]
            }
            return StatusReport.Stage(name: name, ms: StatusReport.Percentiles(p50: p(0.50), p95: p(0.95), p99: p(0.99)))
        }
        return Summary(windowSeconds: span, fpsIn: fpsIn, fpsOut: fpsOut, stages: [
            stage("preprocess", \.preprocessNs), stage("inference", \.inferenceNs), stage("wait", \.waitNs),
            stage("publish", \.publishNs), stage("total", \.totalNs),
        ])
    }
}
