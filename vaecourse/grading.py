"""Grading a folder of submissions around nbgrader (the instructors' guide, book/instructors.md).

``python -m vaecourse grade ASSIGNMENT SUBMISSIONS_DIR`` grades one folder per student (the layout
an LMS download unpacks to: ``SUBMISSIONS_DIR/alice/ps0_warmup.ipynb``) in a course directory of
its own (``--out``, default ``grading/ASSIGNMENT``), never in the repository's gradebook:

1. :func:`prepare_course` copies ``nbgrader_config.py`` (plus :data:`GRADING_CONFIG`) and the
   master into it and generates the release and the gradebook there;
2. :func:`grade_student` checks each submission (notebook present under its name, no duplicated
   graded cell, locked cells unchanged), then autogrades it on its own with nbgrader: one broken
   submission never stops the others;
3. :func:`grade` writes ``grades.csv`` (student, score, max_score, status, reason) and the
   feedback HTML of every graded student, without the hidden tests (:class:`HideHiddenTests`).

The status is the first that applies of ``failed`` (no score: the reason says why), ``tampered``
(a locked or graded cell was edited, deleted, unlocked or given other points: the score still
comes from the original tests), ``late`` (the notebook's modification time is after
``--deadline``) and ``graded``. A failed grading is never a 0: its score is empty, and the
gradebook holds no submission for that student.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sysconfig
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.warnings import MissingIDFieldWarning
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.preprocessors import ClearHiddenTests
from sqlalchemy.exc import SAWarning
from tqdm import tqdm
from traitlets.config.loader import PyFileConfigLoader

GRADING_CONFIG = """
# Added by vaecourse.grading (python -m vaecourse grade, see book/instructors.md).
c.Execute.timeout = {timeout}
"""

FIELDS = ("student", "score", "max_score", "status", "reason")


@dataclass
class Result:
    """One row of the grades table; ``score`` is None exactly when the status is ``failed``."""

    student: str
    score: float | None
    max_score: float
    status: str
    reason: str


class HideHiddenTests(ClearHiddenTests):
    """nbgrader's ClearHiddenTests for feedback. A cell that had hidden tests also keeps only the
    name and message of its error: IPython's traceback quotes the failing (hidden) source line,
    and anything else it printed came from the test run."""

    def preprocess_cell(self, cell, resources, index):
        had_hidden = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, index)
        if had_hidden and cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            for error in errors:
                error.traceback = [f"{error.ename}: {error.evalue}"]
            cell.outputs = errors
        return cell, resources


def grade_id(cell: NotebookNode) -> str | None:
    """The nbgrader id of a cell, None for an ordinary cell."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_protected(cell: NotebookNode) -> bool:
    """Whether a cell is locked or graded: what a student may not change."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("locked") or meta.get("grade"))


def prepare_course(root: Path, assignment: str, out: Path, timeout: int) -> NbGraderAPI:
    """Set up the course directory ``out`` (config, master, release, gradebook) for nbgrader."""
    master = root / "solutions" / assignment
    if not (master / f"{assignment}.ipynb").is_file():
        raise ValueError(f"assignment: expected a master {master}/{assignment}.ipynb, found none")
    if out.resolve() in (root.resolve(), *root.resolve().parents):
        raise ValueError(f"--out must be a folder of its own, not the repository ({out})")
    out.mkdir(parents=True, exist_ok=True)
    config = (root / "nbgrader_config.py").read_text() + GRADING_CONFIG.format(timeout=timeout)
    (out / "nbgrader_config.py").write_text(config)
    shutil.rmtree(out / "solutions" / assignment, ignore_errors=True)
    shutil.copytree(master, out / "solutions" / assignment)
    api = course_api(out)
    result = api.generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result['log']}")
    return api


def course_api(out: Path) -> NbGraderAPI:
    """nbgrader's Python API on the course directory ``out``, configured by its config file.
    A new gradebook runs ``alembic``, so this Python's scripts folder goes first on PATH."""
    scripts = sysconfig.get_path("scripts")
    if scripts not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ["PATH"]
    config = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    config.CourseDirectory.root = str(out.resolve())
    return NbGraderAPI(config=config)


