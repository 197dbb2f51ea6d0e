"""Grading a folder of submissions (book/instructors.md, "Grade, give feedback, export").

:func:`grade` prepares the course directory, then, for every student folder:

1. :func:`execute_student` (in ``--jobs`` worker processes) checks the submission, runs it in
   its sandbox (:mod:`vaecourse.grading.kernel`) and, at the same time, the hidden tests' probes
   in a second, fresh sandbox, and decides them (:mod:`vaecourse.grading.verdict`);
2. :func:`book` (in the grading process, one student at a time) records the result in nbgrader's
   gradebook, rejects impossible scores, flags manual scores that appeared, checks the grader's
   own files, writes the feedback and appends the row to ``grades.csv``.

A re-run resumes: a student whose notebooks are unchanged since their last successful grading
keeps it (the score is read again from the gradebook, so manual grades show up).

No process outlives the grader: SIGTERM, SIGHUP and Ctrl-C stop it at once (:func:`stopping`),
killing its workers; a worker dies with the grader however the grader dies (:func:`die_with`);
and every sandbox dies with the worker that started it (bwrap's ``--die-with-parent``; setpriv's
``--pdeathsig`` under ``--unsandboxed``).
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Grade, Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from tqdm import tqdm

from vaecourse.grading import course, layout, sandbox
from vaecourse.grading.kernel import execute
from vaecourse.grading.notebook import (
    duplicated_cells,
    grade_id,
    is_test,
    probe_cells,
    record_verdicts,
    runnable,
    tampering,
)
from vaecourse.grading.verdict import Hidden, decide, hidden_tests, probe_values

FIELDS = ("student", "score", "max_score", "status", "reason")
PR_SET_PDEATHSIG = 1  # Linux's prctl option: a signal for this process when its parent dies
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class Result:
    """One row of the grades table; ``score`` is None exactly when the status is ``failed``."""

    student: str
    score: float | None
    max_score: float
    status: str
    reason: str


@dataclass(frozen=True)
class Assignment:
    """What a worker needs to grade a student: the releases and the hidden tests (probe and
    check) of each notebook."""

    name: str
    releases: dict[str, NotebookNode]
    hidden: dict[str, list[Hidden]]
    limits: sandbox.Limits
    sandboxed: bool
    scratch: Path


@dataclass
class Outcome:
    """What :func:`execute_student` found: the executed notebooks with their verdicts, or the
    reason the submission could not be graded."""

    entry: layout.Entry
    notebooks: dict[str, Path] = field(default_factory=dict)
    executed: dict[str, NotebookNode] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str = ""


def load_assignment(root: Path, out: Path, name: str, limits: sandbox.Limits, sandboxed: bool,
                    ) -> Assignment:
    """The releases of ``out`` and the hidden tests of the repository's master; every test cell
    must have them (no test is decided in the student's kernel)."""
    releases = course.releases(out, name)
    hidden = {}
    for notebook in releases:
        master = nbformat.read(root / "solutions" / name / notebook, as_version=4)
        hidden[notebook] = []
        for cell in filter(is_test, master.cells):
            found = hidden_tests(grade_id(cell), cell.source)
            if found is None:
                raise ValueError(f"test cell '{grade_id(cell)}' of solutions/{name}/{notebook} "
                                 "has no hidden probe and check: every test must be decided "
                                 "outside the student's kernel")
            hidden[notebook].append(found)
    return Assignment(name, releases, hidden, limits, sandboxed, out / "scratch")


def digest(notebooks: dict[str, Path]) -> str:
    """A hash of a student's notebooks (what decides whether a re-run grades them again)."""
    h = hashlib.sha256()
    for name in sorted(notebooks):
        h.update(name.encode() + b"\0" + notebooks[name].read_bytes() + b"\0")
    return h.hexdigest()


def timeouts(nb: NotebookNode, notebook: str) -> list[str]:
    """A note naming the cells stopped at the timeout, if any."""
    names = [grade_id(c) or f"cell {i + 1} of {notebook}" for i, c in enumerate(nb.cells)
             if any(o.get("ename") == "CellTimeoutError" for o in c.get("outputs", []))]
    return [f"timeout in {', '.join(names)}"] if names else []


def start_probes(probing: ThreadPoolExecutor, a: Assignment, notebook: str, nb: NotebookNode,
                 folder: Path) -> Future | None:
    """Start the probes of ``notebook``'s hidden tests in a fresh sandbox of ``folder`` (nothing
    the kernel writes reaches it), alongside the kernel: they need only the cells' sources.
    None when the notebook has no hidden tests."""
    if not a.hidden[notebook]:
        return None
    return probing.submit(probe_values, probe_cells(nb), a.hidden[notebook], folder,
                          sandbox.command(folder, a.limits, sandboxed=a.sandboxed),
                          a.limits.cell_seconds, a.limits.notebook_seconds)


def execute_student(a: Assignment, entry: layout.Entry) -> Outcome:
    """Check one student's notebooks, run them in the sandbox and decide their hidden tests."""
    notebooks, problem = layout.find_notebooks(entry.folder, list(a.releases))
    outcome = Outcome(entry, notebooks, problem=problem)
    scratch = a.scratch / entry.safe
    shutil.rmtree(scratch, ignore_errors=True)
    for name, release in a.releases.items() if not problem else ():
        try:
            submitted = nbformat.read(notebooks[name], as_version=4)
        except Exception as err:  # noqa: BLE001 (anything that is not a notebook)
            outcome.problem = f"{name} is not a readable notebook: {type(err).__name__}"
            break
        if duplicated_cells(submitted):
            outcome.problem = (f"duplicated graded cell {', '.join(duplicated_cells(submitted))}"
                               ": delete the copies, keep one of each")
            break
        outcome.changes += tampering(release, submitted)
        nb = runnable(release, submitted)
        work, probe = (scratch / Path(name).stem / d for d in ("work", "probe"))
        for folder in (work, probe):
            folder.mkdir(parents=True)
        with ThreadPoolExecutor(1) as probing, \
                tempfile.TemporaryDirectory(prefix="vaecourse-kernel-") as run:  # a short path
            probes = start_probes(probing, a, name, nb, probe)
            nb, stop = execute(nb, work, Path(run), a.limits, a.sandboxed)
            verdicts = {v.test: v for v in decide(a.hidden[name], probes.result() if probes
                                                  else {})}
        if stop:
            outcome.problem = stop
            break
        record_verdicts(nb, verdicts)
        outcome.notes += timeouts(nb, name)
        outcome.executed[name] = nb
    shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def new_manual_scores(before: dict[int, float | None], after: dict[int, float | None]) -> int:
    """How many manual scores appeared or changed between two readings of the gradebook."""
    return sum(1 for key, value in after.items() if before.get(key) != value)


def manual_scores(out: Path) -> dict[int, float | None]:
    """Every manual score of the gradebook, by grade row."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        return dict(gradebook.db.query(Grade.id, Grade.manual_score).all())


def book(api: NbGraderAPI, a: Assignment, outcome: Outcome, expected: dict[str, str],
         root: Path) -> tuple[Result, list[str], bool]:
    """Record one student's outcome with nbgrader; return the row (late and manual notes not
    yet added), the notes kept for a resumed run, and whether it was tampered."""
    out, entry = Path(api.coursedir.root), outcome.entry
    total = course.max_score(out, a.name)
    if outcome.problem:
        return Result(entry.student, None, total, "failed", outcome.problem), [], False
    before = manual_scores(out)
    success, log = course.record(api, a.name, entry.safe, outcome.executed)
    if not success:
        return (Result(entry.student, None, total, "failed",
                       f"nbgrader failed: {course.last_error(log)}"), [], False)
    if course.fingerprint(out, a.name) != expected:
        course.prepare_course(root, a.name, out)
        return (Result(entry.student, None, total, "failed",
                       "the grader's own files changed while grading this student (restored): "
                       "review the submission by hand"), [], False)
    appeared = new_manual_scores(before, manual_scores(out))
    score, total, _, rejected = course.scores(out, a.name, entry.safe)
    notes = outcome.changes + outcome.notes
    notes += [f"score above the maximum rejected in {', '.join(rejected)}"] if rejected else []
    notes += [f"{appeared} manual scores appeared while autograding"] if appeared else []
    notes += [course.feedback(api, a.name, entry.safe)]
    tampered = bool(outcome.changes or rejected or appeared)
    return Result(entry.student, score, total, "tampered" if tampered else "graded", ""), notes, \
        tampered


def finish(out: Path, a: Assignment, result: Result, notes: list[str], tampered: bool,
           entry: layout.Entry, notebooks: list[Path], deadline: datetime | None) -> Result:
    """Add the late note, the points left to grade by hand and the sandbox notes to a row."""
    if result.status == "failed":
        course.forget(out, a.name, entry.safe)
        return result
    score, total, manual, _ = course.scores(out, a.name, entry.safe)
    late = course.lateness(notebooks, deadline)
    notes = [*notes, late, f"{manual:g} points to grade by hand" if manual else ""]
    if entry.safe != entry.student:
        notes.append(f"graded as {entry.safe}")
    if not a.sandboxed:
        notes.append("graded unsandboxed")
    status = "tampered" if tampered else "late" if late else "graded"
    return Result(result.student, score, total, status, "; ".join(n for n in notes if n))


def grade(assignment: str, submissions: Path, out: Path | None = None,
          limits: sandbox.Limits | None = None, deadline: datetime | None = None,
          root: Path = Path("."), jobs: int | None = None, sandboxed: bool = True,
          ) -> list[Result]:
    """Grade every student folder of ``submissions`` on its own (``jobs`` at a time, default
    the number of CPUs); write ``out/grades.csv`` row by row, then sorted by student. ``limits``
    default to :class:`~vaecourse.grading.sandbox.Limits`'s; ``sandboxed=False`` is the
    instructor's explicit opt-out (``--unsandboxed``)."""
    if not submissions.is_dir():
        raise ValueError(f"SUBMISSIONS_DIR: expected a folder of student folders: {submissions}")
    limits = limits or sandbox.Limits()
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"--jobs: expected a positive number of workers, got {jobs}")
    if sandboxed and not sandbox.available():
        raise ValueError(sandbox.INSTALL_HINT)
    out = out or root / "grading" / assignment
    api = course.prepare_course(root, assignment, out)
    a = load_assignment(root, out, assignment, limits, sandboxed)
    expected = course.fingerprint(out, assignment)
    progress = load_progress(out / "progress.jsonl")
    rows = Rows(out / "grades.csv")
    pending = []
    for entry in layout.entries(submissions):
        if entry.refused:
            course.forget(out, assignment, entry.safe)
            rows.add(Result(entry.student, None, course.max_score(out, assignment), "failed",
                            entry.refused))
            continue
        notebooks, _ = layout.find_notebooks(entry.folder, list(a.releases))
        kept = progress.get(entry.safe)
        if notebooks and kept and kept["digest"] == digest(notebooks) and has_submission(
                out, assignment, entry.safe):
            row = Result(entry.student, None, 0.0, "graded", "")
            rows.add(finish(out, a, row, kept["notes"], kept["tampered"], entry,
                            list(notebooks.values()), deadline))
            continue
        pending.append(entry)
    pool = ProcessPoolExecutor(min(jobs, max(1, len(pending))),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with, initargs=(os.getpid(),))
    with stopping(pool):
        futures = {pool.submit(execute_student, a, entry): entry for entry in pending}
        for future in tqdm(as_completed(futures), total=len(futures),
                           desc=f"grading {assignment}", unit="student"):
            entry = futures[future]
            try:
                outcome = future.result()
                result, notes, tampered = book(api, a, outcome, expected, root)
            except Exception as err:  # noqa: BLE001 (one broken submission must not stop the rest)
                outcome, notes, tampered = Outcome(entry), [], False
                result = Result(entry.student, None, course.max_score(out, assignment),
                                "failed", f"grading crashed: {type(err).__name__}: {err}")
            result = finish(out, a, result, notes, tampered, entry,
                            list(outcome.notebooks.values()), deadline)
            rows.add(result)
            if result.status != "failed":
                save_progress(out / "progress.jsonl", entry.safe, digest(outcome.notebooks),
                              notes, tampered)
    return rows.sorted()


