"""What the reader sees: fixes to the pinned theme and to rendered chapters (every chapter).

- Mobile navigation: pydata-sphinx-theme 0.17 binds its sidebar dialogs to the first
  ``.primary-toggle`` / ``.secondary-toggle`` of a page only, while sphinx-book-theme 1.3 renders a
  second, visible pair in the article header; ``static/reader.js`` forwards their clicks.
- ``static/reader.css``: one search box, wide equations, tables and outputs that scroll instead of
  being cut, figures not shrunk below legibility on phones.
- MathJax on every page (the sidebar and the navigation show chapter titles with math), and page
  titles (the browser tab) without TeX.
- ``# NBVAL_...`` markers (they tell nbval which outputs to compare) are not shown to readers.
- Identical inline scripts are added once (sphinx-thebe declares ``const THEBE_JS_URL`` twice, an
  error on every page).
- The single-page build that ``make pdf`` prints renders the nodes of every extension.
- Citation labels in the bibliography are author-year, as in the text (pybtex style
  ``authoryear``, chosen in _config.yml).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx

NBVAL_MARKER = re.compile(r"^[ \t]*# NBVAL_[A-Z_]+[ \t]*\n", flags=re.M)
INLINE_MATH = re.compile(r"\\\((.*?)\\\)")


def plain_tex(tex: str) -> str:
    r"""Readable text for a short formula: ``\log p(x)`` -> ``log p(x)``, ``\mathcal{L}`` -> ``L``.
    """
    text = re.sub(r"\\(math[a-z]+|operatorname|text)\s*\{([^{}]*)\}", r"\2", tex)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
    return re.sub(r"[{}]", "", text).strip()


def strip_nbval_markers(app: Sphinx, doctree: nodes.document) -> None:
    """Drop ``# NBVAL_...`` lines from the code cells shown in the book."""
    for block in list(doctree.findall(nodes.literal_block)):
        parent = block.parent
        if "cell_input" not in getattr(parent, "get", lambda *_: [])("classes", []):
            continue
        text = block.astext()
        if NBVAL_MARKER.search(text):
            shown = NBVAL_MARKER.sub("", text)
            block.replace(block.children[0], nodes.Text(shown))
            block.rawsource = shown


def html_nodes_in_singlehtml(app: Sphinx) -> None:
    """Render every node an extension registered for ``html`` in the single-page build as well.

    myst-nb (folded cells), sphinx-proof and sphinx-exercise register their nodes for the html
    builder only, and Sphinx looks a builder's handlers up by its name once any extension has
    registered one for ``singlehtml``.
    """
    if app.builder.name == "singlehtml":
        handlers = app.registry.translation_handlers
        handlers["singlehtml"] = {**handlers.get("html", {}), **handlers.get("singlehtml", {})}


def page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Titles without TeX, and each inline script once."""
    for key in ("title", "pagetitle"):
        if isinstance(context.get(key), str):
            context[key] = INLINE_MATH.sub(lambda m: plain_tex(m.group(1)), context[key])
    seen, scripts = set(), []
    for script in context.get("script_files", []):
        body = getattr(script, "attributes", {}).get("body")
        if body and body in seen:
            continue
        seen.add(body)
        scripts.append(script)
    context["script_files"] = scripts


class AuthorYearLabels(BaseLabelStyle):
    """Labels ``Kingma and Welling, 2014`` / ``Burda et al., 2016`` (``2016a``, ``2016b`` when two
    entries share one)."""

    def format_labels(self, sorted_entries):
        labels = [self.label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield f"{label}{'abcdefghijklmnopqrstuvwxyz'[seen[label] - 1]}"
            else:
                yield label

    @staticmethod
    def label(entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [" ".join(p.last_names) for p in people]
        if not last:
            names = entry.fields.get("key", entry.key)
        elif len(last) == 1:
            names = last[0]
        elif len(last) == 2:
            names = f"{last[0]} and {last[1]}"
        else:
            names = f"{last[0]} et al."
        names = Text.from_latex(names).render_as("text")
        return f"{names}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entries, sorted by author and year, with author-year labels."""

    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app: Sphinx) -> dict:
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    app.set_html_assets_policy("always")  # MathJax on every page
    static = Path(__file__).parent / "static"
    app.connect("builder-inited", lambda app: app.config.html_static_path.append(str(static)))
    app.add_css_file("reader.css")
    app.add_js_file("reader.js")
    app.connect("doctree-read", strip_nbval_markers)
    app.connect("html-page-context", page_context)
    app.connect("builder-inited", html_nodes_in_singlehtml)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
