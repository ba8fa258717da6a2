import CZlib
import Glibc
import Support

/// gzip files through zlib (in process: no fork/exec from a threaded daemon, no dependency on a
/// `gzip` binary being installed on the robot, and errors such as ENOSPC come back as values).
public enum Gzip {
    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Compresses `source` into `destination` (written to `destination.tmp`, fsynced, then renamed,
    /// so a crash never leaves a truncated `.gz` under the final name). `source` is left in place.
    /// - Throws: `Failure` naming the file and the error (e.g. no space left on the device).
    public static func compress(file source: String, to destination: String, level: Int32 = Z_DEFAULT_COMPRESSION,
                                write: (Int32, UnsafeRawPointer, Int) -> Int = { Glibc.write($0, $1, $2) }) throws(Failure) {
        let input = open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw Failure(message: "gzip: cannot open '\(source)': \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let tmp = destination + ".tmp"
        // O_EXCL | O_NOFOLLOW: never write through something already at the temporary name (a
        // symbolic link there would otherwise get the compressed data). A leftover from a crash,
        // or a planted link, is removed (unlink removes the link, not its target) and created anew.
        var output = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o640)
        if output < 0 && errno == EEXIST {
            unlink(tmp)
            output = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o640)
        }
        guard output >= 0 else { throw Failure(message: "gzip: cannot create '\(tmp)': \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            close(output)
            if !ok { unlink(tmp) }
        }
        var z = z_stream()
        guard czlib_deflate_init_gzip(&z, level) == Z_OK else { throw Failure(message: "gzip: deflateInit failed") }
        defer { deflateEnd(&z) }
        let chunk = 1 << 16
        let inBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        let outBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
        defer { inBuf.deallocate(); outBuf.deallocate() }
        var finished = false
        while !finished {
            let n = read(input, inBuf, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(message: "gzip: reading '\(source)': \(String(cString: strerror(errno)))")
            }
            z.next_in = inBuf
            z.avail_in = uInt(n)
            let flush = n == 0 ? Z_FINISH : Z_NO_FLUSH
            repeat {
                z.next_out = outBuf
                z.avail_out = uInt(chunk)
                let rc = deflate(&z, flush)
                guard rc != Z_STREAM_ERROR else { throw Failure(message: "gzip: deflate failed") }
                let produced = chunk - Int(z.avail_out)
                var off = 0
                while off < produced {
                    let w = write(output, outBuf + off, produced - off)
                    if w < 0 && errno == EINTR { continue }
                    guard w > 0 else { throw Failure(message: "gzip: writing '\(tmp)': \(String(cString: strerror(errno)))") }
                    off += w
                }
                if rc == Z_STREAM_END { finished = true }
            } while z.avail_out == 0
        }
        guard fsync(output) == 0 else { throw Failure(message: "gzip: fsync '\(tmp)': \(String(cString: strerror(errno)))") }
        guard rename(tmp, destination) == 0 else {
            throw Failure(message: "gzip: rename to '\(destination)': \(String(cString: strerror(errno)))")
        }
        ok = true
    }

    /// The decompressed contents of a gzip file (tools and tests; not for the daemon's hot path).
    public static func decompress(file path: String) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(message: "gunzip: cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var compressed: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            compressed += buf[0..<n]
        }
        var z = z_stream()
        guard czlib_inflate_init_auto(&z) == Z_OK else { throw Failure(message: "gunzip: inflateInit failed") }
        defer { inflateEnd(&z) }
        var out: [UInt8] = []
        var rc: Int32 = Z_OK
        try compressed.withUnsafeMutableBufferPointer { (input) throws(Failure) in
            z.next_in = input.baseAddress
            z.avail_in = uInt(input.count)
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            repeat {
                let produced = chunk.withUnsafeMutableBufferPointer { o -> Int in
                    z.next_out = o.baseAddress
                    z.avail_out = uInt(o.count)
                    rc = inflate(&z, Z_NO_FLUSH)
                    return o.count - Int(z.avail_out)
                }
                guard rc == Z_OK || rc == Z_STREAM_END || (rc == Z_BUF_ERROR && produced > 0) else {
                    throw Failure(message: "gunzip: '\(path)' is corrupt (zlib status \(rc))")
                }
                out += chunk[0..<produced]
                if rc == Z_BUF_ERROR && z.avail_in == 0 { break }
            } while rc != Z_STREAM_END
        }
        guard rc == Z_STREAM_END else { throw Failure(message: "gunzip: '\(path)' is truncated") }
        return out
    }
}
