// edgekv-chat: a streaming terminal chat over the EdgeKV Swift API, the Swift
// counterpart of samples/chat/chat.c.
//
//   swift run edgekv-chat --model FILE [--cache TYPE] [--max-cache-len N]
//       [--window-length N] [--num-sink-tokens N] [--nbits B] [--q-group-size G]
//       [--residual-length R] [--kv-dtype f16|f32] [--offload device|host|unified]
//       [--backend NAME] [--threads N] [--system TEXT] [--max-new-tokens N]
//       [--temperature T] [--seed S] [--prompt TEXT]...
//
// Without --prompt it reads one user line per turn from stdin; an empty line
// or end of input quits. Ctrl-C stops the answer being generated (not the
// program). One cache lives across turns: each turn prints how many prompt
// tokens were reused from the cache and how many were computed.
import EdgeKV
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Command-line options.
struct Options {
    var model: String?
    var backend = Backend.auto
    var threads = 0
    var cache = CacheConfiguration()
    var system: String?
    var parameters = GenerationParameters(maxNewTokens: 256)
    var prompts: [String] = []
}

/// An invalid command line (message for stderr).
struct UsageError: Error { let message: String }

let usage = """
    usage: edgekv-chat --model FILE [options]
      --model FILE          GGUF file or Hugging Face model directory (required)
      --backend NAME        cpu, vulkan, cuda or auto (default auto)
      --threads N           CPU threads (default: all cores)
      --cache TYPE          cache type: dynamic, static, offloaded, offloaded_static,
                            quantized, sliding_window, sink, ... (default auto)
      --max-cache-len N     capacity of fixed-size caches
      --window-length N     sliding_window / sink: tokens held
      --num-sink-tokens N   sink: pinned first tokens
      --nbits B --q-group-size G --residual-length R   KIVI storage
      --kv-dtype f16|f32    storage format
      --offload device|host|unified   placement
      --system TEXT         system message
      --max-new-tokens N    longest answer (default 256)
      --temperature T       0 = greedy (default 0)
      --seed S              sampling seed (default 0)
      --prompt TEXT         run this user turn non-interactively (repeatable)
    Interactive mode: one line per turn; an empty line or end of input quits.
    Ctrl-C stops the current answer.
    """

func parseOptions(_ args: [String]) throws -> Options? {
    var o = Options()
    var i = 0
    func int(_ v: String, _ name: String, min: Int = 0) throws -> Int {
        guard let n = Int(v), n >= min else { throw UsageError(message: "bad value for \(name): \(v)") }
        return n
    }
    while i < args.count {
        let a = args[i]
        if a == "--help" || a == "-h" { return nil }
        guard i + 1 < args.count else { throw UsageError(message: "\(a) needs a value (or is unknown)") }
        let v = args[i + 1]
        i += 2
        switch a {
        case "--model": o.model = v
        case "--backend":
            guard let b = Backend(name: v) else { throw UsageError(message: "unknown backend '\(v)'") }
            o.backend = b
        case "--threads": o.threads = try int(v, a)
        case "--cache":
            guard let t = CacheType(name: v) else { throw UsageError(message: "unknown cache type '\(v)'") }
            o.cache.type = t
        case "--max-cache-len": o.cache.maxCacheLen = try int(v, a)
        case "--window-length": o.cache.windowLength = try int(v, a, min: 1)
        case "--num-sink-tokens": o.cache.numSinkTokens = try int(v, a)
        case "--nbits":
            o.cache.nbits = try int(v, a, min: 1)
            if o.cache.dtype == nil { o.cache.dtype = .kivi }
        case "--q-group-size":
            o.cache.qGroupSize = try int(v, a, min: 1)
            if o.cache.dtype == nil { o.cache.dtype = .kivi }
        case "--residual-length":
            o.cache.residualLength = try int(v, a)
            if o.cache.dtype == nil { o.cache.dtype = .kivi }
        case "--kv-dtype":
            switch v {
            case "f16": o.cache.dtype = .f16
            case "f32": o.cache.dtype = .f32
            default: throw UsageError(message: "unknown kv dtype '\(v)' (f16 or f32)")
            }
        case "--offload":
            switch v {
            case "device": o.cache.offload = .device
            case "host": o.cache.offload = .host
            case "unified": o.cache.offload = .unified
            default: throw UsageError(message: "unknown placement '\(v)'")
            }
        case "--system": o.system = v
        case "--max-new-tokens": o.parameters.maxNewTokens = try int(v, a, min: 1)
        case "--temperature":
            guard let t = Float(v), t >= 0 else { throw UsageError(message: "bad value for \(a): \(v)") }
            o.parameters.temperature = t
        case "--seed":
            guard let s = UInt64(v) else { throw UsageError(message: "bad value for \(a): \(v)") }
            o.parameters.seed = s
        case "--prompt": o.prompts.append(v)
        default: throw UsageError(message: "unknown option \(a)")
        }
    }
    guard o.model != nil else { throw UsageError(message: "--model is required") }
    return o
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Reads a line from stdin on a thread of its own (never blocks the
/// cooperative pool or the main actor); `nil` at end of input.
func readLineAsync() async -> String? {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: readLine(strippingNewline: true)) }.start()
    }
}

