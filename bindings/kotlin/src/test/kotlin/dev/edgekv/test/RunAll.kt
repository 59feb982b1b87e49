@file:JvmName("RunAll")

package dev.edgekv.test

import org.junit.runner.Description
import org.junit.runner.JUnitCore
import org.junit.runner.Request
import org.junit.runner.Result
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener
import kotlin.system.exitProcess

/** Every test class, in the order they run. */
val ALL_TEST_CLASSES: List<Class<*>> = listOf(
    TinyLlamaTest::class.java,
    CacheTypesTest::class.java,
    PlanTest::class.java,
    ErrorsTest::class.java,
    LifecycleTest::class.java,
    StreamingTest::class.java,
    Utf8Test::class.java,
    CancelTest::class.java,
    ConcurrencyTest::class.java,
    CoroutinesTest::class.java,
    ChatTest::class.java,
    InMemoryTest::class.java,
    LogTest::class.java
)

/**
 * Runs the tests with JUnitCore, printing each test's result and time and a
 * last line "N passed, M failed". A skipped (ignored or assumption-failed)
 * test counts as failed: CI skips nothing. Arguments: simple class names to
 * run (default: all), or Class#method.
 */
fun main(args: Array<String>) {
    val core = JUnitCore()
    var passed = 0
    var failed = 0
    core.addListener(object : RunListener() {
        private val started = HashMap<Description, Long>()
        private val failedNow = HashSet<Description>()

        override fun testStarted(d: Description) {
            started[d] = System.nanoTime()
            System.out.println("[ run  ] ${d.testClass.simpleName}.${d.methodName}")
            System.out.flush()
        }

        override fun testFailure(f: Failure) {
            failedNow.add(f.description)
            System.out.println("[ FAIL ] ${f.description.testClass?.simpleName}.${f.description.methodName}: ${f.message}")
            System.out.println(f.trace)
        }

        override fun testAssumptionFailure(f: Failure) {
            failedNow.add(f.description)
            System.out.println("[ FAIL ] ${f.description.methodName}: skipped by an assumption (${f.message}); CI skips nothing")
        }

        override fun testIgnored(d: Description) {
            failed++
            System.out.println("[ FAIL ] ${d.testClass?.simpleName}.${d.methodName}: @Ignore'd; CI skips nothing")
        }

        override fun testFinished(d: Description) {
            val ms = (System.nanoTime() - (started[d] ?: System.nanoTime())) / 1e6
            if (d in failedNow) {
                failed++
                System.out.println(String.format("[ fail ] %s.%s (%.0f ms)", d.testClass.simpleName, d.methodName, ms))
            } else {
                passed++
                System.out.println(String.format("[  ok  ] %s.%s (%.0f ms)", d.testClass.simpleName, d.methodName, ms))
            }
            System.out.flush()
        }
    })
    val t0 = System.nanoTime()
    var classFailures = 0
    for (cls in selected(args)) {
        val r: Result = core.run(cls.first)
        // A failure outside any test (a @BeforeClass) is not reported per test.
        classFailures += r.failures.count { it.description.methodName == null }
    }
    failed += classFailures
    System.out.println(String.format("%d tests in %.1f s", passed + failed, (System.nanoTime() - t0) / 1e9))
    System.out.println("$passed passed, $failed failed")
    System.out.flush()
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}

private fun selected(args: Array<String>): List<Pair<Request, String>> {
    if (args.isEmpty()) return ALL_TEST_CLASSES.map { Request.aClass(it) to it.simpleName }
    return args.map { arg ->
        val (name, method) = if ('#' in arg) arg.substringBefore('#') to arg.substringAfter('#') else arg to null
        val cls = ALL_TEST_CLASSES.firstOrNull { it.simpleName == name } ?: die("no test class $name")
        (if (method != null) Request.method(cls, method) else Request.aClass(cls)) to name
    }
}
