"""Serve MathJax 3 from the built book instead of a CDN, so math typesets with no network.

MathJax comes from a pinned package (django-static-mathjax, the es5 build); after an HTML build
the files are copied to ``<outdir>/mathjax`` and ``mathjax_path`` (set in _config.yml) points at
them relative to ``_static/``. They are not put under ``_static/``, where Jupyter Book would add
every .js file to every page.
"""

import shutil
from importlib import resources
from pathlib import Path

from sphinx.application import Sphinx


def mathjax_source() -> Path:
    """The directory of the es5 MathJax build shipped by django-static-mathjax."""
    try:
        source = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError as error:
        message = "offline MathJax needs django-static-mathjax (requirements.txt)"
        raise RuntimeError(message) from error
    if not (source / "tex-chtml.js").is_file():
        raise RuntimeError(f"MathJax es5 build not found: expected {source / 'tex-chtml.js'}")
    return source


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copytree(mathjax_source(), Path(app.outdir) / "mathjax", dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    mathjax_source()  # fail at start-up, not after a long build
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
