import Crypto

/// SHA-256 (swift-crypto) as lowercase hex.
public enum SHA256Hex {
    public static func of(_ bytes: some Sequence<UInt8>) -> String {
        SHA256.hash(data: Array(bytes)).map { String(format: "%02x", $0) }.joined()
    }
}
