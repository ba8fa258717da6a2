import CJPEGRegion

/// One decoded region of a JPEG as full-resolution planes (chroma upsampled), pointing into the
/// decoder's scratch: valid until its next call. Gray images have no chroma (`cb`, `cr` are not to
/// be read).
public struct JPEGRegion {
    public let y: UnsafePointer<UInt8>
    public let cb: UnsafePointer<UInt8>
    public let cr: UnsafePointer<UInt8>
    public let width: Int
    public let height: Int
    public let stride: Int
    public let isGray: Bool
}

/// Decodes only a region of a (M)JPEG frame, at a DCT-scaled size, with libjpeg's own API
/// (Sources/CJPEGRegion): libjpeg-turbo inverse-transforms only the iMCU columns that hold the
/// region (jpeg_crop_scanline), skips the transform for rows above it (jpeg_skip_scanlines) and
/// stops after its last row. Entropy decoding of every row up to there cannot be skipped (Huffman
/// data has no index); it is most of the cost.
/// All Swift memory (the planes and a few rows of scratch, for frames up to `maxWidth` x
/// `maxHeight`) is allocated in `init`; a decode allocates nothing in Swift (libjpeg-turbo takes
/// its per-image working memory from its own pools and frees it before returning).
/// Thread context: one decoder per thread (the libjpeg decompressor is not thread-safe).
public final class JPEGRegionDecoder {
    public struct Header: Equatable {
        public let width: Int
        public let height: Int
        public let components: Int
        public let progressive: Bool
    }

    public let maxWidth: Int
    public let maxHeight: Int
    private let handle: OpaquePointer
    private let planes: UnsafeMutablePointer<UInt8>
    private let planeCapacity: Int
    private let rows: UnsafeMutablePointer<UInt8>
    private let rowsCapacity: Int

    public init(maxWidth: Int, maxHeight: Int) {
        precondition(maxWidth >= 1 && maxHeight >= 1, "JPEG region decoder for \(maxWidth)x\(maxHeight)")
        guard let h = camclass_jpeg_region_create() else { fatalError("libjpeg decompressor: out of memory") }
        handle = h
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        // Worst case: the whole image at 1/1, Y, Cb and Cr at full resolution.
        planeCapacity = maxWidth * maxHeight
        planes = .allocate(capacity: 3 * planeCapacity)
        // 16 interleaved rows of the widest scaled image (the C side reads at most 16 at a time).
        rowsCapacity = 16 * 3 * maxWidth
        rows = .allocate(capacity: rowsCapacity)
    }

    deinit {
        camclass_jpeg_region_destroy(handle)
        planes.deallocate()
        rows.deallocate()
    }

    /// Size and layout from the header alone (nothing is decoded or allocated).
    /// - Throws: `JPEGDecodeError.corrupt` when there is no readable JPEG header.
    public func header(_ jpeg: UnsafeRawBufferPointer) throws(JPEGDecodeError) -> Header {
        guard let base = jpeg.baseAddress, jpeg.count > 4 else { throw .corrupt("empty buffer") }
        var h = camclass_jpeg_header()
        guard camclass_jpeg_region_header(handle, base.assumingMemoryBound(to: UInt8.self), jpeg.count, &h) == 0 else {
            throw .corrupt(message())
        }
        guard h.width > 0, h.height > 0 else { throw .corrupt("header says \(h.width)x\(h.height)") }
        return Header(width: Int(h.width), height: Int(h.height), components: Int(h.components), progressive: h.progressive != 0)
    }

    /// The size libjpeg-turbo decodes a `width` x `height` JPEG to at 1/`denominator`:
    /// ⌈width/denominator⌉ x ⌈height/denominator⌉.
    public static func scaledSize(width: Int, height: Int, denominator: Int) -> (width: Int, height: Int) {
        ((width + denominator - 1) / denominator, (height + denominator - 1) / denominator)
    }

    /// Decodes the region `x`, `y`, `width` x `height` of the JPEG scaled by 1/`denominator`
    /// (1, 2, 4 or 8; coordinates in the scaled image) into the decoder's planes.
    /// The fast integer IDCT only with `fastIDCT` (the caller uses it at 1/1 only: libjpeg-turbo
    /// 2.1's fast IDCT gives wrong chroma for 4:2:0 at 1/2, upstream issue 912).
    /// - Throws: `JPEGDecodeError` — `.tooLarge` over maxWidth/maxHeight; `.corrupt` for truncated
    ///   or damaged data (libjpeg warnings included), a colour space other than YCbCr or grayscale,
    ///   more than 500 progressive scans, or a region outside the scaled image. Damage in rows below
    ///   the region is not seen (they are not decoded).
    public func decode(_ jpeg: UnsafeRawBufferPointer, header: Header, denominator: Int,
                       x: Int, y: Int, width: Int, height: Int, fastIDCT: Bool = false) throws(JPEGDecodeError) -> JPEGRegion {
        guard header.width <= maxWidth, header.height <= maxHeight else {
            throw .tooLarge(width: header.width, height: header.height)
        }
        guard let base = jpeg.baseAddress, jpeg.count > 4 else { throw .corrupt("empty buffer") }
        // Region and plane sizes are checked again in C against libjpeg's own scaled size.
        guard width >= 1, height >= 1, width <= maxWidth, height <= maxHeight else {
            throw .corrupt("region \(width)x\(height) outside 1...\(maxWidth)x\(maxHeight)")
        }
        let yPlane = planes, cb = planes + planeCapacity, cr = planes + 2 * planeCapacity
        var r = camclass_jpeg_region(denominator: Int32(clamping: denominator), x: Int32(clamping: x), y: Int32(clamping: y),
                                     width: Int32(clamping: width), height: Int32(clamping: height), fast_idct: fastIDCT ? 1 : 0, y_plane: yPlane,
                                     cb_plane: cb, cr_plane: cr, stride: Int32(clamping: width), plane_capacity: planeCapacity,
                                     rows: rows, rows_capacity: rowsCapacity)
        guard camclass_jpeg_region_decode(handle, base.assumingMemoryBound(to: UInt8.self), jpeg.count, &r) == 0 else {
            throw .corrupt(message())
        }
        return JPEGRegion(y: yPlane, cb: cb, cr: cr, width: width, height: height, stride: width,
                          isGray: header.components == 1)
    }

    /// The failure's message (the error path only allocates).
    private func message() -> String { String(cString: camclass_jpeg_region_message(handle)) }
}
