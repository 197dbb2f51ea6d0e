"""The grading command (vaecourse.grading) on ps0_warmup, the fastest assignment: one temporary
course directory with its own gradebook, one folder per student, graded once by
``python -m vaecourse grade`` (module fixture); each test reads that one run."""

import contextlib
import copy
import csv
import hashlib
import html
import io
import os
import re
import shutil
from datetime import datetime, timedelta
from types import SimpleNamespace

import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry
from notebooks import ROOT

from vaecourse import grading
from vaecourse.__main__ import main

PS = "ps0_warmup"
MASTER = nbformat.read(ROOT / "solutions" / PS / f"{PS}.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "exercises" / PS / f"{PS}.ipynb", as_version=4)
ANSWERS = MASTER.metadata["vaecourse"]["answers"]  # answer cell -> the tests that depend on it
TESTS = [c.metadata.nbgrader["grade_id"] for c in MASTER.cells
         if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
TIMEOUT = 10  # seconds per cell: the infinite loop's cost; importing torch takes 1-3 s
DEADLINE = datetime.now() + timedelta(days=1)


def cell(nb, grade_id):
    return next(c for c in nb.cells if grading.grade_id(c) == grade_id)


def answer(grade_id):
    """The master's answer without nbgrader's solution markers, as a student would write it."""
    lines = cell(MASTER, grade_id).source.splitlines()
    return "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def filled(*grade_ids, **sources):
    """The release with the master's answers to ``grade_ids`` and the given sources."""
    nb = copy.deepcopy(RELEASE)
    for grade_id in grade_ids:
        cell(nb, grade_id).source = answer(grade_id)
    for grade_id, source in sources.items():
        cell(nb, grade_id).source = source
    return nb


ALL = ("log_normal", "log_mean_exp", "mc_second_moment")


def tampered(change):
    """The release answering only log_normal, then changed as ``change`` says."""
    nb = filled("log_normal")
    if change == "edited":
        cell(nb, "test_log_mean_exp").source = "# no tests here\n"
    elif change == "deleted":
        nb.cells = [c for c in nb.cells
                    if grading.grade_id(c) not in ("test_log_normal", "test_log_mean_exp")]
    elif change == "points":
        cell(nb, "test_log_normal").metadata.nbgrader["points"] = 30
        cell(nb, "test_log_mean_exp").metadata.nbgrader["points"] = 30
    elif change == "unlocked":
        test = cell(nb, "test_log_mean_exp")
        test.metadata.nbgrader.update(locked=False, solution=True)
        test.metadata.update(editable=True, deletable=True)
        test.source = "pass\n"
    return nb


def duplicated():
    nb = filled(*ALL)
    copied = copy.deepcopy(cell(nb, "test_log_normal"))
    copied.id = "copied-test"
    nb.cells.insert(nb.cells.index(cell(nb, "test_log_normal")), copied)
    return nb


NOISY_LOG_NORMAL = answer("log_normal").replace(
    "    return", "    warnings.warn('log_normal: a harmless warning')\n    return"
) + "\n\nimport warnings"
NOISY_MC = answer("mc_second_moment").replace(
    "    z2 =", "    for _ in tqdm(range(3), desc='sampling'):\n        pass\n    z2 ="
) + "\n\nfrom tqdm import tqdm"
FLOAT32_LOG_NORMAL = answer("log_normal").replace("    return ", "    return torch.as_tensor(")
FLOAT32_LOG_NORMAL = FLOAT32_LOG_NORMAL.rstrip() + ", dtype=torch.float32)"

SUBMISSIONS = {
    "blank": lambda: filled(),
    **{f"only_{a}": (lambda a=a: filled(a)) for a in ANSWERS},
    **{f"tampered_{c}": (lambda c=c: tampered(c)) for c in ("edited", "deleted", "points",
                                                            "unlocked")},
    "duplicated": duplicated,
    "died": lambda: filled("log_normal", "mc_second_moment",
                           log_mean_exp="import os\nos._exit(1)"),
    "loop": lambda: filled("log_normal", "mc_second_moment",
                           log_mean_exp="while True:\n    pass"),
    "noisy": lambda: filled("log_mean_exp", log_normal=NOISY_LOG_NORMAL,
                            mc_second_moment=NOISY_MC),
    "late": lambda: filled(),
    "hidden_fail": lambda: filled("log_mean_exp", "mc_second_moment",
                                  log_normal=FLOAT32_LOG_NORMAL),
}


def snapshot():
    """Content hashes of what grading must never touch in the repository."""
    files = [p for folder in ("exercises", "solutions") for p in (ROOT / folder).rglob("*")
             if p.is_file()]
    state = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    state["gradebook.db exists"] = (ROOT / "gradebook.db").exists()
    return state


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One grading run over every submission above, through the command line."""
    tmp = tmp_path_factory.mktemp("grading")
    subs = tmp / "submissions"
    for student, make in SUBMISSIONS.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(make(), subs / student / f"{PS}.ipynb")
    (subs / "renamed").mkdir()
    nbformat.write(filled(*ALL), subs / "renamed" / f"{PS} (1).ipynb")
    (subs / "missing").mkdir()
    later = (DEADLINE + timedelta(days=1)).timestamp()
    os.utime(subs / "late" / f"{PS}.ipynb", (later, later))
    before, stdout = snapshot(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.chdir(ROOT)
        code = main(["grade", PS, str(subs), "--out", str(tmp / "out"), "--timeout",
                     str(TIMEOUT), "--deadline", DEADLINE.isoformat()])
    with open(tmp / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return SimpleNamespace(code=code, stdout=stdout.getvalue(), rows=rows, out=tmp / "out",
                           before=before, after=snapshot())


def gradebook(graded):
    return Gradebook(f"sqlite:///{graded.out / 'gradebook.db'}")


def auto_scores(graded, student):
    """The gradebook's autograded score of each test cell of a student."""
    with gradebook(graded) as gb:
        notebooks = gb.find_submission(PS, student).notebooks
        return {g.name: g.auto_score for n in notebooks for g in n.grades if g.name in TESTS}


def points(grade_id):
    return cell(MASTER, grade_id).metadata.nbgrader["points"]


def test_command_prints_one_row_per_student(graded):
    assert graded.code == 0
    lines = graded.stdout.strip().splitlines()
    assert lines[0].split() == list(grading.FIELDS)
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(graded.rows)
    assert len(graded.rows) == len(SUBMISSIONS) + 2


@pytest.mark.parametrize("answered", sorted(ANSWERS))
def test_an_answer_alone_earns_the_points_of_its_tests(graded, answered):
    expected = {t: float(points(t)) if t in ANSWERS[answered] else 0.0 for t in TESTS}
    assert auto_scores(graded, f"only_{answered}") == expected
    row = graded.rows[f"only_{answered}"]
    assert row["status"] == "graded"
    assert float(row["score"]) == sum(expected.values())


@pytest.mark.parametrize("change, reported", [
    ("edited", "edited locked cell 'test_log_mean_exp'"),
    ("deleted", "deleted cell 'test_log_normal'"),
    ("points", "points of 'test_log_normal' changed from 3 to 30"),
    ("unlocked", "unlocked cell 'test_log_mean_exp'"),
])
def test_tampering_changes_no_grade_and_is_reported(graded, change, reported):
    student = f"tampered_{change}"
    assert auto_scores(graded, student) == auto_scores(graded, "only_log_normal")
    row = graded.rows[student]
    assert row["status"] == "tampered" and reported in row["reason"], row
    assert float(row["score"]) == points("test_log_normal")
    assert float(row["max_score"]) == float(graded.rows["blank"]["max_score"])


@pytest.mark.parametrize("student, reason", [
    ("duplicated", "duplicated graded cell test_log_normal"),
    ("renamed", f"renamed notebook: found {PS} (1).ipynb, expected {PS}.ipynb"),
    ("missing", f"missing notebook: {PS}.ipynb"),
    ("died", "kernel died"),
])
def test_a_broken_submission_fails_with_a_reason_and_no_score(graded, student, reason):
    row = graded.rows[student]
    assert row["status"] == "failed" and reason in row["reason"], row
    assert row["score"] == "", "a failed grading must not be exported as a score"
    with gradebook(graded) as gb, pytest.raises(MissingEntry):
        gb.find_submission(PS, student)


def test_the_others_are_graded_after_failures(graded):
    failed = {s for s, row in graded.rows.items() if row["status"] == "failed"}
    assert failed == {"duplicated", "renamed", "missing", "died"}
    assert all(row["score"] != "" for s, row in graded.rows.items() if s not in failed)


def test_an_infinite_loop_ends_at_the_timeout_and_the_rest_is_graded(graded):
    assert auto_scores(graded, "loop") == {"test_log_normal": 3.0, "test_log_mean_exp": 0.0,
                                           "test_mc_second_moment": 2.0}
    row = graded.rows["loop"]
    assert row["status"] == "graded" and "timeout in log_mean_exp" in row["reason"], row


def test_warnings_and_a_progress_bar_keep_full_marks(graded):
    assert auto_scores(graded, "noisy") == {t: float(points(t)) for t in TESTS}


def test_a_late_notebook_is_graded_and_flagged(graded):
    row = graded.rows["late"]
    assert row["status"] == "late" and "after the deadline" in row["reason"], row
    assert row["score"] == "0.0"
    assert graded.rows["blank"]["status"] == "graded"


def visible_text(path):
    """The text a student sees in an HTML page: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def hidden_lines():
    """The lines between the hidden-test markers of the master that the release does not show."""
    shown = {line.strip() for c in RELEASE.cells for line in c.source.splitlines()}
    hidden, inside = set(), False
    for line in (line for c in MASTER.cells for line in c.source.splitlines()):
        inside = ("BEGIN HIDDEN TESTS" in line) or (inside and "END HIDDEN TESTS" not in line)
        if inside and "HIDDEN TESTS" not in line and line.strip() not in shown:
            hidden.add(line.strip())
    return hidden


def test_feedback_shows_no_hidden_test_source(graded):
    hidden = hidden_lines()
    assert len(hidden) > 20
    graded_students = [s for s, row in graded.rows.items() if row["status"] != "failed"]
    for student in graded_students:
        text = visible_text(graded.out / "feedback" / student / PS / f"{PS}.html")
        assert "assert torch.isfinite(far)" in text, "the visible tests are in the feedback"
        leaked = sorted(line for line in hidden if line in text)
        assert not leaked, f"the feedback of {student} shows hidden tests: {leaked[:3]}"
    text = visible_text(graded.out / "feedback" / "hidden_fail" / PS / f"{PS}.html")
    assert "log_normal should keep float64 inputs in float64" in text  # its message stays


def test_csv_equals_gradebook(graded):
    with gradebook(graded) as gb:
        for student, row in graded.rows.items():
            if row["status"] == "failed":
                continue
            submission = gb.find_submission(PS, student)
            assert float(row["score"]) == submission.score, student
            assert float(row["max_score"]) == submission.max_score == 10.0, student


def test_the_repository_is_untouched(graded):
    assert graded.after == graded.before


def test_grading_again_keeps_the_manual_grades(graded, tmp_path):
    """The instructors' workflow: grade, grade the written answers in formgrader, grade again."""
    shutil.copytree(graded.out, tmp_path / "out")
    with Gradebook(f"sqlite:///{tmp_path / 'out' / 'gradebook.db'}") as gb:
        gb.find_grade("q4_answer", PS, PS, "only_q4_answer").manual_score = 1.5
        gb.db.commit()
    (tmp_path / "subs" / "only_q4_answer").mkdir(parents=True)
    nbformat.write(filled("q4_answer"), tmp_path / "subs" / "only_q4_answer" / f"{PS}.ipynb")
    results = grading.grade(PS, tmp_path / "subs", tmp_path / "out", TIMEOUT, root=ROOT)
    assert results == [grading.Result("only_q4_answer", 1.5, 10.0, "graded", "")]


def test_tampering_names_each_change():
    assert grading.tampering(RELEASE, filled(*ANSWERS)) == []
    nb = copy.deepcopy(RELEASE)
    cell(nb, "imports").source += "\nimport os"
    cell(nb, "test_log_normal").metadata.editable = True
    cell(nb, "q4_answer").metadata.nbgrader["grade"] = False
    cell(nb, "q1_text").cell_type = "raw"
    extra = copy.deepcopy(cell(nb, "test_log_mean_exp"))
    extra.metadata.nbgrader["grade_id"] = "my_test"
    nb.cells.append(extra)
    assert grading.tampering(RELEASE, nb) == [
        "edited locked cell 'imports'",
        "cell 'q1_text' turned into raw",
        "unlocked cell 'test_log_normal' (editable)",
        "grade of 'q4_answer' changed from True to False",
        "unknown graded cell 'my_test'",
    ]
