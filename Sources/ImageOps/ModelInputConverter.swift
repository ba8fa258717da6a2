import CYUV

/// Why a frame could not become model input (the frame is dropped and counted).
public enum FrameConversionError: Error, Equatable, CustomStringConvertible {
    case truncated(got: Int, need: Int)
    case corrupt(String)

    public var description: String {
        switch self {
        case .truncated(let got, let need): return "short frame: \(got) bytes, \(need) needed"
        case .corrupt(let why): return why
        }
    }
}

/// Turns a captured frame's payload into the model input, on a worker thread.
/// (Interim version: full-size conversion into scratch, then the scale.)
/// Thread context: one per worker thread.
public final class ModelInputConverter {
    private let scratch: NV12Buffer
    private let jpeg: JPEGDecoder
    private let rangeY: UnsafeMutablePointer<UInt8>
    private let rangeUV: UnsafeMutablePointer<UInt8>

    public init(maxWidth: Int, maxHeight: Int, inputWidth: Int, inputHeight: Int) {
        scratch = NV12Buffer(width: max(2, maxWidth & ~1), height: max(2, maxHeight & ~1))
        jpeg = JPEGDecoder(maxWidth: max(2, maxWidth), maxHeight: max(2, maxHeight))
        rangeY = .allocate(capacity: 256)
        rangeUV = .allocate(capacity: 256)
        for v in 0..<256 {
            rangeY[v] = UInt8(16 + (v * 219 + 127) / 255)
            rangeUV[v] = UInt8(clamping: 128 + ((v - 128) * 224 + (v >= 128 ? 127 : -127)) / 255)
        }
    }

    deinit {
        rangeY.deallocate()
        rangeUV.deallocate()
    }

    public func convert(_ payload: FramePayload, into input: NV12MutableView, mode: ResizeMode) throws(FrameConversionError) {
        switch payload {
        case .nv12(let v):
            NV12Ops.scale(v, into: input, mode: mode)
        case .yuyv(let p, let stride, let w, let h):
            guard w <= scratch.layout.width, h <= scratch.layout.height else { throw .corrupt("frame \(w)x\(h) larger than negotiated") }
            let dst = scratch.view.cropped(width: w, height: h)
            do { try NV12Ops.convertYUYV(p, stride: stride, into: dst) } catch { throw .corrupt("\(error)") }
            NV12Ops.scale(dst.readOnly, into: input, mode: mode)
        case .mjpeg(let bytes, let w, let h):
            let dst = scratch.view.cropped(width: min(w & ~1, scratch.layout.width), height: min(h & ~1, scratch.layout.height))
            do { try jpeg.decode(bytes, into: dst) } catch { throw .corrupt("\(error)") }
            NV12Ops.scale(dst.readOnly, into: input, mode: mode)
            let l = input.layout
            for row in 0..<l.height {
                let p = input.y + row * l.strideY
                for x in 0..<l.width { p[x] = rangeY[Int(p[x])] }
            }
            for row in 0..<l.height / 2 {
                let p = input.uv + row * l.strideUV
                for x in 0..<l.width { p[x] = rangeUV[Int(p[x])] }
            }
        }
    }
}
