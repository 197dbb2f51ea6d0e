"""Load a page in headless Chromium with every network request refused, and report what it shows.

Chromium is driven through its DevTools protocol (websocket-client, from the pinned stack).
"""

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import websocket

# Resolves when MathJax has typeset the page and every image has loaded (or failed).
PAGE_STATE = """(async () => {
  for (let i = 0; i < 300 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 100));
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
  await Promise.all(Array.from(document.images).map(i => i.complete ? null :
    new Promise(r => { i.onload = i.onerror = r; })));
  const figures = Array.from(document.querySelectorAll('.cell_output img'));
  return JSON.stringify({
    mathjax: !!(window.MathJax && MathJax.version),
    typeset: document.querySelectorAll('mjx-container').length,
    untypeset: document.querySelectorAll('.math:not(:has(mjx-container))').length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    figures: figures.length,
    broken_figures: figures.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  });
})()"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def page_state(chromium: str, url: str, profile: Path, timeout: float = 120) -> dict:
    """Open ``url`` offline in headless Chromium and return the PAGE_STATE summary."""
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank",
    ]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen([chromium, *flags], **quiet)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"Chromium did not start (exit code {process.poll()})")
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.load(opener.open(f"http://127.0.0.1:{port}/json", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
        ws.send(json.dumps({"id": 1, "method": "Page.navigate", "params": {"url": url}}))
        time.sleep(1)
        params = {"expression": PAGE_STATE, "awaitPromise": True, "returnByValue": True}
        ws.send(json.dumps({"id": 2, "method": "Runtime.evaluate", "params": params}))
        while (reply := json.loads(ws.recv())).get("id") != 2:
            pass
        ws.close()
        return json.loads(reply["result"]["result"]["value"])
    finally:
        process.kill()
        process.wait()


def browser_required() -> bool:
    """Under CI the browser check is required; elsewhere it runs when a Chromium is found."""
    return os.environ.get("CI") == "true"
