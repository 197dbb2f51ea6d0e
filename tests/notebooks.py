"""Where the notebooks of the book live (shared by the notebook tests)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def notebooks(folder: str) -> list[Path]:
    """The notebooks under ``folder`` (relative to the repository root), checkpoints excluded."""
    return sorted(
        p for p in (ROOT / folder).glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


CHAPTERS = notebooks("book")
MASTERS = notebooks("solutions")
RELEASES = notebooks("exercises")
