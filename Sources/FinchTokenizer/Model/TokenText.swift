/// A token's text compared by its exact UTF-8 bytes. Swift's `String` equality is canonical
/// equivalence, under which distinct vocabulary entries would collide (";" and U+037E GREEK
/// QUESTION MARK, a precomposed "ó" and "o" + U+0301); `tokenizers` compares bytes, and so must a
/// vocabulary lookup.
struct TokenText: Hashable, Sendable {
    let utf8: [UInt8]
    init(_ s: String) { utf8 = Array(s.utf8) }
    init(bytes: some Sequence<UInt8>) { utf8 = Array(bytes) }
    var string: String { String(decoding: utf8, as: UTF8.self) }
}
