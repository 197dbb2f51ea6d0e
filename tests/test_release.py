"""The nbgrader round trip of every problem set, in a temporary course root with its own gradebook:
the committed release is what the master generates, the master earns every autograded point and
the unchanged release earns none."""

import filecmp
import os
import shutil
import subprocess

import nbformat
import pytest
from conftest import BIN
from nbclient import NotebookClient
from nbgrader.api import Gradebook
from notebooks import ROOT

ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())


def nbgrader(course, *args) -> str:
    """Run ``nbgrader ARGS`` in ``course``; return its output (it must succeed)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # nbgrader runs alembic
    result = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log}"
    return log


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def course(request, tmp_path_factory):
    """A course root with the master, a regenerated release and two autograded submissions."""
    ps = request.param
    course = tmp_path_factory.mktemp(ps)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ps, course / "solutions" / ps)
    nbgrader(course, "generate_assignment", ps, "--force")
    for student, source in (("master", "solutions"), ("blank", "exercises")):
        shutil.copytree(ROOT / source / ps, course / "submitted" / student / ps)
    nbgrader(course, "autograde", ps, "--force")
    return ps, course


def autograded_points(course, ps, student):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(ps, student)
        grades = [g for n in submission.notebooks for g in n.grades if g.auto_score is not None]
        return sum(g.auto_score for g in grades), sum(g.max_score for g in grades)


def test_committed_release_is_regenerated_exactly(course):
    ps, tmp = course
    committed = sorted(p.name for p in (ROOT / "exercises" / ps).iterdir())
    generated = sorted(p.name for p in (tmp / "exercises" / ps).iterdir())
    assert committed == generated, f"exercises/{ps} holds {committed}, the master makes {generated}"
    folders = ROOT / "exercises" / ps, tmp / "exercises" / ps
    _, mismatch, errors = filecmp.cmpfiles(*folders, committed, shallow=False)
    assert not mismatch and not errors, f"exercises/{ps}: {mismatch or errors} stale: make release"


def test_master_scores_full_marks(course):
    ps, tmp = course
    score, max_score = autograded_points(tmp, ps, "master")
    assert max_score > 0
    assert score == max_score, f"the {ps} master earns {score} of {max_score} autograded points"


def test_unchanged_release_scores_zero(course):
    ps, tmp = course
    score, _ = autograded_points(tmp, ps, "blank")
    assert score == 0, f"the unanswered {ps} release earns {score} points"


@pytest.mark.parametrize("ps", ASSIGNMENTS)
def test_validator_passes_the_master_and_fails_the_release(ps, tmp_path):
    master = nbgrader(tmp_path, "validate", str(ROOT / "solutions" / ps / f"{ps}.ipynb"))
    assert "Success! Your notebook passes all the tests." in master, master[-3000:]
    release = nbgrader(tmp_path, "validate", str(ROOT / "exercises" / ps / f"{ps}.ipynb"))
    assert "VALIDATION FAILED" in release, f"the unanswered {ps} release passes the validator"


@pytest.mark.parametrize("ps", ASSIGNMENTS)
def test_release_runs_up_to_the_first_unanswered_cell(ps):
    """What a student sees on opening a release: every cell before the first answer runs."""
    path = ROOT / "exercises" / ps / f"{ps}.ipynb"
    nb = nbformat.read(path, as_version=4)
    folder = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=300, allow_errors=True, resources=folder).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    answers = [i for i, c in enumerate(code) if c.metadata.get("nbgrader", {}).get("solution")]
    first_answer = answers[0]
    errors = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    assert errors and errors[0] >= first_answer, (
        f"{ps}: cells before the first answer (cell {first_answer}) must run, got errors in "
        f"cells {errors[:5]}"
    )
    error = next(o for o in code[errors[0]].outputs if o.output_type == "error")
    assert error.ename == "NotImplementedError", f"{ps}: the first failure is {error.ename}"
