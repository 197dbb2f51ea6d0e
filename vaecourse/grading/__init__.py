"""Grading a folder of submissions around nbgrader, against students who may attack the grader
(the instructors' guide, book/instructors.md).

``python -m vaecourse grade ASSIGNMENT SUBMISSIONS_DIR`` grades one folder per student in a course
directory of its own (``--out``, default ``grading/ASSIGNMENT``):

- :mod:`~vaecourse.grading.layout` reads the submissions folder and refuses what is not a plain
  per-student notebook;
- :mod:`~vaecourse.grading.notebook` compares each submission with its release (tampering) and
  builds the notebook that runs;
- :mod:`~vaecourse.grading.sandbox` and :mod:`~vaecourse.grading.kernel` run it in bubblewrap,
  with limits on memory, time and output, for the feedback;
- :mod:`~vaecourse.grading.verdict` decides the hidden tests outside the student's process, from
  plain values that a fresh sandboxed probe returns;
- :mod:`~vaecourse.grading.course` keeps nbgrader's release, gradebook, manual grading and
  feedback;
- :mod:`~vaecourse.grading.batch` puts it together, ``--jobs`` students at a time, writing
  ``grades.csv`` (student, score, max_score, status, reason) row by row.

The status is the first that applies of ``failed`` (no score: the reason says why), ``tampered``
(a locked or graded cell was changed, a score was impossible or a manual score appeared: the
score still comes from the original tests), ``late`` (modified after ``--deadline``) and
``graded``. A failed grading is never a 0: its score is empty, and the gradebook holds no
submission for that student.
"""

import importlib

EXPORTS = {"FIELDS": "batch", "Result": "batch", "grade": "batch", "table": "batch",
           "HideHiddenTests": "course", "grade_id": "notebook", "tampering": "notebook",
           "Limits": "sandbox"}
MODULES = ("batch", "course", "kernel", "layout", "notebook", "sandbox", "verdict")
__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> object:
    """Import on first use (the probe process imports only :mod:`.verdict`, not nbgrader)."""
    if name in EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
