import CamclassTestSupport
import Capture
import ImageOps
@testable import Pipeline
import Testing
import WireFormat

/// The scheduler's policies: drop-oldest per source, blocking producers for file jobs, the fair
/// weighted pick across sources, and when it ends.
@Suite struct SchedulerTests {
    /// A lane over an in-memory replay (`fps` 0: a file job that blocks; > 0: live, drops oldest).
    static func lane(_ name: String, weight: Int = 1, capacity: Int = 2, fps: Double = 30) -> SourceLane {
        let image = NV12Buffer(width: 16, height: 16)
        let source = ReplaySource(name: name, images: [image], fileNames: ["f"], fps: fps, loop: true)
        let vocabulary = RecordVocabulary(labels: ["a", "b"])
        return SourceLane(name: name, source: source, weight: weight, queueCapacity: capacity, firstSeq: 0,
                          encoder: RecordEncoder(source: name, model: "m", vocabulary: vocabulary, fileNames: ["f"]),
                          stable: nil, latencyWindowSeconds: 1)
    }

    static func frame(seq: UInt64, pool: FramePool) -> FrameLease {
        var f = pool.acquire()!
        f.info.seq = seq
        return f
    }

    @Test func fullRingDropsItsOldestFrameAndCountsIt() throws {
        let pool = FramePool(count: 8, width: 16, height: 16)
        let s = FrameScheduler()
        let a = Self.lane("a")
        s.add(a)
        for seq in 0..<5 { s.push(Self.frame(seq: UInt64(seq), pool: pool), lane: a) }
        #expect(s.counters(a).droppedOldest == 3)
        #expect(s.counters(a).depth == 2)
        #expect(pool.available == 6, "dropped frames end their leases")
        let first = try #require(s.popHandle())
        let second = try #require(s.popHandle())
        #expect(first.frame.info.seq == 3 && first.frame.info.ticket == 0)
        #expect(second.frame.info.seq == 4 && second.frame.info.ticket == 1)
        _ = first.frame.adopt()
        _ = second.frame.adopt()
        #expect(pool.available == 8)
        s.close(a)
        #expect(s.popHandle() == nil, "closed and drained: the end")
        #expect(s.push(Self.frame(seq: 9, pool: pool), lane: a) == false, "a closed lane refuses and releases")
        #expect(pool.available == 8)
    }

    @Test func aFileJobWaitsForRoomInsteadOfDropping() throws {
        let pool = FramePool(count: 8, width: 16, height: 16)
        let s = FrameScheduler()
        let a = Self.lane("a", capacity: 1, fps: 0)
        s.add(a)
        s.push(Self.frame(seq: 0, pool: pool), lane: a)
        let pushed = AtomicFlag()
        let t = DedicatedThread(name: "producer") { s.push(Self.frame(seq: 1, pool: pool), lane: a); pushed.set() }
        #expect(!waitUntil(timeoutMs: 200) { pushed.isSet }, "a full ring makes the producer wait")
        #expect(s.popHandle()?.frame.info.seq == 0)
        #expect(waitUntil(timeoutMs: 5000) { pushed.isSet })
        t.join()
        #expect(s.counters(a).droppedOldest == 0)
    }

    /// A blocked file job is woken when its ring is empty, then refills it in one turn (one
    /// wake-up per ring, not per frame).
    @Test func aBlockedFileJobRefillsItsWholeRingInOneTurn() throws {
        let pool = FramePool(count: 8, width: 16, height: 16)
        let s = FrameScheduler()
        let a = Self.lane("a", capacity: 2, fps: 0)
        s.add(a)
        s.push(Self.frame(seq: 0, pool: pool), lane: a)
        s.push(Self.frame(seq: 1, pool: pool), lane: a)
        let pushed = Shared(0)
        let t = DedicatedThread(name: "producer") {
            for seq in 2..<4 {
                s.push(Self.frame(seq: UInt64(seq), pool: pool), lane: a)
                pushed.value.withLock { $0 += 1 }
            }
        }
        #expect(!waitUntil(timeoutMs: 200) { pushed.value.withLock { $0 } > 0 }, "a full ring makes the producer wait")
        let first = try #require(s.popHandle())
        #expect(!waitUntil(timeoutMs: 200) { pushed.value.withLock { $0 } > 0 }, "one free slot does not wake the producer")
        let second = try #require(s.popHandle())
        #expect(waitUntil(timeoutMs: 5000) { pushed.value.withLock { $0 } == 2 }, "an empty ring does; it pushes both")
        t.join()
        #expect(s.counters(a).depth == 2 && s.counters(a).droppedOldest == 0)
        _ = first.frame.adopt()
        _ = second.frame.adopt()
    }

    /// Saturation: every lane always has a frame waiting; the pick follows the weights exactly.
    @Test(arguments: [[1, 1, 1], [1, 2, 1], [3, 1, 2]])
    func theWeightedPickSharesInProportion(weights: [Int]) throws {
        let pool = FramePool(count: 64, width: 16, height: 16)
        let s = FrameScheduler()
        let lanes = weights.enumerated().map { Self.lane("s\($0.offset)", weight: $0.element, capacity: 4) }
        for l in lanes { s.add(l) }
        var taken = [Int](repeating: 0, count: lanes.count)
        let rounds = 60 * weights.reduce(0, +)
        for _ in 0..<rounds {
            for l in lanes where s.counters(l).depth < 4 { s.push(Self.frame(seq: 0, pool: pool), lane: l) }
            let next = try #require(s.popHandle())
            taken[lanes.firstIndex { $0 === next.lane }!] += 1
            _ = next.frame.adopt()
            s.finished(lane: next.lane)
        }
        for (i, w) in weights.enumerated() { #expect(taken[i] == 60 * w, "lane \(i): \(taken)") }
    }

    /// Spare capacity: a lane with one frame waiting gets it at once, however busy the others are.
    @Test func aSlowSourceIsNotStarvedByAFastOne() throws {
        let pool = FramePool(count: 16, width: 16, height: 16)
        let s = FrameScheduler()
        let fast = Self.lane("fast", capacity: 4), slow = Self.lane("slow", capacity: 4)
        s.add(fast)
        s.add(slow)
        for i in 0..<4 { s.push(Self.frame(seq: UInt64(i), pool: pool), lane: fast) }
        s.push(Self.frame(seq: 0, pool: pool), lane: slow)
        let picks = (0..<2).compactMap { _ in s.popHandle() }
        #expect(picks.contains { $0.lane === slow }, "the slow lane's frame is among the first two taken")
        for p in picks { _ = p.frame.adopt() }
    }

    @Test func aHoldKeepsTheSchedulerOpenWithoutLanes() throws {
        let s = FrameScheduler()
        let a = Self.lane("a")
        s.add(a)
        s.hold()
        s.close(a)
        s.remove(a)
        let ended = AtomicFlag()
        let t = DedicatedThread(name: "worker") { _ = s.popHandle(); ended.set() }
        #expect(!waitUntil(timeoutMs: 200) { ended.isSet }, "held: no source is not the end")
        s.release()
        #expect(waitUntil(timeoutMs: 5000) { ended.isSet })
        t.join()
    }
}
