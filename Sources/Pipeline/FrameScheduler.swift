import Capture
import Support

/// The bounded hand-off between the sources' capture threads and the inference workers: one small
/// ring per source (its `SourceLane`), and one rule for which frame a free worker takes next —
/// smooth weighted round-robin over the lanes that have a frame waiting, so a 60 FPS camera cannot
/// starve a 5 FPS one, a lane of weight 2 gets twice the share of a lane of weight 1 when the
/// engine is saturated, and every lane gets its full rate when the engine has room.
///
/// Per lane, when its ring is full: `.dropOldest` (live sources) drops the oldest frame (counted;
/// the lease ends, a camera buffer goes back to the driver); `.block` (an unpaced replay, a file
/// job) makes the producer wait for room. Each popped frame gets a ticket (0, 1, 2, … across all
/// lanes) so the result stage can restore the order frames were taken in, which keeps every
/// lane's frames in order.
///
/// Thread context: any thread; one lock-protected state machine. Nothing is allocated per frame
/// (rings are sized when a lane is added).
public final class FrameScheduler: @unchecked Sendable {
    public enum Policy: Sendable {
        /// Live sources: a full ring drops its oldest frame (counted).
        case dropOldest
        /// File jobs (unpaced replay): a full ring makes the producer wait.
        case block
    }

    /// Scheduler state of one lane; guarded by the scheduler's lock.
    struct LaneState {
        var ring: [FrameHandle?]
        var head = 0
        var count = 0
        /// No more pushes (the producer ended or the lane is being removed).
        var closed = false
        var pushed = 0
        var droppedOldest = 0
        /// Smooth weighted round-robin: the lane's running credit.
        var credit = 0
        /// Popped, not yet published (the result stage calls `finished`).
        var inFlight = 0

        init(capacity: Int) { ring = Array(repeating: nil, count: capacity) }
    }

    private let cond = Condition()
    // Guarded by `cond`'s mutex:
    private var lanes: [SourceLane] = []
    private var states: [LaneState] = []
    private var nextTicket: UInt64 = 0
    /// While > 0, having no open lane does not end the pipeline (a reload is swapping sources).
    private var holds = 0
    private var stopped = false
    /// Threads waiting for something other than a frame (a producer for room, a drain): a push
    /// then wakes everyone rather than one worker.
    private var otherWaiters = 0

    public init() {}

    /// Adds a lane (before its capture thread starts). Allocates its ring.
    func add(_ lane: SourceLane) {
        cond.locked {
            lane.schedulerIndex = lanes.count
            lanes.append(lane)
            states.append(LaneState(capacity: lane.queueCapacity))
        }
        cond.broadcast()
    }

    /// Removes a lane whose ring is empty and closed (see `SourceLane` removal).
    func remove(_ lane: SourceLane) {
        cond.locked {
            guard let i = lanes.firstIndex(where: { $0 === lane }) else { return }
            let dropped = states[i]
            lanes.remove(at: i)
            states.remove(at: i)
            for (j, l) in lanes.enumerated() { l.schedulerIndex = j }
            precondition(dropped.count == 0, "a lane is removed only once drained")
        }
        cond.broadcast()
    }

    /// Enqueues `frame` on `lane`; when the lane's ring is full the oldest queued frame is dropped
    /// first (`.dropOldest`, its lease ends here) or the caller waits for room (`.block`).
    /// Returns false (and ends `frame`'s lease) when the lane is closed.
    @discardableResult
    func push(_ frame: consuming FrameLease, lane: SourceLane) -> Bool {
        let handle = frame.detach()
        var evicted: FrameHandle?
        var othersWaiting = false
        let accepted = cond.locked { () -> Bool in
            var i = lane.schedulerIndex
            if lane.policy == .block {
                otherWaiters += 1
                cond.waitLocked(until: {
                    i = lane.schedulerIndex
                    return states[i].count < states[i].ring.count || states[i].closed
                })
                otherWaiters -= 1
            }
            othersWaiting = otherWaiters > 0
            if states[i].closed { evicted = handle; return false }
            let capacity = states[i].ring.count
            if states[i].count == capacity {
                evicted = states[i].ring[states[i].head]
                states[i].ring[states[i].head] = nil
                states[i].head = (states[i].head + 1) % capacity
                states[i].count -= 1
                states[i].droppedOldest += 1
            }
            states[i].ring[(states[i].head + states[i].count) % capacity] = handle
            states[i].count += 1
            states[i].pushed += 1
            return true
        }
        if let evicted { _ = evicted.adopt() }  // the lease ends here: the buffer goes back
        // One frame is work for one worker: waking them all would cost every idle worker a
        // wake-up per frame. Only another blocked producer (waiting for room) needs everyone woken.
        if !accepted || othersWaiting { cond.broadcast() } else { cond.signal() }
        return accepted
    }

