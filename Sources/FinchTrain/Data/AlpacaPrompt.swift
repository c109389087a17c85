/// The Alpaca prompts, exactly as qlora's `ALPACA_PROMPT_DICT` writes them (note the space
/// after "### Response:").
public enum AlpacaPrompt {
    /// The prompt for a record with a non-empty `input`.
    public static let withInput =
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        + "Write a response that appropriately completes the request.\n\n"
        + "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response: "
    /// The prompt for a record whose `input` is missing or empty.
    public static let withoutInput =
        "Below is an instruction that describes a task. "
        + "Write a response that appropriately completes the request.\n\n"
        + "### Instruction:\n{instruction}\n\n### Response: "

    /// The source text of a record: `withInput` when `input` is non-empty, else `withoutInput`.
    public static func source(instruction: String, input: String?) -> String {
        if let input, !input.isEmpty {
            return fill(withInput, instruction: instruction, input: input)
        }
        return fill(withoutInput, instruction: instruction, input: "")
    }

    /// Substitutes both fields in one pass, so braces inside the values are left alone.
    private static func fill(_ template: String, instruction: String, input: String) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            let after = rest[open...]
            if after.hasPrefix("{instruction}") {
                out += instruction
                rest = after.dropFirst("{instruction}".count)
            } else if after.hasPrefix("{input}") {
                out += input
                rest = after.dropFirst("{input}".count)
            } else {
                out += "{"
                rest = after.dropFirst()
            }
        }
        return out + rest
    }
}
