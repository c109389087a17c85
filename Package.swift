// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// `FINCH_FUZZ=1` (set by Scripts/hardening/fuzz.sh, with its own build directory) adds the libFuzzer
/// harnesses (`finch-fuzz`, Fuzz/Sources).
let environment = ProcessInfo.processInfo.environment
let fuzzing = environment["FINCH_FUZZ"] != nil
/// Swift's checks (array bounds, integer overflow, preconditions) stay on in every module that
/// parses, tokenizes, templates, loads, trains, evaluates or serves: the shipped binary is the one
/// the fuzzers test. Only FinchCore, the numeric kernels over buffers whose sizes are checked by
/// their callers, is compiled `-Ounchecked` (and not under the fuzzer).
/// `FINCH_BUILD_UNCHECKED=1` compiles every library module `-Ounchecked` as before issue 28; it
/// exists only for Scripts/bench/bench_checked_cost.sh, which measures what the checks cost, in
/// its own build directory.
let uncheckedEverywhere = environment["FINCH_BUILD_UNCHECKED"] != nil && !fuzzing
let kernels: [SwiftSetting] = fuzzing ? [] : [.unsafeFlags(["-Ounchecked"])]
let checked: [SwiftSetting] = uncheckedEverywhere ? [.unsafeFlags(["-Ounchecked"])] : []

/// Finch: LoRA / QLoRA fine-tuning of LLMs in Swift.
///
/// Layers (lower know nothing of higher):
///   CDNNL, COpenBLAS (system libraries) -> CFinchKernels (SIMD C kernels)
///   -> FinchCore -> FinchFormats -> FinchTokenizer, FinchQuant, FinchLoRA -> FinchModels -> FinchTrain -> FinchEval -> FinchServe
///   FinchFormats -> FinchNet (HTTP with retries, the Hugging Face Hub and cache) -> FinchModels
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
    // Exact versions, so that every clean build compiles the same code (Package.resolved is not
    // tracked: the machines here serve these packages from local copies whose commit ids are not
    // GitHub's). To move one: change the version here, `swift package update`, run Scripts/test.sh,
    // and commit the change with the suite's result. Packages these pull in (swift-collections,
    // swift-atomics, ...) follow from these exact versions.
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
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
            swiftSettings: kernels
        ),
        .target(name: "FinchFormats", dependencies: ["FinchCore", "CFinchKernels"], swiftSettings: checked),
        .target(
            name: "FinchQuant",
            dependencies: ["FinchCore", "FinchFormats", "CFinchKernels"],
            swiftSettings: checked
        ),
        .target(name: "FinchTokenizer", dependencies: ["FinchFormats"], swiftSettings: checked),
        .target(
            name: "FinchLoRA",
            dependencies: ["FinchCore", "FinchFormats"],
            swiftSettings: checked
        ),
        .target(
            name: "FinchModels",
            dependencies: ["FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA", "FinchNet"],
            swiftSettings: checked
        ),
        .target(
            name: "FinchTrain",
            dependencies: ["FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA", "FinchModels", "FinchNet", "CFinchMPI",
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: checked
        ),
        // HTTP with retries (AsyncHTTPClient): the judge over OpenAI-compatible APIs, the Hugging Face Hub.
        .target(
            name: "FinchNet",
            dependencies: ["FinchFormats",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: checked
        ),
        .target(
            name: "FinchEval",
            dependencies: ["FinchCore", "FinchModels", "FinchTokenizer", "FinchTrain", "FinchFormats", "FinchNet"],
            swiftSettings: checked
        ),
        .target(
            name: "FinchServe",
            dependencies: ["FinchCore", "FinchEval", "FinchNet", "FinchLoRA", "FinchTokenizer", "FinchModels", "FinchFormats", "FinchQuant",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: checked
        ),
        .executableTarget(
            name: "finch",
            dependencies: [
                "FinchEval", "FinchServe", "FinchTrain", "FinchModels", "FinchCore", "FinchFormats", "FinchTokenizer", "FinchQuant", "FinchLoRA", "FinchNet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "FinchCoreTests", dependencies: ["FinchCore"]),
        // The CLI's own logic (flags → settings), without running a command.
        .testTarget(name: "FinchCLITests", dependencies: ["finch", "FinchTrain", "FinchTestSupport"]),
        .testTarget(name: "FinchFormatsTests", dependencies: ["FinchFormats", "FinchTestSupport"]),
        .testTarget(name: "FinchTokenizerTests", dependencies: ["FinchTokenizer", "FinchTestSupport"]),
        .testTarget(name: "FinchLoRATests", dependencies: ["FinchLoRA", "FinchFormats", "FinchTestSupport"]),
        .testTarget(name: "FinchQuantTests", dependencies: ["FinchQuant", "FinchFormats", "FinchTestSupport"]),
        // Fixture paths shared by the test targets (Tests/Fixtures, the real models), and the CI-aware skip.
        .target(name: "FinchTestSupport", dependencies: ["FinchCore", "FinchLoRA", "FinchModels"], path: "Tests/FinchTestSupport"),
        .testTarget(name: "FinchModelsTests", dependencies: ["FinchModels", "FinchLoRA", "FinchQuant", "FinchTestSupport"]),
        .testTarget(name: "FinchEvalTests", dependencies: ["FinchEval", "FinchModels", "FinchFormats", "FinchTrain", "FinchTestSupport"]),
        .testTarget(name: "FinchNetTests",
                    dependencies: ["FinchNet", "FinchModels", "FinchFormats", "FinchTestSupport",
                                   .product(name: "Crypto", package: "swift-crypto"),
                                   .product(name: "HummingbirdTesting", package: "hummingbird")]),
        .testTarget(name: "FinchServeTests",
                    dependencies: ["FinchServe", "FinchEval", "FinchNet", "FinchModels", "FinchLoRA", "FinchTokenizer", "FinchTestSupport",
                                   .product(name: "HummingbirdTesting", package: "hummingbird")]),
        // Test-only: `finch train` with an injected fault (DistributedTests); not part of the shipped `finch`.
        .executableTarget(name: "finch-fault-injection", dependencies: ["FinchTrain", "FinchCore"], path: "Tests/FaultInjection"),
        .testTarget(name: "FinchTrainTests",
                    dependencies: ["FinchTrain", "FinchModels", "FinchLoRA", "FinchQuant", "FinchTokenizer", "FinchTestSupport",
                                   "finch-fault-injection"]),
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
