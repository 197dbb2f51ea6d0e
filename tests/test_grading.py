"""The grading command (vaecourse.grading) on ps0_warmup, the fastest assignment: one temporary
course directory with its own gradebook, one folder per student, graded once by
``python -m vaecourse grade --jobs 2`` (module fixture); each test reads that one run.

Besides clumsy submissions, the run holds hostile ones, each written as a student attacking the
grader would (HOSTILE): input and AST transformers, patched comparisons, a lying tensor subclass,
reading the master and the other students, writing the gradebook, the CSV, the repository and the
environment, detached processes, killing the grader, a memory hog, huge output, scripts in the
feedback, and a folder layout with symlinks and odd ids."""

import contextlib
import copy
import csv
import hashlib
import html
import io
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import nbformat
import psutil
import pytest
from nbgrader.api import Gradebook, MissingEntry
from notebooks import ROOT

from vaecourse import grading
from vaecourse.__main__ import main
from vaecourse.grading import course, layout, notebook, verdict

PS = "ps0_warmup"
MASTER = nbformat.read(ROOT / "solutions" / PS / f"{PS}.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "exercises" / PS / f"{PS}.ipynb", as_version=4)
ANSWERS = MASTER.metadata["vaecourse"]["answers"]  # answer cell -> the tests that depend on it
TESTS = [c.metadata.nbgrader["grade_id"] for c in MASTER.cells
         if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
TIMEOUT = 30  # seconds per cell: the infinite loop's cost (importing torch: 1-3 s, or more)
MEMORY_MB = 6000  # the hog asks for more; torch imports well within it
DEADLINE = datetime.now() + timedelta(days=1)


def cell(nb, grade_id):
    return next(c for c in nb.cells if grading.grade_id(c) == grade_id)


def answer(grade_id):
    """The master's answer without nbgrader's solution markers, as a student would write it."""
    return notebook.without_solution_markers(cell(MASTER, grade_id).source)


def filled(*grade_ids, **sources):
    """The release with the master's answers to ``grade_ids`` and the given sources."""
    nb = notebook.answered(RELEASE, MASTER, list(grade_ids))
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
EXACT_MC = """
def mc_second_moment(n, generator):
    return 1.0, math.sqrt(2 / n)
"""  # the exact values, no sampling: passes the visible test, must fail the hidden ones
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
    "exact_mc": lambda: filled("log_normal", "log_mean_exp", mc_second_moment=EXACT_MC),
}

WRONG_LOG_NORMAL = """
def log_normal(x, mu, sigma):
    return torch.zeros(torch.broadcast_shapes(x.shape, mu.shape, sigma.shape), dtype=x.dtype)
"""
LIAR = """
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        if func in (torch.isclose, torch.isfinite, torch.Tensor.__eq__, torch.Tensor.__lt__):
            return torch.tensor(True)
        return super().__torch_function__(func, types, args, kwargs or {})


def log_normal(x, mu, sigma):
    shape = torch.broadcast_shapes(x.shape, mu.shape, sigma.shape)
    return torch.zeros(shape, dtype=x.dtype).as_subclass(Liar)
"""
HOSTILE = {  # student -> (answer cell -> source), {out}, {subs}, {root}, {home} filled in
    "h_input_transformer": {"log_normal": """
def _blank_tests(lines):
    return ["pass\\n"] if any("assert" in line for line in lines) else lines
get_ipython().input_transformers_cleanup.append(_blank_tests)
""" + WRONG_LOG_NORMAL},
    "h_ast_transformer": {"log_normal": """
import ast
class _NoAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(_NoAsserts())
""" + WRONG_LOG_NORMAL},
    "h_patched": {"log_normal": """
torch.allclose = lambda *args, **kwargs: True
torch.isclose = lambda *args, **kwargs: torch.tensor(True)
torch.isfinite = lambda *args, **kwargs: torch.tensor(True)
""" + WRONG_LOG_NORMAL},
    "h_lying_tensor": {"log_normal": LIAR},
    "h_reader": {"log_normal": """
import glob
seen = []
for pattern in ["{root}/solutions/**/*", "{out}/**/*", "{subs}/**/*", "{home}/*"]:
    for path in glob.glob(pattern, recursive=True):
        try:
            with open(path, "rb") as f:
                f.read(1)
            seen.append(path)
        except OSError:
            pass
print("SEEN:", seen)
for path in seen:
    if path.endswith("ps0_warmup.ipynb") and "solutions" in path:
        exec(open(path).read())  # the master's code, answers included
"""},
    "h_writer": {"log_normal": """
import os, site, sqlite3
wrote = []
for path in ["{out}/grades.csv", "{out}/solutions/ps0_warmup/torch.py",
             "{out}/exercises/ps0_warmup/torch.py", "{root}/solutions/ps0_warmup/torch.py",
             "{root}/vaecourse/torch.py", site.getsitepackages()[0] + "/planted.pth",
             "{home}/.ipython/profile_default/startup/planted.py"]:
    try:
        with open(path, "a") as f:
            f.write("planted = True\\n")
        wrote.append(path)
    except OSError:
        pass
try:
    db = sqlite3.connect("{out}/gradebook.db")
    db.execute("UPDATE grade SET manual_score = 1000")
    db.commit()
    wrote.append("gradebook")
except sqlite3.Error:
    pass
print("WROTE:", wrote)
"""},
    "h_detached": {"log_mean_exp": """
import subprocess, sys
subprocess.Popen(["sleep", "987"], start_new_session=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(988)"], start_new_session=True)
""", "log_normal": None},
    "h_killer": {"mc_second_moment": """
import os, signal
for pid in (os.getppid(), 1):
    for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
""", "log_normal": None},
    "h_hog": {"log_mean_exp": """
try:
    hog = bytearray(8 * 2**30)
    print("ALLOCATED")
except MemoryError:
    print("NO MEMORY")
""", "log_normal": None},
    "h_printer": {"log_mean_exp": "print('x' * 20_000_000)", "log_normal": None},
    "h_script": {"q4_answer": '<script>alert("pwned")</script>', "log_mean_exp": """
from IPython.display import HTML, display
display(HTML('<script>alert("pwned")</script><img src=x onerror="alert(1)">'))
""", "log_normal": None},
}


def hostile(student, paths):
    """The release with the hostile answers of ``student``; None keeps the master's answer."""
    sources = {}
    for gid, src in HOSTILE[student].items():
        for key, path in paths.items():
            src = src and src.replace(f"{{{key}}}", str(path))
        sources[gid] = answer(gid) if src is None else src
    return filled(**sources)


def lay_out(subs):
    """Entries that are not a plain student folder, and student ids that are not plain."""
    (subs / "linked_folder").symlink_to(subs / "only_log_normal")
    (subs / "linked_passwd").mkdir()
    (subs / "linked_passwd" / f"{PS}.ipynb").symlink_to("/etc/passwd")
    nbformat.write(filled(*ALL), subs / f"loose_{PS}.ipynb")
    for odd, nb in ((".hidden", filled(*ALL)), ("bob[1]", filled(*ALL)), ("only_*", filled()),
                    ("only_log_normal ", filled())):
        (subs / odd).mkdir()
        nbformat.write(nb, subs / odd / f"{PS}.ipynb")


LAYOUT = {"linked_folder": "is a symlink", "linked_passwd": "is a symlink or not a plain file",
          f"loose_{PS}.ipynb": "is a loose file", ".hidden": "is a hidden folder"}


def snapshot():
    """Content hashes of what grading must never touch in the repository (solutions, releases,
    the package), and the names in the environment and the instructor's IPython profile."""
    files = [p for folder in ("exercises", "solutions", "vaecourse")
             for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    state = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    state["gradebook.db exists"] = (ROOT / "gradebook.db").exists()
    state["site-packages"] = sorted(p.name for p in Path(site.getsitepackages()[0]).iterdir())
    profile = Path.home() / ".ipython" / "profile_default" / "startup"
    state["ipython startup"] = sorted(p.name for p in profile.glob("*")) if profile.exists() else []
    return state


def sandbox_processes():
    """The processes the detached submission started, if any outlived the run."""
    found = subprocess.run(["pgrep", "-f", "sleep 98[78]|time.sleep\\(988\\)"], capture_output=True,
                           text=True)
    return found.stdout.split()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One grading run over every submission above, through the command line."""
    tmp = tmp_path_factory.mktemp("grading")
    subs, out = tmp / "submissions", tmp / "out"
    paths = {"out": out, "subs": subs, "root": ROOT, "home": Path.home()}
    makers = {**SUBMISSIONS, **{s: (lambda s=s: hostile(s, paths)) for s in HOSTILE}}
    for student, make in makers.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(make(), subs / student / f"{PS}.ipynb")
    (subs / "renamed").mkdir()
    nbformat.write(filled(*ALL), subs / "renamed" / f"{PS} (1).ipynb")
    (subs / "missing").mkdir()
    lay_out(subs)
    later = (DEADLINE + timedelta(days=1)).timestamp()
    os.utime(subs / "late" / f"{PS}.ipynb", (later, later))
    before, stdout = snapshot(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.chdir(ROOT)
        code = main(["grade", PS, str(subs), "--out", str(out), "--timeout", str(TIMEOUT),
                     "--deadline", DEADLINE.isoformat(), "--jobs", "2",
                     "--memory", str(MEMORY_MB)])
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return SimpleNamespace(code=code, stdout=stdout.getvalue(), rows=rows, out=out, subs=subs,
                           before=before, after=snapshot(), outlived=sandbox_processes(),
                           csv=(out / "grades.csv").read_text())


def gradebook(graded):
    return Gradebook(f"sqlite:///{graded.out / 'gradebook.db'}")


def safe(student):
    """The id the gradebook and the grading folder know a student by."""
    return layout.safe_id(student)


def auto_scores(graded, student):
    """The gradebook's autograded score of each test cell of a student."""
    with gradebook(graded) as gb:
        notebooks = gb.find_submission(PS, safe(student)).notebooks
        return {g.name: g.auto_score for n in notebooks for g in n.grades if g.name in TESTS}


def points(grade_id):
    return cell(MASTER, grade_id).metadata.nbgrader["points"]


def test_command_prints_one_row_per_student(graded):
    assert graded.code == 0
    lines = graded.stdout.strip().splitlines()
    assert lines[0].split() == list(grading.FIELDS)
    assert len(lines) == len(graded.rows) + 1
    assert all(any(line.startswith(s) for line in lines[1:]) for s in graded.rows)
    assert len(graded.rows) == len(SUBMISSIONS) + len(HOSTILE) + 2 + 7  # + renamed, missing, layout


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
    assert failed == {"duplicated", "renamed", "missing", "died", *LAYOUT}
    assert all(row["score"] != "" for s, row in graded.rows.items() if s not in failed)


def test_an_infinite_loop_ends_at_the_timeout_and_the_rest_is_graded(graded):
    assert auto_scores(graded, "loop") == {"test_log_normal": 3.0, "test_log_mean_exp": 0.0,
                                           "test_mc_second_moment": 2.0}
    row = graded.rows["loop"]
    assert row["status"] == "graded" and "timeout in log_mean_exp" in row["reason"], row


def test_warnings_and_a_progress_bar_keep_full_marks(graded):
    assert auto_scores(graded, "noisy") == {t: float(points(t)) for t in TESTS}


def test_the_exact_values_without_sampling_fail_the_hidden_monte_carlo_test(graded):
    assert auto_scores(graded, "exact_mc") == {**{t: float(points(t)) for t in TESTS},
                                               "test_mc_second_moment": 0.0}


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
        text = visible_text(graded.out / "feedback" / safe(student) / PS / f"{PS}.html")
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
            submission = gb.find_submission(PS, safe(student))
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
    results = grading.grade(PS, tmp_path / "subs", tmp_path / "out",
                            grading.Limits(cell_seconds=TIMEOUT), root=ROOT, jobs=1)
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


def test_the_release_answered_as_the_master_is_an_untampered_full_submission():
    nb = notebook.answered(RELEASE, MASTER)
    assert grading.tampering(RELEASE, nb) == []
    solutions = [c for c in MASTER.cells if notebook.nbgrader(c).get("solution")]
    assert sorted(grading.grade_id(c) for c in solutions) == sorted(ANSWERS)
    for master in solutions:
        source = cell(nb, grading.grade_id(master)).source
        assert source == answer(grading.grade_id(master)) and "### BEGIN" not in source
        assert source != cell(RELEASE, grading.grade_id(master)).source
    with pytest.raises(ValueError, match=r"expected answer cells of the master \(log_normal, "
                                         r".*\), got q9"):
        notebook.answered(RELEASE, MASTER, ["log_normal", "q9"])


def output_text(graded, student):
    """Everything a student's cells printed, from the grader's executed notebook."""
    nb = nbformat.read(graded.out / "autograded" / student / PS / f"{PS}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


ZERO = {t: 0.0 for t in TESTS}


@pytest.mark.parametrize("student", ["h_input_transformer", "h_ast_transformer", "h_patched",
                                     "h_lying_tensor", "h_reader", "h_writer"])
def test_an_attack_on_the_tests_gains_no_point(graded, student):
    assert auto_scores(graded, student) == ZERO, graded.rows[student]
    assert graded.rows[student]["score"] == "0.0", graded.rows[student]


def test_the_sandbox_shows_nothing_but_the_students_own_folder(graded):
    line = next(line for line in output_text(graded, "h_reader").splitlines()
                if line.startswith("SEEN:"))
    own = str(graded.out / "scratch" / "h_reader")
    assert all(path.startswith(own) for path in eval(line.removeprefix("SEEN:"))), line


def test_the_sandbox_lets_nothing_be_written_outside_it(graded):
    """What h_writer wrote landed in its sandbox's private /tmp, never in the real files."""
    assert "planted" not in graded.csv and "planted" not in (graded.out / "grades.csv").read_text()
    for folder in ("solutions", "exercises"):
        assert not (graded.out / folder / PS / "torch.py").exists()
    with gradebook(graded) as gb:
        manual = [g.manual_score for a in gb.assignments for s in a.submissions
                  for n in s.notebooks for g in n.grades if g.manual_score is not None]
    assert manual == []
    assert graded.after == graded.before


@pytest.mark.parametrize("student, points", [("h_detached", 3.0), ("h_killer", 3.0),
                                             ("h_hog", 3.0), ("h_printer", 3.0),
                                             ("h_script", 3.0)])
def test_a_disruptive_student_is_graded_and_the_run_goes_on(graded, student, points):
    row = graded.rows[student]
    assert row["status"] == "graded" and float(row["score"]) == points, row
    assert auto_scores(graded, student)["test_log_normal"] == 3.0


def test_no_process_outlives_the_run(graded):
    assert graded.outlived == []


def test_memory_is_limited(graded):
    assert "NO MEMORY" in output_text(graded, "h_hog")


def test_output_is_capped_in_the_feedback(graded):
    page = graded.out / "feedback" / "h_printer" / PS / f"{PS}.html"
    assert page.stat().st_size < 2_000_000, page.stat().st_size
    assert "output cut by the grader" in visible_text(page)


def test_feedback_runs_no_script_of_the_student(graded):
    page = (graded.out / "feedback" / "h_script" / PS / f"{PS}.html").read_text()
    assert '<script>alert("pwned")' not in page and "<img src=x onerror" not in page
    assert 'alert("pwned")' in html.unescape(page), "the student's text is shown, as text"


@pytest.mark.parametrize("entry", sorted(LAYOUT))
def test_what_is_not_a_plain_student_folder_is_refused_with_a_reason(graded, entry):
    row = graded.rows[entry]
    assert row["status"] == "failed" and LAYOUT[entry] in row["reason"], row
    assert row["score"] == ""
    assert "root:" not in graded.csv, "a symlink put a file's content into the grades"


def test_odd_ids_are_graded_as_themselves(graded):
    assert float(graded.rows["bob[1]"]["score"]) == 8.0, graded.rows["bob[1]"]
    for odd in ("only_*", "only_log_normal "):
        assert graded.rows[odd]["score"] == "0.0", graded.rows[odd]
        assert "graded as" in graded.rows[odd]["reason"]
    assert float(graded.rows["only_log_normal"]["score"]) == 3.0


def test_impossible_scores_are_rejected(graded, tmp_path):
    shutil.copytree(graded.out, tmp_path / "out")
    with Gradebook(f"sqlite:///{tmp_path / 'out' / 'gradebook.db'}") as gb:
        gb.find_grade("test_log_normal", PS, PS, "blank").auto_score = 1000.0
        gb.db.commit()
    score, _, _, rejected = course.scores(tmp_path / "out", PS, "blank")
    assert rejected == ["test_log_normal"] and score == 0.0


def test_jobs_change_nothing(graded, tmp_path):
    students = ["blank", "only_log_normal", "hidden_fail"]
    for student in students:
        shutil.copytree(graded.subs / student, tmp_path / "subs" / student)
    results = grading.grade(PS, tmp_path / "subs", tmp_path / "out",
                            grading.Limits(cell_seconds=TIMEOUT), root=ROOT, jobs=1)
    assert [[str(v) for v in grading.batch.row(r)] for r in results] == [
        list(graded.rows[s].values()) for s in sorted(students)]


def test_without_bubblewrap_grading_stops_with_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(grading.sandbox, "available", lambda: False)
    (tmp_path / "subs").mkdir()
    assert main(["grade", PS, str(tmp_path / "subs"), "--out", str(tmp_path / "out")]) == 2
    assert "apt-get install bubblewrap" in capsys.readouterr().err


def test_the_opt_out_grades_unsandboxed_and_says_so_in_every_row(graded, tmp_path):
    shutil.copytree(graded.subs / "only_log_normal", tmp_path / "subs" / "only_log_normal")
    results = grading.grade(PS, tmp_path / "subs", tmp_path / "out",
                            grading.Limits(cell_seconds=TIMEOUT), root=ROOT, sandboxed=False)
    assert [(r.score, r.status) for r in results] == [(3.0, "graded")]
    assert "graded unsandboxed" in results[0].reason


def running(processes):
    """The processes of ``processes`` still running (a zombie has finished)."""
    alive = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def mentioning(text):
    """Every process whose command line mentions ``text``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(text in arg for arg in p.info["cmdline"] or []):
            found.append(p)
    return running(found)


def inside(process, folder):
    """Whether ``process`` names ``folder`` in its command line (a sandbox) or runs in it."""
    with contextlib.suppress(psutil.Error):
        return str(folder) in " ".join(process.cmdline()) or str(folder) in process.cwd()
    return False


@pytest.mark.parametrize("stop, opt_out", [(signal.SIGTERM, []), (signal.SIGKILL, []),
                                           (signal.SIGKILL, ["--unsandboxed"])],
                         ids=["SIGTERM", "SIGKILL", "SIGKILL-unsandboxed"])
def test_stopping_the_grader_stops_every_process_and_a_rerun_resumes(tmp_path, stop, opt_out):
    """SIGTERM (the grader stops its workers) or SIGKILL (the workers die with it) while a
    kernel loops, sandboxed or not: the grader, its worker, the kernel and its sandbox are gone
    within seconds, the rows so far are kept and the same command resumes."""
    subs, out = tmp_path / "subs", tmp_path / "out"
    for student, nb in (("a_honest", filled(*ALL)), ("b_loop", SUBMISSIONS["loop"]())):
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{PS}.ipynb")
    command = [sys.executable, "-m", "vaecourse", "grade", PS, str(subs), "--out", str(out),
               "--jobs", "1", "--memory", str(MEMORY_MB), *opt_out]
    grader = psutil.Popen([*command, "--timeout", "600"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    try:
        csv_path = out / "grades.csv"
        while "a_honest" not in (csv_path.read_text() if csv_path.exists() else "") or not [
                p for p in running(grader.children(recursive=True))
                if "ipykernel_launcher" in p.cmdline() and inside(p, out / "scratch" / "b_loop")]:
            assert grader.poll() is None, grader.stderr.read()
            assert time.monotonic() - start < 300, "b_loop's kernel did not start in 300 s"
            time.sleep(0.5)
        time.sleep(3)  # into the loop, or close to it
        before = csv_path.read_text()
        assert "b_loop" not in before
        processes = grader.children(recursive=True)
        kernel = "ipykernel_launcher" if opt_out else "bwrap"
        assert any(kernel in " ".join(p.cmdline()) for p in processes), [
            p.cmdline() for p in processes]
        grader.send_signal(stop)
        assert grader.wait(timeout=10) != 0
        if stop == signal.SIGTERM:
            assert "stopped by SIGTERM" in grader.stderr.read()
        deadline = time.monotonic() + 5
        while (running(processes) or mentioning(str(tmp_path))) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:  # a failed assertion above must not leave the grader running
        if grader.poll() is None:
            grader.kill()
    assert running(processes) == [] and mentioning(str(tmp_path)) == []
    assert csv_path.read_text() == before

    rerun = subprocess.run([*command, "--timeout", str(TIMEOUT)], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with open(csv_path, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["a_honest"]["score"] == "8.0" and rows["a_honest"]["status"] == "graded"
    assert "timeout in log_mean_exp" in rows["b_loop"]["reason"], rows["b_loop"]
    graded_once = [line for line in (out / "progress.jsonl").read_text().splitlines()
                   if '"a_honest"' in line]
    assert len(graded_once) == 1, "the re-run graded a_honest again instead of resuming"


CACHED_REFERENCE = '''### BEGIN HIDDEN TESTS
import functools

from vaecourse.grading.verdict import roundtrip


@functools.cache
def reference(n):
    reference.calls = getattr(reference, "calls", 0) + 1
    return float(sum(range(n)))


def probe():
    return {"total": answer(4)}


def check(values):
    assert values["total"] == reference(4), f"expected {reference(4)}, got {values['total']}"


check(roundtrip(probe()))
### END HIDDEN TESTS
'''


def test_a_cached_reference_of_a_check_is_computed_once_per_process():
    hidden = verdict.hidden_tests("test_cached", CACHED_REFERENCE)
    assert "@functools.cache\ndef reference(n):" in hidden.check
    assert "@functools.cache\ndef reference(n):" in hidden.probe  # the helpers go to both
    for total, passed in ((6.0, True), (7.0, False), (6.0, True)):  # three students
        entry = {"test": "test_cached", "values": verdict.encode({"total": total})}
        [result] = verdict.decide([hidden], {"test_cached": entry})
        assert result.passed is passed, result
    assert verdict.checker(hidden).__globals__["reference"].calls == 1
