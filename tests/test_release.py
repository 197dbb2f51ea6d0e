"""The nbgrader round trip of every problem set, in a temporary course root with its own gradebook:
the committed release is what the master generates, the master earns every autograded point, the
unchanged release earns none, and a release with one answer earns the points of the tests that
depend on that answer alone (partial credit)."""

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

from vaecourse.grading.notebook import answered, grade_id

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


def master(ps: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / ps / f"{ps}.ipynb", as_version=4)


def first_answer(ps: str) -> str:
    """The grade id of the master's first answer code cell (the cheapest to run alone: the
    answers that train come later)."""
    return next(grade_id(c) for c in master(ps).cells if c.cell_type == "code"
                and c.metadata.get("nbgrader", {}).get("solution"))


def partly_answered(ps: str) -> nbformat.NotebookNode:
    """The committed release with the master's answer to its first answer cell only."""
    release = nbformat.read(ROOT / "exercises" / ps / f"{ps}.ipynb", as_version=4)
    return answered(release, master(ps), [first_answer(ps)])


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def course(request, tmp_path_factory):
    """A course root with the master, a regenerated release and three autograded submissions:
    the master, the unchanged release and the release with one answer."""
    ps = request.param
    course = tmp_path_factory.mktemp(ps)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / ps, course / "solutions" / ps)
    nbgrader(course, "generate_assignment", ps, "--force")
    for student, source in (("master", "solutions"), ("blank", "exercises")):
        shutil.copytree(ROOT / source / ps, course / "submitted" / student / ps)
    (course / "submitted" / "partial" / ps).mkdir(parents=True)
    nbformat.write(partly_answered(ps), course / "submitted" / "partial" / ps / f"{ps}.ipynb")
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


def test_one_answer_earns_the_points_of_the_tests_it_alone_feeds(course):
    """Partial credit: the tests that depend on the first answer only (the master's answer map,
    metadata.vaecourse.answers) pass, every other test fails."""
    ps, tmp = course
    nb = master(ps)
    answers = nb.metadata["vaecourse"]["answers"]
    fed = {t for t in answers[first_answer(ps)]
           if all(t not in tests for a, tests in answers.items() if a != first_answer(ps))}
    expected = sum(c.metadata.nbgrader["points"] for c in nb.cells if grade_id(c) in fed)
    score, max_score = autograded_points(tmp, ps, "partial")
    assert 0 < expected < max_score, f"{ps}: the answer '{first_answer(ps)}' alone feeds tests " \
                                     f"worth {expected} of {max_score} points"
    assert score == expected, f"the {ps} release answering only '{first_answer(ps)}' earns " \
                              f"{score} points, the tests it alone feeds ({sorted(fed)}) {expected}"


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