/// The task of the answer being generated, so that Ctrl-C can cancel it.
actor Interrupts {
    private var current: Task<Void, Never>?

    func running(_ task: Task<Void, Never>?) { current = task }

    /// Ctrl-C: stops the answer, or quits at the input prompt.
    func interrupt() {
        if let current {
            current.cancel()
        } else {
            print("")
            exit(130)
        }
    }
}

@main
struct EdgeKVChat {
    static func main() async {
        let options: Options
        do {
            guard let parsed = try parseOptions(Array(CommandLine.arguments.dropFirst())) else {
                print(usage)
                return
            }
            options = parsed
        } catch let error as UsageError {
            printError("edgekv-chat: \(error.message)\n\(usage)")
            exit(2)
        } catch {
            exit(2)
        }

        let model: Model
        let conversation: Conversation
        do {
            model = try await Model.load(
                from: options.model!, options: Model.Options(backend: options.backend, threads: options.threads))
            conversation = try Conversation(model: model, cache: options.cache, systemPrompt: options.system)
        } catch {
            printError("edgekv-chat: \(error)")
            exit(1)
        }
        printError("[\(model.info.architecture) \(model.info.name) on \(model.info.backend) (\(model.info.device)), "
                   + "cache \(conversation.cache.type)]")

        let interrupts = Interrupts()
        signal(SIGINT, SIG_IGN)
        let sigint = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        sigint.setEventHandler { Task { await interrupts.interrupt() } }
        sigint.resume()

        var turn = 0
        func runTurn(_ line: String) async -> Bool {
            turn += 1
            let task = Task { await answer(line, turn: turn, conversation: conversation, parameters: options.parameters) }
            await interrupts.running(task)
            await task.value
            await interrupts.running(nil)
            return true
        }

        if !options.prompts.isEmpty {
            for prompt in options.prompts {
                print("> \(prompt)")
                _ = await runTurn(prompt)
            }
        } else {
            while true {
                print("> ", terminator: "")
                fflush(nil)
                guard let line = await readLineAsync() else {
                    print("")
                    break
                }
                if line.isEmpty { break }
                _ = await runTurn(line)
            }
        }
        sigint.cancel()
    }
}

/// Streams one answer and prints the turn's statistics to stderr.
func answer(_ line: String, turn: Int, conversation: Conversation, parameters: GenerationParameters) async {
    var retried = false
    while true {
        do {
            var completion: Completion?
            for try await event in conversation.send(line, parameters: parameters) {
                switch event {
                case .token(_, let text), .text(let text):
                    print(text, terminator: "")
                    fflush(nil)
                case .finished(let c):
                    completion = c
                }
            }
            print("")
            fflush(nil)
            let held = (try? await conversation.cache.sequenceLength()) ?? 0
            guard let c = completion else {
                printError("[turn \(turn): stopped | cache holds \(held) tok]")
                return
            }
            let s = c.stats
            let note: String
            switch c.stopReason {
            case .maxTokens: note = " | stopped: --max-new-tokens"
            case .cancelled: note = " | stopped: cancelled"
            case .cacheFull: note = " | stopped: cache full"
            default: note = ""
            }
            printError(String(
                format: "[turn %d: prompt %d tok, reused %d, forwarded %d (%.1f tok/s) | answer %d tok (%.1f tok/s) | cache holds %d tok",
                turn, s.promptTokens, s.promptTokensReused, s.promptTokensForwarded, s.prefillTokensPerSecond,
                s.generatedTokens, s.decodeTokensPerSecond, held) + note + "]")
            return
        } catch let error as EdgeKVError where !retried && (error.status == .contextOverflow || error.status == .cacheFull) {
            // The conversation outgrew the cache: keep the system message, start over.
            printError("\n[context full: starting a new conversation]")
            retried = true
            do { try await conversation.reset() } catch {
                printError("edgekv-chat: \(error)")
                return
            }
        } catch {
            print("")
            printError("edgekv-chat: \(error)")
            return
        }
    }
}
