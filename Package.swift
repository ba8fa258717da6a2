// swift-tools-version:6.0
import PackageDescription

// The module graph is the architecture (arrows: imports):
//
//   Support ← WireFormat ← Publishing ──┐
//      ↑         ↑    ↖ Client ─────────┼── MQTTBridge
//   ImageOps ← Capture ← Pipeline ──────┼── CamclassDaemon ← camclassd
//      ↑       Inference ↗              └── CamclassTools  ← camclass (also Client, MQTTBridge)
//
// - One module per stage: Capture (V4L2, replay, frame pool), ImageOps (libyuv, libjpeg-turbo),
//   Inference (OpenVINO, hbDNN), Pipeline (queue, workers, ordering, stable labels), Publishing
//   (the daemon's sinks: Unix socket publisher, rolling log).
// - WireFormat: protocol v1 and the log files as bytes (record encoders, request parser, hello,
//   status, gzip of rotated logs), shared by the daemon's sinks and the client side.
// - Client: what talks to a running daemon (socket connection, reconnecting subscriber, requests,
//   the human line format, the log follower).
// - CamclassDaemon: configuration, `buildDaemon(config:)`, the supervisor and reload, services,
//   systemd notification and logging: what `camclassd` needs and nothing else.
// - CamclassTools: benchmarks (pipeline, fan-out, CPU, MQTT), eval, model table, camera listing and
//   their reports.
// - MQTTBridge: `camclass mqtt` and `camclass fleet`, a client of the socket and of a broker.
// - Thin C modules: shim headers over system libraries (CJPEGRegion: a small C file, so libjpeg's
//   longjmp error handling never crosses Swift frames); the inference libraries are dlopened, so the
//   build needs neither OpenVINO nor libdnn.so.
// Executables only parse arguments and wire.
let package = Package(
    name: "camclassd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "camclassd", targets: ["camclassd"]),
        .executable(name: "camclass", targets: ["camclass"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Tests only: property-based checks of the config values.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // C: system libraries through shim headers (static inline wrappers, named constants).
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CYUV", providers: [.apt(["libyuv-dev"])]),
        .systemLibrary(name: "CV4L2", pkgConfig: "libv4l2", providers: [.apt(["libv4l-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        // C: libjpeg's own API (jpeglib.h) for decoding one region of an MJPEG frame: its
        // error_exit longjmps, which must stay inside C (Sources/CJPEGRegion).
        // Debian: libjpeg62-turbo-dev (jpeglib.h), libyuv-dev.
        .target(name: "CJPEGRegion", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("yuv")]),
        // C: Linux calls that need _GNU_SOURCE (pipe2, accept4).
        .target(name: "CSystem"),
        // C: run-time loaded inference libraries (dlopen), so the build needs neither.
        .target(name: "COpenVINO", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CHBDNN", linkerSettings: [.linkedLibrary("dl")]),

        // Swift: threads, locks, clocks, the syscall helper, exit statuses, config reading.
        .target(name: "Support", dependencies: ["CSystem", .product(name: "Logging", package: "swift-log"), "Yams"]),
        // The stages.
        .target(name: "ImageOps", dependencies: ["CTurboJPEG", "CJPEGRegion", "CYUV", "Support"]),
        .target(name: "Capture", dependencies: [
            "ImageOps", "Support", "CV4L2", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Inference", dependencies: [
            "ImageOps", "Support", "COpenVINO", "CHBDNN", .product(name: "Logging", package: "swift-log"),
            "Yams",
        ]),
        .target(name: "WireFormat", dependencies: ["Support", "CZlib"]),
        // The MQTT bridge (`camclass mqtt`, `camclass fleet`): a client of the daemon's socket.
        .target(name: "MQTTBridge", dependencies: [
            "CMosquitto", "Client", "WireFormat", "Support", "Yams", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Pipeline", dependencies: [
            "Capture", "ImageOps", "Inference", "WireFormat", "Support",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Publishing", dependencies: [
            "WireFormat", "Support", .product(name: "Logging", package: "swift-log"),
        ]),
        // The client side of protocol v1 and the log.
        .target(name: "Client", dependencies: ["WireFormat", "Support"]),
        // Assembly of the daemon, and the tools.
        .target(name: "CamclassDaemon", dependencies: [
            "Capture", "ImageOps", "Inference", "Pipeline", "Publishing", "WireFormat", "Support", "CCrypto", "Yams",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .target(name: "CamclassTools", dependencies: [
            "CamclassDaemon", "Client", "MQTTBridge", "Capture", "ImageOps", "Inference", "Pipeline", "Publishing", "WireFormat", "Support",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Executables: argument parsing and wiring only.
        .executableTarget(name: "camclassd", dependencies: [
            "CamclassDaemon", "Support", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Several files with an @main in main.swift: parsed as a library (no top-level code).
        .executableTarget(name: "camclass", dependencies: [
            "CamclassTools", "CamclassDaemon", "Client", "Inference", "MQTTBridge", "Support",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Fuzzing (`make fuzz`): the targets (outside input → the daemon's entry points), shared with
        // the regression tests, and their driver: libFuzzer when built with -sanitize=fuzzer
        // -D CAMCLASS_LIBFUZZER, otherwise a replayer of saved inputs.
        .target(name: "FuzzTargets", dependencies: ["CamclassDaemon", "Capture", "ImageOps", "MQTTBridge", "Support", "WireFormat"],
                path: "Tests/Fuzz/Targets"),
        .executableTarget(name: "camclass-fuzz", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/Driver"),

        // Tests: unit tests need no environment (`make check`, or plain `swift test --filter
        // CamclassUnitTests`); integration tests use real OpenVINO, models, daemons, brokers (`make test`);
        // both share the test-support library (environment, binaries, subprocesses, waits).
        .target(name: "CamclassTestSupport", dependencies: ["Support", .product(name: "Logging", package: "swift-log")],
                path: "Tests/TestSupport"),
        .testTarget(name: "CamclassUnitTests", dependencies: [
            "CamclassTestSupport", "CamclassDaemon", "CamclassTools", "Client", "Capture", "ImageOps", "Inference", "MQTTBridge",
            "Pipeline", "Publishing", "WireFormat", "Support", "CTurboJPEG", "CYUV", "FuzzTargets",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "PropertyBased", package: "swift-property-based"),
        ], path: "Tests/UnitTests"),
        .testTarget(name: "CamclassIntegrationTests", dependencies: [
            "CamclassTestSupport", "CamclassDaemon", "CamclassTools", "Client", "Capture", "ImageOps", "Inference", "MQTTBridge",
            "Pipeline", "Publishing", "WireFormat", "Support", "CTurboJPEG", "CYUV", "FuzzTargets",
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/IntegrationTests"),
    ],
    swiftLanguageModes: [.v6]
)
