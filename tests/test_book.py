"""The book builds with zero warnings (-W), and a built chapter shows typeset math and its figures
in headless Chromium with no network (MathJax is served from the build, see _config.yml)."""

import re
import subprocess

import nbformat
import pytest
from browser import browser_required, find_chromium, page_state
from conftest import BIN
from notebooks import CHAPTERS, RELEASES, ROOT

REQUIRED_REFERENCES = [  # the reading lists of the source lectures (REFERENCES.md)
    "kingma2014autoencoding", "doersch2016tutorial", "yan2016attribute2image",
    "walker2016uncertain", "larsen2016autoencoding", "deshpande2017learning", "yeh2016semantic",
    "kingma2014semisupervised", "maaloe2016auxiliary", "burda2016importance", "sohn2015learning",
    "makhzani2016adversarial", "vandenoord2016pixel",
]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """Build the whole book once, as `make book` does, into a temporary directory."""
    out = tmp_path_factory.mktemp("book")
    command = [str(BIN / "jupyter-book"), "build", str(ROOT), "--path-output", str(out)]
    command += ["-W", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"the book build failed:\n{log[-6000:]}"
    assert not re.search(r"\bWARNING\b", log.replace("WARNING | Kernel", "")), log[-6000:]
    return out / "_build" / "html"


@pytest.mark.slow
def test_every_page_is_built(html):
    for page in ("book/preface", "book/notation", "book/execution", "book/bibliography"):
        assert (html / f"{page}.html").is_file(), f"{page}.html was not built"
    for path in CHAPTERS + RELEASES:
        page = path.relative_to(ROOT).with_suffix(".html")
        assert (html / page).is_file(), f"{page} was not built"
    assert (html / "index.html").is_file()


@pytest.mark.slow
def test_mathjax_is_served_from_the_book(html):
    assert (html / "mathjax" / "tex-chtml.js").is_file()
    page = (html / "book" / "notation.html").read_text()
    sources = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert sources == ["../_static/../mathjax/tex-chtml.js"], sources
    assert not re.search(r"(cdn|jsdelivr|unpkg)[^\"']*mathjax", page, flags=re.I)


@pytest.mark.slow
def test_bibliography_holds_the_reading_lists(html):
    bib = (ROOT / "references.bib").read_text()
    page = re.sub(r"<[^>]+>", "", (html / "book" / "bibliography.html").read_text())
    for key in REQUIRED_REFERENCES:
        entry = re.search(rf"@\w+\{{{key},(.*?)\n\}}", bib, flags=re.S)
        assert entry, f"references.bib lacks {key}"
        title = re.search(r"title\s*=\s*\{(.*)\},", entry.group(1)).group(1)
        words = re.sub(r"[{}]", "", title)[:30]
        assert words.lower() in page.lower(), f"the bibliography page lacks {key} ({words}...)"


@pytest.mark.slow
def test_execution_page_lists_how_each_chapter_ran(html):
    """One row per chapter: its link, and the preset, device, date and run time of its stored
    run, read from the notebook (book/_ext/chapter_runs.py)."""
    page = (html / "book" / "execution.html").read_text()
    table = page[page.index("<table"):page.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)[1:]
    assert len(rows) == len(CHAPTERS)
    for path, row in zip(CHAPTERS, rows, strict=True):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", row, re.S)]
        cells_of = nbformat.read(path, as_version=4).cells
        first = next(c for c in cells_of if c.cell_type == "code").outputs[0].text  # provenance
        preset, device, date = (re.search(rf"{key}=([^,\n]+)", first).group(1)
                                for key in ("preset", "device", "date"))
        assert f'href="{path.stem}.html"' in row
        assert cells[1:4] == [preset, device, date], (path.name, cells)
        assert re.fullmatch(r"\d+\.\d min", cells[4]), (path.name, cells[4])


def test_chapter_runs_reads_provenance_and_timestamps(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "book" / "_ext"))
    from chapter_runs import provenance, run_seconds

    cell = {"outputs": [{"text": "vaecourse provenance: preset=gpu, device=cuda, gpu=H100, "
                                 "date=2026-01-02\n"}]}
    assert provenance(cell) == {"preset": "gpu", "device": "cuda", "gpu": "H100",
                                "date": "2026-01-02"}
    assert provenance({"outputs": [{"text": "hello"}]}) == {}
    stamps = [{"metadata": {"execution": {"iopub.execute_input": "2026-01-02T10:00:00.5Z",
                                          "shell.execute_reply": "2026-01-02T10:00:01Z"}}},
              {"metadata": {"execution": {"iopub.execute_input": "2026-01-02T10:01:00Z",
                                          "shell.execute_reply": "2026-01-02T10:02:30.5Z"}}}]
    assert run_seconds(stamps) == 150.0
    assert run_seconds([{"metadata": {}}]) is None


def chapter_with_math_and_figures():
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        has_math = any("$" in c.source for c in nb.cells if c.cell_type == "markdown")
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        has_figure = any("image/png" in o.get("data", {}) for o in outputs)
        if has_math and has_figure:
            return path
    return None


@pytest.mark.slow
def test_chapter_shows_math_and_figures_offline(html, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        if browser_required():
            pytest.fail("CI=true needs Chromium for the browser check (make test installs it)")
        pytest.skip("no Chromium found: the offline browser check was skipped")
    chapter = chapter_with_math_and_figures()
    assert chapter is not None, "no chapter has both math and a figure to check in the browser"
    page = html / chapter.relative_to(ROOT).with_suffix(".html")
    state = page_state(chromium, page.as_uri(), tmp_path / "profile")
    print(f"{chapter.name} in headless Chromium, offline: {state}")
    assert state["mathjax"], f"MathJax did not load from the book: {state}"
    assert state["typeset"] > 0 and state["untypeset"] == 0 and state["math_errors"] == 0, state
    assert state["figures"] > 0 and not state["broken_figures"], state


@pytest.mark.slow
def test_notebook_pages_have_launch_buttons(html):
    repository = re.search(r"url: https://github.com/(\S+)", (ROOT / "_config.yml").read_text())
    for path in CHAPTERS + RELEASES:
        name = path.relative_to(ROOT).as_posix()
        page = (html / path.relative_to(ROOT).with_suffix(".html")).read_text()
        binder = f"mybinder.org/v2/gh/{repository.group(1)}/main?urlpath=lab/tree/{name}"
        assert binder in page, f"{name}: no Binder button opening JupyterLab"
        colab = f"colab.research.google.com/github/{repository.group(1)}/blob/main/{name}"
        assert colab in page, f"{name}: no Colab button"
