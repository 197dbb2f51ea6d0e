"""The cells of a submission against its release (book/instructors.md, "Grade"): what a student
changed in the cells they may not change, the notebook that runs in the sandbox, the cells the
probe runs, and the test cells' outputs that record the trusted verdict for nbgrader.
"""

from __future__ import annotations

import copy
from collections import Counter

from nbformat import NotebookNode
from nbformat.v4 import new_output

from vaecourse.grading.verdict import Verdict


def nbgrader(cell: NotebookNode) -> dict:
    """A cell's nbgrader metadata ({} for an ordinary cell)."""
    return cell.metadata.get("nbgrader", {})


def grade_id(cell: NotebookNode) -> str | None:
    """The nbgrader id of a cell, None for an ordinary cell."""
    return nbgrader(cell).get("grade_id")


def is_protected(cell: NotebookNode) -> bool:
    """Whether a cell is locked or graded: what a student may not change."""
    return bool(nbgrader(cell).get("locked") or nbgrader(cell).get("grade"))


def is_test(cell: NotebookNode) -> bool:
    """Whether a cell is an autograded test cell (graded code, not an answer)."""
    meta = nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


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
            ours, new = cell.metadata.nbgrader.get(key), nbgrader(theirs).get(key)
            if ours != new:
                changes.append(f"{key} of '{gid}' changed from {ours} to {new}")
        for key in ("editable", "deletable"):
            if cell.metadata.get(key, True) != theirs.metadata.get(key, True):
                changes.append(f"unlocked cell '{gid}' ({key})")
    ours = {grade_id(c) for c in release.cells}
    changes += [f"unknown graded cell '{grade_id(c)}'" for c in submission.cells
                if is_protected(c) and grade_id(c) not in ours]
    return changes


def runnable(release: NotebookNode, submission: NotebookNode) -> NotebookNode:
    """The notebook that runs in the sandbox: the submission's cells with the release's
    metadata and cell types, locked cells as released (tests with their visible part only),
    cells the student deleted put back after the cell that preceded them, and any other
    nbgrader metadata dropped."""
    originals = {grade_id(c): c for c in release.cells if grade_id(c)}
    nb = copy.deepcopy(submission)
    cells, seen = [], set()
    for cell in nb.cells:
        original = originals.get(grade_id(cell))
        for key in ("nbgrader", "editable", "deletable"):
            cell.metadata.pop(key, None)
        if original is not None and grade_id(original) not in seen:
            cells += missing_before(release, original, seen)
            seen.add(grade_id(original))
            for key in ("nbgrader", "editable", "deletable"):
                if key in original.metadata:
                    cell.metadata[key] = copy.deepcopy(original.metadata[key])
            cell.cell_type = original.cell_type
            if nbgrader(original).get("locked"):
                cell.source = original.source
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        cells.append(cell)
    nb.cells = cells + missing_before(release, None, seen)
    return nb


def missing_before(release: NotebookNode, cell: NotebookNode | None, seen: set[str]) -> list:
    """The release's graded or locked cells before ``cell`` (all, if None) not yet in ``seen``,
    as released; they are added to ``seen``."""
    missing = []
    for original in release.cells:
        if original is cell:
            break
        gid = grade_id(original)
        if gid and gid not in seen and is_protected(original):
            seen.add(gid)
            missing.append(copy.deepcopy(original))
    return missing


def without_solution_markers(source: str) -> str:
    """A master's answer cell as a student would write it: nbgrader's solution markers removed."""
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)


def answered(release: NotebookNode, master: NotebookNode,
             grade_ids: list[str] | None = None) -> NotebookNode:
    """A submission as a student who answers like the master would hand it in: the release with
    the master's answers, markers removed, in the answer cells named by ``grade_ids`` (all of
    them if None). Used to check the grader on known answers."""
    answers = {grade_id(c): c.source for c in master.cells if nbgrader(c).get("solution")}
    names = list(answers) if grade_ids is None else grade_ids
    unknown = sorted(set(names) - set(answers))
    if unknown:
        raise ValueError(f"expected answer cells of the master ({', '.join(answers)}), "
                         f"got {', '.join(unknown)}")
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if grade_id(cell) in names:
            cell.source = without_solution_markers(answers[grade_id(cell)])
    return nb


def probe_cells(nb: NotebookNode) -> list[tuple[str, bool]]:
    """What the probe runs before the hidden tests, in order: the locked setup cells and the
    answer cells (no test cell, no free cell), each with whether it is the student's (and so
    runs under the per-cell timeout)."""
    return [(c.source, not nbgrader(c).get("locked")) for c in nb.cells
            if c.cell_type == "code" and grade_id(c) and not is_test(c)]


def record_verdicts(nb: NotebookNode, verdicts: dict[str, Verdict]) -> None:
    """Make the outputs of each test cell say its trusted verdict, as nbgrader reads them (an
    error output scores 0, none scores the cell's points): the kernel's errors, results and
    stderr are turned into plain text, then a failed verdict adds one error with its message.
    Every test cell has a verdict (:func:`vaecourse.grading.batch.load_assignment` requires
    hidden tests in each)."""
    for cell in filter(is_test, nb.cells):
        verdict = verdicts[grade_id(cell)]
        outputs = []
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                outputs.append(new_output("stream", name="stdout", text=(
                    f"visible test: {out.ename}: {out.evalue}\n")))
            elif out.output_type == "stream":
                outputs.append(new_output("stream", name="stdout", text=out.text))
            elif out.output_type in ("execute_result", "display_data"):
                text = out.get("data", {}).get("text/plain", "")
                outputs.append(new_output("stream", name="stdout", text=f"{text}\n"))
        if not verdict.passed:
            outputs.append(new_output("error", ename="HiddenTestFailed", evalue=verdict.message,
                                      traceback=[f"HiddenTestFailed: {verdict.message}"]))
        cell.outputs = outputs
