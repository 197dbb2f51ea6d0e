"""Conditional VAEs (chapter 8; the colorization CVAE of chapter 9 uses the same functions).

A conditional VAE models p(x | y) = ∫ p(x | z, y) p(z | y) dz with three networks:

* the recognition network q(z | x, y), used in training (it sees the answer x);
* the prior network p(z | y), the only one available at test time;
* the decoder p(x | z, y).

Any model with the methods ``recognition(x, y)``, ``prior(y)`` (each returning ``(mu, logvar)``),
``decode(z, y)`` and ``nll(out, x)`` (``-log p(x | z, y)`` per example) works with
:func:`negative_elbo`, :func:`log_weights` and :func:`sample`. :class:`CVAE` is the MLP of
chapter 8 with a Bernoulli decoder; an ``output_mask`` restricts the likelihood to some pixels
(the missing quadrants of Sohn et al.'s completion task). :class:`BaselineNet` is the
deterministic network that predicts x from y directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecourse import estimators, gaussian


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLUs between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def masked_bernoulli_nll(logits: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
    """``-sum_i m_i log Bernoulli(x_i; sigmoid(l_i))`` over the last dim (all pixels: m = 1)."""
    logits, x = torch.broadcast_tensors(logits, x)
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return (nll if mask is None else nll * mask).sum(-1)


class ConditionalVAE(nn.Module):
    """The book's conditional model interface
    (:class:`vaecourse.estimators.ConditionalLatentVariableModel`) for any subclass with
    ``recognition``, ``prior``, ``decode`` and ``nll``; x and the condition y as the networks
    see them."""

    def negative_elbo(self, x: Tensor, condition: Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
        """The one-sample conditional -ELBO per example (:func:`negative_elbo`)."""
        return negative_elbo(self, x, condition, generator)[0]

    def log_weights(self, x: Tensor, k: int, condition: Tensor,
                    generator: torch.Generator | None = None) -> Tensor:
        """k log-weights per example with q(z | x, y) as proposal, (B, k) (:func:`log_weights`)."""
        return log_weights(self, x, condition, k, generator=generator)


class CVAE(ConditionalVAE):
    """MLP conditional VAE with a Bernoulli decoder over ``x_dim`` pixels (chapter 8).

    ``learned_prior=False`` fixes p(z | y) = N(0, I) (the class-conditional model of the
    chapter); ``True`` learns a prior network (Sohn et al.). ``output_mask`` (x_dim,) selects
    the pixels the likelihood counts.
    """

    def __init__(self, x_dim: int, y_dim: int, latent: int = 20, hidden: int = 256,
                 learned_prior: bool = True, output_mask: Tensor | None = None, beta: float = 1.0):
        super().__init__()
        for name, value in (("x_dim", x_dim), ("y_dim", y_dim), ("latent", latent),
                            ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.latent, self.learned_prior, self.beta = latent, learned_prior, beta
        self.recognition_net = mlp([x_dim + y_dim, hidden, hidden, 2 * latent])
        self.prior_net = mlp([y_dim, hidden, hidden, 2 * latent]) if learned_prior else None
        self.decoder = mlp([latent + y_dim, hidden, hidden, x_dim])
        self.register_buffer("output_mask", None if output_mask is None
                             else output_mask.float().flatten())

    def recognition(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | x, y), each (B, latent)."""
        mu, logvar = self.recognition_net(torch.cat([x.flatten(1), y.flatten(1)], -1)).chunk(2, -1)
        return mu, logvar

    def prior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of p(z | y): the prior network, or N(0, I)."""
        if self.prior_net is None:
            zeros = y.new_zeros(len(y), self.latent)
            return zeros, zeros
        mu, logvar = self.prior_net(y.flatten(1)).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """Bernoulli logits of p(x | z, y); z (..., B, latent) broadcasts over leading dims."""
        y = y.flatten(1).expand(*z.shape[:-1], -1)
        return self.decoder(torch.cat([z, y], -1))

    def nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """``-log p(x | z, y)`` over the pixels of ``output_mask``, per example."""
        return masked_bernoulli_nll(logits, x.flatten(1), self.output_mask)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean ``-ELBO`` (with KL weight ``beta``) of a batch ``(x, y)``."""
        return cvae_loss(self, batch[0], batch[1], self.beta)


