import FinchFormats
import Hummingbird

/// An error answered as OpenAI answers one: an HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `server_error`, …
    public var type: String
    /// The request field at fault.
    public var param: String?
    public var code: String?
    /// The connection cannot carry another request (a body whose framing is broken): the
    /// response says `Connection: close`.
    public var closesConnection = false

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
                param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    /// A field with a missing, mistyped or out-of-range value.
    static func invalid(_ param: String, _ message: String) -> APIError {
        APIError(.badRequest, message, param: param, code: "invalid_value")
    }

    static func modelNotFound(_ name: String, known: [String]) -> APIError {
        APIError(.notFound, "The model '\(name)' does not exist; this server has \(known.map { "'\($0)'" }.joined(separator: ", "))"
                 + " (GET /v1/models lists them; load an adapter with POST /v1/adapters).",
                 type: "not_found_error", param: "model", code: "model_not_found")
    }

    static let loading = APIError(.serviceUnavailable, "The model is still loading; try again shortly (GET /health says when it is ready).",
                                  type: "server_error", code: "model_loading")

    var json: JSONValue {
        .object([("error", .object([
            ("message", .string(message)), ("type", .string(type)),
            ("param", param.map(JSONValue.string) ?? .null), ("code", code.map(JSONValue.string) ?? .null),
        ]))])
    }

    /// The error as a response.
    var jsonResponse: Response {
        var r = FinchServe.jsonResponse(json, status: status)
        if closesConnection { r.headers[.connection] = "close" }
        return r
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse
    }
}

/// A JSON response body.
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized())))
}

// Building JSON values.
extension JSONValue {
    /// A finite number (−∞ log-probabilities are written as −9999, as OpenAI does).
    static func float(_ v: Float) -> JSONValue {
        guard v.isFinite else { return .number(v < 0 ? "-9999.0" : "9999.0") }
        return .number("\(v)")
    }
}
