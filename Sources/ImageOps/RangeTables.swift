/// JFIF (JPEG) full-range YCbCr → BT.601 limited range (Y 0…255 → 16…235, Cb/Cr → 16…240 around
/// 128): the range NV12/YUYV cameras deliver and the engines' NV12 input assumes. Two 256-entry
/// tables made once; `apply` allocates nothing.
/// Thread context: immutable after `init`; `apply` on any thread, for memory the caller owns.
public final class FullToLimitedRange: @unchecked Sendable {
    private let y: UnsafeMutablePointer<UInt8>
    private let c: UnsafeMutablePointer<UInt8>

    public init() {
        y = .allocate(capacity: 256)
        c = .allocate(capacity: 256)
        for v in 0..<256 {
            y[v] = UInt8(16 + (v * 219 + 127) / 255)
            c[v] = UInt8(clamping: 128 + ((v - 128) * 224 + (v >= 128 ? 127 : -127)) / 255)
        }
    }

    deinit {
        y.deallocate()
        c.deallocate()
    }

    /// Maps every visible pixel of `v` in place.
    public func apply(_ v: NV12MutableView) {
        let w = v.layout.width, h = v.layout.height
        for row in 0..<h {
            let p = v.y + row * v.layout.strideY
            for x in 0..<w { p[x] = y[Int(p[x])] }
        }
        for row in 0..<h / 2 {
            let p = v.uv + row * v.layout.strideUV
            for x in 0..<w { p[x] = c[Int(p[x])] }
        }
    }
}
