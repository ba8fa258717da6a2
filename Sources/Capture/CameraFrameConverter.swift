import ImageOps

/// Why a camera frame was dropped instead of delivered (each is counted): the same reasons a
/// worker's conversion gives.
public typealias FrameDropReason = FrameConversionError

/// Describes one driver buffer of the negotiated format as a `FramePayload` for the workers
/// (`payload`, what the camera does), or converts it into NV12 in a buffer of its own (`convert`:
/// the pre-lease path, kept for tools, the conversion benchmark's "before" and tests):
/// NV12 copied with both strides honoured, YUYV through libyuv, MJPEG decoded by libjpeg-turbo to
/// planar YUV and packed by libyuv. The camera and the tests call the same `convert`.
/// Everything it needs (the JPEG decoder and its scratch planes) is allocated here, once per
/// negotiation; `convert` allocates nothing.
/// Thread context: one converter per thread (the JPEG decoder is not thread-safe).
public final class CameraFrameConverter {
    public let format: CameraPixelFormat
    /// The negotiated frame as the driver delivers it.
    public let width: Int
    public let height: Int
    public let bytesPerLine: Int
    public let sizeImage: Int
    /// NV12 needs even sizes: an odd last row/column is cropped.
    public var outputWidth: Int { width & ~1 }
    public var outputHeight: Int { height & ~1 }
    /// Where the UV plane of a single-planar NV12 buffer starts.
    let uvOffset: Int
    private let jpeg: JPEGDecoder?
    /// JFIF (MJPEG) is full-range YCbCr; the pipeline's NV12 is limited range: compress MJPEG frames.
    private let range = FullToLimitedRange()

    public init(format: CameraPixelFormat, width: Int, height: Int, bytesPerLine: Int, sizeImage: Int) {
        self.format = format
        self.width = width
        self.height = height
        self.sizeImage = sizeImage
        switch format {
        case .nv12: self.bytesPerLine = max(bytesPerLine, width)
        case .yuyv: self.bytesPerLine = max(bytesPerLine, width * 2)
        case .mjpeg: self.bytesPerLine = bytesPerLine
        }
        // Some drivers pad the Y plane's height (to 16 or 32 rows) and say so only through
        // sizeimage; the UV plane then starts after the padding. Small paddings only: a larger
        // sizeimage is slack at the end of the buffer, not padding.
        var yRows = height
        if format == .nv12 && self.bytesPerLine > 0 {
            let padded = sizeImage * 2 / (3 * self.bytesPerLine)
            if padded > height && padded - height < 64 && padded * self.bytesPerLine * 3 / 2 == sizeImage { yRows = padded }
        }
        uvOffset = self.bytesPerLine * yRows
        jpeg = format == .mjpeg ? JPEGDecoder(maxWidth: max(2, width), maxHeight: max(2, height)) : nil
    }

    /// Bytes a raw frame must have; 0 for MJPEG (any size, the decoder judges).
    public var minimumBytes: Int {
        switch format {
        case .nv12: return uvOffset + bytesPerLine * (outputHeight / 2)
        case .yuyv: return bytesPerLine * outputHeight
        case .mjpeg: return 0
        }
    }

    /// The frame in `bytes` (the `bytesused` part of a driver buffer) as a payload for the workers,
    /// without converting anything: NV12 and YUYV are checked for length here (a short frame is
    /// dropped at once); an MJPEG frame is judged when a worker decodes it.
    /// - Throws: `.truncated` for a raw frame shorter than its format needs.
    public func payload(_ bytes: UnsafeRawBufferPointer) throws(FrameDropReason) -> FramePayload {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw .truncated(got: 0, need: max(1, minimumBytes)) }
        let src = base.assumingMemoryBound(to: UInt8.self)
        switch format {
        case .nv12:
            guard bytes.count >= minimumBytes else { throw .truncated(got: bytes.count, need: minimumBytes) }
            let layout = NV12Layout(width: outputWidth, height: outputHeight, strideY: bytesPerLine, strideUV: bytesPerLine)
            return .nv12(NV12ConstView(y: src, uv: src + uvOffset, layout: layout))
        case .yuyv:
            guard bytes.count >= minimumBytes else { throw .truncated(got: bytes.count, need: minimumBytes) }
            return .yuyv(src, stride: bytesPerLine, width: outputWidth, height: outputHeight)
        case .mjpeg:
            return .mjpeg(bytes, width: width, height: height)
        }
    }

    /// Converts `bytes` (the `bytesused` part of a driver buffer) into the top-left
    /// `outputWidth` x `outputHeight` of `pool` (a pool buffer at least that large).
    /// - Throws: why the frame must be dropped; `pool` may then be partly written.
    public func convert(_ bytes: UnsafeRawBufferPointer, into pool: NV12MutableView) throws(FrameDropReason) {
        let dst = pool.cropped(width: outputWidth, height: outputHeight)
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw .truncated(got: 0, need: max(1, minimumBytes)) }
        let src = base.assumingMemoryBound(to: UInt8.self)
        switch format {
        case .nv12:
            guard bytes.count >= minimumBytes else { throw .truncated(got: bytes.count, need: minimumBytes) }
            let layout = NV12Layout(width: outputWidth, height: outputHeight, strideY: bytesPerLine, strideUV: bytesPerLine)
            NV12Ops.copy(NV12ConstView(y: src, uv: src + uvOffset, layout: layout), into: dst)
        case .yuyv:
            guard bytes.count >= minimumBytes else { throw .truncated(got: bytes.count, need: minimumBytes) }
            do { try NV12Ops.convertYUYV(src, stride: bytesPerLine, into: dst) } catch {
                throw .corrupt("\(error)")
            }
        case .mjpeg:
            do { try jpeg!.decode(bytes, into: dst) } catch {
                throw .corrupt("\(error)")
            }
            range.apply(dst)
        }
    }
}
