"""Tests of vaecourse.data.factors: every factor combination renders, and each factor can be read
back from the image exactly (position from the centroid, shape and rotation from complex moments,
scale and thickness from the area and the polar moment of the shape)."""

import math
import time

import pytest
import torch

from vaecourse.data import factors as F

SHAPE, SCALE, ROTATION, THICKNESS, X, Y = range(6)


@pytest.fixture(scope="module")
def full() -> F.FactorImages:
    return F.generate()


@pytest.fixture(scope="module")
def origin(full) -> F.FactorImages:
    """The 288 shape x scale x rotation x thickness images at the first position. Moving a shape
    is an exact shift of its pixels (tested below), so what holds here holds everywhere."""
    keep = (full.factors[:, X] == 0) & (full.factors[:, Y] == 0)
    return F.FactorImages(full.images[keep], full.factors[keep])


def row_of(factors: torch.Tensor, sizes: tuple[int, ...] = F.FACTOR_SIZES) -> torch.Tensor:
    """The row of each factor combination in the grid order of factor_grid() (or of its first
    len(sizes) factors)."""
    strides = torch.tensor([math.prod(sizes[i + 1:]) for i in range(len(sizes))])
    return (factors[:, :len(sizes)] * strides).sum(1)


def centroids(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centroid (x, y) of each image (N, 1, H, W) in pixel units (pixel centres at i + 1/2)."""
    img = images[:, 0].double()
    centres = torch.arange(img.shape[-1], dtype=torch.float64) + 0.5
    mass = img.sum((1, 2))
    return (img.sum(1) * centres).sum(1) / mass, (img.sum(2) * centres).sum(1) / mass


def moments(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mass, centroid and moments about the centroid of images (N, 1, H, W), in float64.

    z = u + i v is the position of a pixel centre relative to the centroid, v pointing up.
    """
    img = images[:, 0].double()
    cols = rows = torch.arange(img.shape[-1], dtype=torch.float64) + 0.5
    mass = img.sum((1, 2))
    cx, cy = centroids(images)
    z = torch.complex(cols[None, None, :] - cx[:, None, None],
                      cy[:, None, None] - rows[None, :, None])
    out = {"mass": mass, "polar": (img * z.abs() ** 2).sum((1, 2))}
    for k in (2, 3, 4):
        out[f"m{k}"] = (img * z**k).sum((1, 2))
        out[f"abs{k}"] = (img * z.abs() ** k).sum((1, 2))
    return out


def polygon_moments(n: int, circumradius: float) -> tuple[float, float]:
    """Area and polar second moment about the centre of a regular n-gon."""
    area = n / 2 * circumradius**2 * math.sin(2 * math.pi / n)
    polar = n / 12 * circumradius**4 * math.sin(2 * math.pi / n) * (2 + math.cos(2 * math.pi / n))
    return area, polar


def ellipse_moments(a: float, b: float) -> tuple[float, float]:
    return math.pi * a * b, math.pi * a * b * (a**2 + b**2) / 4


def exact_moments(shape: str, scale: float, thickness: float) -> tuple[float, float]:
    """Area and polar moment of the shape minus its inner outline (stroke): an independent
    formula for what the renderer should draw."""
    if shape == "ellipse":
        a, b = scale, scale / 2
        outer = ellipse_moments(a, b)
        inner = ellipse_moments(a - thickness, b - thickness) if thickness < b else (0, 0)
    else:
        n = F.SYMMETRY[shape]
        apothem = scale * math.cos(math.pi / n)
        outer = polygon_moments(n, scale)
        # the inner outline of a regular polygon is the same polygon shrunk about its centre
        inner = (polygon_moments(n, scale * (1 - thickness / apothem)) if thickness < apothem
                 else (0, 0))
    return outer[0] - inner[0], outer[1] - inner[1]


def exact_table(factors: torch.Tensor) -> torch.Tensor:
    """The exact (area, polar moment) of each image's shape, scale and thickness: (N, 2)."""
    table = torch.tensor([[[exact_moments(shape, scale, thickness)
                            for thickness in F.FACTORS["thickness"]]
                           for scale in F.FACTORS["scale"]] for shape in F.SHAPES],
                         dtype=torch.float64)
    return table[factors[:, SHAPE], factors[:, SCALE], factors[:, THICKNESS]]


def test_the_grid_is_the_documented_one():
    assert F.FACTOR_NAMES == ("shape", "scale", "rotation", "thickness", "x", "y")
    assert F.FACTOR_SIZES == (3, 4, 8, 3, 8, 8)
    assert F.GRID_SIZE == 18_432
    grid = F.factor_grid()
    assert grid.shape == (F.GRID_SIZE, 6) and grid.dtype == torch.int64
    assert len(torch.unique(grid, dim=0)) == F.GRID_SIZE
    assert grid[:3].tolist() == [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 2]]
    # the largest shape, at the outermost positions, stays inside the image
    assert min(F.FACTORS["x"]) - max(F.FACTORS["scale"]) >= 0
    assert max(F.FACTORS["x"]) + max(F.FACTORS["scale"]) <= F.SIZE


