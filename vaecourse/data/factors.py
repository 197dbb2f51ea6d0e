"""Images with exactly known factors (chapter 14 (disentanglement), chapter 15 (attributes)).

In the spirit of dSprites, each 32x32 grey image in [0, 1] shows one white shape on black, drawn
from six factors, each with a small grid of values (:data:`FACTORS`, in this order; an image's
factors are the integer indices into these grids, shape (N, 6)):

==========  ======  ===========================================================================
factor      values  grid
==========  ======  ===========================================================================
shape       3       square, ellipse (semi-axes s and s/2), equilateral triangle
scale       4       s = 5, 6, 7, 8 pixels: the circumradius (the shape fits in a disc of radius s)
rotation    8       0, 1/8, ..., 7/8 of the shape's symmetry period (see below)
thickness   3       stroke width 1 or 2 pixels inside the outline, or ``inf``: filled
x           8       centre 9, 11, ..., 23 pixels from the left edge
y           8       centre 9, 11, ..., 23 pixels from the top edge
==========  ======  ===========================================================================

A stroke of width t is the part of the shape within t of its outline: for the square and the
triangle exactly, for the ellipse the ring between it and the ellipse of semi-axes s - t and
s/2 - t.

The grid holds ``3 * 4 * 8 * 3 * 8 * 8 = 18,432`` images (:data:`GRID_SIZE`). :func:`generate`
returns the whole grid in order (the last factor, y, varies fastest) or a random subset of
distinct combinations drawn with a seeded ``torch.Generator``; no global random state is used,
and the grid itself involves no randomness at all.

Rotation and symmetry. A square looks the same after a quarter turn, an ellipse after a half turn
and an equilateral triangle after a third of a turn (:data:`SYMMETRY`: the order k of each
shape's rotation symmetry). The angles theta and theta + 360/k draw the same image, so over a
full turn k rotation values would share every image and no encoder could tell them apart. So a
rotation index r means the angle ``(r / 8) * 360 / k`` degrees (counter-clockwise as displayed):
the 8 values of every shape cover its symmetry period once, every combination of factors gives
a different image, and rotation 7/8 is as close to rotation 0 as 1/8 is (the factor is cyclic).
The same symmetry puts every shape's centroid at its centre, for any rotation and thickness.

Coordinates: the image covers [0, 32] x [0, 32] in pixel units, pixel (i, j) is the square
[j, j + 1] x [i, i + 1] (x to the right, y down). Antialiasing is by supersampling: the grey
level of a pixel is the fraction of its 64 sample points (:data:`SAMPLES`) that fall inside the
shape, so the mass of an image (the sum of its pixels) is the area of the shape in square pixels
up to the sampling error (under half a square pixel on this grid). The positions are 2 pixels
apart, so moving a shape is an exact shift of its pixels: each shape is rendered once at the
centre and then placed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import Tensor

SIZE = 32  # images are SIZE x SIZE
SUPERSAMPLE = 64  # sample points per pixel
LATTICE = 11  # the lattice generator of the sample points (see SAMPLES)

SHAPES = ("square", "ellipse", "triangle")
SYMMETRY = {"square": 4, "ellipse": 2, "triangle": 3}  # order of each shape's rotation symmetry
FACTORS: dict[str, tuple] = {
    "shape": SHAPES,
    "scale": (5.0, 6.0, 7.0, 8.0),
    "rotation": tuple(r / 8 for r in range(8)),
    "thickness": (1.0, 2.0, math.inf),
    "x": tuple(float(v) for v in range(9, 24, 2)),
    "y": tuple(float(v) for v in range(9, 24, 2)),
}
FACTOR_NAMES = tuple(FACTORS)
FACTOR_SIZES = tuple(len(v) for v in FACTORS.values())
GRID_SIZE = math.prod(FACTOR_SIZES)

# Each shape is rendered once, centred in a PATCH x PATCH square that holds the largest scale's
# disc; x and y then place that patch in the image by whole pixels.
PATCH = 2 * int(max(FACTORS["scale"]))
# The sample points in a pixel: a rank-1 lattice (k + 1/2, (LATTICE * k) mod n + 1/2) / n, k < n,
# n = SUPERSAMPLE. Every point has an x and a y of its own, so an edge parallel to the pixel grid
# is resolved to 1/n pixel, not 1/sqrt(n) as with a square grid of the same points.
_k = torch.arange(SUPERSAMPLE, dtype=torch.float64)
SAMPLES = torch.stack([_k + 0.5, (LATTICE * _k) % SUPERSAMPLE + 0.5], 1) / SUPERSAMPLE


@dataclass(frozen=True)
class FactorImages:
    """Images (N, 1, 32, 32), float32 in [0, 1], and their factor indices (N, 6), int64.

    ``factors[n, k]`` indexes ``values[k]``, the grid of factor ``names[k]`` (module docstring).
    """

    images: Tensor
    factors: Tensor
    names: tuple[str, ...] = FACTOR_NAMES
    values: tuple[tuple, ...] = field(default=tuple(FACTORS.values()))

    def __len__(self) -> int:
        return len(self.images)


def factor_grid() -> Tensor:
    """Every combination of factor indices, (GRID_SIZE, 6), the last factor varying fastest."""
    return torch.tensor(list(itertools.product(*(range(n) for n in FACTOR_SIZES))))


def check_factors(factors: Tensor) -> Tensor:
    """Raise ValueError unless ``factors`` is an integer tensor (N, 6) of valid grid indices."""
    if not isinstance(factors, Tensor) or factors.dtype not in (torch.int32, torch.int64):
        given = factors.dtype if isinstance(factors, Tensor) else type(factors).__name__
        raise ValueError(f"factors must be an integer torch.Tensor of indices, got {given}")
    if factors.dim() != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(f"factors must have shape (N, {len(FACTOR_NAMES)}) with columns "
                         f"{FACTOR_NAMES}, got {tuple(factors.shape)}")
    for k, (name, n) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
        column = factors[:, k]
        if len(column) and (column.min() < 0 or column.max() >= n):
            raise ValueError(f"factor {name!r} indices must lie in 0..{n - 1}, "
                             f"got values from {column.min().item()} to {column.max().item()}")
    return factors.long()


def rotation_angles(shape: str) -> Tensor:
    """The 8 rotation angles of a shape in degrees: (r / 8) * 360 / k for r = 0..7, float64."""
    return torch.tensor(FACTORS["rotation"], dtype=torch.float64) * 360.0 / SYMMETRY[shape]


def rotation_degrees(factors: Tensor) -> Tensor:
    """The rotation angle in degrees of each image (N,): its shape's angle for its index."""
    factors = check_factors(factors)
    return torch.stack([rotation_angles(s) for s in SHAPES])[factors[:, 0], factors[:, 2]]


