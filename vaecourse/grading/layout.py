"""Reading a folder of submissions (book/instructors.md, "Collect"): one plain folder per
student, holding the notebooks under their released names. Everything else gets a row with the
reason it was refused, and no student id is ever used as a pattern or a path as given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Entry:
    """One entry of the submissions folder: the student id as found (the folder's name), the
    safe id nbgrader grades it under, its folder, and why it is refused ('' if it is not)."""

    student: str
    safe: str
    folder: Path
    refused: str = ""


def safe_id(name: str) -> str:
    """The id nbgrader sees for a folder name: the name itself when it is plain (letters, digits,
    ``_.-``), else its plain characters and a hash of the whole name, so that ``bob[1]``,
    ``y?*`` or ``bob `` never match, glob or collide with another student."""
    if SAFE.fullmatch(name):
        return name
    plain = re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip())[:40].lstrip("._-") or "student"
    return f"{plain}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def entries(submissions: Path) -> list[Entry]:
    """Every entry of ``submissions``, sorted by name, each a student folder or a refusal."""
    found = []
    for path in sorted(submissions.iterdir(), key=lambda p: p.name):
        name, refused = path.name, ""
        if path.is_symlink():
            refused = f"refused: {name} is a symlink, expected a folder of its own"
        elif not path.is_dir():
            refused = f"refused: {name} is a loose file, expected a folder per student"
        elif name.startswith("."):
            refused = f"refused: {name} is a hidden folder (its name starts with a dot)"
        found.append(Entry(name, safe_id(name), path, refused))
    return found


def find_notebooks(folder: Path, expected: list[str]) -> tuple[dict[str, Path], str]:
    """The student's notebooks by expected name, or the reason why they cannot be graded (a
    missing, renamed or symlinked notebook)."""
    found = {p.name: p for p in folder.iterdir() if p.name.endswith(".ipynb")}
    linked = sorted(name for name, p in found.items() if p.is_symlink() or not p.is_file())
    if linked:
        return {}, f"refused: {', '.join(linked)} is a symlink or not a plain file"
    missing = [name for name in expected if name not in found]
    extra = sorted(set(found) - set(expected))
    if missing and extra:
        return {}, f"renamed notebook: found {', '.join(extra)}, expected {', '.join(missing)}"
    if missing:
        return {}, f"missing notebook: {', '.join(missing)} is not in {folder.name}/"
    return {name: found[name] for name in expected}, ""
