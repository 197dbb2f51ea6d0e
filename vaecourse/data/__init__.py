"""Data loaders and generators of the book: ``mnist``, ``colorization``, ``trajectories`` and
``factors`` (images with exactly known factors of variation).

Import the submodules explicitly, e.g. ``from vaecourse.data import mnist``.
"""
