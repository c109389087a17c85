// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// `FINCH_FUZZ=1` (set by Scripts/fuzz.sh, with its own build directory) adds the libFuzzer
/// harnesses (`finch-fuzz`, Fuzz/Sources) and builds every target with Swift's checks on (no
/// `-Ounchecked`), so that the fuzzers see out-of-range accesses and overflows as crashes.
let fuzzing = ProcessInfo.processInfo.environment["FINCH_FUZZ"] != nil
let fast: [SwiftSetting] = fuzzing ? [] : [.unsafeFlags(["-Ounchecked"])]

/// Finch: LoRA / QLoRA fine-tuning of LLMs in Swift.
///
/// Layers (lower know nothing of higher):
///   CDNNL, COpenBLAS (system libraries) -> CFinchKernels (SIMD C kernels)
///   -> FinchCore -> FinchFormats -> FinchTokenizer, FinchQuant, FinchLoRA -> FinchModels -> FinchTrain -> FinchEval -> FinchServe
///   -> finch (CLI)
let package = Package(
    name: "Finch",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "finch", targets: ["finch"]),
        .library(name: "FinchModels", targets: ["FinchModels"]),
        .library(name: "FinchTrain", targets: ["FinchTrain"]),
        .library(name: "FinchServe", targets: ["FinchServe"]),
        .library(name: "FinchEval", targets: ["FinchEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .target(
            name: "CFinchKernels",
            path: "Sources/CFinchKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(
            name: "CFinchMPI",
            path: "Sources/CFinchMPI",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),
        .target(
            name: "FinchCore",
            dependencies: ["CDNNL", "COpenBLAS", "CFinchKernels"],
            swiftSettings: fast
        ),
        .target(name: "FinchFormats", dependencies: ["FinchCore", "CFinchKernels"]),
        .target(
            name: "FinchQuant",
            dependencies: ["FinchCore", "FinchFormats", "CFinchKernels"],
            swiftSettings: fast
        ),
        .target(name: "FinchTokenizer", dependencies: ["FinchFormats"]),
        .target(
            name: "FinchLoRA",
            dependencies: ["FinchCore", "FinchFormats"],
            swiftSettings: fast
        ),
        .target(
            name: "FinchModels",
            dependencies: ["FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA"],
            swiftSettings: fast
        ),
        .target(
            name: "FinchTrain",
            dependencies: ["FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA", "FinchModels", "CFinchMPI",
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: fast
        ),
        .target(
            name: "FinchEval",
            dependencies: ["FinchCore", "FinchModels", "FinchTokenizer", "FinchTrain", "FinchFormats"],
            swiftSettings: fast
        ),
        .target(
            name: "FinchServe",
            dependencies: ["FinchCore", "FinchEval", "FinchLoRA", "FinchTokenizer", "FinchModels", "FinchFormats", "FinchQuant",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: fast
        ),
        .executableTarget(
            name: "finch",
            dependencies: [
                "FinchEval", "FinchServe", "FinchTrain", "FinchModels", "FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA", "CFinchKernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "FinchCoreTests", dependencies: ["FinchCore"]),
        .testTarget(name: "FinchFormatsTests", dependencies: ["FinchFormats"]),
        .testTarget(name: "FinchTokenizerTests", dependencies: ["FinchTokenizer"]),
        .testTarget(name: "FinchLoRATests", dependencies: ["FinchLoRA", "FinchFormats"]),
        .testTarget(name: "FinchQuantTests", dependencies: ["FinchQuant", "FinchFormats", "FinchTestSupport"]),
        // Fixture paths shared by the test targets (Tests/Fixtures, ../shared/reference, the real model).
        .target(name: "FinchTestSupport", path: "Tests/FinchTestSupport"),
        .testTarget(name: "FinchModelsTests", dependencies: ["FinchModels", "FinchLoRA", "FinchQuant", "FinchTestSupport"]),
        .testTarget(name: "FinchEvalTests", dependencies: ["FinchEval", "FinchModels", "FinchFormats", "FinchTrain", "FinchTestSupport"]),
        .testTarget(name: "FinchServeTests",
                    dependencies: ["FinchServe", "FinchEval", "FinchModels", "FinchLoRA", "FinchTokenizer", "FinchTestSupport",
                                   .product(name: "HummingbirdTesting", package: "hummingbird")]),
        .testTarget(name: "FinchTrainTests",
                    dependencies: ["FinchTrain", "FinchModels", "FinchLoRA", "FinchQuant", "FinchTokenizer", "FinchTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

if fuzzing {
    package.products.append(.executable(name: "finch-fuzz", targets: ["finch-fuzz"]))
    package.targets.append(.target(name: "CFinchFuzz", path: "Fuzz/CFuzz"))
    package.targets.append(.executableTarget(
        name: "finch-fuzz",
        dependencies: ["CFinchFuzz", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchModels", "FinchTrain", "FinchEval",
                       "FinchServe", .product(name: "Hummingbird", package: "hummingbird"),
                       .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "Logging", package: "swift-log")],
        path: "Fuzz/Sources",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
}
