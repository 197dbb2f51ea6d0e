"""The ``chapter-runs`` directive: how each chapter's stored outputs were produced.

Chapters are stored with the outputs of one full run and are not executed while the book
builds (see ``_config.yml``), so myst-nb's own execution table stays empty. This directive reads
every notebook matched by its argument (a glob relative to the book's root, e.g.
``book/*.ipynb``) and renders one row per chapter: its title, the preset, device and date printed
by ``vaecourse.provenance()`` in its first code cell, and its run time, from the execution
timestamps that nbclient records in each cell's metadata (first input to last reply).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

PROVENANCE = re.compile(r"vaecourse provenance: (.*)")


def provenance(cell: dict) -> dict[str, str]:
    """The ``key=value`` pairs of the provenance line in a code cell's stream output."""
    text = "".join("".join(out.get("text", "")) for out in cell.get("outputs", []))
    match = PROVENANCE.search(text)
    if match is None:
        return {}
    return dict(pair.split("=", 1) for pair in match.group(1).split(", ") if "=" in pair)


def run_seconds(cells: list[dict]) -> float | None:
    """Seconds from the first cell's input to the last cell's reply (None without timestamps)."""
    times = [cell.get("metadata", {}).get("execution", {}) for cell in cells]
    if not times or "iopub.execute_input" not in times[0] or "shell.execute_reply" not in times[-1]:
        return None
    start = datetime.fromisoformat(times[0]["iopub.execute_input"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(times[-1]["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def chapter_row(path: Path) -> tuple[list[str], float | None]:
    """Preset, device, date and run time of one stored notebook, and its run time in seconds."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    facts = provenance(cells[0]) if cells else {}
    if not facts:
        raise ValueError(f"{path}: the first code cell has no 'vaecourse provenance:' output")
    seconds = run_seconds(cells)
    run_time = "not recorded" if seconds is None else f"{seconds / 60:.1f} min"
    device = facts["device"] + ("" if facts.get("gpu", "none") == "none" else f" ({facts['gpu']})")
    return [facts["preset"], device, facts["date"], run_time], seconds


def table(header: list[str], rows: list[list[nodes.Node]]) -> nodes.table:
    """A docutils table with one header row."""
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=1) for _ in header]

    def row(cells: list[nodes.Node]) -> nodes.row:
        out = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", cell)
            out += entry
        return out

    group += nodes.thead("", row([nodes.Text(name) for name in header]))
    group += nodes.tbody("", *[row(cells) for cells in rows])
    return nodes.table("", group)


class ChapterRuns(SphinxDirective):
    """``{chapter-runs} GLOB``: a table with one row per stored notebook."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        paths = sorted(root.glob(self.arguments[0]))
        if not paths:
            raise self.error(f"chapter-runs: no notebook matches {self.arguments[0]!r}")
        rows, total = [], 0.0
        for path in paths:
            self.env.note_dependency(str(path))
            try:
                facts, seconds = chapter_row(path)
            except (KeyError, ValueError) as error:
                raise self.error(f"chapter-runs: {error}") from error
            total += seconds or 0.0
            docname = path.relative_to(root).with_suffix("").as_posix()
            link = addnodes.pending_xref("", nodes.inline("", docname), refdomain="std",
                                         reftype="doc", reftarget=f"/{docname}",
                                         refexplicit=False, refdoc=self.env.docname)
            rows.append([link] + [nodes.Text(fact) for fact in facts])
        rows.append([nodes.Text("all, one after another")] + [nodes.Text("")] * 3
                    + [nodes.Text(f"{total / 60:.1f} min")])
        return [table(["chapter", "preset", "device", "date", "run time"], rows)]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("chapter-runs", ChapterRuns)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
