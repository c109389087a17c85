/// The layout of a training data file, named as qlora's `--dataset_format` names them.
///
/// | format | records | source (masked) | target (trained) |
/// |---|---|---|---|
/// | `alpaca` | `{instruction, input?, output}` | the Alpaca prompt (``AlpacaPrompt``) | `output` |
/// | `input-output` | `{input, output}` | `input` | `output` |
/// | `self-instruct` | `{prompt, completion}` | `prompt` | `completion` |
/// | `oasst` | `{text: "### Human: … ### Assistant: …"}` | human turns | assistant replies |
/// | `chat` | `{messages: [{role, content}, …]}` | everything but assistant messages | assistant messages, as the chat template renders them |
/// | `text` | a `.txt` file, or `{text}` records | nothing | everything |
///
/// Keys other than the ones a format reads are ignored.
public enum DatasetFormat: String, Sendable, CaseIterable, Codable {
    case alpaca
    case inputOutput = "input-output"
    case oasst
    case selfInstruct = "self-instruct"
    case chat
    case text

    /// Whether records of this format are a masked source followed by a trained target, the
    /// layout that ``DatasetOptions/sourceMaxLen`` and ``DatasetOptions/targetMaxLen`` apply to.
    public var isSourceTarget: Bool {
        switch self {
        case .alpaca, .inputOutput, .selfInstruct: return true
        case .oasst, .chat, .text: return false
        }
    }

    /// The keys a record of this format must have.
    var requiredKeys: [String] { reader.requiredKeys }
}
