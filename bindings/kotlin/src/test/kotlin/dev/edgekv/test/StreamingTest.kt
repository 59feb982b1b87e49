package dev.edgekv.test

import dev.edgekv.ChatMessage
import dev.edgekv.GenerateParams
import dev.edgekv.GenerationEvent
import dev.edgekv.StopReason
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** Streamed text equals the non-streamed text, on SmolLM2. */
class StreamingTest {
    private val model = Shared.smollm2
    private val prompt = model.tokenize(
        model.applyChatTemplate(listOf(ChatMessage.user("Write a short poem about the sea."))),
        addSpecial = false, parseSpecial = true
    )
    private val params = GenerateParams(maxNewTokens = 40)

    @Test
    fun streamedTextEqualsNonStreamedText() {
        // Non-streamed: the blocking call without a callback.
        val plain = model.newCache().use { it.generate(prompt, params) }
        assertEquals(40, plain.nGenerated)
        assertTrue(plain.text.isNotBlank())
        // The same text from the token ids alone.
        assertEquals(model.detokenize(plain.tokens, skipSpecial = true), plain.text)

        // Streamed through the blocking call's callback.
        val pieces = ArrayList<String>()
        val streamed = model.newCache().use { it.generate(prompt, params) { p -> pieces.add(p) } }
        assertArrayEquals(plain.tokens, streamed.tokens)
        assertEquals(plain.text, pieces.joinToString(""))
        assertEquals(plain.text, streamed.text)
        assertTrue("pieces arrive one by one (${pieces.size})", pieces.size > 10)

        // Streamed through the Sequence over the generator.
        val events = model.newCache().use { it.stream(prompt, params).toList() }
        val tokens = events.filterIsInstance<GenerationEvent.Token>()
        assertArrayEquals(plain.tokens, tokens.map { it.id }.toIntArray())
        assertEquals(plain.text, events.joinToString("") { it.text })
        val done = events.last() as GenerationEvent.Done
        assertEquals(plain.stopReason, done.stopReason)
        assertEquals(plain.text, done.result.text)
        assertEquals(plain.nPromptTokens, done.result.nPromptTokens)
    }

    @Test
    fun stopStringsAreNeverStreamed() {
        val plain = model.newCache().use { it.generate(prompt, params) }
        // A word from the middle of the answer becomes a stop string.
        val words = plain.text.split(Regex("\\W+")).filter { it.length >= 4 }
        assertTrue("answer: ${plain.text}", words.size >= 3)
        val stop = words[2]
        val cut = plain.text.substring(0, plain.text.indexOf(stop))
        val pieces = ArrayList<String>()
        val r = model.newCache().use { it.generate(prompt, params.copy(stopStrings = listOf(stop))) { p -> pieces.add(p) } }
        assertEquals(StopReason.STRING, r.stopReason)
        assertEquals(cut, r.text)
        assertEquals(cut, pieces.joinToString(""))
        assertFalse(pieces.any { it.contains(stop) })
        val events = model.newCache().use { it.stream(prompt, params.copy(stopStrings = listOf(stop))).toList() }
        assertEquals(cut, events.joinToString("") { it.text })
        assertEquals(StopReason.STRING, (events.last() as GenerationEvent.Done).stopReason)
    }

    /**
     * Long texts take the JNI layer's retry paths (a first buffer too small):
     * a stop string whose start is the whole answer holds every piece back
     * until the last token, whose event then carries the whole text.
     */
    @Test
    fun longTextsCrossJniWhole() {
        val tiny = Shared.tiny
        val p = GenerateParams(maxNewTokens = 1200, stopAtEos = false)
        // A prompt whose random continuation has no NUL (a stop string is a C string).
        val (prompt, baseline) = (1..20).asSequence()
            .map { i -> val pr = intArrayOf(i, i + 1, i + 2); pr to tiny.newCache().use { it.generate(pr, p) } }
            .first { !it.second.text.contains('\u0000') }
        val bytes = baseline.text.toByteArray(Charsets.UTF_8).size
        assertTrue("$bytes bytes", bytes > 1024)
        assertEquals(baseline.text, tiny.detokenize(baseline.tokens, skipSpecial = true))
        val held = p.copy(stopStrings = listOf(baseline.text + "\u0001never"))
        val events = tiny.newCache().use { it.stream(prompt, held).toList() }
        assertEquals(1201, events.size)
        assertTrue(events.dropLast(2).all { it.text.isEmpty() })
        // Everything comes out at the end, with the last token and the Done event.
        val done = events.last() as GenerationEvent.Done
        assertEquals(baseline.text, events[1199].text + done.text)
        assertEquals(StopReason.MAX_TOKENS, done.stopReason)
        assertEquals(baseline.text, done.result.text)
        val pieces = ArrayList<String>()
        val r = tiny.newCache().use { it.generate(prompt, held) { piece -> pieces.add(piece) } }
        assertEquals(baseline.text, pieces.joinToString(""))
        assertTrue(pieces.size <= 2)
        assertArrayEquals(baseline.tokens, r.tokens)
        // Metadata longer than the first buffer.
        val template = model.metadata("tokenizer.chat_template")
        assertTrue(template.length > 256 && template.contains("<|im_start|>"))
    }

    @Test
    fun samplingIsReproducibleAcrossTheThreeApis() {
        val sampled = params.copy(temperature = 0.8f, topK = 40, topP = 0.95f, seed = 1234)
        val a = model.newCache().use { it.generate(prompt, sampled) }
        val b = model.newCache().use { c -> c.stream(prompt, sampled).toList().last() as GenerationEvent.Done }
        assertArrayEquals(a.tokens, b.result.tokens)
        assertEquals(a.text, b.result.text)
    }
}
