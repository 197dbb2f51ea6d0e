"""Figures of the book: image grids, latent manifolds, codes by class, training curves (chapter 6),
and ``book_style``, the look of every chapter's figures (each chapter's first cell).

Each drawing function draws on a matplotlib ``Axes`` (a new figure when none is given) and
returns it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import skimage.util
import torch
from IPython import get_ipython
from matplotlib.axes import Axes
from matplotlib_inline.backend_inline import set_matplotlib_formats
from torch import Tensor

from vaecourse import config

BOOK_FONT_SIZE = 12  # points; at the chapters' 80 dpi, 8 px when a phone shows a figure at 60 %


def book_style() -> None:
    """The look of every chapter's figures; each chapter's first cell calls it.

    Labels are set in a larger font, so that they stay legible when a phone shows a figure at
    60 % of its size, and in a Jupyter kernel figures are stored as retina PNGs (twice the pixels
    of their size on the page), sharp on high-resolution screens. tests/test_book.py checks both
    in the built book.
    """
    plt.rcParams.update({"font.size": BOOK_FONT_SIZE, "axes.titlesize": BOOK_FONT_SIZE,
                         "axes.labelsize": BOOK_FONT_SIZE, "legend.fontsize": BOOK_FONT_SIZE - 1,
                         "xtick.labelsize": BOOK_FONT_SIZE - 1,
                         "ytick.labelsize": BOOK_FONT_SIZE - 1})
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def new_axes(ax: Axes | None, size: tuple[float, float] = (4, 4)) -> Axes:
    """``ax``, or the axes of a new figure of ``size`` inches."""
    return plt.subplots(figsize=size)[1] if ax is None else ax


def tile(images: Tensor | np.ndarray, ncols: int, side: int = 28, pad: int = 1) -> np.ndarray:
    """Arrange N images, (N, side*side) or (N, side, side), in rows of ``ncols``, ``pad`` apart
    (``skimage.util.montage``; the gaps and empty cells are grey, 0.25)."""
    images = np.asarray(images.detach().cpu() if isinstance(images, Tensor) else images, float)
    images = images.reshape(-1, side, side)
    nrows = -(-len(images) // ncols)
    return skimage.util.montage(images, fill=0.25, grid_shape=(nrows, ncols), padding_width=pad)


def image_grid(images: Tensor | np.ndarray, ncols: int = 10, ax: Axes | None = None,
               title: str | None = None, pad: int = 1) -> Axes:
    """Show grey images (values in [0, 1], 1 drawn black) in a grid with ``ncols`` columns."""
    ax = new_axes(ax, (ncols * 0.5, max(1, -(-len(images) // ncols)) * 0.5 + 0.3))
    ax.imshow(tile(images, ncols, pad=pad), cmap="gray_r", vmin=0, vmax=1,
              interpolation="antialiased")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def latent_grid(n: int = 15, span: float = 0.95) -> Tensor:
    """An n x n grid of 2-D codes at the standard normal quantiles from (1-span)/2 to (1+span)/2."""
    q = torch.linspace((1 - span) / 2, (1 + span) / 2, n)
    values = torch.distributions.Normal(0.0, 1.0).icdf(q)
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")
    return torch.stack([z1, z2], dim=-1).reshape(-1, 2)


@torch.no_grad()
def latent_manifold(model: torch.nn.Module, n: int = 15, ax: Axes | None = None) -> Axes:
    """The decoded means ``sigmoid(decode(z))`` of a 2-D model on a grid of prior quantiles."""
    z = latent_grid(n).to(config.module_device(model))
    images = torch.sigmoid(model.decode(z))
    ax = image_grid(images, ncols=n, ax=new_axes(ax, (6, 6)), pad=0)
    ax.set_title("decoded z on a grid of N(0, 1) quantiles (z1 right, z2 up)")
    return ax


def codes_scatter(codes: Tensor | np.ndarray, labels: Tensor | np.ndarray,
                  ax: Axes | None = None) -> Axes:
    """Scatter 2-D codes coloured by their class label, with a legend."""
    codes, labels = np.asarray(codes), np.asarray(labels)
    ax = new_axes(ax, (5, 4.5))
    for label in np.unique(labels):
        c = codes[labels == label]
        ax.scatter(c[:, 0], c[:, 1], s=4, alpha=0.7, label=str(label))
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.legend(markerscale=3, fontsize="small", loc="upper right", ncols=2)
    return ax


def training_curves(history: dict[str, list[dict[str, float]]], key: str = "loss",
                    ax: Axes | None = None) -> Axes:
    """Plot ``key`` per epoch for each split of a :func:`vaecourse.train.fit` history."""
    ax = new_axes(ax, (5, 3.5))
    for split, rows in history.items():
        if rows:
            ax.plot(range(1, len(rows) + 1), [row[key] for row in rows], marker=".", label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend()
    return ax
