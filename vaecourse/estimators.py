"""Monte Carlo estimators of log p(x), the ELBO and the importance-weighted bounds (chapters 2-4).

Conventions:

* Log-weights ``log_w`` carry the samples in their LAST dimension: shape ``(..., S)``, one row
  of S log-weights per example. Every reduction here defaults to ``dim=-1`` and returns ``(...)``.
* A log-weight is log w_s = log p(x, z_s) - log q(z_s | x) with z_s ~ q(z | x)
  (importance sampling), or log w_s = log p(x | z_s) with z_s ~ p(z) (naive Monte Carlo).
  -inf (a zero weight) is allowed; NaN and +inf raise ``ValueError``.
* Models enter through a callable ``log_likelihood(x, z)``: for data ``x`` of shape ``(B, ...)``
  and latents ``z`` of shape ``(S, B, ...)`` it returns log p(x | z) of shape ``(S, B)``
  (it broadcasts over the leading sample dimension). Priors and proposals are
  ``torch.distributions`` objects of batch shape ``()`` (shared by all examples) or ``(B,)``
  (one per example, e.g. an encoder's q(z | x)). They sample from torch's global generator:
  seed it with ``vaecourse.seed_everything``.
* Every log-mean is a log-sum-exp, so that weights far below or above 1 never under- or overflow.

The book's latent-variable models share one interface, :class:`LatentVariableModel` (the toys of
chapters 2-5 and the VAEs of chapters 6-7) or :class:`ConditionalLatentVariableModel` (the CVAEs
of chapters 8-10): a one-sample ``negative_elbo`` and ``log_weights`` per example, and
``log_marginal`` where it is exact (:class:`ExactLatentVariableModel`, the toys). Every log p(x)
estimate of a trained model goes through :func:`log_marginal_estimate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaecourse import gaussian

LogLikelihood = Callable[[Tensor, Tensor], Tensor]


def _check_log_w(name: str, t: object, dim: int) -> Tensor:
    """Raise ``ValueError`` unless ``t`` is a floating tensor of log-values, non-empty along dim."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        given = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {given}")
    if t.dim() == 0 or not -t.dim() <= dim < t.dim():
        raise ValueError(f"{name} must have a dimension {dim}, got shape {tuple(t.shape)}")
    if t.shape[dim] == 0:
        raise ValueError(f"{name} must hold at least one sample along dim {dim}, got 0")
    if torch.isnan(t).any() or torch.isposinf(t).any():
        raise ValueError(f"{name} must be finite or -inf (a zero weight), got NaN or +inf")
    return t


