import FinchFormats

/// The attention keys of `config.json` that choose full or sliding-window attention per layer:
/// `layer_types` (transformers ≥ 4.5x writes it: `full_attention` / `sliding_attention`), else
/// Qwen's `use_sliding_window` + `max_window_layers` (layers from that index on slide), and
/// `sliding_window` (the window).
public struct LayerTypesConfig: Codable, Sendable, Equatable {
    public var layerTypes: [String]?
    public var useSlidingWindow: Bool?
    public var slidingWindow: Int?
    public var maxWindowLayers: Int?

    enum CodingKeys: String, CodingKey {
        case layerTypes = "layer_types", useSlidingWindow = "use_sliding_window"
        case slidingWindow = "sliding_window", maxWindowLayers = "max_window_layers"
    }

    /// The window of each of `layers` layers (nil = full attention), as transformers' Qwen2 / Qwen3 read them.
    public func qwenWindows(layers: Int, path: String) throws -> [Int?] {
        let window = (useSlidingWindow ?? false) ? slidingWindow : nil
        if let types = layerTypes {
            guard types.count == layers else {
                throw ModelError.invalidConfig(path: path, reason: "layer_types has \(types.count) entries for \(layers) layers")
            }
            return try types.map { t in
                switch t {
                case "full_attention": return nil
                case "sliding_attention":
                    guard let w = slidingWindow, w > 0 else {
                        throw ModelError.invalidConfig(path: path, reason: "layer_types asks for sliding_attention but sliding_window is not a positive number")
                    }
                    return w
                default:
                    throw ModelError.unsupportedOption(path: path, key: "layer_types", value: t,
                                                       supported: "full_attention, sliding_attention")
                }
            }
        }
        if let w = window, w <= 0 { throw ModelError.invalidConfig(path: path, reason: "sliding_window must be positive") }
        return (0..<layers).map { i in window != nil && i >= (maxWindowLayers ?? 0) ? window : nil }
    }

    /// `layer_types` for an export (windows as read).
    static func layerTypesJSON(_ windows: [Int?]) -> JSONValue {
        .array(windows.map { .string($0 == nil ? "full_attention" : "sliding_attention") })
    }
}
