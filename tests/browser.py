"""Read built pages in headless Chromium with every network request refused, as a reader would.

Chromium is driven through its DevTools protocol (websocket-client, from the pinned stack). One
browser serves every page: ``Browser.read(url)`` loads a page at desktop width, waits for MathJax
and the images, runs READER_CHECKS, narrows the window to phone width, runs them again and clicks
the navigation toggles. The reader test in tests/test_book.py turns the findings into failures.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import websocket

DESKTOP, PHONE = 1280, 390  # CSS pixels

# Resolves when MathJax has typeset the page and every image has loaded (or failed).
PAGE_READY = """(async () => {
  for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 50));
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
  await Promise.all(Array.from(document.images).map(i => i.complete ? null :
    new Promise(r => { i.onload = i.onerror = r; })));
  return true;
})()"""

# What a reader sees wrong on the page at the current width; a JSON object of lists (empty: fine).
READER_CHECKS = r"""(() => {
  const TEX = /\\[()\[\]]|\$|\\[A-Za-z]{2,}/;  // delimiters or a command outside math and code
  const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
  const text = e => e.textContent.replace(/\s+/g, " ").trim().slice(0, 120);
  const skip = ["mjx-container", "mjx-assistive-mml", "script", "style", "pre", "code",
                ".highlight", "textarea", ".cell_input"].join(", ");
  const raw_tex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip) || !visible(parent)) continue;
    if (TEX.test(node.textContent)) raw_tex.push(text(parent));
  }
  if (/[\\$]/.test(document.title)) raw_tex.push("page title: " + document.title);
  // An element is clipped when it is wider than the article's column and nothing between the two
  // lets it scroll (the article scrolling as a whole does not count).
  const article = document.querySelector(".bd-article") || document.body;
  const room = article.getBoundingClientRect().right + 1;
  const scrolls = e => {
    for (let a = e; a && a !== article; a = a.parentElement)
      if (["auto", "scroll"].includes(getComputedStyle(a).overflowX)) return true;
    return false;
  };
  const clipped = Array.from(article.querySelectorAll(
      'mjx-container[display="true"], table, pre, .cell_output img'))
    .filter(e => visible(e) && !scrolls(e))
    .filter(e => e.getBoundingClientRect().right > room || e.scrollWidth > e.clientWidth + 1)
    .map(e => e.tagName.toLowerCase() + ": " + text(e));
  const figures = Array.from(article.querySelectorAll(".cell_output img")).filter(visible);
  return JSON.stringify({
    math_errors: Array.from(document.querySelectorAll("mjx-merror")).map(text),
    untypeset: Array.from(article.querySelectorAll(".math")).filter(
      e => !e.querySelector("mjx-container")).map(text),
    raw_tex: [...new Set(raw_tex)],
    broken_images: Array.from(document.images).filter(
      i => visible(i) && !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    clipped: clipped,
    nbval_markers: Array.from(article.querySelectorAll("pre")).filter(
      e => e.textContent.includes("# NBVAL_")).map(text),
    search_boxes: Array.from(document.querySelectorAll(".search-button-field, .bd-search"))
      .filter(e => visible(e) && !e.closest("main")).length,  // the search page has its own form
    figures: figures.map(i => ({src: i.src.slice(-40), natural: i.naturalWidth,  // css: page size
                               shown: i.getBoundingClientRect().width,
                               css: parseFloat(i.style.width) || i.naturalWidth})),
  });
})()"""

# Clicks every visible navigation toggle and reports whether its panel opened (then closes it).
TOGGLES = """(async () => {
  const panels = {"primary-toggle": "pst-primary-sidebar-modal",
                  "secondary-toggle": "pst-secondary-sidebar-modal"};
  const results = [];
  for (const [cls, id] of Object.entries(panels)) {
    for (const button of document.querySelectorAll("." + cls)) {
      if (!button.getClientRects().length) continue;
      button.click();
      await new Promise(r => setTimeout(r, 100));
      const dialog = document.getElementById(id);
      const open = !!dialog && dialog.open && dialog.getBoundingClientRect().width > 0 &&
        dialog.textContent.trim().length > 0;
      results.push({toggle: cls, opens: open});
      if (dialog && dialog.open) dialog.close();
    }
  }
  return JSON.stringify(results);
})()"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def browser_required() -> bool:
    """Under CI the browser checks are required; elsewhere they run when a Chromium is found."""
    return os.environ.get("CI") == "true"


class Browser:
    """One headless Chromium, offline, driven over DevTools; use as a context manager."""

    def __init__(self, chromium: str, profile: Path, timeout: float = 120, loopback: bool = False):
        """``loopback``: also reach servers on 127.0.0.1 (a local JupyterLab); nothing else."""
        self.chromium, self.profile, self.timeout = chromium, profile, timeout
        self.resolver = "MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else "")
        self.next_id, self.events = 0, []

    def __enter__(self) -> Browser:
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--host-resolver-rules={self.resolver}", "--proxy-server=127.0.0.1:9",
            "--hide-scrollbars", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
            "about:blank",
        ]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.process = subprocess.Popen([self.chromium, *flags], **quiet)
        port_file, deadline = self.profile / "DevToolsActivePort", time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError(f"Chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(opener.open(f"http://127.0.0.1:{port}/json", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=self.timeout,
                                              suppress_origin=True)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        return self

    def __exit__(self, *exc) -> None:
        """Close Chromium and wait for it (all its processes), killing it if it hangs."""
        try:
            self.ws.send(json.dumps({"id": 0, "method": "Browser.close"}))
            self.process.wait(timeout=30)
        except (OSError, websocket.WebSocketException, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.ws.close()

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result; events met on the way are kept."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str):
        """The JSON value of a (possibly async) JavaScript expression."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def resize(self, width: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
                  deviceScaleFactor=2, mobile=width < 800)

    def console_errors(self) -> list[str]:
        """Errors the page logged or threw since the last call (JavaScript and failed loads)."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                errors.append(" ".join(str(a.get("value", a.get("description")))
                                       for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                errors.append(f"{entry['text']} {entry.get('url', '')}".strip())
        self.events.clear()
        return errors

    def load(self, url: str, width: int = DESKTOP) -> None:
        """Open ``url`` at ``width`` and wait for MathJax and the images."""
        self.resize(width)
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.time() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not load in {self.timeout} s")
            self.events.append(json.loads(self.ws.recv()))
        self.evaluate(PAGE_READY)

    def read(self, url: str) -> dict:
        """What a reader meets on the page: READER_CHECKS at desktop and at phone width, the
        navigation toggles at phone width, and the console errors of the whole visit."""
        self.load(url, DESKTOP)
        desktop = json.loads(self.evaluate(READER_CHECKS))
        self.resize(PHONE)
        phone = json.loads(self.evaluate(READER_CHECKS))
        toggles = json.loads(self.evaluate(TOGGLES))
        return {"desktop": desktop, "phone": phone, "toggles": toggles,
                "console_errors": self.console_errors()}

    def screenshot(self, path: Path, width: int = DESKTOP) -> None:
        """Save a PNG of the current page at ``width``."""
        self.resize(width)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
