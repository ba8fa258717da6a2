/// A fixed-capacity FIFO of bytes (allocated once per consumer). Records are appended whole or
/// not at all, so a reader never sees half a record.
/// Thread context: not synchronised; the owner holds a lock around it.
public struct ByteRing: ~Copyable {
    public let capacity: Int
    private let storage: UnsafeMutablePointer<UInt8>
    private var head = 0
    public private(set) var count = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    public var free: Int { capacity - count }
    public var isEmpty: Bool { count == 0 }

    /// Appends all of `bytes`, or nothing (returns false) when they do not fit.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= free else { return false }
        guard let src = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else { return true }
        let tail = (head + count) % capacity
        let first = min(bytes.count, capacity - tail)
        (storage + tail).update(from: src, count: first)
        if first < bytes.count { storage.update(from: src + first, count: bytes.count - first) }
        count += bytes.count
        return true
    }

    /// The oldest contiguous run of bytes (may be shorter than `count` when the data wraps).
    public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + head, count: min(count, capacity - head))
    }

    /// Removes the newest whole lines (never the oldest one, which may be partly sent already)
    /// until `bytes` more fit; the ring then still ends with a newline. Returns whether they fit.
    /// Used to make room for a final error line to a subscriber about to be disconnected.
    public mutating func dropNewestLines(toFit bytes: Int) -> Bool {
        guard free < bytes else { return true }
        // Walk back from the end over newlines; cut just after one that leaves enough room.
        var i = count - 2  // the last byte is the newline ending the newest line
        while i > 0 {
            if storage[(head + i) % capacity] == 0x0A && capacity - (i + 1) >= bytes {
                count = i + 1
                return true
            }
            i -= 1
        }
        return false
    }

    public mutating func consume(_ n: Int) {
        precondition(n <= count)
        head = (head + n) % capacity
        count -= n
        if count == 0 { head = 0 }
    }
}
