/// A piece of an example's text, and whether the loss is taken on its tokens.
///
/// Formats turn a record into segments (an Alpaca prompt then its response; human and
/// assistant turns); ``ExampleBuilder`` tokenizes each segment on its own, as qlora tokenizes
/// source and target separately, and joins them.
struct TextSegment: Sendable, Equatable {
    var text: String
    /// Whether the segment's tokens are labels (true) or masked with -100 (false).
    var trained: Bool

    init(_ text: String, trained: Bool) {
        self.text = text
        self.trained = trained
    }
}
