/// Splits a Guanaco / OpenAssistant transcript (`timdettmers/openassistant-guanaco`) into
/// human and assistant turns:
///
///     ### Human: What is a finch?### Assistant: A small bird.### Human: …
///
/// Each assistant reply runs from just after a `### Assistant:` marker up to the next
/// `### Human:` marker (or the end of the text) and is trained; everything else, the markers
/// included, is masked. Text before the first marker counts as a human turn. The text is cut
/// at the markers and nowhere else, so the segments join back into it exactly.
///
/// qlora itself trains on the whole transcript for `oasst1` (its source is empty); Finch masks
/// the human turns like the other formats, and `trainOnSource` restores qlora's behaviour.
enum OasstTranscript {
    static let humanMarker = "### Human:"
    static let assistantMarker = "### Assistant:"

    /// The turns of `text`, in order; empty pieces are left out.
    static func segments(of text: String) -> [TextSegment] {
        var out: [TextSegment] = []
        var rest = Substring(text)
        while let a = rest.range(of: assistantMarker) {
            let prompt = rest[..<a.upperBound]
            let after = rest[a.upperBound...]
            let replyEnd = after.range(of: humanMarker)?.lowerBound ?? after.endIndex
            out.append(TextSegment(String(prompt), trained: false))
            if replyEnd > after.startIndex { out.append(TextSegment(String(after[..<replyEnd]), trained: true)) }
            rest = after[replyEnd...]
        }
        if !rest.isEmpty { out.append(TextSegment(String(rest), trained: false)) }
        return out
    }

    /// Whether `text` looks like a transcript (has either marker).
    static func isTranscript(_ text: String) -> Bool {
        text.contains(humanMarker) || text.contains(assistantMarker)
    }
}
