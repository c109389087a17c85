import FinchCore
import FinchFormats
import FinchModels
import Foundation

/// Human pairwise evaluation (the page at `finch serve`'s `/eval`): every question with every pair
/// of systems is one task, shown once with the two answers anonymized as A and B in a random
/// order; each rating (A, B or tie, with an optional note) is appended to a JSON-lines log and
/// the Elo table is recomputed with the same code as the judge's. The log is read back at start,
/// so a session continues where it stopped. Thread-safe.
public final class HumanEvalSession: @unchecked Sendable {
    /// One comparison as a person sees it.
    public struct Task: Sendable, Equatable {
        public var id: String
        public var questionId: String
        public var question: String
        /// The system shown as A and as B (never sent to the page).
        public var systemA: String
        public var systemB: String
        public var answerA: String
        public var answerB: String
    }

    public enum Choice: String, Sendable, CaseIterable { case a = "A", b = "B", tie }

    public enum RatingError: Error, Equatable, CustomStringConvertible {
        case unknownTask(String)
        case alreadyRated(String)
        public var description: String {
            switch self {
            case .unknownTask(let t): return "no task \(t); fetch the next one"
            case .alreadyRated(let t): return "task \(t) is already rated"
            }
        }
    }

    public let log: String
    private let logFile: JSONLinesFile
    public let tournaments: Int
    public let seed: UInt64
    private let tasks: [Task]
    private let lock = NSLock()
    private var rated: [String: Elo.Match] = [:]
    private var ratedOrder: [String] = []
    private var handedOut: [String: Date] = [:]
    /// How long a task handed to one rater is kept from the others.
    public var holdSeconds: TimeInterval = 600

    /// - Parameters: systems: at least two answer sets; questions: what to ask (every system must
    ///   answer each); log: the ratings file (created, or continued); seed: task order and sides.
    public init(systems: [AnswerSet], questions: [JudgeQuestion], log: String, seed: UInt64 = 42,
                tournaments: Int = 1000) throws {
        guard systems.count >= 2 else { throw EvalError("human evaluation needs answers from at least two systems", advice: "give two or more answer files (NAME=FILE)") }
        for s in systems {
            for q in questions where s.answers[q.id] == nil {
                throw EvalError(item: s.name, "no answer to question \(q.id)", advice: "generate answers for every question")
            }
        }
        self.log = log; self.seed = seed; self.tournaments = tournaments
        var rng = SeededRandom(seed: seed)
        var all: [Task] = []
        for q in questions {
            for i in systems.indices {
                for j in (i + 1)..<systems.count {
                    var (a, b) = (systems[i], systems[j])
                    if Bool.random(using: &rng) { swap(&a, &b) }
                    all.append(Task(id: "\(q.id)|\(systems[i].name)|\(systems[j].name)", questionId: q.id, question: q.text,
                                    systemA: a.name, systemB: b.name,
                                    answerA: a.answers[q.id]!.text, answerB: b.answers[q.id]!.text))
                }
            }
        }
        all.shuffle(using: &rng)
        tasks = all
        logFile = try JSONLinesFile(path: log)   // a half-written last line is cut off
        try readLog()
    }

    private func readLog() throws {
        let byId = Dictionary(uniqueKeysWithValues: tasks.map { ($0.id, $0) })
        for (n, v) in try logFile.values() {
            guard let id = v["task"]?.stringValue, let choice = v["choice"]?.stringValue.flatMap(Choice.init(rawValue:)) else {
                throw EvalError(file: log, line: n, "not a rating line", advice: "use another --eval-log")
            }
            guard let task = byId[id] else {
                throw EvalError(file: log, line: n, "task \(id) is not among these answers", advice: "use another --eval-log")
            }
            if rated[id] == nil { ratedOrder.append(id) }
            rated[id] = Self.match(task, choice)
        }
    }

    static func match(_ t: Task, _ c: Choice) -> Elo.Match {
        Elo.Match(a: t.systemA, b: t.systemB, scoreA: c == .a ? 1 : c == .b ? 0 : 0.5)
    }

    /// Ratings recorded and tasks in all.
    public var progress: (done: Int, total: Int) {
        lock.lock(); defer { lock.unlock() }
        return (rated.count, tasks.count)
    }

    /// The next task to rate: the first unrated one not handed to someone else in the last
    /// `holdSeconds` (or, when all are, the one handed out longest ago); nil when all are rated.
    public func next(now: Date = Date()) -> Task? {
        lock.lock(); defer { lock.unlock() }
        let open = tasks.filter { rated[$0.id] == nil }
        guard !open.isEmpty else { return nil }
        let pick = open.first { t in handedOut[t.id].map { now.timeIntervalSince($0) > holdSeconds } ?? true }
            ?? open.min { (handedOut[$0.id] ?? .distantPast) < (handedOut[$1.id] ?? .distantPast) }!
        handedOut[pick.id] = now
        return pick
    }

    /// Records a rating (appended to the log and flushed to disk).
    public func rate(task id: String, choice: Choice, note: String?, rater: String? = nil) throws {
        lock.lock(); defer { lock.unlock() }
        guard let task = tasks.first(where: { $0.id == id }) else { throw RatingError.unknownTask(id) }
        guard rated[id] == nil else { throw RatingError.alreadyRated(id) }
        let winner = choice == .a ? task.systemA : choice == .b ? task.systemB : "tie"
        var fields: [(key: String, value: JSONValue)] = [
            ("task", .string(id)), ("question_id", (try? JSONParser.parse(task.questionId)) ?? .string(task.questionId)),
            ("a", .string(task.systemA)), ("b", .string(task.systemB)), ("choice", .string(choice.rawValue)),
            ("winner", .string(winner)), ("note", note.map { .string($0) } ?? .null),
            ("time", .string(ISO8601DateFormatter().string(from: Date()))),
        ]
        if let rater { fields.append(("rater", .string(rater))) }
        try logFile.append(.object(fields))
        rated[id] = Self.match(task, choice)
        ratedOrder.append(id)
        handedOut[id] = nil
    }

    /// The Elo table of the ratings so far (the judge's code: start 1000, K = 32, averaged over
    /// `tournaments` seeded orders).
    public func ratings() -> [Elo.Rating] {
        lock.lock()
        let matches = ratedOrder.map { rated[$0]! }
        lock.unlock()
        return Elo.ratings(matches, tournaments: tournaments, seed: seed)
    }
}
