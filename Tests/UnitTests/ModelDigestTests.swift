@testable import CamclassDaemon
import CamclassTestSupport
import Foundation
import Support
import Testing

/// The model file's SHA-256 for `hello` (libcrypto, replacing a hand-written digest): known
/// vectors from FIPS 180-4's examples, a file read in chunks. Unit tests: no environment.
@Suite struct ModelDigestTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(input: String, digest: String) {
        let bytes = Array(input.utf8)
        #expect(bytes.withUnsafeBytes { ModelDigest.sha256($0) } == digest)
    }

    @Test func aFileLargerThanOneChunkHashesLikeItsBytes() throws {
        let dir = TestEnv.tempDir("digest")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // One million 'a': FIPS 180-4's long example, here across the reader's 1 MiB chunks (+ a tail).
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        try Data(million).write(to: URL(fileURLWithPath: dir + "/a.bin"))
        #expect(try ModelDigest.sha256(file: dir + "/a.bin") == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let big = [UInt8]((0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try Data(big).write(to: URL(fileURLWithPath: dir + "/b.bin"))
        #expect(try ModelDigest.sha256(file: dir + "/b.bin") == big.withUnsafeBytes { ModelDigest.sha256($0) })
        #expect(throws: SystemCallError.self) { try ModelDigest.sha256(file: dir + "/missing.bin") }
    }
}