    /// Blocks until a frame is available on some lane (returns its lease, `info.ticket` set, and
    /// sets `lane`), or every lane is closed and drained and nothing holds the scheduler open (nil).
    /// The lease is the only reference the caller gets to the frame's owner, so ending it lets a
    /// retired camera close at once.
    func pop(lane: inout SourceLane?) -> FrameLease? {
        guard let (l, handle) = popHandle() else { return nil }
        lane = l
        return handle.adopt()
    }

    /// `pop` as a detached handle (tests inspect it without ending the lease).
    func popHandle() -> (lane: SourceLane, frame: FrameHandle)? {
        var picked: (SourceLane, FrameHandle)?
        var wakeProducer = false
        cond.wait(until: {
            var best = -1
            var total = 0
            for i in states.indices where states[i].count > 0 {
                states[i].credit += lanes[i].weight
                total += lanes[i].weight
                if best < 0 || states[i].credit > states[best].credit { best = i }
            }
            if best >= 0 {
                states[best].credit -= total
                let capacity = states[best].ring.count
                var handle = states[best].ring[states[best].head]!
                states[best].ring[states[best].head] = nil
                states[best].head = (states[best].head + 1) % capacity
                states[best].count -= 1
                // A blocked producer (`.block`) is woken when its ring is empty, not at the first
                // free slot: it then refills the whole ring in one turn, one wake-up per ring
                // rather than per frame (with one slot, the same thing).
                wakeProducer = lanes[best].policy == .block && states[best].count == 0
                states[best].inFlight += 1
                handle.info.ticket = nextTicket
                nextTicket += 1
                picked = (lanes[best], handle)
                return true
            }
            return holds == 0 && (stopped || states.allSatisfy(\.closed))
        })
        if wakeProducer { cond.broadcast() }
        return picked
    }

    /// The result stage published (or discarded) a frame `pop` gave out for `lane`.
    func finished(lane: SourceLane) {
        let drained = cond.locked { () -> Bool in
            let i = lane.schedulerIndex
            guard i < states.count, lanes[i] === lane else { return false }
            states[i].inFlight -= 1
            return states[i].closed && states[i].count == 0 && states[i].inFlight == 0
        }
        if drained { cond.broadcast() }
    }

    /// No more pushes on `lane`: a blocked producer returns, workers drain what is queued.
    func close(_ lane: SourceLane) {
        cond.locked {
            let i = lane.schedulerIndex
            if i < states.count && lanes[i] === lane { states[i].closed = true }
        }
        cond.broadcast()
    }

    /// Blocks until `lane` is closed, its ring empty and its popped frames published.
    func waitDrained(_ lane: SourceLane) {
        cond.locked {
            otherWaiters += 1
            cond.waitLocked(until: {
                let i = lane.schedulerIndex
                guard i < states.count, lanes[i] === lane else { return true }
                return states[i].closed && states[i].count == 0 && states[i].inFlight == 0
            })
            otherWaiters -= 1
        }
    }

    /// Keeps the scheduler open while no lane is (a reload replacing the only source).
    func hold() { cond.locked { holds += 1 } }
    func release() {
        cond.locked { holds -= 1 }
        cond.broadcast()
    }

    /// Every lane is closed from now on; workers drain and end.
    func stopAll() {
        cond.locked {
            stopped = true
            for i in states.indices { states[i].closed = true }
        }
        cond.broadcast()
    }

    public struct LaneCounters: Sendable, Equatable {
        public var pushed = 0
        public var droppedOldest = 0
        public var depth = 0
        public var capacity = 0
        public var closed = false
    }

    func counters(_ lane: SourceLane) -> LaneCounters {
        cond.locked {
            let i = lane.schedulerIndex
            guard i < states.count, lanes[i] === lane else { return LaneCounters() }
            let s = states[i]
            return LaneCounters(pushed: s.pushed, droppedOldest: s.droppedOldest, depth: s.count, capacity: s.ring.count, closed: s.closed)
        }
    }

    /// Tickets issued so far (frames handed to workers).
    public var ticketsIssued: UInt64 { cond.locked { nextTicket } }
}
