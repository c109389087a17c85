import FinchFormats

extension GGUFFile {
    /// The integer metadata value `key`, which a family's config cannot do without.
    /// - Throws: ``ModelError/invalidConfig(path:reason:)`` naming the file and the key when it is absent.
    func requiredInt(_ key: String) throws -> Int {
        guard let v = metadata[key]?.intValue else {
            throw ModelError.invalidConfig(path: path, reason: "metadata key \(key) is missing")
        }
        return v
    }
}
