/// Expressions of the template language.
indirect enum Expr {
    case literal(Value)
    case name(String, SourceLocation)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case getAttr(Expr, String, SourceLocation)
    case getItem(Expr, Expr, SourceLocation)
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?, SourceLocation)
    case call(Expr, args: [Expr], kwargs: [(String, Expr)], SourceLocation)
    case filter(Expr, name: String, args: [Expr], kwargs: [(String, Expr)], SourceLocation)
    case test(Expr, name: String, args: [Expr], negated: Bool, SourceLocation)
    case not(Expr)
    case neg(Expr, SourceLocation)
    case pos(Expr, SourceLocation)
    case binary(String, Expr, Expr, SourceLocation)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case concat([Expr], SourceLocation)
    case compare(Expr, [(String, Expr)], SourceLocation)
    case condExpr(test: Expr, then: Expr, otherwise: Expr?)
}

/// Targets of `for` and `set`.
indirect enum AssignTarget {
    case name(String)
    case tuple([AssignTarget])
    /// `ns.attr`
    case attribute(String, String)
}

/// Statements (template nodes).
indirect enum Node {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], otherwise: [Node]?)
    case forLoop(target: AssignTarget, iter: Expr, filter: Expr?, body: [Node], otherwise: [Node]?, SourceLocation)
    case set(AssignTarget, Expr, SourceLocation)
    case setBlock(AssignTarget, body: [Node], filters: [(String, [Expr], [(String, Expr)], SourceLocation)], SourceLocation)
    case macro(name: String, params: [(String, Expr?)], body: [Node])
    case filterBlock(filters: [(String, [Expr], [(String, Expr)], SourceLocation)], body: [Node])
    case breakLoop(SourceLocation)
    case continueLoop(SourceLocation)
    /// `{% generation %}` (transformers' assistant-mask extension): renders its body.
    case generation([Node])
}
