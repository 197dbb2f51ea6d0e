"""Sample-quality measures of chapter 6 (prior samples) and chapters 11-13 (VAEs and GANs,
learned similarity, adversarial autoencoders).

* Sharpness, per image (higher is sharper; blurring lowers both):
  :func:`laplacian_variance`, the variance over pixels of the discrete Laplacian
  (``scipy.ndimage.laplace``), and :func:`gradient_energy`, the mean over pixels of the squared
  forward differences (d_x I)^2 + (d_y I)^2.
* :func:`subpixel_shift`: images moved by a fraction of a pixel, keeping their sharpness (the
  "element-wise similarity" argument: a half-pixel shift is the same digit, yet far away in
  pixel L2).
* Mode coverage: :func:`class_total_variation`, TV(h, u) = 1/2 sum_k |h_k - 1/K| between the
  class histogram h of samples (labels from a classifier) and the uniform u; 0 for perfectly
  balanced classes, 1 - 1/K when every sample is of one class.
* Two-sample statistic: :func:`mmd2`, the unbiased estimate of the squared maximum mean
  discrepancy (Gretton et al. 2012)

      MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),                               (MMD^2)
      MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                - 2/(mn) sum_{i, j} k(x_i, y_j),

  with the Gaussian kernel k(a, b) = mean_s exp(-|a - b|^2 / (2 s^2)) over the stated
  bandwidths s (one bandwidth: the plain Gaussian kernel). It is 0 in expectation when both
  samples come from the same distribution (and can then be negative). :func:`mmd_test` adds a
  permutation test (the p-value of MMD^2_u among relabellings of the pooled sample) and a
  jackknife standard error of MMD^2_u.

Images are (N, H, W), (N, 1, H, W) or flattened MNIST (N, 784); point sets are (N, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import torch
from torch import Tensor

MNIST_SIDE = 28


def as_image_array(images: Tensor | np.ndarray) -> np.ndarray:
    """The images as a float64 array (N, H, W); (N, 784) is read as 28 x 28 MNIST."""
    a = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"images must be floating-point, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == MNIST_SIDE**2:
        a = a.reshape(-1, MNIST_SIDE, MNIST_SIDE)
    elif a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or len(a) == 0 or min(a.shape[1:]) < 3:
        raise ValueError("images must have shape (N, H, W), (N, 1, H, W) or (N, 784) with N >= 1 "
                         f"and H, W >= 3, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("images must be finite, got NaN or inf")
    return a.astype(np.float64)


def laplacian_variance(images: Tensor | np.ndarray) -> Tensor:
    """Var over pixels of the Laplacian of each image (``scipy.ndimage.laplace``, borders
    reflected): shape (N,), float64."""
    a = as_image_array(images)
    return torch.tensor(np.array([scipy.ndimage.laplace(img).var() for img in a]))


def gradient_energy(images: Tensor | np.ndarray) -> Tensor:
    """Mean gradient energy (sum (I[i, j+1] - I[i, j])^2 + sum (I[i+1, j] - I[i, j])^2) / (H W)
    of each image: shape (N,), float64."""
    a = as_image_array(images)
    energy = (np.diff(a, axis=2) ** 2).sum((1, 2)) + (np.diff(a, axis=1) ** 2).sum((1, 2))
    return torch.tensor(energy / (a.shape[1] * a.shape[2]))


def subpixel_shift(images: Tensor | np.ndarray, dy: float, dx: float) -> Tensor:
    """The images moved by (dy, dx) pixels (fractions allowed), as (N, H, W) float64.

    The shift multiplies each image's 2-D Fourier transform by a phase
    (``scipy.ndimage.fourier_shift``): band-limited interpolation that keeps every frequency's
    amplitude, so a shifted image is as sharp as the original (a bilinear shift by half a
    pixel would average neighbouring pixels, a blur). The shift is circular: what leaves one
    border enters at the other, harmless for digits on a blank background. The real part is
    kept (a fractional shift turns the Nyquist frequency of an even-sized image complex).
    """
    a = as_image_array(images)
    spectrum = scipy.ndimage.fourier_shift(np.fft.fft2(a, axes=(1, 2)), (0.0, dy, dx))
    return torch.tensor(np.real(np.fft.ifft2(spectrum, axes=(1, 2))))


def class_histogram(labels: Tensor, n_classes: int = 10) -> Tensor:
    """The fraction of ``labels`` (N,) in each class 0..n_classes-1: shape (n_classes,)."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
        given = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor)
                 else type(labels).__name__)
        raise ValueError(f"labels must be an integer tensor of shape (N,), got {given}")
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be non-empty and lie in 0..{n_classes - 1}, got "
                         f"{labels.min().item() if len(labels) else 'none'}.."
                         f"{labels.max().item() if len(labels) else 'none'}")
    return torch.bincount(labels.long(), minlength=n_classes).double() / len(labels)


def class_total_variation(labels: Tensor, n_classes: int = 10) -> float:
    """TV(h, uniform) = 1/2 sum_k |h_k - 1/K| of the class histogram h of ``labels``."""
    return 0.5 * (class_histogram(labels, n_classes) - 1.0 / n_classes).abs().sum().item()


