import Glibc

/// Geometry of an NV12 image: a full-resolution Y plane followed (not necessarily contiguously) by
/// an interleaved half-resolution UV plane. Widths and heights are even.
public struct NV12Layout: Sendable, Equatable, CustomStringConvertible {
    public var width: Int
    public var height: Int
    public var strideY: Int
    public var strideUV: Int

    public init(width: Int, height: Int, strideY: Int? = nil, strideUV: Int? = nil) {
        self.width = width
        self.height = height
        self.strideY = strideY ?? width
        self.strideUV = strideUV ?? width
    }

    public var yByteCount: Int { strideY * height }
    public var uvByteCount: Int { strideUV * (height / 2) }
    public var byteCount: Int { yByteCount + uvByteCount }
    public var description: String { "\(width)x\(height) NV12" }
}

/// A read-only view of NV12 pixels owned by someone else; valid only while the owner is.
public struct NV12ConstView: @unchecked Sendable {
    public let y: UnsafePointer<UInt8>
    public let uv: UnsafePointer<UInt8>
    public let layout: NV12Layout

    public init(y: UnsafePointer<UInt8>, uv: UnsafePointer<UInt8>, layout: NV12Layout) {
        self.y = y
        self.uv = uv
        self.layout = layout
    }
}

/// A writable view of NV12 pixels owned by someone else (a pool buffer, an engine's input tensor).
public struct NV12MutableView: @unchecked Sendable {
    public let y: UnsafeMutablePointer<UInt8>
    public let uv: UnsafeMutablePointer<UInt8>
    public let layout: NV12Layout

    public init(y: UnsafeMutablePointer<UInt8>, uv: UnsafeMutablePointer<UInt8>, layout: NV12Layout) {
        self.y = y
        self.uv = uv
        self.layout = layout
    }

    public var readOnly: NV12ConstView { NV12ConstView(y: y, uv: uv, layout: layout) }

    /// The same memory seen with a smaller width/height (strides unchanged).
    public func cropped(width: Int, height: Int) -> NV12MutableView {
        precondition(width <= layout.width && height <= layout.height)
        return NV12MutableView(y: y, uv: uv, layout: NV12Layout(
            width: width, height: height, strideY: layout.strideY, strideUV: layout.strideUV))
    }
}

/// NV12 pixels in one 64-byte aligned allocation, made once (at start-up) and reused.
/// Thread context: not synchronised; its owner decides who writes when.
public final class NV12Buffer: @unchecked Sendable {
    public let layout: NV12Layout
    public let bytes: UnsafeMutableRawPointer

    /// Rows are padded to `rowAlignment` bytes (SIMD-friendly and like camera/BPU buffers).
    public init(width: Int, height: Int, rowAlignment: Int = 64) {
        precondition(width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0,
                     "NV12 needs positive even dimensions, got \(width)x\(height)")
        let stride = (width + rowAlignment - 1) / rowAlignment * rowAlignment
        layout = NV12Layout(width: width, height: height, strideY: stride, strideUV: stride)
        bytes = UnsafeMutableRawPointer.allocate(byteCount: layout.byteCount, alignment: 64)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: layout.byteCount)
    }

    deinit { bytes.deallocate() }

    public var view: NV12MutableView {
        let y = bytes.assumingMemoryBound(to: UInt8.self)
        return NV12MutableView(y: y, uv: y + layout.yByteCount, layout: layout)
    }
}
