"""Tests of vaecourse.sample_quality (chapters 11-13): sharpness, class total variation, and the
MMD^2 estimate against a closed form, with its standard error and permutation test."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage
import scipy.stats
import torch

from vaecourse import sample_quality as sq
from vaecourse.data import mnist


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """200 embedded MNIST test digits, (200, 28, 28) float64 in [0, 1]."""
    return mnist.load_mnist(test_size=200, flat=False).x_test[:, 0].double().numpy()


# --- sharpness -----------------------------------------------------------------------------


def test_sharpness_by_hand():
    """A single bright pixel: its Laplacian is -4 there and 1 at the four neighbours."""
    img = np.zeros((1, 9, 9))
    img[0, 4, 4] = 1.0
    # Mean 0, mean square (16 + 4) / 81.
    assert sq.laplacian_variance(img).item() == pytest.approx(20 / 81)
    assert sq.gradient_energy(img).item() == pytest.approx(4 / 81)
    flat = np.full((2, 5, 7), 0.3)
    assert torch.equal(sq.laplacian_variance(flat), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(sq.gradient_energy(flat), torch.zeros(2, dtype=torch.float64))


def test_shapes_are_read_alike(digits):
    x = torch.tensor(digits[:4])
    ref = sq.laplacian_variance(x)
    for view in (x.flatten(1), x.unsqueeze(1), x.float(), digits[:4]):
        torch.testing.assert_close(sq.laplacian_variance(view), ref, rtol=1e-5, atol=1e-8)
    assert sq.gradient_energy(x.flatten(1)).shape == (4,)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blurred_digits_are_less_sharp(digits, sigma):
    blurred = scipy.ndimage.gaussian_filter(digits, sigma=(0, sigma, sigma))
    for measure in (sq.laplacian_variance, sq.gradient_energy):
        assert (measure(blurred) < measure(digits)).all(), measure.__name__


def test_more_blur_is_less_sharp(digits):
    values = [sq.laplacian_variance(scipy.ndimage.gaussian_filter(digits, (0, s, s))).mean()
              for s in (0.5, 1.0, 2.0)]
    assert values[0] > values[1] > values[2]


def test_subpixel_shift_by_whole_pixels_is_a_roll(digits):
    torch.testing.assert_close(sq.subpixel_shift(digits[:5], 0.0, 1.0),
                               torch.tensor(np.roll(digits[:5], 1, axis=2)))
    torch.testing.assert_close(sq.subpixel_shift(digits[:5], -2.0, 0.0),
                               torch.tensor(np.roll(digits[:5], -2, axis=1)))
    # Half a pixel there and back loses only the Nyquist frequencies (index 14 of 28).
    back = sq.subpixel_shift(sq.subpixel_shift(digits[:5], 0.5, 0.5), -0.5, -0.5).numpy()
    lost = np.abs(np.fft.fft2(back - digits[:5], axes=(1, 2)))
    nyquist = np.zeros((28, 28), bool)
    nyquist[14, :] = nyquist[:, 14] = True
    assert lost[:, ~nyquist].max() < 1e-9 and lost[:, nyquist].max() > 0.1


def test_half_pixel_shift_keeps_sharpness_but_has_a_large_pixel_error(digits):
    """The element-wise similarity argument: a digit moved by half a pixel is the same digit,
    as sharp as before, yet its squared pixel error is larger than that of a visibly blurred
    copy (Gaussian, sigma = 1 pixel); and when a decoder is unsure which of the two it sees,
    their average (blurrier) has half the expected error of either sharp guess."""
    shifted = sq.subpixel_shift(digits, 0.5, 0.5).numpy()
    blurred = scipy.ndimage.gaussian_filter(digits, (0, 1.0, 1.0))
    for measure, kept in ((sq.laplacian_variance, 0.85), (sq.gradient_energy, 0.9)):
        assert (measure(shifted) / measure(digits)).min() > kept, measure.__name__
        assert (measure(blurred) / measure(digits)).max() < 0.5, measure.__name__
    shift_error = ((digits - shifted) ** 2).sum((1, 2))
    blur_error = ((digits - blurred) ** 2).sum((1, 2))
    assert np.median(shift_error / (digits**2).sum((1, 2))) > 0.15
    assert (shift_error > blur_error).mean() > 0.95
    average = (digits + shifted) / 2
    sharp_guess = 0.5 * (((digits - digits) ** 2).sum((1, 2)) + shift_error)
    average_guess = 0.5 * (((digits - average) ** 2).sum((1, 2))
                           + ((shifted - average) ** 2).sum((1, 2)))
    np.testing.assert_allclose(average_guess, sharp_guess / 2)
    assert (sq.laplacian_variance(average) < sq.laplacian_variance(digits)).all()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 27)), r"\(N, H, W\), \(N, 1, H, W\) or \(N, 784\).*got \(3, 27\)"),
    (np.zeros((28, 28)), r"got \(28, 28\)"),
    (np.zeros((2, 3, 28, 28)), r"got \(2, 3, 28, 28\)"),
    (np.zeros((0, 28, 28)), r"N >= 1"),
    (np.zeros((2, 28, 28), dtype=np.uint8), "floating-point, got dtype uint8"),
    (np.full((1, 5, 5), np.nan), "finite"),
])
def test_bad_images_are_clear_errors(bad, message):
    for measure in (sq.laplacian_variance, sq.gradient_energy):
        with pytest.raises(ValueError, match=message):
            measure(bad)


# --- class histogram -----------------------------------------------------------------------


def test_class_total_variation_by_hand():
    assert sq.class_total_variation(torch.arange(10).repeat(7)) == pytest.approx(0.0)
    assert sq.class_total_variation(torch.full((50,), 3)) == pytest.approx(0.9)
    # Histogram (1/2, 1/4, 1/4, 0) against 1/4 each: (1/4 + 0 + 0 + 1/4) / 2.
    labels = torch.tensor([0, 0, 1, 2])
    assert sq.class_total_variation(labels, n_classes=4) == pytest.approx(0.25)
    torch.testing.assert_close(sq.class_histogram(labels, 4),
                               torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"lie in 0..9, got 0..10"):
        sq.class_total_variation(torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        sq.class_total_variation(torch.tensor([0.0, 1.0]))


# --- MMD -----------------------------------------------------------------------------------


def naive_mmd2(x: np.ndarray, y: np.ndarray, bandwidths) -> float:
    """MMD^2_u by its definition, term by term (the reference for small samples)."""
    def k(a, b):
        return np.mean([math.exp(-((a - b) ** 2).sum() / (2 * s**2)) for s in bandwidths])
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def gaussian_mmd2(mu1, cov1, mu2, cov2, bandwidths) -> float:
    """MMD^2 between N(mu1, cov1) and N(mu2, cov2) in closed form.

    For independent X ~ N(a, A), Y ~ N(b, B), W = X - Y ~ N(a - b, C), C = A + B, and
    exp(-|w|^2 / (2 s^2)) = (2 pi s^2)^(d/2) N(w; 0, s^2 I), so with the Gaussian product
    integral  int N(w; m, C) N(w; 0, s^2 I) dw = N(m; 0, C + s^2 I):

        E k(X, Y) = det(I + C / s^2)^(-1/2) exp(-1/2 (a - b)^T (C + s^2 I)^-1 (a - b)).

    MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y) (C = 2 A, 2 B and A + B), averaged over s.
    """
    def expected_k(m, c, s):
        d = len(m)
        shifted = c + s**2 * np.eye(d)
        return (np.linalg.det(np.eye(d) + c / s**2) ** -0.5
                * math.exp(-0.5 * m @ np.linalg.solve(shifted, m)))
    zero = np.zeros(len(mu1))
    return float(np.mean([expected_k(zero, 2 * cov1, s) + expected_k(zero, 2 * cov2, s)
                          - 2 * expected_k(mu1 - mu2, cov1 + cov2, s) for s in bandwidths]))


def test_closed_form_matches_quadrature_in_1d():
    s, (a, va), (b, vb) = 0.7, (0.0, 1.0), (1.0, 0.25)

    def expected(m1, v1, m2, v2):
        def f(y: float, x: float) -> float:  # p(x) q(y) k(x, y), the densities written out
            return (math.exp(-(x - m1) ** 2 / (2 * v1) - (y - m2) ** 2 / (2 * v2)
                             - (x - y) ** 2 / (2 * s**2)) / (2 * math.pi * math.sqrt(v1 * v2)))
        return scipy.integrate.dblquad(f, -7, 7, -7, 7, epsabs=1e-10)[0]  # tails < 1e-11
    by_quadrature = expected(a, va, a, va) + expected(b, vb, b, vb) - 2 * expected(a, va, b, vb)
    closed = gaussian_mmd2(np.array([a]), np.array([[va]]), np.array([b]), np.array([[vb]]), (s,))
    assert closed == pytest.approx(by_quadrature, abs=1e-7)


def test_mmd2_matches_the_definition_term_by_term():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=gen), torch.randn(9, 3, generator=gen) + 0.5
    for bandwidths in [(1.0,), (0.5, 2.0)]:
        assert sq.mmd2(x, y, bandwidths) == pytest.approx(
            naive_mmd2(x.double().numpy(), y.double().numpy(), bandwidths), rel=1e-10)


def gaussian_samples(gen, n, mu, cov):
    root = torch.linalg.cholesky(torch.tensor(cov))
    return torch.tensor(mu) + torch.randn(n, len(mu), generator=gen, dtype=torch.float64) @ root.T


MU1, COV1 = np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
MU2, COV2 = np.array([0.8, -0.2]), np.array([[0.6, 0.0], [0.0, 1.2]])
BANDWIDTHS = (0.5, 1.0, 2.0)


def test_mmd2_estimate_matches_the_closed_form_within_its_standard_error():
    exact = gaussian_mmd2(MU1, COV1, MU2, COV2, BANDWIDTHS)
    gen = torch.Generator().manual_seed(0)
    x, y = gaussian_samples(gen, 800, MU1, COV1), gaussian_samples(gen, 600, MU2, COV2)
    result = sq.mmd_test(x, y, BANDWIDTHS, permutations=20, generator=gen)
    assert result.mmd2 == pytest.approx(sq.mmd2(x, y, BANDWIDTHS), rel=1e-12)
    assert abs(result.mmd2 - exact) < 4 * result.se, (result.mmd2, exact, result.se)
    assert result.se < exact / 5, "the sample must be large enough to tell MMD^2 from 0"
    assert result.p_value == pytest.approx(1 / 21)


def test_jackknife_standard_error_matches_the_spread_over_replicates():
    """The jackknife SE (mean over replicates) against the standard deviation of MMD^2_u over
    40 independent replicates; the latter's relative SE is ~ 1/sqrt(2 * 39) = 11 %, so a
    ratio in [0.6, 1.5] is a > 3.5-SE tolerance."""
    gen = torch.Generator().manual_seed(1)
    estimates, ses = [], []
    for _ in range(40):
        x, y = gaussian_samples(gen, 200, MU1, COV1), gaussian_samples(gen, 150, MU2, COV2)
        result = sq.mmd_test(x, y, BANDWIDTHS, permutations=1, generator=gen)
        estimates.append(result.mmd2)
        ses.append(result.se)
    ratio = np.mean(ses) / np.std(estimates, ddof=1)
    assert 0.6 < ratio < 1.5, ratio


def test_mmd2_is_zero_in_expectation_for_equal_distributions():
    gen = torch.Generator().manual_seed(2)
    estimates = np.array([sq.mmd2(gaussian_samples(gen, 100, MU1, COV1),
                                  gaussian_samples(gen, 80, MU1, COV1), BANDWIDTHS)
                          for _ in range(200)])
    se = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean()) < 4 * se, (estimates.mean(), se)
    assert (estimates < 0).any(), "the unbiased estimate must be negative sometimes"
    # The same number of replicates tells a small difference from 0.
    shifted = np.array([sq.mmd2(gaussian_samples(gen, 100, MU1, COV1),
                                gaussian_samples(gen, 80, MU1 + 0.3, COV1), BANDWIDTHS)
                        for _ in range(200)])
    assert shifted.mean() > 4 * shifted.std(ddof=1) / math.sqrt(len(shifted))


def test_permutation_p_values_are_calibrated_and_powerful():
    """Under equal distributions P(p <= alpha) <= alpha for the permutation p-value; over 200
    tests the fraction below alpha has SE sqrt(alpha (1 - alpha) / 200), tolerance 4 SE."""
    gen = torch.Generator().manual_seed(3)
    p_null = np.array([sq.mmd_test(gaussian_samples(gen, 40, MU1, COV1),
                                   gaussian_samples(gen, 40, MU1, COV1), BANDWIDTHS,
                                   permutations=49, generator=gen).p_value for _ in range(200)])
    assert ((p_null >= 1 / 50) & (p_null <= 1)).all()
    for alpha in (0.1, 0.5):
        fraction = (p_null <= alpha).mean()
        assert abs(fraction - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / 200), (alpha, fraction)
    strong = sq.mmd_test(gaussian_samples(gen, 100, MU1, COV1),
                         gaussian_samples(gen, 100, MU2, COV2), BANDWIDTHS, permutations=99,
                         generator=gen)
    assert strong.p_value == pytest.approx(1 / 100)
    x, y = gaussian_samples(gen, 10, MU1, COV1), gaussian_samples(gen, 10, MU1, COV1)
    one, two = (sq.mmd_test(x, y, BANDWIDTHS, 30, torch.Generator().manual_seed(0)) for _ in "12")
    assert one == two, "the same generator seed gives the same p-value"


@pytest.mark.parametrize("x, y, bandwidths, message", [
    (torch.zeros(5, 2), torch.zeros(5, 3), (1.0,), "equal D"),
    (torch.zeros(1, 2), torch.zeros(5, 2), (1.0,), r"N >= 2, got torch.float32 \(1, 2\)"),
    (torch.zeros(5), torch.zeros(5, 2), (1.0,), r"\(N, D\)"),
    (torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 2), (1.0,), "floating-point"),
    (torch.zeros(5, 2), torch.zeros(5, 2), (), "bandwidths must be a non-empty"),
    (torch.zeros(5, 2), torch.zeros(5, 2), (0.0,), "numbers > 0"),
    (torch.full((3, 2), math.inf), torch.zeros(5, 2), (1.0,), "finite"),
])
def test_bad_point_sets_are_clear_errors(x, y, bandwidths, message):
    with pytest.raises(ValueError, match=message):
        sq.mmd2(x, y, bandwidths)
    with pytest.raises(ValueError, match=message):
        sq.mmd_test(x, y, bandwidths)