def die_with(grader: int) -> None:
    """A worker's start: die (SIGKILL) as soon as the grading process ``grader`` dies, even by
    SIGKILL, and leave Ctrl-C to the grader, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != grader:  # the grader died before prctl
        os._exit(1)


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: stop grading as Ctrl-C does."""
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def stopping(pool: ProcessPoolExecutor) -> Iterator[None]:
    """Run the pool; on SIGTERM, SIGHUP, Ctrl-C or any error, kill its workers at once (their
    sandboxes die with them) instead of waiting for the students they are grading. The rows
    appended so far stay, so a re-run resumes."""
    main = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous = {s: signal.signal(s, interrupt) for s in STOP_SIGNALS} if main else {}
    try:
        yield
    except BaseException:
        for worker in multiprocessing.active_children():  # the pool's: the grader starts no other
            worker.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def has_submission(out: Path, assignment: str, student: str) -> bool:
    """Whether the gradebook holds a submission of ``student``."""
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gradebook:
        try:
            gradebook.find_submission(assignment, student)
        except MissingEntry:
            return False
        return True


def load_progress(path: Path) -> dict[str, dict]:
    """The last successful grading of each student of an earlier run (``progress.jsonl``)."""
    if not path.exists():
        return {}
    entries = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {e["student"]: e for e in entries}


