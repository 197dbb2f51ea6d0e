"""The nbgrader course directory of one grading run (book/instructors.md, "Grade"): release,
gradebook, manual grading, feedback and export stay nbgrader's; the executing step is ours, so
nbgrader's autograde here only records the outputs our run produced (:data:`GRADING_CONFIG`).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import sysconfig
import warnings
from datetime import datetime
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.warnings import MissingIDFieldWarning
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.preprocessors import ClearHiddenTests
from sqlalchemy.exc import SAWarning
from traitlets.config.loader import PyFileConfigLoader

GRADING_CONFIG = """
# Added by vaecourse.grading (python -m vaecourse grade, see book/instructors.md): the notebook was
# executed in the sandbox already, so nbgrader's autograde keeps its outputs and only records them.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Feedback pages show no script, style or event handler a student put into a cell or an output.
c.HTMLExporter.sanitize_html = True
"""


class HideHiddenTests(ClearHiddenTests):
    """nbgrader's ClearHiddenTests for feedback. A cell that had hidden tests also keeps only the
    name and message of its errors (IPython's traceback would quote the failing line), and a
    student's markdown answer is shown with its HTML escaped (the page sanitizer covers outputs,
    not markdown)."""

    def preprocess_cell(self, cell, resources, index):
        had_hidden = self.begin_test_delimeter in cell.source
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = html.escape(cell.source, quote=False)
        cell, resources = super().preprocess_cell(cell, resources, index)
        if had_hidden and cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


def prepare_course(root: Path, assignment: str, out: Path) -> NbGraderAPI:
    """Set up the course directory ``out`` (config, master, release, gradebook) for nbgrader."""
    master = root / "solutions" / assignment
    if not (master / f"{assignment}.ipynb").is_file():
        raise ValueError(f"assignment: expected a master {master}/{assignment}.ipynb, found none")
    if out.resolve() in (root.resolve(), *root.resolve().parents):
        raise ValueError(f"--out must be a folder of its own, not the repository ({out})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text((root / "nbgrader_config.py").read_text()
                                            + GRADING_CONFIG)
    for folder in ("solutions", "exercises"):
        shutil.rmtree(out / folder / assignment, ignore_errors=True)
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


def fingerprint(out: Path, assignment: str) -> dict[str, str]:
    """Content hashes of the grader's own files in ``out``: config, master copy and release."""
    files = [out / "nbgrader_config.py",
             *(p for folder in ("solutions", "exercises")
               for p in sorted((out / folder / assignment).rglob("*")))]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "folder" for p in files}


def manual_scores(out: Path) -> dict[tuple[str, str], float | None]:
    """Every manual score of the gradebook, by (student, cell)."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        return {(s.student.id, g.name): g.manual_score for a in gradebook.assignments
                for s in a.submissions for n in s.notebooks for g in n.grades}


def record(api: NbGraderAPI, assignment: str, student: str,
           executed: dict[str, NotebookNode]) -> tuple[bool, str]:
    """nbgrader's autograde of the executed notebooks of one student (no execution, see
    :data:`GRADING_CONFIG`): whether it succeeded, and its log (kept in logs/)."""
    out = Path(api.coursedir.root)
    folder = out / "submitted" / student / assignment
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, nb in executed.items():
        nbformat.write(nb, folder / name)
    with warnings.catch_warnings():  # nbgrader's own noise
        warnings.simplefilter("ignore", SAWarning)
        warnings.simplefilter("ignore", MissingIDFieldWarning)  # a test cell nbgrader put back
        run = api.autograde(assignment, student, force=True, create=True)
    log = run.get("log", "") + run.get("error", "")
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{student}.log").write_text(log)
    return run["success"], log


def scores(out: Path, assignment: str, student: str) -> tuple[float, float, float, list[str]]:
    """The gradebook's score and maximum of a submission, the points left to grade by hand, and
    the cells whose automatic score is not between 0 and the cell's points (then set to 0)."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(assignment, student)
        grades = [g for notebook in submission.notebooks for g in notebook.grades]
        rejected = [g.name for g in grades if g.auto_score is not None
                    and not 0 <= g.auto_score <= g.max_score]
        for g in grades:
            if g.name in rejected:
                g.auto_score = 0.0
        gradebook.db.commit()
        manual = sum(g.max_score for g in grades if g.needs_manual_grade and g.manual_score is None)
        return submission.score, submission.max_score, manual, rejected


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


def feedback(api: NbGraderAPI, assignment: str, student: str) -> str:
    """Write a student's feedback HTML (nbgrader's generate_feedback); a note if it failed."""
    run = api.generate_feedback(assignment, student, force=True)
    return "" if run["success"] else f"no feedback: {last_error(run.get('error', ''))}"


def lateness(notebooks: list[Path], deadline: datetime | None) -> str:
    """A note when a notebook was last modified after the deadline, else ''."""
    if deadline is None:
        return ""
    last = max(datetime.fromtimestamp(p.stat().st_mtime, tz=deadline.tzinfo) for p in notebooks)
    if last <= deadline:
        return ""
    return f"submitted {str(last - deadline).split('.')[0]} after the deadline"


def last_error(log: str) -> str:
    """The last ``SomethingError: message`` line of a log (module path dropped)."""
    errors = re.findall(r"^\s*(?:\w+\.)*(\w+Error: .*)$", log, flags=re.MULTILINE)
    return errors[-1] if errors else "see its log"
