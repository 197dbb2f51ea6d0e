"""`make lab` in a real browser: chapters render as in the book (jupyterlab-myst: theorems,
exercises, solutions folded), nbgrader's instructor-only parts are off, and Lab serves the
student's copies in the workspace, never the tracked notebooks, without overwriting earlier work
(Makefile, book/_ext/lab/student)."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from browser import Browser, browser_required, find_chromium
from notebooks import ROOT

# Scrolls the notebook until a theorem and an exercise have rendered, and reports what they show.
RENDERED = """(async () => {
  const scroller = document.querySelector('.jp-WindowedPanel-outer');
  const boxes = () => ({theorem: document.querySelector('aside.myst-proof'),
                        exercise: document.querySelector('aside.myst-exercise'),
                        solution: document.querySelector('details.myst-exercise')});
  for (let i = 0; i < 400 && !(boxes().theorem && boxes().exercise); i++) {
    if (scroller) scroller.scrollTop += 300;
    await new Promise(r => setTimeout(r, 150));
  }
  const b = boxes();
  if (b.exercise) b.exercise.scrollIntoView({block: "start"});
  await new Promise(r => setTimeout(r, 1000));
  const raw = Array.from(document.querySelectorAll('.jp-RenderedMarkdown, .myst'))
    .some(e => /\\{(prf:theorem|exercise|solution)\\}/.test(e.innerText));
  return JSON.stringify({
    theorem: b.theorem ? b.theorem.textContent.slice(0, 200) : null,
    exercise: b.exercise ? b.exercise.textContent.slice(0, 200) : null,
    solution: b.solution ? b.solution.outerHTML.slice(0, 300) : null,
    solution_open: b.solution ? b.solution.open === true : null,
    raw_directives: raw,
  });
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    """The HTTP status of ``url`` (0 while nothing listens there)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        return opener.open(url, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0


@pytest.mark.slow
def test_make_lab_renders_chapters_for_students(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        if browser_required():
            pytest.fail("CI=true needs Chromium for the Lab test (make test installs it)")
        pytest.skip("no Chromium found: the Lab test was skipped")
    port, token, workspace = free_port(), "reader-test", tmp_path / "workspace"
    # A student's earlier work in the workspace: make lab must keep it and serve it.
    chapter = json.loads((ROOT / "book" / "01_autoencoders.ipynb").read_text())
    chapter["cells"].insert(0, {"cell_type": "markdown", "id": "student-note", "metadata": {},
                                "source": ["my own note"]})
    (workspace / "book").mkdir(parents=True)
    (workspace / "book" / "01_autoencoders.ipynb").write_text(json.dumps(chapter))
    args = f"--no-browser --port={port} --IdentityProvider.token={token}"
    lab = subprocess.Popen(["make", "lab", f"WORKSPACE={workspace}", f"LAB_ARGS={args}"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while get(f"{base}/api/status?token={token}") != 200:
            assert lab.poll() is None, f"make lab exited with {lab.returncode}"
            assert time.time() < deadline, "JupyterLab did not start in 180 s"
            time.sleep(1)
        served = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"{base}/api/contents/book/01_autoencoders.ipynb?token={token}", timeout=30).read())
        assert served["content"]["cells"][0]["source"] == "my own note", "not the student's copy"
        assert (workspace / "exercises" / "ps1_likelihood" / "ps1_likelihood.ipynb").is_file()
        assert get(f"{base}/formgrader?token={token}") == 404, "formgrader is on for students"
        assert get(f"{base}/assignments?token={token}") == 404, "assignment list is on"
        page = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"{base}/lab?token={token}", timeout=30).read().decode()
        assert "@jupyter/nbgrader:formgrader" in page  # listed among the disabled extensions

        url = f"{base}/lab/tree/book/01_autoencoders.ipynb?token={token}"
        with Browser(chromium, tmp_path / "profile", timeout=300, loopback=True) as browser:
            browser.load(url)
            shown = json.loads(browser.evaluate(RENDERED))
            browser.screenshot(tmp_path / "lab.png")
        print(f"JupyterLab (screenshot {tmp_path / 'lab.png'}): {shown}")
        assert shown["theorem"] and "Theorem" in shown["theorem"], shown
        assert shown["exercise"] and "Exercise" in shown["exercise"], shown
        assert shown["solution_open"] is False, shown
        assert not shown["raw_directives"], shown
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=60)
