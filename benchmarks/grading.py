"""Benchmark of the grading command (book/instructors.md): seconds per submission.

For each assignment, N copies of the release answered as the master answers are graded by
``vaecourse.grading.grade`` (sandboxed kernel, probe, nbgrader bookkeeping, feedback) with each
``--jobs`` value, and compared with the floor: executing the same notebook once with plain
nbclient, no sandbox, no grading. Every copy must come out ``graded`` with every autograded point,
or the benchmark stops: it times real grading, not a refusal. Prints a markdown table: seconds
per submission, overhead over the floor with one job, and the speedup of each job count over one
job.

    python benchmarks/grading.py --preset smoke --assignments ps0_warmup ps1_likelihood \\
        --submissions 100 --jobs 1 2 4 --write book/grading_throughput.md

``--write`` also stores the table where the instructors' guide includes it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nbformat
from common import markdown_table, parser
from nbclient import NotebookClient

from vaecourse import config, grading
from vaecourse.grading import notebook

ROOT = Path(__file__).resolve().parents[1]


def answered(assignment: str) -> nbformat.NotebookNode:
    """The release with every answer cell filled in from the master, as a student hands it in."""
    release, master = (nbformat.read(ROOT / folder / assignment / f"{assignment}.ipynb",
                                     as_version=4) for folder in ("exercises", "solutions"))
    return notebook.answered(release, master)


def floor_seconds(assignment: str) -> float:
    """Seconds to execute the answered notebook once with nbclient (kernel start included)."""
    nb = answered(assignment)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, allow_errors=True).execute()
    return time.perf_counter() - start


def grading_seconds(assignment: str, submissions: int, jobs: int) -> float:
    """Seconds per submission of grading ``submissions`` copies with ``jobs`` workers."""
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        nb = answered(assignment)
        for i in range(submissions):
            (subs / f"student{i:03d}").mkdir(parents=True)
            nbformat.write(nb, subs / f"student{i:03d}" / f"{assignment}.ipynb")
        start = time.perf_counter()
        results = grading.grade(assignment, subs, Path(tmp) / "out", root=ROOT, jobs=jobs)
        seconds = time.perf_counter() - start
    auto = sum(notebook.nbgrader(c)["points"] for c in nb.cells if notebook.is_test(c))
    wrong = [r for r in results if r.status != "graded" or r.score != auto]
    if wrong:
        raise RuntimeError(f"{assignment}: expected the master's answers graded with all {auto} "
                           f"autograded points, got {wrong[0]}")
    return seconds / submissions


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--assignments", nargs="+", default=["ps0_warmup"])
    cli.add_argument("--submissions", type=int, default=2)
    cli.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    cli.add_argument("--write", type=Path, default=None, help="also write the table to this file")
    args = cli.parse_args()
    os.environ[config.ENV_VAR] = args.preset  # the kernels and the sandbox inherit it
    rows = []
    wall = time.perf_counter()
    for assignment in args.assignments:
        floor = floor_seconds(assignment)
        per = {jobs: grading_seconds(assignment, args.submissions, jobs) for jobs in args.jobs}
        base = per[args.jobs[0]]
        rows.append([assignment, f"{floor:.1f}"]
                    + [f"{per[j]:.1f} (x{base / per[j]:.2f})" for j in args.jobs]
                    + [f"{100 * (base / floor - 1):+.0f} %"])
    header = ["assignment", "floor s (nbclient once)",
              *[f"s/submission, --jobs {j} (speedup)" for j in args.jobs],
              f"overhead over the floor (--jobs {args.jobs[0]})"]
    text = (f"machine: {config.machine()}  \npreset: {args.preset}; {args.submissions} submissions"
            f" per assignment; wall time {time.perf_counter() - wall:.0f} s\n\n"
            f"{markdown_table(header, rows)}\n")
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
