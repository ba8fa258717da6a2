import CCrypto
import Glibc
import Support

/// SHA-256 of a model file, for its identity in `hello` when the sidecar carries no `sha256`.
/// OpenSSL's libcrypto computes it (EVP interface). Called where the model loads — on the load or
/// reload thread, never on the socket's I/O thread — and once per model.
enum ModelDigest {
    /// Lower-case hex SHA-256 of `bytes`.
    static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = digest.withUnsafeMutableBufferPointer { out in
            EVP_Digest(bytes.baseAddress, bytes.count, out.baseAddress, &length, EVP_sha256(), nil)
        }
        precondition(ok == 1 && length == 32, "EVP_Digest(sha256) failed")
        return hex(digest[0..<32])
    }

    /// Lower-case hex SHA-256 of the file at `path`, read in 1 MiB chunks.
    /// - Throws: `SystemCallError` naming the call and the file.
    static func sha256(file path: String) throws -> String {
        let fd = try syscall("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        guard let ctx = EVP_MD_CTX_new() else { throw SystemCallError("EVP_MD_CTX_new", errno: ENOMEM) }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else { throw SystemCallError("EVP_DigestInit_ex", errno: EINVAL) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try chunk.withUnsafeMutableBytes { raw in try syscall("read(\(path))") { read(fd, raw.baseAddress, raw.count) } }
            if n == 0 { break }
            _ = chunk.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, n) }
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(ctx, &digest, &length) == 1, length == 32 else { throw SystemCallError("EVP_DigestFinal_ex", errno: EINVAL) }
        return hex(digest[0..<32])
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
