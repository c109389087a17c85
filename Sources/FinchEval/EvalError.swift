/// Why an evaluation cannot go on: where (a file and its line, or the item: a question, a system),
/// what is wrong, and what to do about it.
public struct EvalError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file at fault (an answers file, a ratings log), if any.
    public var file: String?
    /// Its 1-based line.
    public var line: Int?
    /// What the error is about when it is not a file's line: a question id, an answer set, a setting.
    public var item: String?
    public var reason: String
    /// What to do (a flag to change, a file to give).
    public var advice: String?

    public init(file: String? = nil, line: Int? = nil, item: String? = nil, _ reason: String, advice: String? = nil) {
        self.file = file; self.line = line; self.item = item; self.reason = reason; self.advice = advice
    }

    /// `answers.jsonl:3: not an answer line …; use another --output`.
    public var description: String {
        var place = file.map { $0 + (line.map { ":\($0)" } ?? "") + ": " } ?? ""
        if let item { place += item + ": " }
        return place + reason + (advice.map { "; " + $0 } ?? "")
    }
}
