"""What the server's Python tests share: failing with a message, waiting, and an
`edgekv serve` process on a free port whose output goes to a log file."""
import json
import re
import subprocess
import threading
import time
import urllib.request

PREFIX = ["server_test"]


def set_prefix(name):
    PREFIX[0] = name


class Failure(Exception):
    pass


def step(msg):
    print(f"[{PREFIX[0]}] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_for(what, fn, timeout, poll=0.1):
    """Polls fn until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Failure:
            raise
        except Exception as e:  # a stale element mid-update: poll again
            last_error = e
        time.sleep(poll)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last_error})" if last_error else ""))


class Server:
    """`edgekv serve` on a free port; its stdout and stderr go to server.log."""

    def __init__(self, edgekv, model, artifacts, timeout, extra_args=(), log_name="server.log"):
        cmd = [edgekv, "serve", "--model", model, "--port", "0", "--backend", "cpu", "--threads", "2", *extra_args]
        step("starting: " + " ".join(cmd))
        self.log = open(artifacts / log_name, "w", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     encoding="utf-8", errors="replace")
        self.url = None
        self.tail = []
        found = threading.Event()

        def pump():  # keeps draining the pipe so the server never blocks on a full one
            for line in self.proc.stdout:
                self.log.write(line)
                self.log.flush()
                self.tail = (self.tail + [line.rstrip()])[-20:]
                m = re.search(r"listening on (http://\S+)", line)
                if m and not self.url:
                    self.url = m.group(1).rstrip("/")
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        found.wait(timeout)
        if not self.url:
            code = self.proc.poll()
            self.stop()
            how = f"exited with code {code}" if code is not None else f"still silent after {timeout:.0f} s"
            raise Failure(f"edgekv serve did not print 'listening on http://...' ({how}); last output:\n  "
                          + "\n  ".join(self.tail))
        step(f"server at {self.url}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())
