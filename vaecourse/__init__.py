"""vaecourse: the tested implementation of what the VAE course book teaches.

Each module is named after a concept of the book and its docstring names its chapter.
Submodules are imported explicitly, e.g. ``from vaecourse import gaussian``.
"""

from vaecourse.config import device, preset, provenance, seed_everything

__all__ = ["device", "preset", "provenance", "seed_everything"]
__version__ = "0.1.0"
