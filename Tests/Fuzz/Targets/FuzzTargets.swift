import CamclassDaemon
import Capture
import Glibc
import ImageOps
import MQTTBridge
import Support
import WireFormat

/// What one fuzz input came to: accepted, or rejected with the message the user would see.
/// A crash, a trap or a broken invariant (checked with `precondition`) is a finding.
public enum FuzzOutcome: Equatable, Sendable {
    case accepted
    case rejected(String)

    public var isAccepted: Bool { self == .accepted }
}

/// The fuzz targets: outside input → the same entry points the daemon and tools use. Shared by the
/// libFuzzer driver (`camclass-fuzz`, built by `make fuzz`) and the regression tests, so a finding
/// is replayed through exactly the code that crashed.
/// Thread context: one input at a time (the file targets reuse one scratch directory per process).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Bytes a client writes to the socket: lines → `ProtocolRequest.parse` → the reply it gets.
    case requestParser = "request-parser"
    /// A config file's text → `DaemonConfig.parse(yaml:file:)` → a config or a `ConfigError`.
    case config
    /// A coarse-groups file → `CoarseGroups.parse` → groups or a `ConfigError`.
    case coarseGroups = "coarse-groups"
    /// The MQTT bridge's config file → `MQTTConfig.parse` → a config or an `MQTTConfigError`.
    case mqttConfig = "mqtt-config"
    /// A camera buffer (NV12, YUYV or MJPEG; a 4-byte header picks the format and the driver's
    /// answers) → `CameraFrameIntake.take` → a frame or a counted drop.
    case cameraIntake = "camera-intake"
    /// A replay folder's `.jpg` file → `ReplaySource` (header check, decode) → frames or a skip.
    case replayJPEG = "replay-jpeg"
    /// A replay folder's `<name>_<W>x<H>.nv12` file (first line: the name, rest: the contents).
    case nv12File = "nv12-file"

    /// The file name config errors must carry.
    public static let configFile = "fuzz.yaml"

    /// Feeds one input through the target. Traps (a finding) when an invariant breaks: an error of
    /// another type than the entry point promises, an error that does not name the file, a reply
    /// that is not one line of valid JSON.
    public func run(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        switch self {
        case .requestParser: return Self.requests(data)
        case .config: return Self.daemonConfig(data)
        case .coarseGroups: return Self.coarseGroups(data)
        case .mqttConfig: return Self.mqttConfig(data)
        case .cameraIntake: return Self.cameraIntake(data)
        case .replayJPEG: return Self.replayJPEG(data)
        case .nv12File: return Self.nv12File(data)
        }
    }

    public func run(_ bytes: [UInt8]) -> FuzzOutcome { bytes.withUnsafeBytes { run($0) } }

    // MARK: request parser

    /// Labels with a coarse group, as a daemon with a model and `stable.groups` has them.
    static let vocabulary = RecordVocabulary(
        labels: ["tabby", "tiger cat", "Egyptian cat", "espresso", "Ünïcödé \"quoted\"", "", "cup"],
        groups: [(name: "cat", classes: [0, 1, 2]), (name: "drink", classes: [3, 6, 99, -1])])

    static func requests(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        var first: FuzzOutcome = .accepted
        var start = 0
        // The publisher frames requests by '\n'; blank lines are keep-alives.
        while start <= data.count {
            var end = start
            while end < data.count && data[end] != 0x0A { end += 1 }
            let line = UnsafeRawBufferPointer(rebasing: data[start..<end])
            start = end + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            for vocabulary in [vocabulary, nil] {
                let reply: [UInt8]
                do {
                    let request = try ProtocolRequest.parse(line, vocabulary: vocabulary, maxTopK: 5)
                    if case .subscribe(let filter) = request {
                        if let ns = filter.maxRateIntervalNs { precondition(ns > 0, "max_rate_hz gave a zero interval") }
                        if let k = filter.topK { precondition((1...5).contains(k), "top_k \(k) not capped at the daemon's") }
                        reply = filter.encodeAck()
                    } else {
                        reply = Array("{}\n".utf8)
                    }
                } catch {
                    // The outcome is the daemon's (it has labels); the pass without them is for coverage.
                    if vocabulary != nil, case .accepted = first { first = .rejected(error.description) }
                    reply = error.encode()
                }
                checkJSONLine(reply)
            }
        }
        return first
    }

    /// A reply is one JSON object and one newline, never cut or merged.
    static func checkJSONLine(_ reply: [UInt8]) {
        precondition(reply.last == 0x0A, "reply without its newline")
        precondition(reply.dropLast().firstIndex(of: 0x0A) == nil, "reply with a newline inside")
        reply.dropLast().withUnsafeBytes { body in
            do {
                guard case .object = try JSONParser.parse(body) else { preconditionFailure("reply is not a JSON object") }
            } catch {
                preconditionFailure("reply is not valid JSON (\(error)): \(String(decoding: body, as: UTF8.self))")
            }
        }
    }

    // MARK: configuration files

    /// The loaders read UTF-8 text only (anything else is refused before parsing).
    static func text(_ data: UnsafeRawBufferPointer) -> String? {
        String(validating: data, as: UTF8.self)
    }

    static func daemonConfig(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        guard let text = text(data) else { return .rejected("not UTF-8 text") }
        do {
            _ = try DaemonConfig.parse(yaml: text, file: configFile)
            return .accepted
        } catch {
            precondition(error.file == configFile, "config error without the file name: \(error)")
            return .rejected(error.description)
        }
    }

    static func coarseGroups(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        guard let text = text(data) else { return .rejected("not UTF-8 text") }
        do {
            let groups = try CoarseGroups.parse(yaml: text, file: configFile, classes: 1000)
            for g in groups { precondition(g.classes.allSatisfy { (0..<1000).contains($0) }, "group \(g.name) has a class out of range") }
            return .accepted
        } catch let error as ConfigError {
            precondition(error.file == configFile, "coarse-groups error without the file name: \(error)")
            return .rejected(error.description)
        } catch {
            preconditionFailure("CoarseGroups.parse threw \(type(of: error)), not a ConfigError: \(error)")
        }
    }

    static func mqttConfig(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        guard let text = text(data) else { return .rejected("not UTF-8 text") }
        do {
            _ = try MQTTConfig.parse(yaml: text, file: configFile)
            return .accepted
        } catch {
            precondition(error.file == configFile, "MQTT config error without the file name: \(error)")
            return .rejected(error.description)
        }
    }

    // MARK: camera buffers

    /// Header: format, width, height (1…256 each), padding of bytesperline (0…255); then the buffer.
    static func cameraIntake(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        guard data.count >= 4 else { return .rejected("short header") }
        let format = CameraPixelFormat.allCases[Int(data[0]) % CameraPixelFormat.allCases.count]
        let width = Int(data[1]) + 1
        let height = Int(data[2]) + 1
        let bpp = format == .yuyv ? 2 : 1
        let bytesPerLine = format == .mjpeg ? 0 : width * bpp + Int(data[3])
        let sizeImage = format == .mjpeg ? width * height * 2 : bytesPerLine * height * (format == .nv12 ? 3 : 2) / 2
        let converter = CameraFrameConverter(format: format, width: width, height: height,
                                             bytesPerLine: bytesPerLine, sizeImage: sizeImage)
        let intake = CameraFrameIntake(converter: converter)
        let buffer = UnsafeRawBufferPointer(rebasing: data[4...])
        let outcome = intake.take(buffer, bytesUsed: UInt32(buffer.count), flags: 0, sequence: 1)
        guard outcome.delivered, let payload = outcome.payload else {
            precondition(outcome.dropped != nil, "a frame neither delivered nor dropped")
            return .rejected(outcome.reason.map { "\($0)" } ?? "\(outcome.dropped!)")
        }
        // What a worker does with it: convert into a model input (sized as the camera's frames).
        let worker = ModelInputConverter(maxWidth: max(2, width), maxHeight: max(2, height), inputWidth: 32, inputHeight: 32)
        let input = NV12Buffer(width: 32, height: 32)
        do throws(FrameConversionError) {
            try worker.convert(payload, into: input.view, mode: .crop)
        } catch {
            return .rejected("\(error)")
        }
        return .accepted
    }

    // MARK: replay files

    /// Pixel limit for the replay targets: small enough that every input decodes in milliseconds.
    static let replayMaxPixels = 1 << 20

    /// One scratch directory per process, emptied before each input.
    nonisolated(unsafe) static var scratch: String?

    static func scratchDirectory() -> String {
        if let s = scratch {
            if let dir = opendir(s) {
                var names: [String] = []
                while let e = readdir(dir) {
                    let n = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                    if n != "." && n != ".." { names.append(n) }
                }
                closedir(dir)
                for n in names { unlink(s + "/" + n) }
            }
            return s
        }
        var template = Array("/tmp/camclass-fuzz-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: errno \(errno)")
        let s = String(cString: made!)
        scratch = s
        return s
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot create \(path): errno \(errno)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "cannot write \(path): errno \(errno)")
            done += n
        }
        close(fd)
    }

    /// Loads `path` as a replay source and takes every image once, as the pipeline would.
    static func replay(_ path: String) -> FuzzOutcome {
        let source: ReplaySource
        do {
            source = try ReplaySource(path: path, fps: 0, loop: false, maxPixels: replayMaxPixels)
        } catch let error as ReplayError {
            return .rejected(error.description)
        } catch {
            preconditionFailure("ReplaySource threw \(type(of: error)), not a ReplayError: \(error)")
        }
        precondition(!source.fileNames.isEmpty, "a replay source without images")
        let size = source.maxFrameSize
        precondition(size.width * size.height <= replayMaxPixels, "maxFrameSize \(size) over the pixel limit")
        source.open()
        var frames = 0
        while true {
            let frame: FrameLease?
            do { frame = try source.nextFrame() } catch {
                preconditionFailure("nextFrame threw on a loaded image: \(error)")
            }
            guard let frame else { break }
            precondition(frame.payload.size.width * frame.payload.size.height <= replayMaxPixels, "a frame over the pixel limit")
            frames += 1
            precondition(frames <= source.fileNames.count, "a non-looping replay delivered more frames than files")
        }
        source.close()
        return .accepted
    }

    static func replayJPEG(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        let file = scratchDirectory() + "/input.jpg"
        write(data, to: file)
        return replay(file)
    }

    /// First line: the file's name stem (`name_<W>x<H>`), the rest its bytes; loaded as a folder.
    static func nv12File(_ data: UnsafeRawBufferPointer) -> FuzzOutcome {
        let newline = data.firstIndex(of: 0x0A) ?? data.count
        var stem = String(decoding: data[..<min(newline, 200)], as: UTF8.self)
        // Scalars, not Characters: "/" followed by a combining mark is one Character but still a "/".
        stem = String(String.UnicodeScalarView(stem.unicodeScalars.map { $0 == "/" || $0 == "\0" ? "_" : $0 }))
        // A file name holds at most 255 bytes (invalid UTF-8 became 3-byte U+FFFD above).
        while stem.utf8.count > 200 { stem.removeLast() }
        if stem.isEmpty || stem == "." || stem == ".." { stem = "x" }
        let contents = UnsafeRawBufferPointer(rebasing: data[min(newline + 1, data.count)...])
        let dir = scratchDirectory()
        write(contents, to: dir + "/" + stem + ".nv12")
        return replay(dir)
    }
}
