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
import java.nio.ByteBuffer
import java.nio.charset.CodingErrorAction
import java.nio.charset.StandardCharsets

/**
 * Emoji and CJK text across JNI (byte arrays, UTF-8 decoded in Kotlin): the
 * bug NewStringUTF/GetStringUTFChars cause ("a😀z" became three wrong
 * characters) must not exist here.
 */
class Utf8Test {
    private val model = Shared.smollm2
    private val samples = listOf(
        "a😀z",
        "日本語のテキストと中文，한국어",
        "family 👩‍👩‍👧 flag 🇫🇷 accents éàüß math ∑∫ ok 👍🏽",
        "mixed: x=😀😀, y=\"漢字\"\n\ttabs and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
    )

    private fun isStrictUtf8(bytes: ByteArray): Boolean = try {
        StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT)
            .decode(ByteBuffer.wrap(bytes))
        true
    } catch (e: java.nio.charset.CharacterCodingException) {
        false
    }

    @Test
    fun tokenizeDetokenizeRoundTrip() {
        for (s in samples) {
            val ids = model.tokenize(s, addSpecial = false)
            assertEquals(s, model.detokenize(ids))
            // The tokens' raw bytes (pieces of characters) concatenate to the UTF-8 of s.
            val bytes = ids.map { model.tokenBytes(it) }.fold(ByteArray(0)) { acc, b -> acc + b }
            assertArrayEquals(s.toByteArray(StandardCharsets.UTF_8), bytes)
        }
        // "a😀z" is not three wrong characters.
        assertEquals(3, model.detokenize(model.tokenize("a😀z", addSpecial = false)).codePointCount(0, 4))
    }

    @Test
    fun chatTemplateKeepsEmojiAndCjk() {
        for (s in samples) {
            val text = model.applyChatTemplate(listOf(ChatMessage.system("系统 ⚙️"), ChatMessage.user(s)))
            assertTrue(text.contains(s))
            assertTrue(text.contains("系统 ⚙️"))
        }
    }

    /** Generated emoji and CJK arrive whole, piece by piece, in all three APIs. */
    @Test
    fun generatedEmojiAndCjkRoundTrip() {
        val cases = listOf(
            "Translate to Chinese: I love my family." to { t: String -> t.any { it.toInt() in 0x4E00..0x9FFF } },
            "Reply with three happy emojis." to { t: String -> t.codePoints().anyMatch { it >= 0x1F300 } }
        )
        for ((question, expectation) in cases) {
            val prompt = model.tokenize(model.applyChatTemplate(listOf(ChatMessage.user(question))), false, true)
            val params = GenerateParams(maxNewTokens = 32)
            val pieces = ArrayList<String>()
            val r = model.newCache().use { it.generate(prompt, params) { p -> pieces.add(p) } }
            println("[ utf8 ] \"$question\" -> \"${r.text.trim()}\"")
            assertTrue("'${r.text}' lacks the expected characters", expectation(r.text))
            // Each piece is whole UTF-8: decoded alone, they give the text decoded at once.
            assertEquals(r.text, pieces.joinToString(""))
            // Only an answer cut by max_new_tokens inside a character ends
            // with U+FFFD (the library flushes the unfinished bytes so).
            val whole = if (r.stopReason == StopReason.MAX_TOKENS && pieces.last() == "\uFFFD") pieces.dropLast(1) else pieces
            for (p in whole) {
                assertFalse("replacement character in '$p'", p.contains('\uFFFD'))
                assertTrue(isStrictUtf8(p.toByteArray(StandardCharsets.UTF_8)))
                assertFalse("a split surrogate pair in '$p'", Character.isLowSurrogate(p[0]) || Character.isHighSurrogate(p.last()))
            }
            assertEquals(model.detokenize(r.tokens, skipSpecial = true), r.text)
            val events = model.newCache().use { it.stream(prompt, params).toList() }
            assertEquals(r.text, events.joinToString("") { it.text })
            val texts = events.map { it.text }.filter { it.isNotEmpty() }
            assertEquals(pieces, texts) // the same pieces as the callback's
            assertTrue(texts.dropLast(1).none { it.contains('\uFFFD') })
            // The text goes back in as the next turn's prompt unchanged.
            val again = model.tokenize(r.text, addSpecial = false)
            assertEquals(r.text, model.detokenize(again))
        }
    }

    /**
     * A random byte-level model emits arbitrary byte sequences: pieces must
     * never split a character (each decoded alone equals the whole decoded at
     * once), however the bytes fall.
     */
    @Test
    fun randomBytesNeverSplitACharacter() {
        val tiny = Shared.tiny
        var nonAscii = 0
        for (seed in 1L..4L) {
            val pieces = ArrayList<String>()
            val r = tiny.newCache().use {
                it.generate(intArrayOf(1, 2, 3), GenerateParams(maxNewTokens = 150, temperature = 1.5f, seed = seed, stopAtEos = false)) { p ->
                    pieces.add(p)
                }
            }
            assertEquals(r.text, pieces.joinToString(""))
            val events = tiny.newCache().use {
                it.stream(intArrayOf(1, 2, 3), GenerateParams(maxNewTokens = 150, temperature = 1.5f, seed = seed, stopAtEos = false)).toList()
            }
            assertEquals(r.text, events.joinToString("") { it.text })
            assertArrayEquals(r.tokens, events.filterIsInstance<GenerationEvent.Token>().map { it.id }.toIntArray())
            nonAscii += r.text.count { it.toInt() > 0x7f }
        }
        assertTrue("the random output had no multi-byte characters", nonAscii > 0)
    }
}