def save_progress(path: Path, student: str, notebooks_digest: str, notes: list[str],
                  tampered: bool) -> None:
    """Append one student's successful grading to ``progress.jsonl``."""
    with open(path, "a") as f:
        f.write(json.dumps({"student": student, "digest": notebooks_digest, "notes": notes,
                            "tampered": tampered}) + "\n")


class Rows:
    """``grades.csv``, appended one row at a time as each student is graded."""

    def __init__(self, path: Path) -> None:
        self.path, self.results = path, []
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)

    def add(self, result: Result) -> None:
        self.results.append(result)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row(result))

    def sorted(self) -> list[Result]:
        """Rewrite the file sorted by student (the same for any number of jobs)."""
        self.results.sort(key=lambda r: r.student)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            writer.writerows(row(r) for r in self.results)
        temporary.replace(self.path)
        return self.results


def row(r: Result) -> list[object]:
    """A result as a CSV row; a failed grading has an empty score."""
    return [r.student, "" if r.score is None else r.score, r.max_score, r.status, r.reason]


def table(results: list[Result]) -> str:
    """The grades as a plain-text table, one line per student."""
    rows = [FIELDS] + [(r.student, "" if r.score is None else f"{r.score:g}", f"{r.max_score:g}",
                        r.status, r.reason) for r in results]
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{a:{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}  {d:{width[3]}}  {e}".rstrip()
             for a, b, c, d, e in rows]
    return "\n".join(lines)