class BaselineNet(nn.Module):
    """Deterministic network y -> Bernoulli logits of x (Sohn et al.'s baseline)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256,
                 output_mask: Tensor | None = None):
        super().__init__()
        self.net = mlp([y_dim, hidden, hidden, x_dim])
        self.register_buffer("output_mask", None if output_mask is None
                             else output_mask.float().flatten())

    def forward(self, y: Tensor) -> Tensor:
        """The logits of p(x | y), (B, x_dim)."""
        return self.net(y.flatten(1))

    def nll(self, x: Tensor, y: Tensor) -> Tensor:
        """``-log p(x | y)`` per example (exact: the model has no latent)."""
        return masked_bernoulli_nll(self(y), x.flatten(1), self.output_mask)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean ``-log p(x | y)`` of a batch ``(x, y)``."""
        loss = self.nll(batch[0], batch[1]).mean()
        return loss, {"loss": loss.item()}


def negative_elbo(model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """One-sample ``-ELBO = -log p(x | z, y) + KL(q(z | x, y) || p(z | y))``, z ~ q(z | x, y).

    The conditional bound: the VAE's derivation with every density conditioned on y.
    Returns ``(-ELBO, reconstruction term, KL)``, each per example.
    """
    mu_q, logvar_q = model.recognition(x, y)
    mu_p, logvar_p = model.prior(y)
    z = gaussian.reparameterize(mu_q, logvar_q, generator=generator)
    recon = model.nll(model.decode(z, y), x)
    kl = gaussian.kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)
    return recon + kl, recon, kl


def cvae_loss(model: nn.Module, x: Tensor, y: Tensor, beta: float = 1.0
              ) -> tuple[Tensor, dict[str, float]]:
    """Batch mean of ``recon + beta * KL`` and its metrics (loss, elbo, reconstruction, kl)."""
    nelbo, recon, kl = negative_elbo(model, x, y)
    loss = (recon + beta * kl).mean()
    return loss, {"loss": loss.item(), "elbo": -nelbo.mean().item(),
                  "reconstruction": recon.mean().item(), "kl": kl.mean().item()}


def log_weights(model: nn.Module, x: Tensor, y: Tensor, k: int, proposal: str = "recognition",
                generator: torch.Generator | None = None) -> Tensor:
    """Log importance weights ``log p(x | z, y) + log p(z | y) - log r(z)``, shape (B, k).

    ``proposal="recognition"``: z ~ r = q(z | x, y); ``"prior"``: z ~ r = p(z | y), where the
    weight is just p(x | z, y) (naive Monte Carlo). Either way ``log_mean_exp`` of the weights
    estimates log p(x | y).
    """
    if proposal not in ("recognition", "prior"):
        raise ValueError(f"proposal must be 'recognition' or 'prior', got {proposal!r}")
    prior = model.prior(y)
    proposal_params = model.recognition(x, y) if proposal == "recognition" else prior
    return estimators.gaussian_log_weights(lambda z: -model.nll(model.decode(z, y), x), prior,
                                           proposal_params, k, generator)


@torch.no_grad()
def sample(model: nn.Module, y: Tensor, n: int, generator: torch.Generator | None = None
           ) -> Tensor:
    """Decoder outputs for n draws z ~ p(z | y) per condition: shape (n, B, ...)."""
    mu, logvar = model.prior(y)
    z = gaussian.reparameterize(mu, logvar, generator=generator, sample_shape=(n,))
    return model.decode(z, y)


# ---------------------------------------------------------------------------------------------
# Sohn et al.'s quadrant completion on MNIST
# ---------------------------------------------------------------------------------------------

QUADRANTS = {1: ((0, 0),), 2: ((0, 0), (1, 0)), 3: ((0, 0), (0, 1), (1, 0))}  # (row, column)


def given_mask(given: int, side: int = 28) -> Tensor:
    """A (side * side,) 0/1 mask of the given quadrants: 1 = top left, 2 = the left half,
    3 = all but the bottom right."""
    if given not in QUADRANTS:
        raise ValueError(f"given must be 1, 2 or 3 quadrants, got {given!r}")
    mask = torch.zeros(side, side)
    half = side // 2
    for r, c in QUADRANTS[given]:
        mask[r * half:(r + 1) * half, c * half:(c + 1) * half] = 1
    return mask.flatten()


def quadrant_task(x: Tensor, given: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, y, missing)`` for images x (N, 784): y shows the given quadrants (the rest 0) and
    ``missing`` is the mask of the pixels to complete (the likelihood's ``output_mask``)."""
    mask = given_mask(given).to(x)
    return x, x.flatten(1) * mask, 1 - mask
