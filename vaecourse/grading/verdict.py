"""Hidden tests decided outside the student's process, from plain values (book/instructors.md,
"Hidden tests: probe and check").

In a master, the hidden part of a test cell is a *probe* and a *check*::

    ### BEGIN HIDDEN TESTS
    import torch
    from vaecourse.grading.verdict import roundtrip
    def inputs():            # helpers: shared by probe and check
        ...
    def probe():             # calls the student's functions on the instructor's inputs
        ...
        return {"name": value, ...}   # tensors, numbers, booleans, None, lists, dicts
    def check(values):       # asserts on those values, with the reference computed here
        ...
    check(roundtrip(probe()))
    ### END HIDDEN TESTS

Running the master top to bottom runs both in its own kernel. ``check`` sees only what the
section imports and defines (not the notebook's other cells). Grading never runs them in the
student's kernel: :func:`probe_values` starts a fresh sandboxed process
(``python -m vaecourse.grading.verdict``) that executes only the notebook's locked setup cells and
the student's answer cells, calls each ``probe`` and writes its values as JSON lines; the grader
then decodes them into plain tensors and numbers (:func:`decode`) and runs each ``check`` in its
own process (:func:`decide`). Reference values never enter a process that ran student code, and
no comparison runs there, so an input transformer, a patched ``torch.allclose`` or a tensor
subclass that lies about comparisons changes nothing.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HIDDEN = re.compile(r"^[^\n]*### BEGIN HIDDEN TESTS[^\n]*\n(?P<body>[\s\S]*?)^[^\n]*### END HIDDEN "
                    r"TESTS[^\n]*$", re.MULTILINE)
DTYPES = {str(t).removeprefix("torch."): t for t in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
    torch.int16, torch.int32, torch.int64, torch.bool)}
VALUES_MB = 64  # the most the grader reads back from one probe


@dataclass(frozen=True)
class Hidden:
    """The hidden tests of one test cell: the sources of its ``probe`` and ``check``."""

    test: str
    probe: str
    check: str


@dataclass(frozen=True)
class Verdict:
    """The trusted outcome of one test cell's hidden tests; ``message`` is for the feedback."""

    test: str
    passed: bool
    message: str


def hidden_tests(test: str, source: str) -> Hidden | None:
    """The probe and check of a test cell's hidden section, None when it has none. The section
    holds imports, helper functions shared by both, ``def probe()``, ``def check(values)`` and
    the line ``check(roundtrip(probe()))``; anything else is a ValueError naming the cell."""
    match = HIDDEN.search(source)
    if match is None:
        return None
    body = match["body"]
    tree = ast.parse(body)
    *statements, last = tree.body or [None]
    names = [n.name for n in statements if isinstance(n, ast.FunctionDef)]
    others = [n for n in statements if not isinstance(n, ast.FunctionDef | ast.Import
                                                      | ast.ImportFrom)]
    if ("probe" not in names or "check" not in names or others or last is None
            or ast.unparse(last) != "check(roundtrip(probe()))"):
        raise ValueError(f"hidden tests of '{test}': expected imports, functions (`def probe()` "
                         "and `def check(values)` among them) and the last line "
                         f"`check(roundtrip(probe()))`, found functions {names}")

    def without(name: str) -> str:
        kept = [n for n in statements if getattr(n, "name", None) != name
                and getattr(n, "module", None) != "vaecourse.grading.verdict"]
        return "\n\n".join(segment(body, n) for n in kept)

    return Hidden(test, without("check"), without("probe"))


def segment(source: str, node: ast.stmt) -> str:
    """The source of a top-level statement, a function's decorators included."""
    decorators = getattr(node, "decorator_list", [])
    if not decorators:
        return ast.get_source_segment(source, node)
    return "\n".join(source.splitlines()[decorators[0].lineno - 1:node.end_lineno])


