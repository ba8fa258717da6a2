import FuzzTargets

// Two builds of one program:
// - `make fuzz` (-sanitize=fuzzer,address -D CAMCLASS_LIBFUZZER): libFuzzer drives the target named
//   by the first argument; the other arguments are libFuzzer's (corpus folders, -max_total_time=…).
// - the normal build: a replayer that feeds files through a target and prints each outcome (to
//   reproduce a finding without the sanitizers).
#if CAMCLASS_LIBFUZZER
import Glibc

nonisolated(unsafe) var selected: FuzzTarget = .requestParser

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = selected.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links executables with `main` aliased to `<module>_main`; libFuzzer's own `main` is then
/// unused, so this one picks the target and hands the remaining arguments to libFuzzer.
@_cdecl("camclass_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    guard argc >= 2, let name = argv[1].map({ String(cString: $0) }), let target = FuzzTarget(rawValue: name) else {
        let usage = "usage: camclass-fuzz <target> [libFuzzer options] [corpus…]; targets: \(names)\n"
        _ = usage.withCString { write(2, $0, strlen($0)) }
        return 64
    }
    selected = target
    argv[1] = argv[0]  // drop the target name: libFuzzer sees argv[1...] as its own
    var count = argc - 1
    var args: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv + 1
    return LLVMFuzzerRunDriver(&count, &args, fuzzTestOneInput)
}
#else
import Foundation

@main
struct FuzzReplay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count >= 2 else {
            FileHandle.standardError.write(Data("usage: camclass-fuzz <target> <file>…; targets: \(names)\n".utf8))
            exit(64)
        }
        for file in args.dropFirst() {
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("cannot read \(file)\n".utf8))
                exit(66)
            }
            print("\(file): \(target.run([UInt8](data)))")
        }
    }
}
#endif
