// swift-tools-version:6.0
// The Swift binding of edgekv: a system-library module over the installed C
// library (found through pkg-config's edgekv.pc), the `EdgeKV` Swift API, and
// the `edgekv-chat` terminal chat. No unsafeFlags and no C/C++ compiled by
// SwiftPM, so the package can be a versioned dependency.
//
// Linux / macOS command line: install the library (cmake --install ... --prefix P)
// and set PKG_CONFIG_PATH=P/lib/pkgconfig (and LD_LIBRARY_PATH=P/lib on Linux
// at run time). Apple platforms: see README.md for the XCFramework variant.
import PackageDescription

let package = Package(
    name: "EdgeKV",
    platforms: [.macOS(.v13), .iOS(.v16), .tvOS(.v16), .visionOS(.v1)],
    products: [
        .library(name: "EdgeKV", targets: ["EdgeKV"]),
        .executable(name: "edgekv-chat", targets: ["edgekv-chat"]),
    ],
    targets: [
        .systemLibrary(
            name: "CEdgeKV",
            path: "Sources/CEdgeKV",
            pkgConfig: "edgekv"
        ),
        .target(
            name: "EdgeKV",
            dependencies: ["CEdgeKV"],
            path: "Sources/EdgeKV"
        ),
        .executableTarget(
            name: "edgekv-chat",
            dependencies: ["EdgeKV"],
            path: "Sources/edgekv-chat"
        ),
        .testTarget(
            name: "EdgeKVTests",
            dependencies: ["EdgeKV", "CEdgeKV"],
            path: "Tests/EdgeKVTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
