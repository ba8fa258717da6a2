import Glibc

/// A `sockaddr_un` for `path`, for the daemon's listening socket and every client of it.
/// - Throws: `SystemCallError` (ENAMETOOLONG) when the path does not fit `sun_path` (107 bytes).
public func unixSocketAddress(_ path: String) throws -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
        throw SystemCallError("socket path too long (\(bytes.count) bytes, max \(MemoryLayout.size(ofValue: addr.sun_path) - 1))",
                              errno: ENAMETOOLONG)
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return addr
}
