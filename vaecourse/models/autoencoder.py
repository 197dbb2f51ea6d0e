"""Autoencoders of chapter 1: the tied linear autoencoder (= PCA) and a deep MLP autoencoder.

* :class:`LinearAutoencoder`: ``x_hat = W W^T (x - m) + m`` with the data mean ``m``; its loss,
  the mean squared reconstruction error, is the PCA objective (Baldi and Hornik 1989).
* :func:`pca` and :func:`principal_angles`: the reference it is compared with.
* :class:`Autoencoder`: MLP encoder ``x -> z`` (a small code, 2-D in the chapter) and MLP decoder
  ``z -> logits``, with three optional regularizers of its loss: denoising (masking noise on
  the input, Vincent et al. 2008), sparse (an L1 penalty on the code) and contractive (the
  squared Frobenius norm of the encoder's Jacobian, Rifai et al. 2011).

Both models have ``loss(batch) -> (loss, metrics)``, so :func:`vaecourse.train.fit` trains them.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

DATA_DIM = 28 * 28


def images_of(batch: Tensor | tuple | list) -> Tensor:
    """The images of a batch given as images or as ``(images, labels)``, flattened to (B, D)."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x.flatten(1)


# ---------------------------------------------------------------- linear autoencoder and PCA


def pca(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The mean ``m`` (D,), the top-``k`` principal directions ``U_k`` (D, k, orthonormal
    columns) and all the variances ``lambda`` (descending) of the data ``x`` (N, D).

    ``lambda_i = s_i^2 / N`` for the singular values ``s_i`` of ``x - m``: the eigenvalues of
    the (biased) covariance matrix. PCA's reconstruction error with k directions is
    ``sum_{i > k} lambda_i``.
    """
    if x.ndim != 2 or not 0 < k <= min(x.shape):
        raise ValueError(f"x must be (N, D) and k in 1..min(N, D), got {tuple(x.shape)}, k={k}")
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, vh[:k].T, s**2 / len(x)


def principal_angles(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """The principal angles (radians, descending) between the column spaces of ``a`` and ``b``.

    ``cos theta_i`` are the singular values of ``Q_a^T Q_b`` for orthonormal bases ``Q_a``,
    ``Q_b``; computed by ``scipy.linalg.subspace_angles``.
    """
    a, b = (np.asarray(m.detach().cpu() if isinstance(m, Tensor) else m, float) for m in (a, b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must be (D, k) matrices with equal D, got {a.shape}, {b.shape}")
    return scipy.linalg.subspace_angles(a, b)


class LinearAutoencoder(nn.Module):
    """Tied linear autoencoder: ``z = W^T (x - m)``, ``x_hat = W z + m``, W of shape (D, k).

    ``m`` is a fixed buffer (the training mean); only W is learned.
    """

    def __init__(self, mean: Tensor, k: int, generator: torch.Generator | None = None):
        super().__init__()
        if mean.ndim != 1 or not 0 < k <= len(mean):
            raise ValueError(f"mean must be (D,) and k in 1..D, got {tuple(mean.shape)}, k={k}")
        self.register_buffer("mean", mean.clone())
        self.weight = nn.Parameter(0.01 * torch.randn(len(mean), k, generator=generator))

    def encode(self, x: Tensor) -> Tensor:
        return (x.flatten(1) - self.mean) @ self.weight

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.weight.T + self.mean

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def loss(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """The PCA objective: ``mean_n ||x_n - W W^T (x_n - m) - m||^2``."""
        x = images_of(batch)
        loss = (x - self(x)).pow(2).sum(-1).mean()
        return loss, {"loss": loss.item()}


def gradient_descent(model: nn.Module, x: Tensor, steps: int, lr: float) -> Tensor:
    """Full-batch gradient descent ``theta <- theta - lr * grad loss(x)`` for ``steps`` steps.

    Returns the loss before each step, shape (steps,).
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = torch.empty(steps)
    for step in range(steps):
        loss, _ = model.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.item()
    return losses


# ---------------------------------------------------------------- deep autoencoder


def mask_noise(x: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Masking noise of a denoising autoencoder: each pixel set to 0 with probability ``p``."""
    if not 0 <= p < 1:
        raise ValueError(f"p must lie in [0, 1), got {p}")
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep


def contractive_penalty(x: Tensor, z: Tensor) -> Tensor:
    """``||dz/dx||_F^2`` per example, (B,), for codes ``z`` (B, k) computed from ``x`` (B, D).

    One vector-Jacobian product per code dimension (exact; cheap for a small code).
    ``x`` must require grad; the result is differentiable (create_graph) for training.
    """
    if not x.requires_grad:
        raise ValueError("x must require grad (the codes z must be computed from it)")
    penalty = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for j in range(z.shape[-1]):
        (row,) = torch.autograd.grad(z[:, j].sum(), x, create_graph=True)
        penalty = penalty + row.flatten(1).pow(2).sum(-1)
    return penalty


class Autoencoder(nn.Module):
    """MLP autoencoder ``x -> z -> logits``, ``x_hat = sigmoid(logits)``.

    Loss per image: ``BCE(x_hat, x)`` summed over pixels, plus ``sparsity * ||z||_1`` plus
    ``contraction * ||dz/dx||_F^2``; with ``noise > 0`` the encoder sees ``mask_noise(x)`` in
    training while the target stays the clean ``x`` (denoising).
    """

    def __init__(self, code: int = 2, hidden: int = 256, data_dim: int = DATA_DIM,
                 noise: float = 0.0, sparsity: float = 0.0, contraction: float = 0.0):
        super().__init__()
        if code < 1 or hidden < 1 or min(noise, sparsity, contraction) < 0 or noise >= 1:
            raise ValueError("code and hidden must be >= 1, noise in [0, 1), sparsity and "
                             f"contraction >= 0; got {code}, {hidden}, {noise}, {sparsity}, "
                             f"{contraction}")
        self.noise, self.sparsity, self.contraction = noise, sparsity, contraction
        self.encoder = nn.Sequential(
            nn.Linear(data_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, code),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, data_dim),
        )

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        """Logits of the reconstruction, shape (..., D)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``sigmoid(decode(encode(x)))`` in [0, 1]."""
        return torch.sigmoid(self.decode(self.encode(x)))

    def loss(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """Batch mean of the per-image loss (see the class docstring) and its terms."""
        x = images_of(batch)
        x_in = mask_noise(x, self.noise) if self.training and self.noise > 0 else x
        penalty = torch.zeros(len(x), device=x.device)
        if self.contraction > 0:
            with torch.enable_grad():  # the penalty needs dz/dx, also when evaluating
                x_in = x_in.detach().requires_grad_(True)
                z = self.encode(x_in)
                penalty = contractive_penalty(x_in, z)
        else:
            z = self.encode(x_in)
        rec = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="none").sum(-1)
        loss = (rec + self.sparsity * z.abs().sum(-1) + self.contraction * penalty).mean()
        return loss, {"loss": loss.item(), "reconstruction": rec.mean().item()}
