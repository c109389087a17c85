import FinchFormats

/// One record of a JSON or JSON-lines data file, and where it is in the file.
public struct DataRecord: Sendable {
    /// The parsed record (an object for every format).
    public var value: JSONValue
    /// 1-based line where the record starts.
    public var line: Int
    /// 0-based index in a top-level JSON array; nil for JSON lines.
    public var arrayIndex: Int?

    /// "record 3 of the JSON array: " for array records, "" for JSON lines (whose line says it all).
    public var place: String {
        arrayIndex.map { "record \($0) of the JSON array: " } ?? ""
    }

    /// The keys of the record, in file order.
    public var keys: [String] { value.objectValue?.map(\.key) ?? [] }

    /// A malformed-record error at this record.
    public func malformed(_ path: String, _ reason: String) -> DataError {
        .malformed(path: path, line: line, reason: place + reason)
    }

    /// The string under `key`, which must be present.
    /// - Parameter format: the format being read, named in the error.
    func string(_ key: String, path: String, format: DatasetFormat) throws(DataError) -> String {
        guard let v = value[key] else {
            throw malformed(path, "missing key \"\(key)\"; the \(format.rawValue) format needs "
                + format.requiredKeys.map { "\"\($0)\"" }.joined(separator: " and ") + " (keys here: "
                + keys.joined(separator: ", ") + ")")
        }
        guard let s = v.stringValue else {
            throw malformed(path, "key \"\(key)\" is \(v.kindName); the \(format.rawValue) format needs a string")
        }
        return s
    }

    /// The string under `key`, or nil when it is missing or null.
    func optionalString(_ key: String, path: String, format: DatasetFormat) throws(DataError) -> String? {
        guard let v = value[key], !v.isNull else { return nil }
        guard let s = v.stringValue else {
            throw malformed(path, "key \"\(key)\" is \(v.kindName); the \(format.rawValue) format needs a string")
        }
        return s
    }
}
