"""Real-browser test of the `edgekv serve` chat page (samples/server/web/index.html).

Starts `edgekv serve` on a free port, drives headless Chromium through Selenium and checks
streaming, Stop, conversation reuse, a new chat with another cache type and the narrow layout.

    PYTHONPATH=.edgekv-cache/pypi-server python3 tests/server/browser_test.py \
        --edgekv build/cpu/samples/edgekv --model MODEL.gguf --artifacts OUT_DIR [--timeout 120]

Needs Debian's /usr/bin/chromium and /usr/bin/chromedriver and selenium 4 (tools/server_test_requirements.txt).
Anything missing is a failure, never a skip. Screenshots and the server log go to --artifacts.
"""
import argparse
import os
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


from server_harness import Failure, Server, check, get_json, set_prefix, step, wait_for

set_prefix("browser_test")


def start_browser(webdriver):
    for path in (CHROMIUM, CHROMEDRIVER):
        check(os.access(path, os.X_OK), f"{path} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-prefers-reduced-motion"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 900)
    return driver


def run(args, url, artifacts):
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select
    except ImportError as e:
        raise Failure(f"selenium is not importable ({e}); set PYTHONPATH=.edgekv-cache/pypi-server "
                      "(tools/setup_deps.sh installs tools/server_test_requirements.txt there)")
    T = args.timeout
    step("starting chromium")
    driver = start_browser(webdriver)
    try:
        css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)
        status = lambda: driver.find_element(By.ID, "status").text.strip()
        last_assistant = lambda: css("#messages .msg.assistant")[-1]
        body_text = lambda el: el.find_element(By.CSS_SELECTOR, ".body").text

        def set_field(el_id, value):
            el = driver.find_element(By.ID, el_id)
            el.clear()
            el.send_keys(str(value))

        def send(text):
            prompt = driver.find_element(By.ID, "prompt")
            prompt.click()
            prompt.send_keys(text)
            prompt.send_keys(Keys.ENTER)

        def finished_readout(n_assistant):
            """The readout of the n-th assistant message once its answer is complete."""
            msgs = css("#messages .msg.assistant")
            if len(msgs) < n_assistant or not status().startswith(("ready", "error")):
                return None
            check(not status().startswith("error"), f"the page reports: {status()}")
            ro = msgs[n_assistant - 1].find_elements(By.CSS_SELECTOR, ".readout")
            return ro[0] if ro else None

        step("loading /")
        driver.get(url + "/")
        check("edgekv" in driver.title.lower(), f"page title is {driver.title!r}, expected it to name edgekv")
        for el_id in ("prompt", "send", "stop", "new-chat", "cache-type", "messages", "status", "settings-in-effect"):
            check(css("#" + el_id), f"element #{el_id} is missing")
        wait_for("the model name in the header", lambda: "connecting" not in
                 driver.find_element(By.ID, "model-info").text, 10)
        step(f"page loaded: title {driver.title!r}, header {driver.find_element(By.ID, 'model-info').text!r}")

        # Turn 1: a long answer, streamed, then stopped.
        set_field("max-tokens", 512)
        send("Write a long story about a dragon.")
        step("sent turn 1; waiting for streamed text")
        first = wait_for("streamed text in the assistant message",
                         lambda: css("#messages .msg.assistant") and body_text(last_assistant()), T)
        time.sleep(0.4)
        second = body_text(last_assistant())
        if len(second) <= len(first):  # a slow token: one more poll
            time.sleep(1.0)
            second = body_text(last_assistant())
        check(len(second) > len(first) and second.startswith(first[: max(1, len(first) - 2)]),
              f"text did not grow across polls (not streamed?): {first!r} then {second!r}")
        check(status().startswith("generating"), f"status while streaming is {status()!r}")
        step(f"streaming: {len(first)} then {len(second)} characters")
        driver.save_screenshot(str(artifacts / "chat_mid_answer.png"))
        step("saved chat_mid_answer.png; pressing Stop")
        driver.find_element(By.ID, "stop").click()
        t_stop = time.monotonic()
        wait_for("status 'ready' after Stop", lambda: status().startswith("ready"), 5)
        step(f"stream ended {time.monotonic() - t_stop:.1f} s after Stop")
        partial = body_text(last_assistant())
        check(len(partial) >= len(second) and partial.strip() not in ("", "(stopped)"),
              f"the partial answer did not stay: {partial!r}")
        check(not driver.find_element(By.ID, "stop").is_enabled(), "Stop is still enabled after the stream ended")
        ro = last_assistant().find_elements(By.CSS_SELECTOR, ".readout")
        check(ro and ro[0].get_attribute("data-stop-reason") == "cancelled",
              "turn 1 did not end as cancelled (finished before Stop?): " + (ro[0].text if ro else "no readout"))
        step(f"partial answer kept ({len(partial)} characters); readout {ro[0].text!r}")

        def healthy_and_idle():
            code, health = get_json(url + "/health")
            check(code == 200 and health.get("status") == "ok", f"/health after Stop: {code} {health}")
            return health if health.get("active", 0) == 0 else None
        health = wait_for("/health to show no active generation after Stop", healthy_and_idle, 5, poll=0.2)
        step(f"/health ok and idle: {health}")

        # Turn 2: a short answer; the conversation's cache is reused.
        set_field("max-tokens", 12)
        send("Say hi.")
        step("sent turn 2; waiting for the readout")
        ro = wait_for("the readout of turn 2", lambda: finished_readout(2), T)
        reused = ro.get_attribute("data-reused")
        step(f"turn 2 readout: {ro.text!r}")
        check(reused is not None and reused.isdigit() and int(reused) > 0,
              f"turn 2 reused {reused!r} prompt tokens, expected > 0 (conversation reuse)")
        check("reused" in ro.text, f"the readout does not show reused tokens: {ro.text!r}")

        # A new chat with the sink cache.
        Select(driver.find_element(By.ID, "cache-type")).select_by_value("sink")
        if css("#window-length") and driver.find_element(By.ID, "window-length").is_displayed():
            set_field("window-length", 64)
        driver.find_element(By.ID, "new-chat").click()
        check(not css("#messages .msg"), "New chat left messages on the page")
        in_effect = driver.find_element(By.ID, "settings-in-effect").text
        check("sink" in in_effect, f"#settings-in-effect is {in_effect!r}, expected sink")
        step(f"new chat: {in_effect!r}")
        send("Say hi.")
        ro = wait_for("the readout of the sink chat", lambda: finished_readout(1), T)
        step(f"sink chat readout: {ro.text!r}")
        check(ro.get_attribute("data-cache-type") == "sink" and "sink" in ro.text,
              f"the readout does not say cache type sink: {ro.text!r}")
        driver.save_screenshot(str(artifacts / "chat_final.png"))
        step("saved chat_final.png")

        # Narrow window: one column, no horizontal scroll.
        driver.set_window_size(500, 900)
        time.sleep(0.3)
        scroll_width, inner_width = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        driver.save_screenshot(str(artifacts / "chat_narrow.png"))
        step(f"saved chat_narrow.png (scrollWidth {scroll_width}, window {inner_width})")
        check(scroll_width <= inner_width, f"horizontal scroll at 500 px: scrollWidth {scroll_width} > {inner_width}")

        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        for e in errors:
            step(f"browser console: {e.get('message')}")
        check(not errors, f"{len(errors)} error(s) in the browser console")
    finally:
        driver.quit()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edgekv", help="path to the edgekv binary")
    p.add_argument("--model", help="GGUF model to serve")
    p.add_argument("--artifacts", required=True, help="folder for screenshots and the server log")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for an answer (default 120)")
    p.add_argument("--url", help=argparse.SUPPRESS)  # use a running server (development against a mock)
    args = p.parse_args()
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    server = None
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            check(args.edgekv and args.model, "--edgekv and --model are required (or --url)")
            check(os.access(args.edgekv, os.X_OK), f"edgekv binary not found: {args.edgekv}")
            check(os.path.isfile(args.model), f"model not found: {args.model}")
            server = Server(args.edgekv, args.model, artifacts, min(args.timeout, 60))
            url = server.url
        run(args, url, artifacts)
        if server:
            check(server.proc.poll() is None, f"edgekv serve exited early with {server.proc.returncode}")
    except Failure as e:
        print(f"[browser_test] FAIL: {e}", file=sys.stderr, flush=True)
        if server:
            print("[browser_test] server log tail:\n  " + "\n  ".join(server.tail), file=sys.stderr)
        return 1
    except Exception as e:  # selenium and other errors: still a clear one-line failure
        print(f"[browser_test] FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server:
            server.stop()
    step(f"PASS in {time.monotonic() - t0:.1f} s; artifacts in {artifacts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
