"""The book builds with zero warnings (-W), and every built page reads well in headless Chromium
with no network, at desktop and at phone width (the reader test: tests/browser.py)."""

import json
import re
import subprocess

import nbformat
import pytest
from browser import READER_CHECKS, Browser, browser_required, find_chromium
from conftest import BIN
from notebooks import CHAPTERS, RELEASES, ROOT

REQUIRED_REFERENCES = [  # the reading lists of the source lectures (book/preface.md)
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
    assert len(rows) == len(CHAPTERS) + 1
    minutes = []
    for path, row in zip(CHAPTERS, rows, strict=False):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", row, re.S)]
        cells_of = nbformat.read(path, as_version=4).cells
        first = next(c for c in cells_of if c.cell_type == "code").outputs[0].text  # provenance
        preset, device, date = (re.search(rf"{key}=([^,\n]+)", first).group(1)
                                for key in ("preset", "device", "date"))
        assert f'href="{path.stem}.html"' in row
        assert cells[1:4] == [preset, device, date], (path.name, cells)
        assert re.fullmatch(r"\d+\.\d min", cells[4]), (path.name, cells[4])
        minutes.append(float(cells[4].split()[0]))
    total = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", rows[-1], re.S)]
    assert total[0] == "all, one after another" and total[4].endswith(" min")
    assert abs(float(total[4].split()[0]) - sum(minutes)) <= 0.05 * (len(minutes) + 1), total


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


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium the browser tests drive (required under CI=true, else skipped without one)."""
    path = find_chromium()
    if path is None:
        if browser_required():
            pytest.fail("CI=true needs Chromium for the browser tests (make test installs it)")
        pytest.skip("no Chromium found: the browser tests were skipped")
    return path


@pytest.fixture(scope="module")
def reading(html, chromium, tmp_path_factory):
    """Every built page as a reader meets it in headless Chromium with no network, at desktop
    and at phone width (tests/browser.py): {page path: findings}."""
    pages = sorted(p for p in html.rglob("*.html") if not p.relative_to(html).parts[0]
                   .startswith(("_", "mathjax", "index.html")))  # index.html only redirects
    with Browser(chromium, tmp_path_factory.mktemp("profile")) as browser:
        return {p.relative_to(html).as_posix(): browser.read(p.as_uri()) for p in pages}


def findings(reading, key, widths=("desktop", "phone")):
    """{page (width): what READER_CHECKS found under ``key``}, for the pages where it found any."""
    return {f"{page} ({width})": found[width][key] for page, found in reading.items()
            for width in widths if found[width][key]}


@pytest.mark.slow
def test_reader_sees_every_page(reading):
    chapters = {f"book/{p.name[:-6]}.html" for p in CHAPTERS}
    assert chapters <= set(reading), chapters - set(reading)
    assert len(reading) >= len(CHAPTERS) + len(RELEASES) + 5, sorted(reading)


@pytest.mark.slow
def test_math_typesets_without_errors_or_raw_tex(reading):
    """MathJax loaded from the book, typeset every formula, reported no error, and no TeX
    delimiter or command is left in the text (page titles and the sidebar included)."""
    assert not findings(reading, "math_errors"), findings(reading, "math_errors")
    assert not findings(reading, "untypeset"), findings(reading, "untypeset")
    assert not findings(reading, "raw_tex"), findings(reading, "raw_tex")


@pytest.mark.slow
def test_images_load_and_nothing_is_clipped(reading):
    assert not findings(reading, "broken_images"), findings(reading, "broken_images")
    assert not findings(reading, "clipped"), findings(reading, "clipped")


@pytest.mark.slow
def test_nbval_markers_are_not_shown(reading):
    """``# NBVAL_CHECK_OUTPUT`` tells nbval what to compare; readers do not see it."""
    assert not findings(reading, "nbval_markers", ("desktop",)), findings(reading, "nbval_markers")


@pytest.mark.slow
def test_pages_log_no_console_errors(reading):
    errors = {page: found["console_errors"] for page, found in reading.items()
              if found["console_errors"]}
    assert not errors, errors


@pytest.mark.slow
def test_phone_navigation_toggles_open_their_panels(reading):
    for page, found in reading.items():
        toggles = found["toggles"]
        assert any(t["toggle"] == "primary-toggle" for t in toggles), f"{page}: no menu button"
        closed = [t["toggle"] for t in toggles if not t["opens"]]
        assert not closed, f"{page}: at phone width these toggles open nothing: {closed}"


@pytest.mark.slow
def test_one_search_box(reading):
    boxes = {page: found["desktop"]["search_boxes"] for page, found in reading.items()}
    assert set(boxes.values()) == {1}, boxes


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [p.stem for p in CHAPTERS])
def test_figures_are_sharp_and_legible_on_phones(reading, chapter):
    """Chapter figures are stored at twice their CSS size (retina) and are not shrunk on a phone
    below 60 % of that size, where the book style's labels (vaecourse.plotting.book_style) would
    drop under 8 px; wider figures scroll sideways instead."""
    found = reading[f"book/{chapter}.html"]
    assert found["desktop"]["figures"], f"{chapter}: no figure found"
    for width in ("desktop", "phone"):
        for figure in found[width]["figures"]:
            assert figure["natural"] >= 1.9 * figure["css"], (chapter, width, "not retina", figure)
            assert figure["shown"] >= 0.6 * figure["css"] - 1, (chapter, width, "shrunk", figure)


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


@pytest.mark.slow
def test_make_pdf_prints_the_whole_book(chromium, tmp_path):
    """`make pdf` prints the single-page build: a PDF of the whole book, its math typeset."""
    result = subprocess.run(["make", "pdf", f"PDF_OUT={tmp_path}", f"CHROMIUM={chromium}"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"make pdf failed:\n{(result.stdout + result.stderr)[-6000:]}"
    pdf = (tmp_path / "_build" / "pdf" / "vae-course-book.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-"), pdf[:20]
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages >= 10 * len(CHAPTERS), f"{pages} pages for {len(CHAPTERS)} chapters"
    single = tmp_path / "_build" / "singlehtml" / "vae-course-book.html"
    with Browser(chromium, tmp_path / "profile") as browser:
        browser.load(single.as_uri())
        found = json.loads(browser.evaluate(READER_CHECKS))
    for key in ("math_errors", "untypeset", "raw_tex", "broken_images"):
        assert not found[key], (key, found[key][:5])
    assert len(found["figures"]) >= len(CHAPTERS), "the printed page lacks the chapters' figures"