def encode(value: object) -> object:
    """A probe's value as JSON data: numbers, booleans, None and lists as they are, a tensor as
    ``{"tensor": dtype, "shape": [...], "data": [...]}``, a dict as ``{"dict": {...}}``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, torch.Tensor):
        t = torch.Tensor.as_subclass(value.detach(), torch.Tensor).cpu()
        return {"tensor": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": t.flatten().tolist()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v) for k, v in value.items()}}
    raise TypeError(f"a probe may return tensors, numbers, booleans, None, lists and dicts with "
                    f"str keys, got {type(value).__name__}")


def decode(data: object) -> object:
    """The plain value of :func:`encode`'s JSON data; anything else is a ValueError. A list comes
    back as a list (a tuple too), a tensor as a plain ``torch.Tensor``."""
    if data is None or type(data) in (bool, int, float):
        return data
    if type(data) is list:
        return [decode(v) for v in data]
    if type(data) is dict and set(data) == {"dict"} and type(data["dict"]) is dict:
        return {str(k): decode(v) for k, v in data["dict"].items()}
    if type(data) is dict and set(data) == {"tensor", "shape", "data"}:
        dtype, shape, flat = DTYPES.get(data["tensor"]), data["shape"], data["data"]
        if (dtype is None or type(shape) is not list or type(flat) is not list
                or not all(type(n) is int and n >= 0 for n in shape)
                or len(flat) != math.prod(shape)
                or not all(type(x) in (bool, int, float) for x in flat)):
            raise ValueError("malformed tensor in the probe's values")
        return torch.tensor(flat, dtype=dtype).reshape(shape)
    raise ValueError(f"unexpected {type(data).__name__} in the probe's values")


def roundtrip(value: object) -> object:
    """What the grader's check receives for ``value``: encoded, written as JSON, decoded. The
    masters call this so that running a master checks exactly what grading checks."""
    return decode(json.loads(json.dumps(encode(value))))


def probe_values(cells: list[tuple[str, bool]], hidden: list[Hidden], run: Path,
                 sandbox: list[str], cell_seconds: int, seconds: int) -> dict[str, object]:
    """Run the probes in a fresh process started with ``sandbox`` (an argv prefix), after the
    ``cells`` (source, whether it is the student's: setup and answers); return each test's JSON
    line: ``{"values": ...}`` or ``{"error": name}``. Tests missing from it did not finish."""
    job = run / "probe.json"
    job.write_text(json.dumps({"cells": cells, "probes": {h.test: h.probe for h in hidden},
                               "cell_seconds": cell_seconds}))
    out = run / "values.jsonl"
    out.write_bytes(b"")
    argv = [*sandbox, sys.executable, "-m", "vaecourse.grading.verdict", str(job), str(out)]
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=seconds, cwd=run)
    except subprocess.TimeoutExpired:
        pass  # what it wrote before is kept
    results = {}
    with open(out, "rb") as f:
        for line in f.read(VALUES_MB * 2**20).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if type(entry) is dict and entry.get("test") in {h.test for h in hidden}:
                results.setdefault(entry["test"], entry)
    return results


@functools.cache
def checker(h: Hidden) -> Callable[[object], None]:
    """The ``check`` of ``h``, its section executed once per process: a helper that it decorates
    with ``functools.cache`` (a reference computed by quadrature, say) is computed once for all
    the students that a worker grades, not once per student."""
    namespace: dict[str, object] = {}
    exec(compile(h.check, f"<hidden check of {h.test}>", "exec"), namespace)
    return namespace["check"]


def decide(hidden: list[Hidden], results: dict[str, object]) -> list[Verdict]:
    """Run each check (:func:`checker`) on the decoded values of its probe, in this (trusted)
    process."""
    verdicts = []
    for h in hidden:
        entry = results.get(h.test)
        if entry is None:
            verdicts.append(Verdict(h.test, False, "the hidden tests did not finish (your code "
                                                   "ran out of time or stopped the process)"))
            continue
        if "values" not in entry:
            name = entry.get("error")
            name = name if isinstance(name, str) and re.fullmatch(r"\w{1,60}", name) else "error"
            verdicts.append(Verdict(h.test, False, f"your code raised {name} in the hidden tests"))
            continue
        try:
            values = decode(entry["values"])
            checker(h)(values)
        except AssertionError as err:
            verdicts.append(Verdict(h.test, False, str(err)[:500] or "a hidden test failed"))
        except Exception as err:  # noqa: BLE001 (wrong types from the student's functions)
            verdicts.append(Verdict(h.test, False, "a hidden test could not use your results: "
                                                   f"{type(err).__name__}: {str(err)[:300]}"))
        else:
            verdicts.append(Verdict(h.test, True, ""))
    return verdicts


class CellTimeout(Exception):
    """A cell or a probe of the probe process ran past its time."""


def alarm(signum, frame):
    raise CellTimeout


def run_probes(job: Path, out: Path) -> None:
    """The probe process (inside the sandbox): run the cells (the student's under the per-cell
    timeout), then each probe, one JSON line per probe. Student code runs here, so nothing here
    decides anything."""
    spec = json.loads(job.read_text())
    signal.signal(signal.SIGALRM, alarm)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    namespace: dict[str, object] = {"__name__": "__main__"}
    for index, (source, students) in enumerate(spec["cells"]):
        signal.alarm(spec["cell_seconds"] if students else 0)
        try:
            exec(compile(source, f"<cell {index}>", "exec"), namespace)
        except BaseException:  # noqa: BLE001 (a broken answer cell, as in a notebook)
            pass
        finally:
            signal.alarm(0)
    with open(out, "w") as f:
        for test, source in spec["probes"].items():
            signal.alarm(spec["cell_seconds"])
            try:
                exec(compile(source, f"<hidden probe of {test}>", "exec"), namespace)
                entry = {"test": test, "values": encode(namespace["probe"]())}
            except BaseException as err:  # noqa: BLE001
                entry = {"test": test, "error": type(err).__name__}
            finally:
                signal.alarm(0)
            f.write(json.dumps(entry) + "\n")
            f.flush()


if __name__ == "__main__":
    run_probes(Path(sys.argv[1]), Path(sys.argv[2]))
