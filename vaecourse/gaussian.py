"""Diagonal Gaussians: the reparameterization trick and closed-form KLs (chapter 5).

A diagonal Gaussian N(mu, diag(exp(logvar))) is the pair ``(mu, logvar)``, both of shape
``(..., D)``: the last dimension is the event dimension, every leading dimension is a batch
dimension. KLs and log densities are summed over the event dimension and returned per example,
with shape ``(...)``.

Shapes: the tensors passed to one function broadcast against each other with torch's rules
(e.g. a shared ``logvar`` of shape ``(D,)``, or samples ``x`` of shape ``(S, B, D)`` against a
Gaussian of shape ``(B, D)``), but their event dimensions (the last) must be equal. Every input
must be a finite floating-point tensor; anything else raises ``ValueError``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def _check(name: str, t: object) -> Tensor:
    """Raise ``ValueError`` unless ``t`` is a finite floating tensor with an event dimension."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        given = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {given}")
    if t.dim() == 0:
        raise ValueError(f"{name} must have shape (..., D) with an event dimension, got shape ()")
    if not torch.isfinite(t).all():
        bad = t[~torch.isfinite(t)].flatten()[0].item()
        raise ValueError(f"{name} must be finite, got a tensor containing {bad}")
    return t


def _check_shapes(*named: tuple[str, Tensor]) -> torch.Size:
    """Check that the tensors share their event dimension and broadcast; return the shape."""
    (first_name, first), shape = named[0], named[0][1].shape
    for i, (name, t) in enumerate(named[1:], start=1):
        if t.shape[-1] != first.shape[-1]:
            raise ValueError(
                f"{name} must have the event dimension of {first_name}, {first.shape[-1]}, "
                f"got shape {tuple(t.shape)}"
            )
        try:
            shape = torch.broadcast_shapes(shape, t.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} must broadcast against {', '.join(n for n, _ in named[:i])} "
                f"of shape {tuple(shape)}, got shape {tuple(t.shape)}"
            ) from None
    return shape


def reparameterize(
    mu: Tensor,
    logvar: Tensor,
    generator: torch.Generator | None = None,
    sample_shape: tuple[int, ...] = (),
) -> Tensor:
    """Draw z ~ N(mu, diag(exp(logvar))) as z = mu + exp(logvar / 2) * eps, eps ~ N(0, I).

    The noise eps does not depend on (mu, logvar), so gradients flow through z to both.
    Returns a tensor of shape ``sample_shape`` + the broadcast shape of mu and logvar. The noise
    is drawn on the generator's device (a CPU generator works for CUDA tensors) and moved to
    ``mu``'s device.
    """
    shape = torch.Size(sample_shape) + _check_shapes(("mu", _check("mu", mu)),
                                                     ("logvar", _check("logvar", logvar)))
    noise_device = generator.device if generator is not None else mu.device
    eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=noise_device)
    return mu + torch.exp(0.5 * logvar) * eps.to(mu.device)


def kl_std_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar)).

    Summed over the last dimension: shape (...). The sum is evaluated as
    1/2 sum(mu^2 + (exp(logvar) - 1 - logvar)) with ``expm1``, which keeps its accuracy when
    logvar is near 0 (where exp(logvar) - 1 - logvar is much smaller than each of its terms).
    """
    _check_shapes(("mu", _check("mu", mu)), ("logvar", _check("logvar", logvar)))
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(-1)


def kl_diag_gaussians(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(q || p) for q = N(mu_q, diag(exp(logvar_q))) and p = N(mu_p, diag(exp(logvar_p))).

    KL = 1/2 sum(logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1),
    summed over the last dimension: shape (...). With r = logvar_q - logvar_p it is evaluated
    as 1/2 sum(expm1(r) - r + (mu_q - mu_p)^2 exp(-logvar_p)): no variance is divided by
    another, and r near 0 keeps its accuracy.
    """
    _check_shapes(("mu_q", _check("mu_q", mu_q)), ("logvar_q", _check("logvar_q", logvar_q)),
                  ("mu_p", _check("mu_p", mu_p)), ("logvar_p", _check("logvar_p", logvar_p)))
    r = logvar_q - logvar_p
    return 0.5 * (torch.expm1(r) - r + (mu_q - mu_p).pow(2) * torch.exp(-logvar_p)).sum(-1)


def log_normal_diag(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mu, diag(exp(logvar))) = -1/2 sum(log 2 pi + logvar + (x - mu)^2 / exp(logvar)).

    Summed over the last dimension. ``x`` broadcasts against ``(mu, logvar)``, e.g. samples of
    shape ``(S, B, D)`` against a Gaussian of shape ``(B, D)`` give log densities of shape (S, B).
    """
    _check_shapes(("x", _check("x", x)), ("mu", _check("mu", mu)),
                  ("logvar", _check("logvar", logvar)))
    return -0.5 * (LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar)).sum(-1)
