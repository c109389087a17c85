/// Errors from parsing or rendering a chat template. Each names the construct and the
/// 1-based line and column in the template source where it happened.
public enum TemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The template text is not valid Jinja.
    case syntax(message: String, line: Int, column: Int)
    /// Valid Jinja that this interpreter does not implement (it refuses rather than render wrongly).
    case unsupported(construct: String, line: Int, column: Int)
    /// A value was used in a way Jinja/Python would reject (wrong type, undefined value, ...).
    case runtime(message: String, line: Int, column: Int)
    /// The template called `raise_exception(message)`.
    case raised(message: String, line: Int, column: Int)

    public var description: String {
        switch self {
        case let .syntax(m, l, c): return "template syntax error at line \(l), column \(c): \(m)"
        case let .unsupported(what, l, c): return "template uses \(what) at line \(l), column \(c), which is not supported"
        case let .runtime(m, l, c): return "template error at line \(l), column \(c): \(m)"
        case let .raised(m, l, c): return "template raised an exception at line \(l), column \(c): \(m)"
        }
    }

    /// The message without the location.
    public var message: String {
        switch self {
        case let .syntax(m, _, _), let .runtime(m, _, _), let .raised(m, _, _): return m
        case let .unsupported(what, _, _): return "\(what) is not supported"
        }
    }
}

/// A position in the template source (1-based).
struct SourceLocation: Sendable, Equatable {
    var line: Int
    var column: Int
}
