/// Why a model could not be had from the Hub or its cache; `description` says what to do.
public struct HubError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        /// 401 / 404 for the repository: no such repository, or a private one without a token that may read it.
        case repositoryNotFound
        /// 401 / 403 for a gated repository: its terms not accepted, or no token.
        case gated
        /// 401: the token was refused.
        case unauthorized
        case revisionNotFound
        /// A file the model needs is not in the repository.
        case fileNotFound
        /// The repository lacks what Finch needs (no weights, several GGUF files and no choice, pickles only).
        case unusable
        /// Not in the cache and the Hub may not be asked (HF_HUB_OFFLINE) or could not be reached.
        case notCached
        /// A downloaded file's hash is not its ETag.
        case corrupt
        /// Any other answer of the Hub, or a file that could not be written.
        case other
    }

    public var kind: Kind
    /// The repository, file or folder concerned.
    public var subject: String
    public var message: String
    public var advice: String

    public init(_ kind: Kind, _ subject: String, _ message: String, advice: String) {
        self.kind = kind; self.subject = subject; self.message = message; self.advice = advice
    }

    static func io(_ path: String, _ message: String) -> HubError {
        HubError(.other, path, message, advice: "check the folder's permissions and free space (HF_HUB_CACHE / HF_HOME choose the cache)")
    }

    public var description: String { "\(subject): \(message); \(advice)" }
}
