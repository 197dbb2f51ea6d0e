"""Notebook hygiene: masters and releases carry no outputs; chapters carry the outputs of one full
top-to-bottom run in a fresh kernel, starting with vaecourse.provenance() (README.md, "Running
chapters and exercises")."""

import nbformat
import pytest
from notebooks import CHAPTERS, MASTERS, RELEASES, ROOT, ids


def code_cells(path):
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_there_are_notebooks_to_check():
    assert CHAPTERS, "book/ has no chapter notebooks"
    assert MASTERS and RELEASES, "solutions/ and exercises/ must hold the problem sets"


@pytest.mark.parametrize("path", MASTERS + RELEASES, ids=ids(MASTERS + RELEASES))
def test_masters_and_releases_have_no_outputs(path):
    for cell in code_cells(path):
        assert not cell.outputs, f"{path.name}: a cell has stored outputs:\n{cell.source[:200]}"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids(CHAPTERS))
def test_chapter_was_run_top_to_bottom(path):
    cells = code_cells(path)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(cells)}: "
        "restart the kernel and run all cells (make execute)"
    )
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored outputs contain an error: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids(CHAPTERS))
def test_chapter_starts_with_provenance(path):
    first = code_cells(path)[0]
    assert "vaecourse.provenance()" in first.source, f"{path.name}: first code cell must call it"
    text = "".join(o.get("text", "") for o in first.outputs if o.output_type == "stream")
    assert text.startswith("vaecourse provenance: preset="), (
        f"{path.name}: the first cell's output should be the provenance line, got {text[:80]!r}"
    )


def test_every_chapter_and_release_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in CHAPTERS + RELEASES:
        entry = str(path.relative_to(ROOT).with_suffix(""))
        assert f"file: {entry}\n" in toc, f"{entry} is missing from _toc.yml"
