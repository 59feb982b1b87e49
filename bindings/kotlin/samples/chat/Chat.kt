@file:JvmName("Chat")

package dev.edgekv.samples.chat

import dev.edgekv.Backend
import dev.edgekv.CacheParams
import dev.edgekv.CacheType
import dev.edgekv.EdgeKvException
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationResult
import dev.edgekv.Model
import dev.edgekv.ModelParams
import dev.edgekv.Status
import dev.edgekv.StopReason
import java.io.BufferedReader
import java.io.InputStream
import java.io.InputStreamReader
import java.io.PrintStream
import kotlin.system.exitProcess

/*
 * chat - multi-turn chat over the Kotlin binding: the counterpart of
 * samples/chat/chat.c.
 *
 *   chat --model FILE [--backend NAME] [--cache TYPE] [--max-cache-len N]
 *        [--threads N] [--system TEXT] [--max-new-tokens N] [--temperature T]
 *        [--seed S] [--prompt TEXT]...
 *
 * Without --prompt it reads one user line per turn from stdin and streams the
 * answer; an empty line or EOF quits. With --prompt (repeatable) it runs those
 * turns and exits. One Conversation (one cache) lives across the turns: each
 * turn only the new part of the prompt is computed, as the per-turn line on
 * stderr shows (reused / forwarded prompt tokens).
 */

fun main(args: Array<String>) {
    exitProcess(runChat(args, System.out, System.err, System.`in`))
}

private class Options {
    var model: String? = null
    var backend = Backend.AUTO
    var cache = CacheType.AUTO
    var maxCacheLen = 0
    var threads = 0
    var system: String? = null
    var maxNewTokens = 256
    var temperature = 0f
    var seed = 0L
    val prompts = ArrayList<String>()
}

private const val USAGE = """usage: chat --model FILE [options]
  --model FILE          GGUF file or Hugging Face model directory (required)
  --backend NAME        cpu, vulkan, cuda or auto (default auto)
  --cache TYPE          cache type (default auto)
  --max-cache-len N     capacity of fixed-size caches
  --threads N           CPU threads (default: all cores)
  --system TEXT         system message
  --max-new-tokens N    longest answer (default 256)
  --temperature T       0 = greedy (default 0)
  --seed S              sampling seed (default 0)
  --prompt TEXT         run this user turn non-interactively (repeatable)
Interactive mode: one line per turn; an empty line or EOF quits."""

/** Parses the options; null and an exit code when the program should stop. */
private fun parse(args: Array<String>, out: PrintStream, err: PrintStream): Pair<Options?, Int> {
    val o = Options()
    var i = 0
    while (i < args.size) {
        val a = args[i]
        if (a == "--help" || a == "-h") {
            out.println(USAGE)
            return null to 0
        }
        val v = args.getOrNull(i + 1)
        if (v == null) {
            err.println("chat: $a needs a value (or is unknown)\n$USAGE")
            return null to 2
        }
        try {
            when (a) {
                "--model" -> o.model = v
                "--backend" -> o.backend = Backend.values().first { it.name.equals(v, ignoreCase = true) }
                "--cache" -> o.cache = CacheType.fromName(v)
                "--max-cache-len" -> o.maxCacheLen = v.toInt().also { require(it >= 0) }
                "--threads" -> o.threads = v.toInt().also { require(it in 0..4096) }
                "--system" -> o.system = v
                "--max-new-tokens" -> o.maxNewTokens = v.toInt().also { require(it >= 1) }
                "--temperature" -> o.temperature = v.toFloat().also { require(it >= 0f) }
                "--seed" -> o.seed = v.toLong()
                "--prompt" -> o.prompts.add(v)
                else -> throw IllegalArgumentException()
            }
        } catch (e: Exception) {
            err.println("chat: bad option or value: $a $v\n$USAGE")
            return null to 2
        }
        i += 2
    }
    if (o.model == null) {
        err.println("chat: --model is required\n$USAGE")
        return null to 2
    }
    return o to 0
}

private fun stopNote(r: StopReason) = when (r) {
    StopReason.MAX_TOKENS -> " | stopped: --max-new-tokens"
    StopReason.CANCELLED -> " | stopped: cancelled"
    StopReason.CACHE_FULL -> " | stopped: cache full"
    else -> ""
}

/** Runs the chat; returns the exit code. */
fun runChat(args: Array<String>, out: PrintStream, err: PrintStream, input: InputStream): Int {
    val (o, code) = parse(args, out, err)
    if (o == null) return code
    try {
        Model.load(o.model!!, ModelParams(backend = o.backend, nThreads = o.threads)).use { model ->
            val params = GenerateParams(maxNewTokens = o.maxNewTokens, temperature = o.temperature, seed = o.seed)
            val cacheParams = CacheParams(type = o.cache, maxCacheLen = o.maxCacheLen)
            model.newConversation(o.system, cacheParams).use { chat ->
                var turn = 0
                val reader = BufferedReader(InputStreamReader(input, Charsets.UTF_8))
                val scripted = o.prompts.iterator()
                while (true) {
                    val user: String = if (o.prompts.isNotEmpty()) {
                        if (!scripted.hasNext()) break
                        scripted.next().also { out.println("> $it") }
                    } else {
                        out.print("> ")
                        out.flush()
                        val line = reader.readLine()
                        if (line == null || line.isEmpty()) break
                        line
                    }
                    turn++
                    val r: GenerationResult = try {
                        chat.send(user, params) { piece -> out.print(piece); out.flush() }
                    } catch (e: EdgeKvException) {
                        if (e.status != Status.CONTEXT_OVERFLOW && e.status != Status.CACHE_FULL) throw e
                        // The conversation outgrew the cache: keep the system
                        // message and this turn, start over with an empty cache.
                        err.println("[context full: starting a new conversation]")
                        chat.clear()
                        chat.send(user, params) { piece -> out.print(piece); out.flush() }
                    }
                    out.println()
                    val seqLen = chat.cache.seqLen
                    val prefillTps = if (r.prefillSeconds > 0) r.nPromptForwarded / r.prefillSeconds else 0.0
                    val decodeTps = if (r.decodeSeconds > 0 && r.nGenerated > 1) (r.nGenerated - 1) / r.decodeSeconds else 0.0
                    err.println(String.format(
                        "[turn %d: prompt %d tok, reused %d, forwarded %d (%.1f tok/s) | answer %d tok (%.1f tok/s) | cache holds %d tok%s]",
                        turn, r.nPromptTokens, r.nPromptReused, r.nPromptForwarded, prefillTps, r.nGenerated, decodeTps,
                        seqLen, stopNote(r.stopReason)))
                    err.flush()
                }
            }
        }
    } catch (e: EdgeKvException) {
        err.println("chat: ${e.status.description}: ${e.message}")
        return 1
    }
    return 0
}