def _coverage(shape: str, scale: float, angles: Tensor, thickness: float) -> Tensor:
    """Antialiased patches (A, PATCH, PATCH) of one shape, scale and thickness at ``angles``."""
    pixel = torch.arange(PATCH, dtype=torch.float64)
    u = pixel[None, :, None] + SAMPLES[:, 0] - PATCH / 2  # (1, PATCH, S): x right, from the
    v = PATCH / 2 - pixel[:, None, None] - SAMPLES[:, 1]  # (PATCH, 1, S): y up  shape's centre
    theta = torch.deg2rad(angles)[:, None, None, None]
    # rotate the sample points by -theta: the shape is then in its canonical pose
    qx = u * theta.cos() + v * theta.sin()  # (A, PATCH, PATCH, S)
    qy = -u * theta.sin() + v * theta.cos()
    if shape == "ellipse":
        a, b = scale, scale / 2
        inside = (qx / a) ** 2 + (qy / b) ** 2 <= 1
        if thickness < b:
            inside &= (qx / (a - thickness)) ** 2 + (qy / (b - thickness)) ** 2 > 1
    else:
        # regular polygon: the distance from a point inside to the outline is the apothem minus
        # the largest projection on the edge normals (square: axis-aligned edges; triangle:
        # one vertex up, so the normals point at 30, 150 and 270 degrees)
        n = SYMMETRY[shape]
        first = 0.0 if shape == "square" else 30.0
        normals = torch.deg2rad(torch.tensor([first + 360.0 * i / n for i in range(n)],
                                             dtype=torch.float64))
        projection = torch.stack([qx * c + qy * s for c, s in
                                  zip(normals.cos(), normals.sin(), strict=True)]).amax(0)
        depth = scale * math.cos(math.pi / n) - projection
        inside = (depth >= 0) & (depth < thickness)
    return inside.float().mean(-1)


@lru_cache(maxsize=1)
def sprites() -> Tensor:
    """Every shape x scale x rotation x thickness, centred: (3, 4, 8, 3, PATCH, PATCH)."""
    out = torch.zeros(*FACTOR_SIZES[:4], PATCH, PATCH)
    for i, shape in enumerate(SHAPES):
        for j, scale in enumerate(FACTORS["scale"]):
            for t, thickness in enumerate(FACTORS["thickness"]):
                out[i, j, :, t] = _coverage(shape, scale, rotation_angles(shape), thickness)
    return out


def render(factors: Tensor) -> Tensor:
    """The images (N, 1, 32, 32) of the factor indices ``factors`` (N, 6), float32 in [0, 1]."""
    factors = check_factors(factors)
    shape, scale, rotation, thickness, x, y = factors.unbind(1)
    patches = sprites()[shape, scale, rotation, thickness]  # (N, PATCH, PATCH)
    grid_x, grid_y = (torch.tensor(FACTORS[name]).long() for name in ("x", "y"))
    steps = torch.arange(PATCH)
    rows = (grid_y[y] - PATCH // 2)[:, None] + steps  # the patch's rows in the image, (N, PATCH)
    cols = (grid_x[x] - PATCH // 2)[:, None] + steps
    images = torch.zeros(len(factors), SIZE, SIZE)
    images[torch.arange(len(factors))[:, None, None], rows[:, :, None], cols[:, None, :]] = patches
    return images.unsqueeze(1)


def generate(n: int | None = None, seed: int = 0) -> FactorImages:
    """The factors set: the whole grid (``n=None``) or ``n`` distinct random combinations.

    The subset is the first ``n`` of a permutation of the grid drawn with
    ``torch.Generator().manual_seed(seed)``, so it is in random order and the same for the same
    seed; the whole grid comes in grid order whatever the seed.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    grid = factor_grid()
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= GRID_SIZE:
            raise ValueError(f"n must be None (the whole grid) or an int in 1..{GRID_SIZE}, "
                             f"got {n!r}")
        generator = torch.Generator().manual_seed(seed)
        grid = grid[torch.randperm(GRID_SIZE, generator=generator)[:n]]
    return FactorImages(render(grid), grid)
