/// Softmax and top-k over a score vector, in place and without allocating.
/// Thread context: pure functions.
public enum Postprocess {
    /// A model that outputs NaN or ±infinity has failed for this frame (softmax and top-k would
    /// make an empty or all-zero result of it): the engines throw, and the frame counts as an
    /// inference error. One pass, no allocation.
    public static func requireFinite(_ v: UnsafeBufferPointer<Float>) throws {
        for (i, x) in v.enumerated() where !x.isFinite {
            var bad = 0
            for y in v where !y.isFinite { bad += 1 }
            throw InferenceError.nonFiniteOutput(index: i, value: x, count: bad, of: v.count)
        }
    }

    /// Numerically stable softmax in place.
    public static func softmax(_ v: UnsafeMutableBufferPointer<Float>) {
        guard !v.isEmpty else { return }
        var m = -Float.infinity
        for x in v where x > m { m = x }
        var sum: Float = 0
        for i in v.indices {
            let e = (v[i] - m).exp
            v[i] = e
            sum += e
        }
        let inv = sum > 0 ? 1 / sum : 0
        for i in v.indices { v[i] *= inv }
    }

    /// The `k` best (index, score) pairs, best first, written to `classes`/`scores` (capacity ≥ k).
    /// Returns how many were written (min(k, v.count)). Ties keep the lower class index first.
    @discardableResult
    public static func topK(_ v: UnsafeBufferPointer<Float>, k: Int,
                            classes: UnsafeMutableBufferPointer<Int32>,
                            scores: UnsafeMutableBufferPointer<Float>) -> Int {
        let n = min(k, v.count, classes.count, scores.count)
        var filled = 0
        for i in v.indices {
            let x = v[i]
            if x.isNaN { continue }
            if filled == n && !(x > scores[n - 1]) { continue }
            // Insertion into the sorted prefix.
            var pos = filled < n ? filled : n - 1
            while pos > 0 && x > scores[pos - 1] {
                if pos < n { scores[pos] = scores[pos - 1]; classes[pos] = classes[pos - 1] }
                pos -= 1
            }
            scores[pos] = x
            classes[pos] = Int32(i)
            if filled < n { filled += 1 }
        }
        return filled
    }
}

extension Float {
    @inline(__always) var exp: Float { Float(Glibc.expf(self)) }
}

import Glibc
