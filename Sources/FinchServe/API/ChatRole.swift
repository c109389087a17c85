/// The roles a chat message may have, and the role a model's chat template is given for each.
///
/// OpenAI accepts `system`, `user`, `assistant`, `developer`, `tool` and `function`; anything else
/// is refused with 400 `invalid_value`, as OpenAI refuses it. A template renders whatever role
/// string it is handed (ChatML writes `<|im_start|>wizard`), so nothing but these names reaches it:
/// - `system`, `user`, `assistant` go through as they are (a template that cannot render one,
///   such as a template without a system turn, raises and the request gets 400);
/// - `developer` (OpenAI's newer name for system instructions) goes through as `developer` to a
///   template that names that role, and as `system` to the others;
/// - `tool` and `function` (results of tool calls) go through only to a template that names the
///   role; for the others they are refused by name: they would be rendered as a turn the model
///   was never trained on.
enum ChatRole {
    /// OpenAI's roles, in the order its documentation lists them.
    static let openAI = ["system", "user", "assistant", "developer", "tool", "function"]

    /// The role to hand the chat template (source `template`, nil: the model has none) for a
    /// message whose role is `role`; throws `APIError` 400 naming `param` for a role OpenAI does
    /// not have, or that this template cannot render.
    static func templateRole(_ role: String, param: String, template: String?) throws -> String {
        switch role {
        case "system", "user", "assistant":
            return role
        case "developer":
            guard let template else { return "system" }
            return names(template, role) ? role : "system"
        case "tool", "function":
            guard let template, !names(template, role) else { return role }
            throw APIError.invalid(param, "'\(param)' is '\(role)', a role this model's chat template does not render (it "
                                   + "never names a '\(role)' turn); for this model send \(rendered(template)) messages. "
                                   + "Tool calling is not implemented by this server: leave the tool results out, or put "
                                   + "them in a user message.")
        default:
            throw APIError.invalid(param, "Invalid value for '\(param)': '\(role)'. Supported values are "
                                   + list(openAI.map { "'\($0)'" }) + " (OpenAI's roles)"
                                   + (template.map { "; this model's chat template renders " + rendered($0) } ?? "") + ".")
        }
    }

    /// Whether a template's source names `role` as a string literal (`message.role == 'tool'`).
    static func names(_ template: String, _ role: String) -> Bool {
        template.contains("'\(role)'") || template.contains("\"\(role)\"")
    }

    /// The roles a template accepts, written out for an error message.
    static func rendered(_ template: String) -> String {
        list(["'system'", "'user'", "'assistant'"]
             + [names(template, "developer") ? "'developer'" : "'developer' (as 'system')"]
             + ["tool", "function"].filter { names(template, $0) }.map { "'\($0)'" })
    }

    /// `a, b and c`.
    private static func list(_ items: [String]) -> String {
        items.count < 2 ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + items.last!
    }
}
