import Capture
import Support

/// The bounded hand-off between the capture thread and the inference workers. Policy: when full,
/// the *oldest* frame is dropped (and counted) — a live camera wants the freshest frame, and a
/// full downstream must never stall capture. Each popped frame gets a ticket (0, 1, 2, …) so the
/// result stage can restore frame order after parallel inference.
/// Thread context: any thread; a small lock-protected state machine.
public final class FrameQueue: @unchecked Sendable {
    public enum Policy: Sendable {
        /// Live sources: a full queue drops its oldest frame (counted).
        case dropOldest
        /// File jobs (unpaced replay): a full queue makes the producer wait.
        case block
    }

    public let capacity: Int
    public let policy: Policy
    private let pool: FramePool
    private let cond = Condition()
    // Guarded by `cond`'s mutex:
    private var ring: [FrameHandle?]
    private var head = 0
    private var count = 0
    private var closed = false
    private var nextTicket: UInt64 = 0
    private var droppedOldest = 0
    private var pushed = 0
    /// Producers blocked in `push` (`.block` policy): a push then wakes everyone, not one consumer.
    private var producersWaiting = 0

    public init(capacity: Int, pool: FramePool, policy: Policy = .dropOldest) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.policy = policy
        self.pool = pool
        ring = Array(repeating: nil, count: capacity)
    }

    /// Enqueues `frame`; when full, the oldest queued frame is released back to the pool first
    /// (`.dropOldest`) or the caller waits for room (`.block`).
    /// Returns false (and releases `frame`) when the queue is closed.
    @discardableResult
    public func push(_ frame: consuming NV12Frame) -> Bool {
        let handle = frame.detach()
        var evicted: FrameHandle?
        if policy == .block {
            cond.locked { producersWaiting += 1 }
            cond.wait(until: { count < capacity || closed })
            cond.locked { producersWaiting -= 1 }
        }
        var othersWaiting = false
        let accepted = cond.locked { () -> Bool in
            othersWaiting = producersWaiting > 0
            if closed { evicted = handle; return false }
            if count == capacity {
                evicted = ring[head]
                ring[head] = nil
                head = (head + 1) % capacity
                count -= 1
                droppedOldest += 1
            }
            ring[(head + count) % capacity] = handle
            count += 1
            pushed += 1
            return true
        }
        if let evicted { _ = pool.adopt(evicted) }  // the lease ends here: buffer back to the pool
        // One frame is work for one worker: waking them all would cost every idle worker a
        // wake-up per frame. Only another blocked producer (waiting for room) needs everyone woken.
        if !accepted || othersWaiting { cond.broadcast() } else { cond.signal() }
        return accepted
    }

    /// Blocks until a frame is available (returns it, `info.ticket` set) or the queue is closed and
    /// empty (returns nil).
    public func pop() -> NV12Frame? {
        var handle: FrameHandle?
        var ticket: UInt64 = 0
        var wasFull = false
        cond.wait(until: {
            if count > 0 {
                wasFull = count == capacity
                handle = ring[head]
                ring[head] = nil
                head = (head + 1) % capacity
                count -= 1
                ticket = nextTicket
                nextTicket += 1
                return true
            }
            return closed
        })
        guard let handle else { return nil }
        // Room for a producer: one can wait only while the queue is full (`.block`).
        if wasFull { cond.broadcast() }
        var frame = pool.adopt(handle)
        frame.info.ticket = ticket
        return frame
    }

    /// No more pushes; poppers drain what is queued, then get nil.
    public func close() {
        cond.locked { closed = true }
        cond.broadcast()
    }

    public struct Counters: Sendable, Equatable {
        public var pushed: Int
        public var droppedOldest: Int
        public var depth: Int
        public var ticketsIssued: UInt64
        public var closed: Bool
    }

    public var counters: Counters {
        cond.locked { Counters(pushed: pushed, droppedOldest: droppedOldest, depth: count, ticketsIssued: nextTicket, closed: closed) }
    }
}
