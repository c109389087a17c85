import FinchEval
import FinchFormats
import Hummingbird

// The human-evaluation routes behind the page at /eval: the next pair to rate, a rating, the Elo table.
extension Routes {
    /// The routes of this file (the page itself is an open route, `Routes.openRoutes`).
    func humanEvalRoutes() -> RouteCollection<BasicRequestContext> {
        let routes = RouteCollection(context: BasicRequestContext.self)
        routes.get("/eval/next") { [self] _, _ in try evalNext() }
        routes.post("/eval/rate") { [self] request, _ in try await evalRate(request) }
        routes.get("/eval/elo") { [self] _, _ in try evalElo() }
        return routes
    }

    func humanEval() throws -> HumanEvalSession {
        guard let s = options.humanEval else {
            throw APIError(.notFound, "Human evaluation is not set up: start finch serve with --eval-answers NAME=FILE "
                           + "(two or more) and --eval-log FILE.", type: "not_found_error", code: "no_human_eval")
        }
        return s
    }

    /// Progress and the Elo table (systems are named here: the table is the point of rating).
    func evalStanding(_ s: HumanEvalSession) -> [(key: String, value: JSONValue)] {
        let p = s.progress
        return [("done", .int(p.done)), ("total", .int(p.total)),
                ("elo", .array(s.ratings().map { r in
                    .object([("system", .string(r.system)), ("elo", .double(r.elo)), ("spread", .double(r.spread)),
                             ("wins", .int(r.wins)), ("ties", .int(r.ties)), ("losses", .int(r.losses))])
                }))]
    }

    /// `GET /eval/next`: a task (question, answers A and B, no system names), or `"task": null` when all are rated.
    func evalNext() throws -> Response {
        let s = try humanEval()
        var fields: [(key: String, value: JSONValue)] = []
        if let t = s.next() {
            fields.append(("task", .object([("id", .string(t.id)), ("question", .string(t.question)),
                                            ("answer_a", .string(t.answerA)), ("answer_b", .string(t.answerB))])))
        } else {
            fields.append(("task", .null))
        }
        return jsonResponse(.object(fields + evalStanding(s)))
    }

    /// `POST /eval/rate {"task_id", "choice": "A" | "B" | "tie", "note"?, "rater"?}`.
    func evalRate(_ request: Request) async throws -> Response {
        let s = try humanEval()
        let f = try await body(of: request)
        guard let id = try f.string("task_id") else { throw APIError.invalid("task_id", "'task_id' is missing") }
        guard let c = try f.string("choice"), let choice = HumanEvalSession.Choice(rawValue: c) else {
            throw APIError.invalid("choice", "'choice' must be \"A\", \"B\" or \"tie\"")
        }
        let note = try f.string("note").flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        do {
            try s.rate(task: id, choice: choice, note: note, rater: try f.string("rater"))
        } catch let e as HumanEvalSession.RatingError {
            switch e {
            case .unknownTask: throw APIError.invalid("task_id", e.description)
            case .alreadyRated: throw APIError(.conflict, e.description, code: "already_rated")
            }
        }
        return jsonResponse(.object(evalStanding(s)))
    }

    /// `GET /eval/elo`: progress and the Elo table.
    func evalElo() throws -> Response {
        jsonResponse(.object(evalStanding(try humanEval())))
    }
}