def releases(out: Path, assignment: str) -> dict[str, NotebookNode]:
    """The released notebooks of ``assignment`` by file name."""
    folder = out / "exercises" / assignment
    return {p.name: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def find_notebooks(folder: Path, expected: list[str]) -> tuple[dict[str, Path], str]:
    """The student's notebooks by expected name, or the reason why they cannot be graded."""
    found = {p.name: p for p in folder.glob("*.ipynb")}
    missing = [name for name in expected if name not in found]
    extra = sorted(set(found) - set(expected))
    if missing and extra:
        return {}, f"renamed notebook: found {', '.join(extra)}, expected {', '.join(missing)}"
    if missing:
        return {}, f"missing notebook: {', '.join(missing)} is not in {folder.name}/"
    return {name: found[name] for name in expected}, ""


def duplicated_cells(nb: NotebookNode) -> list[str]:
    """The grade ids that occur more than once (a copied graded cell: nbgrader fails on it)."""
    counts = Counter(grade_id(c) for c in nb.cells if grade_id(c))
    return sorted(gid for gid, n in counts.items() if n > 1)


def tampering(release: NotebookNode, submission: NotebookNode) -> list[str]:
    """What a submission changed in the release's locked and graded cells: presence, type,
    source of locked cells, and the nbgrader flags, points and editable/deletable locks."""
    submitted = {grade_id(c): c for c in submission.cells if grade_id(c)}
    changes = []
    for cell in filter(is_protected, release.cells):
        gid, theirs = grade_id(cell), submitted.get(grade_id(cell))
        if theirs is None:
            changes.append(f"deleted cell '{gid}'")
            continue
        if theirs.cell_type != cell.cell_type:
            changes.append(f"cell '{gid}' turned into {theirs.cell_type}")
        if cell.metadata.nbgrader["locked"] and theirs.source != cell.source:
            changes.append(f"edited locked cell '{gid}'")
        for key in ("locked", "grade", "solution", "points"):
            ours, new = cell.metadata.nbgrader.get(key), theirs.metadata.nbgrader.get(key)
            if ours != new:
                changes.append(f"{key} of '{gid}' changed from {ours} to {new}")
        for key in ("editable", "deletable"):
            if cell.metadata.get(key, True) != theirs.metadata.get(key, True):
                changes.append(f"unlocked cell '{gid}' ({key})")
    ours = {grade_id(c) for c in release.cells}
    changes += [f"unknown graded cell '{grade_id(c)}'" for c in submission.cells
                if is_protected(c) and grade_id(c) not in ours]
    return changes


def restore_metadata(release: NotebookNode, submission: NotebookNode) -> None:
    """Give every submitted cell with a known grade id the release's nbgrader metadata and locks,
    and drop the nbgrader metadata of any other cell; nbgrader's autograde then restores the
    source of locked cells and puts deleted graded cells back (``OverwriteCells``)."""
    originals = {grade_id(c): c for c in release.cells if grade_id(c)}
    for cell in submission.cells:
        original = originals.get(grade_id(cell))
        cell.metadata.pop("nbgrader", None)
        for key in ("editable", "deletable"):
            cell.metadata.pop(key, None)
        if original is not None:
            for key in ("nbgrader", "editable", "deletable"):
                if key in original.metadata:
                    cell.metadata[key] = original.metadata[key]


def lateness(notebooks: list[Path], deadline: datetime | None) -> str:
    """A note when a notebook was last modified after the deadline, else ''."""
    if deadline is None:
        return ""
    last = max(datetime.fromtimestamp(p.stat().st_mtime, tz=deadline.tzinfo) for p in notebooks)
    if last <= deadline:
        return ""
    return f"submitted {str(last - deadline).split('.')[0]} after the deadline"


def failure_reason(log: str, timeout: int) -> str:
    """Why nbgrader could not grade a submission, from its log."""
    if "DeadKernelError" in log:
        return "kernel died (the notebook crashed Python, e.g. os._exit, a crash or no memory)"
    if "CellTimeoutError" in log or "UnresponsiveKernelError" in log:
        return f"timeout: a cell ran past {timeout} s and could not be stopped cleanly"
    return f"nbgrader failed: {last_error(log)}"


def last_error(log: str) -> str:
    """The last ``SomethingError: message`` line of a log (module path dropped)."""
    errors = re.findall(r"^\s*(?:\w+\.)*(\w+Error: .*)$", log, flags=re.MULTILINE)
    return errors[-1] if errors else "see its log"


def timeouts(autograded: Path) -> list[str]:
    """The cells that nbgrader interrupted at the timeout (the others were graded)."""
    names = []
    for path in sorted(autograded.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
                names.append(grade_id(cell) or f"cell {index + 1} of {path.name}")
    return [f"timeout in {', '.join(names)}"] if names else []


def gradebook_scores(out: Path, assignment: str, student: str) -> tuple[float, float, float]:
    """The gradebook's score and maximum of a submission, and the points left to grade by hand."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(assignment, student)
        grades = [g for notebook in submission.notebooks for g in notebook.grades]
        manual = sum(g.max_score for g in grades if g.needs_manual_grade and g.manual_score is None)
        return submission.score, submission.max_score, manual


def max_score(out: Path, assignment: str) -> float:
    """The assignment's total points (autograded and manual) from the gradebook."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        return gradebook.find_assignment(assignment).max_score


def forget(out: Path, assignment: str, student: str) -> None:
    """Remove a student's submission from the course directory and the gradebook."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        try:
            gradebook.remove_submission(assignment, student)
        except MissingEntry:
            pass
    for folder in ("submitted", "autograded", "feedback"):
        shutil.rmtree(out / folder / student, ignore_errors=True)


def submit(out: Path, assignment: str, student: str, notebooks: dict[str, Path]) -> list[str]:
    """Copy a student's notebooks into ``out/submitted`` with the release's cell metadata
    restored; return the tampering found (raises ValueError on a duplicated graded cell)."""
    folder = out / "submitted" / student / assignment
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    changes = []
    for name, release in releases(out, assignment).items():
        nb = nbformat.read(notebooks[name], as_version=4)
        if duplicated_cells(nb):
            raise ValueError(f"duplicated graded cell {', '.join(duplicated_cells(nb))}: "
                             "delete the copies, keep one of each")
        changes += tampering(release, nb)
        restore_metadata(release, nb)
        nbformat.write(nb, folder / name)
    return changes


def autograde(api: NbGraderAPI, assignment: str, student: str) -> tuple[bool, str]:
    """nbgrader's autograde of one student: whether it succeeded, and its log (kept in logs/)."""
    with warnings.catch_warnings():  # nbgrader's own noise
        warnings.simplefilter("ignore", SAWarning)
        warnings.simplefilter("ignore", MissingIDFieldWarning)  # a test cell nbgrader put back
        run = api.autograde(assignment, student, force=True, create=True)
    log = run.get("log", "") + run.get("error", "")
    logs = Path(api.coursedir.root) / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{student}.log").write_text(log)
    return run["success"], log


def feedback(api: NbGraderAPI, assignment: str, student: str) -> str:
    """Write a student's feedback HTML (nbgrader's generate_feedback); a note if it failed."""
    run = api.generate_feedback(assignment, student, force=True)
    return "" if run["success"] else f"no feedback: {last_error(run.get('error', ''))}"


def grade_student(api: NbGraderAPI, assignment: str, folder: Path, timeout: int,
                  deadline: datetime | None = None) -> Result:
    """Check, autograde and give feedback to the student of ``folder``, on its own."""
    out, student = Path(api.coursedir.root), folder.name
    total = max_score(out, assignment)
    notebooks, problem = find_notebooks(folder, list(releases(out, assignment)))
    if problem:
        return Result(student, None, total, "failed", problem)
    try:
        changes = submit(out, assignment, student, notebooks)
    except ValueError as err:
        return Result(student, None, total, "failed", str(err))
    success, log = autograde(api, assignment, student)
    if not success:
        return Result(student, None, total, "failed", failure_reason(log, timeout))
    score, total, manual = gradebook_scores(out, assignment, student)
    late = lateness(list(notebooks.values()), deadline)
    notes = changes + timeouts(out / "autograded" / student / assignment)
    notes += [late, f"{manual:g} points to grade by hand" if manual else "",
              feedback(api, assignment, student)]
    status = "tampered" if changes else "late" if late else "graded"
    return Result(student, score, total, status, "; ".join(n for n in notes if n))


def grade(assignment: str, submissions: Path, out: Path | None = None, timeout: int = 120,
          deadline: datetime | None = None, root: Path = Path(".")) -> list[Result]:
    """Grade every student folder of ``submissions`` on its own; write ``out/grades.csv``."""
    if not submissions.is_dir():
        raise ValueError(f"SUBMISSIONS_DIR: expected a folder of student folders: {submissions}")
    out = out or root / "grading" / assignment
    api = prepare_course(root, assignment, out, timeout)
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and p.name[0] != ".")
    results = []
    for folder in tqdm(folders, desc=f"grading {assignment}", unit="student"):
        try:
            result = grade_student(api, assignment, folder, timeout, deadline)
        except Exception as err:  # noqa: BLE001 (one broken submission must not stop the rest)
            result = Result(folder.name, None, max_score(out, assignment), "failed",
                            f"grading crashed: {type(err).__name__}: {err}")
        if result.status == "failed":
            forget(out, assignment, result.student)
        results.append(result)
    write_csv(results, out / "grades.csv")
    return results


def write_csv(results: list[Result], path: Path) -> None:
    """The grades as CSV; a failed grading has an empty score."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for r in results:
            writer.writerow([r.student, "" if r.score is None else r.score, r.max_score,
                             r.status, r.reason])


def table(results: list[Result]) -> str:
    """The grades as a plain-text table, one line per student."""
    rows = [FIELDS] + [(r.student, "" if r.score is None else f"{r.score:g}", f"{r.max_score:g}",
                        r.status, r.reason) for r in results]
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{a:{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}  {d:{width[3]}}  {e}".rstrip()
             for a, b, c, d, e in rows]
    return "\n".join(lines)
