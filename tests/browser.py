"""Headless Chromium driven over the Chrome DevTools Protocol, for the UI tests.

Single-page apps (the Prefect UI, MLflow's) render after their scripts fetch data and log in
from ``localStorage``: ``--dump-dom`` with a virtual-time budget cannot set storage first, and
guesses when rendering is done. Here a test sets storage, opens a page and polls the visible
text until what it expects shows up (or the timeout says what was there instead). It speaks
CDP with the ``websockets`` sync client, so it needs no extra package, only Debian's chromium.

    with Browser() as page:
        page.open(url)
        page.set_local_storage("key", "value")
        page.open(url)
        page.wait_for_text(r"epoch \\d+", timeout=30)
        page.screenshot(ARTIFACTS / "page.png")   # kept as a test artifact
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

# Screenshots the UI tests keep for a person to look at (CI collects FERRY_TEST_ARTIFACTS).
ARTIFACTS = Path(os.environ.get("FERRY_TEST_ARTIFACTS",
                                Path(__file__).parents[1] / ".ferry" / "test-artifacts"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-port=0"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed: apt-get install chromium (make setup does this)"
    return found


class Browser:
    """One headless Chromium with one page; a context manager that always kills the browser
    (its whole process group: renderers and zygotes too) and removes its profile."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60) -> None:
        self.size, self.timeout = (width, height), timeout
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="ferry-chromium-")
        self._proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={self._profile}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._ws = connect(self._browser_endpoint(), max_size=None, open_timeout=30)
            target = self._call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._call("Target.attachToTarget", targetId=target,
                                       flatten=True)["sessionId"]
            self.send("Page.enable")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_ws", None) is not None:
            self._ws.close()
            self._ws = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        with contextlib.suppress(ProcessLookupError):  # until its children are gone too
            while time.monotonic() < deadline:
                os.killpg(self._proc.pid, 0)
                time.sleep(0.1)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _browser_endpoint(self) -> str:
        """Chromium writes its port and browser path to DevToolsActivePort once it listens."""
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (marker.is_file() and len(marker.read_text().split()) == 2):
            assert self._proc.poll() is None, f"chromium exited with {self._proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port, path = marker.read_text().split()
        return f"ws://127.0.0.1:{port}{path}"

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and wait for its reply (events in between are dropped)."""
        ident = next(self._ids)
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=self.timeout))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def send(self, method: str, **params) -> dict:
        """A CDP command on the page (https://chromedevtools.github.io/devtools-protocol/)."""
        return self._call(method, self._session, **params)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        """Navigate and wait for the document to load (the app may still be fetching)."""
        self.evaluate("window.__ferryOld = true")  # a new document will not have it
        if "loaderId" not in self.send("Page.navigate", url=url):
            return  # same document (a #fragment of the page open now): nothing to load
        deadline = time.monotonic() + self.timeout
        while not self.evaluate("!window.__ferryOld && document.readyState === 'complete'"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load within {self.timeout:.0f} s")
            time.sleep(0.2)

    def set_local_storage(self, key: str, value: str) -> None:
        """Store ``key`` for the current page's origin (open a page of that origin first)."""
        self.evaluate(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")

    def text(self) -> str:
        """What a reader sees: the page's visible text."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def scroll_down(self) -> None:
        """Scroll the page and every scrollable box in it down by most of its height: long
        lists (the Prefect UI's logs) only render, and load, the rows in view."""
        self.evaluate("""for (const box of document.querySelectorAll('*')) {
            if (box.scrollHeight > box.clientHeight + 1 &&
                ['auto', 'scroll'].includes(getComputedStyle(box).overflowY))
                box.scrollBy(0, box.clientHeight * 0.8);
        }
        window.scrollBy(0, window.innerHeight * 0.8);""")

    def wait_for_text(self, pattern: str | re.Pattern, timeout: float = 30,
                      scroll: bool = False) -> re.Match:
        """Poll the visible text until ``pattern`` (a regex) matches; with ``scroll``, scroll
        down a little between polls, for text further down a long list, and bring what
        matched into view (for the screenshot)."""
        match = self._poll(self.text, pattern, timeout, scroll)
        if scroll:
            self.evaluate(f"""const walk = document.createTreeWalker(document.body, 4);
                while (walk.nextNode()) if (walk.currentNode.textContent.includes(
                    {json.dumps(match.group(0)[:40])})) {{
                    walk.currentNode.parentElement.scrollIntoView({{block: 'center'}}); break;
                }}""")
        return match

    def wait_for_dom(self, pattern: str | re.Pattern, timeout: float = 30) -> re.Match:
        """Poll the DOM (markup and attributes, e.g. an image's ``alt``) until it matches."""
        return self._poll(self.dom, pattern, timeout, scroll=False)

    def _poll(self, read, pattern: str | re.Pattern, timeout: float, scroll: bool) -> re.Match:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            seen = read()
            if match := regex.search(seen):
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{regex.pattern!r} not on {self.evaluate('location.href')}"
                                     f" after {timeout:.0f} s; it shows:\n{seen[-3000:]}")
            if scroll:
                self.scroll_down()
            time.sleep(0.5)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