def test_every_combination_renders_in_range(full):
    images = full.images
    assert images.shape == (F.GRID_SIZE, 1, 32, 32) and images.dtype == torch.float32
    assert torch.equal(full.factors, F.factor_grid()) and len(full) == F.GRID_SIZE
    assert full.names == F.FACTOR_NAMES and full.values[SHAPE] == F.SHAPES
    assert images.min() == 0 and images.max() == 1
    mass = images.sum((1, 2, 3))
    assert mass.min() > 5, f"an image is (nearly) empty: mass {mass.min():.2f}"
    # antialiased: grey levels between 0 and 1 occur on every outline
    grey = ((images > 0) & (images < 1)).sum((1, 2, 3))
    assert grey.min() > 0


def test_mass_is_the_area_of_the_shape(full):
    """64 sample points a pixel count the area to within a fraction of a square pixel."""
    area = exact_table(full.factors)[:, 0]
    mass = full.images.double().sum((1, 2, 3))
    error = (mass - area).abs()
    print(f"\nmass - area: max {error.max():.3f} px^2, mean {error.mean():.4f} px^2; "
          f"areas from {area.min():.1f} to {area.max():.1f} px^2")
    assert error.max() < 0.5, f"the largest mass error is {error.max():.3f} px^2"
    assert error.pow(2).mean().sqrt() < 0.15


def test_position_is_the_centroid(full):
    """Every shape is symmetric under a rotation, so its centroid is its centre (up to the
    sampling: a mass error of 0.4 px^2 five pixels out in a 20 px^2 stroke moves it 0.1 px)."""
    cx, cy = centroids(full.images)
    x = torch.tensor(F.FACTORS["x"], dtype=torch.float64)[full.factors[:, X]]
    y = torch.tensor(F.FACTORS["y"], dtype=torch.float64)[full.factors[:, Y]]
    error = torch.maximum((cx - x).abs(), (cy - y).abs())
    print(f"\ncentroid - position: max {error.max():.4f} px")
    assert error.max() < 0.1
    grid = torch.tensor(F.FACTORS["x"], dtype=torch.float64)
    assert torch.equal((cx[:, None] - grid).abs().argmin(1), full.factors[:, X])
    assert torch.equal((cy[:, None] - grid).abs().argmin(1), full.factors[:, Y])


def test_moving_the_shape_shifts_its_pixels_exactly(full):
    images = full.images.reshape(*F.FACTOR_SIZES, 32, 32)
    origin = images[..., 0, 0, :, :]
    for i in range(8):
        for j in range(8):
            shifted = torch.roll(origin, shifts=(2 * j, 2 * i), dims=(-2, -1))
            assert torch.equal(images[..., i, j, :, :], shifted), (i, j)


def test_shape_and_rotation_from_complex_moments(origin):
    """Rotating an image by theta multiplies its moment m_k = sum I z^k by exp(i k theta); a
    shape with k-fold symmetry has m_j = 0 unless k divides j. So |m_2| picks the ellipse,
    |m_3| the triangle (the square has neither), and the phase of m_k, 360 r / 8 degrees from
    that at rotation 0, gives the rotation index r within the symmetry period."""
    full = origin
    m = moments(full.images)
    ratio2, ratio3 = m["m2"].abs() / m["abs2"], m["m3"].abs() / m["abs3"]
    for s, shape in enumerate(F.SHAPES):
        rows = full.factors[:, SHAPE] == s
        print(f"\n{shape}: |m2|/sum|z|^2 in [{ratio2[rows].min():.3g}, {ratio2[rows].max():.3g}],"
              f" |m3|/sum|z|^3 in [{ratio3[rows].min():.3g}, {ratio3[rows].max():.3g}]")
    shape = torch.where(ratio2 > 0.1, 1, torch.where(ratio3 > 0.1, 2, 0))
    assert torch.equal(shape, full.factors[:, SHAPE])

    k = torch.tensor([F.SYMMETRY[s] for s in F.SHAPES])[full.factors[:, SHAPE]]
    mk = torch.where(k == 2, m["m2"], torch.where(k == 3, m["m3"], m["m4"]))
    upright = full.factors.clone()
    upright[:, ROTATION] = 0
    phase = torch.angle(mk / mk[row_of(upright, F.FACTOR_SIZES[:4])])  # k theta, in (-pi, pi]
    rotation = torch.round(phase / (2 * math.pi) * 8).long() % 8
    assert torch.equal(rotation, full.factors[:, ROTATION])
    residual = (phase - 2 * math.pi * full.factors[:, ROTATION] / 8 + math.pi) % (2 * math.pi)
    print(f"phase error: max {(residual - math.pi).abs().max():.4f} rad (step {math.pi / 4:.3f})")


