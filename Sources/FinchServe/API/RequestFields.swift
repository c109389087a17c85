import FinchFormats

/// The members of a request's JSON object, read with their expected types: a value of the wrong
/// type or out of range is an `APIError` that names the field. Unknown fields are ignored (clients
/// send fields of newer API versions); `null` reads as absent.
struct RequestFields {
    let value: JSONValue
    /// Where these fields sit in the request (`messages[2].`), for error messages.
    let path: String

    init(_ value: JSONValue, path: String = "") throws {
        guard case .object = value else {
            throw APIError.invalid(path.isEmpty ? "body" : String(path.dropLast()),
                                   "expected a JSON object\(path.isEmpty ? " as the request body" : " at \(path.dropLast())"), got \(value.kindName)")
        }
        self.value = value; self.path = path
    }

    /// Parses a request body.
    static func parse(_ bytes: [UInt8]) throws -> RequestFields {
        do {
            return try RequestFields(try JSONParser.parse(bytes))
        } catch let e as JSONParseError {
            throw APIError(.badRequest, "The request body is not valid JSON: \(e). Send a JSON object.", code: "invalid_json")
        }
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = value[key], !v.isNull else { return nil }
        return v
    }

    private func wrong(_ key: String, _ expected: String, _ v: JSONValue) -> APIError {
        APIError.invalid(path + key, "'\(path + key)' must be \(expected), got \(v.kindName)")
    }

    func has(_ key: String) -> Bool { present(key) != nil }

    func string(_ key: String) throws -> String? {
        guard let v = present(key) else { return nil }
        guard let s = v.stringValue else { throw wrong(key, "a string", v) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = present(key) else { return nil }
        guard let b = v.boolValue else { throw wrong(key, "true or false", v) }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let v = present(key) else { return nil }
        guard let i = v.wholeNumberValue else { throw wrong(key, "an integer", v) }
        if let range, !range.contains(i) {
            throw APIError.invalid(path + key, "'\(path + key)' must be between \(range.lowerBound) and \(range.upperBound), got \(i)")
        }
        return i
    }

    func float(_ key: String, in range: ClosedRange<Double>? = nil) throws -> Float? {
        guard let v = present(key) else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw wrong(key, "a number", v) }
        if let range, !range.contains(d) {
            throw APIError.invalid(path + key, "'\(path + key)' must be between \(range.lowerBound) and \(range.upperBound), got \(d)")
        }
        return Float(d)
    }

    /// A string or a list of strings (`stop`).
    func strings(_ key: String) throws -> [String]? {
        guard let v = present(key) else { return nil }
        if let s = v.stringValue { return [s] }
        guard let items = v.arrayValue else { throw wrong(key, "a string or a list of strings", v) }
        return try items.enumerated().map { i, item in
            guard let s = item.stringValue else {
                throw APIError.invalid(path + key, "'\(path + key)[\(i)]' must be a string, got \(item.kindName)")
            }
            return s
        }
    }

    func array(_ key: String) throws -> [JSONValue]? {
        guard let v = present(key) else { return nil }
        guard let a = v.arrayValue else { throw wrong(key, "a list", v) }
        return a
    }

    func object(_ key: String) throws -> RequestFields? {
        guard let v = present(key) else { return nil }
        guard case .object = v else { throw wrong(key, "an object", v) }
        return try RequestFields(v, path: path + key + ".")
    }

    /// Refuses a field Finch does not implement when it is set to anything but its neutral value.
    func refuse(_ key: String, unless neutral: (JSONValue) -> Bool, _ advice: String) throws {
        guard let v = present(key), !neutral(v) else { return }
        throw APIError.invalid(path + key, "'\(path + key)' is not supported by this server: \(advice)")
    }
}