def as_points(name: str, x: Tensor) -> Tensor:
    """``x`` as a float64 point set (N, D) with N >= 2 (the unbiased estimate needs pairs)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2 or len(x) < 2:
        given = (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__)
        raise ValueError(f"{name} must be a floating-point tensor (N, D) with N >= 2, got {given}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return x.detach().double()


def gaussian_kernel(a: Tensor, b: Tensor, bandwidths: tuple[float, ...]) -> Tensor:
    """k(a_i, b_j) = mean_s exp(-|a_i - b_j|^2 / (2 s^2)): the (len(a), len(b)) kernel matrix."""
    if len(bandwidths) == 0 or not all(s > 0 for s in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty tuple of numbers > 0, got {bandwidths}")
    d2 = torch.cdist(a, b).pow(2)
    return sum(torch.exp(-d2 / (2 * s**2)) for s in bandwidths) / len(bandwidths)


def mmd2_of_splits(k: Tensor, in_x: Tensor) -> Tensor:
    """MMD^2_u of several splits of the pooled sample into x and y, from its kernel matrix k.

    ``in_x`` (N, S) is 1 where point i belongs to x in split s and 0 where it belongs to y.
    With K0 = k with a zero diagonal, a = in_x[:, s] and b = 1 - a, the three sums of MMD^2_u are
    a^T K0 a (pairs i != j in x), b^T K0 b (in y) and a^T K0 b (across). Returns shape (S,).
    """
    k0 = k - torch.diag(k.diagonal())
    a = in_x.to(k.dtype)
    b = 1 - a
    m, n = a.sum(0), b.sum(0)
    ka, kb = k0 @ a, k0 @ b
    return ((a * ka).sum(0) / (m * (m - 1)) + (b * kb).sum(0) / (n * (n - 1))
            - 2 * (a * kb).sum(0) / (m * n))


def first_m(n_points: int, m: int) -> Tensor:
    """The split (N, 1) of the pooled sample [x; y] with x its first m points."""
    return (torch.arange(n_points) < m).unsqueeze(1)


def pooled_kernel(x: Tensor, y: Tensor, bandwidths: tuple[float, ...], min_size: int = 2
                  ) -> tuple[Tensor, int]:
    """The kernel matrix of the pooled sample [x; y] (float64) and m = len(x), after checking
    that x (m, D) and y (n, D) share D and have at least ``min_size`` points each."""
    x, y = as_points("x", x), as_points("y", y)
    if x.shape[1] != y.shape[1] or min(len(x), len(y)) < min_size:
        raise ValueError(f"x and y must be (m, D) and (n, D) with equal D and m, n >= {min_size}, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    pooled = torch.cat([x, y])
    return gaussian_kernel(pooled, pooled, bandwidths), len(x)


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...]) -> float:
    """The unbiased estimate MMD^2_u of samples x (m, D) and y (n, D), Gaussian kernel with the
    given bandwidths (see the module docstring). Computed in float64."""
    k, m = pooled_kernel(x, y, bandwidths)
    return mmd2_of_splits(k, first_m(len(k), m)).item()


def jackknife_se(k: Tensor, m: int) -> float:
    """The two-sample jackknife standard error of MMD^2_u: sqrt(sum over both samples of
    (N_s - 1)/N_s sum_i (theta_(-i) - mean theta_(-.))^2), theta_(-i) the estimate without point i.

    Each leave-one-out estimate comes from the row sums of the kernel matrix, in O(1).
    """
    n = len(k) - m
    off = k - torch.diag(k.diagonal())
    kxx, kyy, kxy = off[:m, :m], off[m:, m:], k[:m, m:]
    sxx, syy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    without_x = ((sxx - 2 * kxx.sum(1)) / ((m - 1) * (m - 2)) + syy / (n * (n - 1))
                 - 2 * (sxy - kxy.sum(1)) / ((m - 1) * n))
    without_y = (sxx / (m * (m - 1)) + (syy - 2 * kyy.sum(1)) / ((n - 1) * (n - 2))
                 - 2 * (sxy - kxy.sum(0)) / (m * (n - 1)))
    variance = sum((len(t) - 1) / len(t) * (t - t.mean()).pow(2).sum()
                   for t in (without_x, without_y))
    return variance.sqrt().item()


@dataclass
class MMDTest:
    """MMD^2_u, its jackknife standard error and the permutation p-value."""

    mmd2: float
    se: float
    p_value: float
    permutations: int
    bandwidths: tuple[float, ...]


def mmd_test(x: Tensor, y: Tensor, bandwidths: tuple[float, ...], permutations: int = 200,
             generator: torch.Generator | None = None) -> MMDTest:
    """MMD^2_u of x (m, D) and y (n, D) with a jackknife standard error and a permutation test.

    The p-value is (1 + #{pi : MMD^2_u(pi) >= MMD^2_u}) / (1 + permutations), pi running over
    random relabellings of the pooled sample (drawn with ``generator``): under x ~ y it is
    uniform up to the discreteness of the permutation count, so P(p <= alpha) <= alpha. The
    jackknife needs m, n >= 3.
    """
    if not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be an int >= 1, got {permutations!r}")
    k, m = pooled_kernel(x, y, bandwidths, min_size=3)
    observed = mmd2_of_splits(k, first_m(len(k), m))
    exceed, chunk = 0, max(1, 2**22 // len(k))  # splits per matrix product: <= 2^22 numbers
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        # A random relabelling puts the first m points of a random order into x.
        order = torch.rand(size, len(k), generator=generator).argsort(1)
        in_x = torch.zeros(size, len(k)).scatter_(1, order[:, :m], 1.0).T
        exceed += int((mmd2_of_splits(k, in_x) >= observed).sum())
    return MMDTest(mmd2=observed.item(), se=jackknife_se(k, m),
                   p_value=(1 + exceed) / (1 + permutations), permutations=permutations,
                   bandwidths=tuple(bandwidths))
