import Glibc

/// A fixed-capacity byte buffer for building one record at a time without allocating.
/// Writes past the capacity are cut off and flagged (`overflowed`), never reallocated.
/// Thread context: single owner.
public struct ByteWriter: ~Copyable {
    public let base: UnsafeMutablePointer<UInt8>
    public let capacity: Int
    public private(set) var count = 0
    public private(set) var overflowed = false

    public init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    public mutating func reset() {
        count = 0
        overflowed = false
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    @inline(__always)
    public mutating func byte(_ b: UInt8) {
        guard count < capacity else { overflowed = true; return }
        base[count] = b
        count += 1
    }

    public mutating func ascii(_ s: StaticString) {
        s.withUTF8Buffer { raw($0) }
    }

    public mutating func raw(_ p: UnsafeBufferPointer<UInt8>) {
        guard count + p.count <= capacity else { overflowed = true; return }
        (base + count).update(from: p.baseAddress!, count: p.count)
        count += p.count
    }

    public mutating func raw(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { raw($0) }
    }

    /// A JSON string literal from a Swift string (escaping quotes, backslashes, control bytes).
    public mutating func jsonString(_ s: String) {
        byte(0x22)
        var s = s
        s.withUTF8 { p in
            for b in p {
                switch b {
                case 0x22: byte(0x5C); byte(0x22)
                case 0x5C: byte(0x5C); byte(0x5C)
                case 0x0A: byte(0x5C); byte(UInt8(ascii: "n"))
                case 0..<0x20:
                    ascii("\\u00")
                    byte(hex(b >> 4)); byte(hex(b & 0xF))
                default: byte(b)
                }
            }
        }
        byte(0x22)
    }

    @inline(__always) private func hex(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x61 + v - 10 }

    public mutating func int(_ v: Int64) {
        if v < 0 { byte(UInt8(ascii: "-")); uint(UInt64(-v)) } else { uint(UInt64(v)) }
    }

    public mutating func uint(_ v: UInt64) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        var x = v
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(x % 10) + 0x30
                x /= 10
                n += 1
            } while x > 0
            while n > 0 { n -= 1; byte(d[n]) }
        }
    }

    /// Fixed-point decimal with `decimals` digits (0…9); NaN/inf become `null` (valid JSON).
    public mutating func fixed(_ v: Double, decimals: Int) {
        guard v.isFinite else { ascii("null"); return }
        var scale: UInt64 = 1
        for _ in 0..<decimals { scale *= 10 }
        let negative = v < 0
        let scaled = UInt64((abs(v) * Double(scale)).rounded())
        if negative && scaled != 0 { byte(UInt8(ascii: "-")) }
        uint(scaled / scale)
        guard decimals > 0 else { return }
        byte(UInt8(ascii: "."))
        var frac = scaled % scale
        var div = scale / 10
        while div > 0 {
            byte(UInt8(frac / div) + 0x30)
            frac %= div
            div /= 10
        }
    }

    /// RFC 3339 UTC time with microseconds, e.g. `2026-11-23T09:20:00.123456Z`.
    public mutating func rfc3339(realtimeNs: UInt64) { rfc3339(realtimeNs: realtimeNs, fractionDigits: 6) }

    /// Same with milliseconds, for the human-readable log format.
    public mutating func rfc3339Millis(realtimeNs: UInt64) { rfc3339(realtimeNs: realtimeNs, fractionDigits: 3) }

    private mutating func rfc3339(realtimeNs: UInt64, fractionDigits: Int) {
        var t = time_t(realtimeNs / 1_000_000_000)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        pad(Int(tm.tm_year) + 1900, 4); byte(UInt8(ascii: "-"))
        pad(Int(tm.tm_mon) + 1, 2); byte(UInt8(ascii: "-"))
        pad(Int(tm.tm_mday), 2); byte(UInt8(ascii: "T"))
        pad(Int(tm.tm_hour), 2); byte(UInt8(ascii: ":"))
        pad(Int(tm.tm_min), 2); byte(UInt8(ascii: ":"))
        pad(Int(tm.tm_sec), 2); byte(UInt8(ascii: "."))
        let unit: UInt64 = fractionDigits == 3 ? 1_000_000 : 1000
        pad(Int(realtimeNs % 1_000_000_000 / unit), fractionDigits); byte(UInt8(ascii: "Z"))
    }

    private mutating func pad(_ v: Int, _ width: Int) {
        var div = 1
        for _ in 1..<width { div *= 10 }
        var x = v
        while div > 0 {
            byte(UInt8(x / div % 10) + 0x30)
            x %= div
            div /= 10
        }
    }
}

extension String {
    /// `v` with exactly `decimals` digits after the point, as the records write numbers (no locale).
    public init(fixed v: Double, decimals: Int) {
        var w = ByteWriter(capacity: 64)
        w.fixed(v, decimals: decimals)
        self = String(decoding: w.bytes, as: UTF8.self)
    }
}

extension ByteWriter {
    /// Builds a one-off record (hello, status, reload, errors — never per frame) with room to spare:
    /// when `build` overflows, it runs again with twice the capacity, so the record is never cut.
    public static func whole(capacity: Int, _ build: (inout ByteWriter) -> Void) -> [UInt8] {
        var room = max(64, capacity)
        while true {
            var w = ByteWriter(capacity: room)
            build(&w)
            if !w.overflowed { return Array(w.bytes) }
            room *= 2
        }
    }
}
