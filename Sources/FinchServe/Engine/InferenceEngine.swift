import FinchModels
import Foundation

/// Observes the engine (metrics): called on the engine's thread.
public protocol EngineObserver: AnyObject, Sendable {
    /// After each forward pass.
    func engineStepped(_ report: BatchEngine.StepReport, seconds: Double, running: Int, waiting: Int)
    /// Whenever the sequences running or waiting change, however they changed: a step, sequences
    /// that finished, failed or were cancelled (a client that went away) with no step after them,
    /// shutdown.
    func engineLoad(running: Int, waiting: Int)
}

extension EngineObserver {
    public func engineLoad(running: Int, waiting: Int) {}
}

/// Drives a `BatchEngine` on a thread of its own (the model is not thread-safe and each forward
/// pass uses every core): requests from any task join the batch at the next step; their events
/// arrive on an `AsyncStream`. Work that needs the model alone (loading an adapter) runs between steps.
/// The thread runs until `shutdown()`.
public final class InferenceEngine: @unchecked Sendable {
    public let lm: LoadedModel
    private let engine: BatchEngine
    private let condition = NSCondition()
    private var inbox: [(GenerationRequest, (GenerationEvent) -> Void, () -> Bool)] = []
    private var exclusive: [() -> Void] = []
    private var stopping = false
    private var thread: Thread?
    /// Signalled once when the thread's loop has returned (the model is no longer in use).
    private let stopped = DispatchSemaphore(value: 0)
    private var joined = false
    private var threadRunning = true

    /// Whether the engine's thread is still running (false once `shutdown()` has returned).
    public var isRunning: Bool {
        condition.lock(); defer { condition.unlock() }
        return threadRunning
    }
    private var waitingCount = 0, runningCount = 0
    /// Told about every step and every change of the counts (`engineLoad`), on the engine's thread.
    public weak var observer: (any EngineObserver)?

    /// Waiting requests at most; more are refused (`submit` returns nil).
    public let maxQueue: Int

    public init(lm: LoadedModel, maxBatch: Int, stepTokens: Int = 512, maxQueue: Int = 1024) {
        self.lm = lm
        self.engine = BatchEngine(lm: lm, maxBatch: maxBatch, stepTokens: stepTokens)
        self.maxQueue = maxQueue
        // The thread holds the engine until `shutdown()` ends its loop.
        let t = Thread { [self] in
            self.loop()
            self.condition.lock()
            self.threadRunning = false
            self.condition.unlock()
            self.stopped.signal()
        }
        t.name = "finch-engine"
        t.stackSize = 16 << 20
        thread = t
        t.start()
    }

    public var maxBatch: Int { engine.maxBatch }

    /// Requests waiting for a place in the batch, and sequences in it.
    public var load: (waiting: Int, running: Int) {
        condition.lock(); defer { condition.unlock() }
        return (waitingCount + inbox.count, runningCount)
    }

    /// Starts a sequence. Its events end with `finished` or `failed`; ending the iteration early
    /// (a client that went away) cancels it. Nil when the queue is full.
    public func submit(_ request: GenerationRequest) -> AsyncStream<GenerationEvent>? {
        submit([request])?.first
    }

    /// Starts sequences that join the batch at the same step (the choices of one request: with
    /// the same batch around them, a seed samples the same answer again). Nil when the queue
    /// cannot take them all.
    public func submit(_ requests: [GenerationRequest]) -> [AsyncStream<GenerationEvent>]? {
        var entries: [(GenerationRequest, (GenerationEvent) -> Void, () -> Bool)] = []
        var streams: [AsyncStream<GenerationEvent>] = []
        for request in requests {
            let cancelled = CancelFlag()
            let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
            continuation.onTermination = { _ in cancelled.set() }
            entries.append((request, { event in
                continuation.yield(event)
                switch event {
                case .finished, .failed: continuation.finish()
                default: break
                }
            }, { cancelled.isSet }))
            streams.append(stream)
        }
        condition.lock()
        defer { condition.unlock() }
        guard waitingCount + inbox.count + entries.count <= maxQueue, !stopping else { return nil }
        inbox += entries
        condition.signal()
        return streams
    }

    /// Runs `body` with the model alone, between two forward passes.
    public func exclusive<T: Sendable>(_ body: @escaping @Sendable (LoadedModel) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            condition.lock()
            exclusive.append { [lm] in c.resume(with: Result { try body(lm) }) }
            condition.signal()
            condition.unlock()
        }
    }

    /// Stops the thread after the current step (running sequences fail) and waits until it has
    /// stopped, so the model is free for whoever uses it next (another engine over the same
    /// model must not start stepping while this one is still inside a forward pass). Called
    /// again, or from the engine's own thread, it does not wait.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        let wait = !joined && Thread.current !== thread
        if wait { joined = true }
        condition.unlock()
        if wait { stopped.wait() }
    }

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && exclusive.isEmpty && engine.isIdle && !stopping { condition.wait() }
            let arrived = inbox, jobs = exclusive, stop = stopping
            inbox.removeAll()
            exclusive.removeAll()
            condition.unlock()
            if stop {
                for (_, emit, _) in arrived { emit(.failed("the server is shutting down")) }
                engine.failAll("the server is shutting down")
                for j in jobs { j() }
                condition.lock()
                waitingCount = 0
                runningCount = 0
                condition.unlock()
                observer?.engineLoad(running: 0, waiting: 0)
                return
            }
            for (r, emit, cancelled) in arrived { engine.submit(r, emit: emit, isCancelled: cancelled) }
            for j in jobs { j() }
            let start = DispatchTime.now().uptimeNanoseconds
            let report = engine.step()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            condition.lock()
            let changed = waitingCount != engine.waitingCount || runningCount != engine.runningCount
            waitingCount = engine.waitingCount
            runningCount = engine.runningCount
            condition.unlock()
            if let report { observer?.engineStepped(report, seconds: seconds, running: runningCount, waiting: waitingCount) }
            // Sequences also leave without a step to report (cancelled by a client that went away,
            // failed when admitted): the observer hears of every change, not only of steps.
            if changed { observer?.engineLoad(running: runningCount, waiting: waitingCount) }
        }
    }
}

/// A flag set once from any thread.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
