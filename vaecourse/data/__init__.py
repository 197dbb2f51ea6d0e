"""Data loaders and generators of the book: ``mnist``, ``colorization``, ``trajectories``.

Import the submodules explicitly, e.g. ``from vaecourse.data import mnist``.
"""
