// swift-tools-version:6.0
import PackageDescription

// One module per stage (Capture, ImageOps, Inference, Pipeline, Publishing), thin C modules for the
// libraries they wrap, and two executables that only parse arguments and call `buildDaemon(config:)`.
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
    ],
    targets: [
        // C: system libraries through shim headers (static inline wrappers, named constants).
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CYUV", providers: [.apt(["libyuv-dev"])]),
        .systemLibrary(name: "CV4L2", pkgConfig: "libv4l2", providers: [.apt(["libv4l-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        // C: run-time loaded inference libraries (dlopen), so the build needs neither.
        .target(name: "COpenVINO", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CHBDNN", linkerSettings: [.linkedLibrary("dl")]),

        // Swift: one module per stage, plus the threads/clocks/syscall helpers they share.
        .target(name: "Support"),
        .target(name: "ImageOps", dependencies: ["CTurboJPEG", "CYUV"]),
        .target(name: "Capture", dependencies: [
            "ImageOps", "Support", "CV4L2", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Inference", dependencies: [
            "ImageOps", "Support", "COpenVINO", "CHBDNN", .product(name: "Logging", package: "swift-log"),
            "Yams",
        ]),
        .target(name: "Publishing", dependencies: ["Support", "CZlib", .product(name: "Logging", package: "swift-log")]),
        // The MQTT bridge (`camclass mqtt`, `camclass fleet`): a client of the daemon's socket.
        .target(name: "MQTTBridge", dependencies: [
            "CMosquitto", "Publishing", "Support", "Yams", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Pipeline", dependencies: [
            "Capture", "ImageOps", "Inference", "Publishing", "Support",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "CamclassDaemon", dependencies: [
            "Capture", "ImageOps", "Inference", "Pipeline", "Publishing", "Yams",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),

        // Executables: argument parsing and wiring only.
        .executableTarget(name: "camclassd", dependencies: [
            "CamclassDaemon", "Inference", "Publishing", "Support", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Several files with an @main in main.swift: parsed as a library (no top-level code).
        .executableTarget(name: "camclass", dependencies: [
            "CamclassDaemon", "Inference", "MQTTBridge", "Publishing", "Support", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: [.unsafeFlags(["-parse-as-library"])]),

        .testTarget(name: "CamclassTests", dependencies: [
            "CamclassDaemon", "Capture", "ImageOps", "Inference", "MQTTBridge", "Pipeline", "Publishing", "Support",
            "CTurboJPEG", "CYUV",
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