def test_scale_and_thickness_from_area_and_polar_moment(origin):
    """(area, polar moment) are rotation-invariant; each image's pair is nearest to the exact
    pair of its own scale and thickness among the 12 of its shape."""
    full = origin
    m = moments(full.images)
    measured = torch.stack([m["mass"], m["polar"]], 1)
    table = torch.stack([exact_table(torch.tensor([[s, c, 0, t, 0, 0]]))[0]
                         for s in range(3) for c in range(4) for t in range(3)]).reshape(3, 12, 2)
    candidates = table[full.factors[:, SHAPE]]  # (N, 12, 2)
    distance = ((measured[:, None] - candidates) / candidates).abs().sum(-1)
    nearest = distance.argmin(1)
    assert torch.equal(nearest // 3, full.factors[:, SCALE])
    assert torch.equal(nearest % 3, full.factors[:, THICKNESS])


def test_combinations_are_distinct_images(origin):
    """At one position, all 288 shape x scale x rotation x thickness images differ clearly."""
    at_origin = origin.images.flatten(1).double()
    distance = torch.cdist(at_origin, at_origin)
    distance.fill_diagonal_(math.inf)
    print(f"\nsmallest distance between two combinations: {distance.min():.3f}")
    assert distance.min() > 0.5


@pytest.mark.parametrize("shape", F.SHAPES)
def test_a_symmetry_rotation_gives_back_the_same_image(shape):
    """The reason why rotation covers one symmetry period: one more period draws the same."""
    period = 360.0 / F.SYMMETRY[shape]
    angles = torch.tensor([10.0, 10.0 + period, 10.0 + period / 2], dtype=torch.float64)
    a, b, half = F._coverage(shape, 7.0, angles, 2.0)
    assert (a - b).abs().max() <= 1 / F.SUPERSAMPLE + 1e-6  # at most one sample point of rounding
    assert (a - half).abs().sum() > 5  # half a period is a different image


def test_a_random_subset_is_seeded_and_consistent_with_the_grid(full):
    a, b, c = F.generate(500, seed=3), F.generate(500, seed=3), F.generate(500, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.factors, c.factors)
    assert len(torch.unique(a.factors, dim=0)) == 500
    assert torch.equal(a.images, full.images[row_of(a.factors)])
    # all factor values occur in a subset of this size
    for k, n in enumerate(F.FACTOR_SIZES):
        assert len(torch.unique(a.factors[:, k])) == n


def test_rotation_degrees_follow_the_symmetry_period():
    rows = torch.tensor([[0, 0, 4, 0, 0, 0], [1, 0, 4, 0, 0, 0], [2, 0, 7, 0, 0, 0]])
    assert F.rotation_degrees(rows).tolist() == [45.0, 90.0, 7 / 8 * 120.0]


def test_the_whole_set_takes_seconds_on_one_core():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        F.sprites.cache_clear()
        start = time.perf_counter()
        data = F.generate()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    print(f"\nthe whole grid, {len(data)} images, on one thread: {seconds:.2f} s")
    assert len(data) == F.GRID_SIZE


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "n must be None"), ({"n": F.GRID_SIZE + 1}, "n must be None"),
    ({"n": 2.5}, "n must be None"), ({"n": True}, "n must be None"),
    ({"seed": -1}, "seed must be an int"), ({"seed": 1.0}, "seed must be an int"),
])
def test_generate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.generate(**kwargs)


@pytest.mark.parametrize(("factors", "message"), [
    (torch.zeros(2, 5, dtype=torch.int64), r"shape \(N, 6\)"),
    (torch.zeros(2, 6), "integer torch.Tensor"),
    ([[0, 0, 0, 0, 0, 0]], "integer torch.Tensor"),
    (torch.tensor([[0, 0, 8, 0, 0, 0]]), "'rotation' indices must lie in 0..7"),
    (torch.tensor([[-1, 0, 0, 0, 0, 0]]), "'shape' indices must lie in 0..2"),
])
def test_render_rejects_bad_factors(factors, message):
    with pytest.raises(ValueError, match=message):
        F.render(factors)