def _check_count(name: str, n: object) -> int:
    """Raise ``ValueError`` unless ``n`` is a positive int."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


def log_mean_exp(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """log((1/n) sum_i exp(x_i)) = logsumexp(x) - log n over ``dim`` (n = x.shape[dim])."""
    _check_log_w("x", x, dim)
    return torch.logsumexp(x, dim=dim, keepdim=keepdim) - math.log(x.shape[dim])


def effective_sample_size(log_w: Tensor, dim: int = -1) -> Tensor:
    """ESS = (sum_s w_s)^2 / sum_s w_s^2 = exp(2 logsumexp(log w) - logsumexp(2 log w)).

    Between 1 (one weight dominates) and S (equal weights); 0 for a row of zero weights.
    The weights are first divided by their largest (ESS does not change), so that the two
    log-sums stay near 0, where floating point resolves them best.
    """
    _check_log_w("log_w", log_w, dim)
    top = log_w.amax(dim=dim, keepdim=True)
    log_w = log_w - torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    lse = torch.logsumexp(log_w, dim=dim)
    ess = torch.exp(2.0 * lse - torch.logsumexp(2.0 * log_w, dim=dim))
    return torch.where(torch.isneginf(lse), torch.zeros_like(ess), ess)


def elbo(log_w: Tensor, dim: int = -1) -> Tensor:
    """Monte Carlo ELBO: the mean over samples of log w_s = log p(x, z_s) - log q(z_s | x).

    An unbiased estimate of L_1 = E_q[log p(x, z) - log q(z | x)] <= log p(x).
    """
    _check_log_w("log_w", log_w, dim)
    return log_w.mean(dim)


def iwae_terms(log_w: Tensor, k: int, dim: int = -1) -> Tensor:
    """Independent unbiased estimates of L_k: log mean_k w over consecutive groups of k samples.

    ``log_w`` of shape ``(..., S)`` (samples along ``dim``) with S a multiple of k gives
    shape ``(..., S // k)``: group g is log((1/k) sum_{s=gk}^{gk+k-1} w_s).
    """
    _check_log_w("log_w", log_w, dim)
    _check_count("k", k)
    log_w = log_w.movedim(dim, -1)
    n = log_w.shape[-1]
    if n % k != 0:
        raise ValueError(f"the sample count {n} of log_w must be a multiple of k, got k={k}")
    return log_mean_exp(log_w.reshape(*log_w.shape[:-1], n // k, k), dim=-1)


def iwae_bound(log_w: Tensor, k: int, dim: int = -1) -> Tensor:
    """Estimate of the k-sample bound L_k = E[log (1/k) sum_{i=1}^k w_i] (Burda et al. 2016).

    ``log_w`` of shape ``(..., S)`` with S a multiple of k: the mean of the S // k group
    estimates of :func:`iwae_terms`, shape ``(...)``. L_1 is the ELBO; L_k rises with k to
    log p(x).
    """
    return iwae_terms(log_w, k, dim).mean(-1)


def _sample(name: str, dist: Distribution, n: int, batch: torch.Size) -> Tensor:
    """n draws per example from ``dist`` (batch shape () or ``batch``): shape (n, *batch, ...)."""
    if dist.batch_shape == batch:
        shape = torch.Size([n])
    elif dist.batch_shape == torch.Size():
        shape = torch.Size([n]) + batch
    else:
        raise ValueError(
            f"{name} must have batch shape () or {tuple(batch)} (one per example), "
            f"got {tuple(dist.batch_shape)}"
        )
    return dist.rsample(shape) if dist.has_rsample else dist.sample(shape)


def sample_log_weights(
    x: Tensor,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    n_samples: int,
    proposal: Distribution | None = None,
) -> Tensor:
    """S = n_samples log-weights per example, shape ``(B, S)`` for ``x`` of shape ``(B, ...)``.

    With a proposal q: z_s ~ q and log w_s = log p(x | z_s) + log p(z_s) - log q(z_s), so that
    E_q[w] = p(x). Without one (naive Monte Carlo): z_s ~ p(z) and log w_s = log p(x | z_s).
    z is drawn with ``rsample`` when the sampler supports it, so the log-weights are
    differentiable in the proposal's parameters (the pathwise gradient of chapter 5).
    """
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ValueError(f"x must be a torch.Tensor of shape (B, ...), got {x!r:.60}")
    _check_count("n_samples", n_samples)
    sampler = prior if proposal is None else proposal
    z = _sample("prior" if proposal is None else "proposal", sampler, n_samples, x.shape[:1])
    log_w = log_likelihood(x, z)
    expected = (n_samples, x.shape[0])
    if not isinstance(log_w, Tensor) or tuple(log_w.shape) != expected:
        given = tuple(log_w.shape) if isinstance(log_w, Tensor) else type(log_w).__name__
        raise ValueError(
            f"log_likelihood(x, z) must return shape (n_samples, B) = {expected}, got {given}"
        )
    if proposal is not None:
        log_w = log_w + prior.log_prob(z) - proposal.log_prob(z)
    return _check_log_w("log_w", log_w.movedim(0, -1), -1)


def naive_log_marginal(
    x: Tensor, log_likelihood: LogLikelihood, prior: Distribution, n_samples: int
) -> Tensor:
    """log p^(x) = log (1/S) sum_s p(x | z_s), z_s ~ p(z): shape ``(B,)``.

    p^(x) is unbiased for p(x); its log is biased low (Jensen), by about Var(w) / (2 S p(x)^2).
    """
    return log_mean_exp(sample_log_weights(x, log_likelihood, prior, n_samples), dim=-1)


def importance_log_marginal(
    x: Tensor,
    log_likelihood: LogLikelihood,
    prior: Distribution,
    proposal: Distribution,
    n_samples: int,
) -> Tensor:
    """log p^(x) = log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s), z_s ~ q: shape ``(B,)``.

    Unbiased for p(x) when q > 0 wherever p(x | z) p(z) > 0; the same number as
    ``iwae_terms(log_w, k=S)``: a single draw of the S-sample bound.
    """
    log_w = sample_log_weights(x, log_likelihood, prior, n_samples, proposal)
    return log_mean_exp(log_w, dim=-1)


# ---------------------------------------------------------------------------------------------
# The interface of the book's latent-variable models, and their log p(x) estimates
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class LatentVariableModel(Protocol):
    """p(x) = ∫ p(x | z) p(z) dz with an approximate posterior q(z | x) (chapters 2-7)."""

    def negative_elbo(self, x: Tensor) -> Tensor:
        """The one-sample -ELBO = -(log p(x, z) - log q(z | x)), z ~ q(z | x): shape (B,)."""
        ...

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """k log-weights log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x): shape (B, k)."""
        ...


@runtime_checkable
class ExactLatentVariableModel(LatentVariableModel, Protocol):
    """A :class:`LatentVariableModel` whose log p(x) is known exactly (the toys of chapters 2-5)."""

    def log_marginal(self, x: Tensor) -> Tensor:
        """The exact log p(x): shape (B,)."""
        ...


@runtime_checkable
class ConditionalLatentVariableModel(Protocol):
    """p(x | c) = ∫ p(x | z, c) p(z | c) dz with q(z | x, c): the CVAEs of chapters 8-10.

    ``x`` is what the model generates (digits, colours, futures), ``condition`` what it sees.
    """

    def negative_elbo(self, x: Tensor, condition: Tensor) -> Tensor:
        """The one-sample conditional -ELBO, z ~ q(z | x, c): shape (B,)."""
        ...

    def log_weights(self, x: Tensor, k: int, condition: Tensor) -> Tensor:
        """k log-weights log p(x | z_k, c) + log p(z_k | c) - log q(z_k | x, c): (B, k)."""
        ...


def gaussian_log_weights(log_likelihood: Callable[[Tensor], Tensor],
                         prior: tuple[Tensor, Tensor], proposal: tuple[Tensor, Tensor], k: int,
                         generator: torch.Generator | None = None) -> Tensor:
    """``log w = log p(x | z) + log p(z) - log r(z)``, z ~ r, for diagonal Gaussians: (B, k).

    ``prior`` and ``proposal`` are ``(mu, logvar)`` pairs of shape (B, D) (or broadcasting to
    it); ``log_likelihood(z)`` maps z of shape (k, B, D) to log p(x | z) of shape (k, B).
    """
    _check_count("k", k)
    z = gaussian.reparameterize(*proposal, generator=generator, sample_shape=(k,))
    log_w = log_likelihood(z) + gaussian.log_normal_diag(z, *prior) \
        - gaussian.log_normal_diag(z, *proposal)
    return log_w.movedim(0, -1)


def chunked_log_weights(log_weights: Callable[[int], Tensor], samples: int, chunk: int = 500
                        ) -> Tensor:
    """``samples`` log-weights per example, drawn ``chunk`` at a time: shape (B, samples).

    ``log_weights(k)`` returns k fresh log-weights per example, (B, k); drawing them in chunks
    bounds the memory of the decoder outputs, and only the weights are kept.
    """
    _check_count("samples", samples)
    _check_count("chunk", chunk)
    return torch.cat([log_weights(min(chunk, samples - start))
                      for start in range(0, samples, chunk)], dim=-1)


def log_marginal_estimate(log_weights: Callable[[int], Tensor], samples: int, chunk: int = 500
                          ) -> Tensor:
    """log p^(x) = log (1/S) sum_s w_s with S = ``samples`` log-weights (see
    :func:`chunked_log_weights`): shape (B,)."""
    return log_mean_exp(chunked_log_weights(log_weights, samples, chunk))
