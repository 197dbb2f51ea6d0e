"""Adversarial autoencoders: codes matched to a prior by a discriminator (chapter 13 (adversarial
autoencoders), Makhzani et al. 2016).

An AAE is an autoencoder whose aggregate posterior q(z) = E_x q(z|x) is pushed towards a prior
p(z) by a GAN on the codes instead of a KL: the prior only needs to be sampled, never evaluated.
Training alternates two phases on each batch:

* reconstruction: encoder and decoder minimize -log p(x | z), z = Enc(x)
  (:func:`reconstruction_loss`, a Bernoulli likelihood summed over pixels);
* regularization: the code discriminator D learns to tell prior samples z' ~ p(z) (label 1)
  from codes z ~ q(z|x) (label 0) (:func:`discriminator_phase_loss`, the minimax discriminator
  loss of :mod:`vaecourse.models.gan`), then the encoder learns to fool it
  (:func:`encoder_phase_loss`, the non-saturating generator loss -log D(z)).

:class:`AAE` holds the MLP encoder (deterministic, or Gaussian with the reparameterization trick)
and decoder; with ``n_classes > 0`` the decoder also reads the one-hot label (the supervised AAE:
the label carries the digit, the code the style). :class:`CodeDiscriminator` optionally reads a
one-hot label too, for the AAE that puts label information into the regularization: a labelled
code is matched to the prior component of its class (:func:`sample_mixture` with ``labels``).

Priors one can sample from, each sampler returning codes and the label of the component (or
segment) that produced them, or taking given labels:

* :func:`mixture_of_gaussians` (a ``torch.distributions.MixtureSameFamily`` with a density) and
  :func:`sample_mixture`: ten 2-D Gaussians whose means lie on a circle, each elongated along its
  radius (the petal shape of the paper's mixture prior);
* :func:`sample_swiss_roll`: points on a spiral. Without noise the distribution lives on a curve
  of the plane: it has no density in R^2, so a VAE's KL to it is undefined while an AAE can still
  match it. With ``noise > 0`` it has a density (a 1-D integral along the curve, not computed
  here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaecourse import gaussian
from vaecourse.models import gan
from vaecourse.models.cvae import mlp
from vaecourse.models.vae import reconstruction_nll

DATA_DIM = 28 * 28


def one_hot(y: Tensor, n_classes: int) -> Tensor:
    """The labels ``y`` (B,) as float one-hot rows (B, n_classes); bad labels are an error."""
    if y.dim() != 1 or y.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"labels must be an integer tensor of shape (B,), got {y.dtype} "
                         f"{tuple(y.shape)}")
    if len(y) and not (0 <= y.min() and y.max() < n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    return F.one_hot(y.long(), n_classes).float()


def with_label(h: Tensor, y: Tensor | None, n_classes: int) -> Tensor:
    """``h`` with the one-hot label appended when the network reads one (``n_classes > 0``)."""
    if n_classes == 0:
        if y is not None:
            raise ValueError("this network reads no label (n_classes=0), got labels")
        return h
    if y is None:
        raise ValueError(f"this network reads a label (n_classes={n_classes}), got none")
    if len(y) != len(h):
        raise ValueError(f"labels must have one row per example, {len(h)}, got {len(y)}")
    return torch.cat([h, one_hot(y, n_classes).to(h)], dim=-1)


class AAE(nn.Module):
    """MLP encoder x -> z (B, latent) and Bernoulli MLP decoder z (, y) -> logits (B, 784).

    ``gaussian=True`` makes the encoder output ``(mu, logvar)`` and the code a reparameterized
    sample; otherwise the code is deterministic. ``n_classes > 0`` feeds the one-hot label to the
    decoder (the supervised AAE).
    """

    def __init__(self, latent: int = 2, hidden: int = 512, gaussian: bool = False,
                 n_classes: int = 0, data_dim: int = DATA_DIM):
        super().__init__()
        gan.check_sizes(latent=latent, hidden=hidden, data_dim=data_dim)
        if not isinstance(n_classes, int) or n_classes < 0:
            raise ValueError(f"n_classes must be an int >= 0, got {n_classes!r}")
        self.latent, self.gaussian, self.n_classes = latent, gaussian, n_classes
        self.encoder = mlp([data_dim, hidden, hidden, (2 if gaussian else 1) * latent])
        self.decoder = mlp([latent + n_classes, hidden, hidden, data_dim])

    def encode(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The code z (B, latent) of the images x (B, 784) or (B, 1, 28, 28)."""
        h = self.encoder(x.flatten(1))
        if not self.gaussian:
            return h
        mu, logvar = h.chunk(2, dim=-1)
        return gaussian.reparameterize(mu, logvar, generator=generator)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Bernoulli logits (B, 784) of p(x | z) (or p(x | z, y) with labels)."""
        return self.decoder(with_label(z, y, self.n_classes))


class CodeDiscriminator(nn.Module):
    """MLP z (, y) -> logit (B,) telling prior samples (1) from codes (0) (chapter 13)."""

    def __init__(self, latent: int = 2, hidden: int = 512, n_classes: int = 0):
        super().__init__()
        gan.check_sizes(latent=latent, hidden=hidden)
        if not isinstance(n_classes, int) or n_classes < 0:
            raise ValueError(f"n_classes must be an int >= 0, got {n_classes!r}")
        self.n_classes = n_classes
        self.net = mlp([latent + n_classes, hidden, hidden, 1])

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The logits (B,)."""
        return self.net(with_label(z, y, self.n_classes)).squeeze(-1)


def reconstruction_loss(model: AAE, x: Tensor, y: Tensor | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """Reconstruction phase: mean_b -log p(x_b | Enc(x_b)), summed over the 784 pixels."""
    x = x.flatten(1)
    return reconstruction_nll(model.decode(model.encode(x, generator), y), x).mean()


def discriminator_phase_loss(discriminator: CodeDiscriminator, codes: Tensor,
                             prior_samples: Tensor, code_labels: Tensor | None = None,
                             prior_labels: Tensor | None = None) -> Tensor:
    """Regularization phase, discriminator step: -[mean log D(z') + mean log(1 - D(z))].

    z' are prior samples, z the encoder's codes, detached so that this loss trains only D.
    """
    return gan.discriminator_loss(discriminator(prior_samples, prior_labels),
                                  discriminator(codes.detach(), code_labels))


def encoder_phase_loss(discriminator: CodeDiscriminator, codes: Tensor,
                       code_labels: Tensor | None = None) -> Tensor:
    """Regularization phase, encoder step: -mean log D(z) (non-saturating) on the codes."""
    return gan.generator_loss_nonsaturating(discriminator(codes, code_labels))


def mixture_of_gaussians(n_components: int = 10, radius: float = 4.0, radial_std: float = 1.0,
                         tangential_std: float = 0.25) -> MixtureSameFamily:
    """Equal-weight mixture of 2-D Gaussians, component k centred at radius (cos a_k, sin a_k),
    a_k = 2 pi k / n_components, with standard deviation ``radial_std`` along its radius and
    ``tangential_std`` across it (isotropic when the two are equal).

    Component k has covariance R_k diag(radial_std^2, tangential_std^2) R_k^T, R_k the rotation
    by a_k; the scale_tril of each component is R_k diag(radial_std, tangential_std) made lower
    triangular by a Cholesky factorization.
    """
    gan.check_sizes(n_components=n_components)
    if not (radius >= 0 and radial_std > 0 and tangential_std > 0):
        raise ValueError(f"radius must be >= 0 and the stds > 0, got radius={radius}, "
                         f"radial_std={radial_std}, tangential_std={tangential_std}")
    angles = 2 * math.pi * torch.arange(n_components, dtype=torch.float64) / n_components
    cos, sin = torch.cos(angles), torch.sin(angles)
    rotations = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    scales = torch.diag(torch.tensor([radial_std, tangential_std], dtype=torch.float64))
    root = rotations @ scales
    covariance = root @ root.transpose(-1, -2)
    means = radius * torch.stack([cos, sin], -1)
    return MixtureSameFamily(
        Categorical(probs=torch.full((n_components,), 1.0 / n_components, dtype=torch.float64)),
        MultivariateNormal(means, scale_tril=torch.linalg.cholesky(covariance)),
    )


def draw_labels(n: int, labels: Tensor | None, n_classes: int,
                 generator: torch.Generator | None) -> Tensor:
    """The given labels (checked), or ``n`` labels drawn uniformly from 0..n_classes-1."""
    if labels is None:
        gan.check_sizes(n=n)
        return torch.randint(n_classes, (n,), generator=generator)
    one_hot(labels, n_classes)  # checks dtype, shape and range
    return labels.long()


def sample_mixture(prior: MixtureSameFamily, n: int, labels: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` samples (n, 2) of :func:`mixture_of_gaussians` and their components (n,).

    The component is drawn from the mixture weights, or given by ``labels`` (then ``n`` is
    ignored); z = mean_k + L_k eps, eps ~ N(0, I), with the component's scale_tril L_k. Samples
    are float32 (the dtype of the networks); the distribution itself is float64.
    """
    components = prior.component_distribution
    weights = prior.mixture_distribution.probs
    if labels is None:
        gan.check_sizes(n=n)
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
    else:
        k = draw_labels(n, labels, len(weights), generator)
    eps = torch.randn(len(k), 2, generator=generator, dtype=torch.float64)
    z = components.loc[k] + (components.scale_tril[k] @ eps.unsqueeze(-1)).squeeze(-1)
    return z.float(), k


def sample_swiss_roll(n: int, labels: Tensor | None = None, n_classes: int = 10,
                      turns: float = 1.5, scale: float = 4.0, noise: float = 0.0,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` points (n, 2) of a swiss roll and the segment (n,) of the roll each lies in.

    The roll is the spiral c(t) = scale * t * (cos 2 pi turns t, sin 2 pi turns t), t in [0, 1);
    segment k (0..n_classes-1) is t in [k / n_classes, (k + 1) / n_classes). A point is c(t),
    t = (k + u) / n_classes, u ~ U(0, 1), with k uniform or given by ``labels`` (then ``n`` is
    ignored), plus Gaussian noise of standard deviation ``noise`` in each coordinate. With
    ``noise=0`` the support is the curve itself (no density in R^2; see the module docstring).
    """
    gan.check_sizes(n_classes=n_classes)
    if not (turns > 0 and scale > 0 and noise >= 0):
        raise ValueError(f"turns and scale must be > 0 and noise >= 0, got turns={turns}, "
                         f"scale={scale}, noise={noise}")
    k = draw_labels(n, labels, n_classes, generator)
    t = (k + torch.rand(len(k), generator=generator, dtype=torch.float64)) / n_classes
    angle = 2 * math.pi * turns * t
    z = scale * t.unsqueeze(-1) * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    if noise > 0:
        z = z + noise * torch.randn(z.shape, generator=generator, dtype=torch.float64)
    return z.float(), k


PRIORS = ("mixture", "swiss_roll")  # the 2-D priors of chapter 13's adversarial autoencoders
CLASSES = 10


def check_prior(prior: str) -> None:
    """Raise ValueError unless ``prior`` is one of :data:`PRIORS`."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")


def sample_prior(prior: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` codes (n, 2) of a prior of :data:`PRIORS` (:func:`mixture_of_gaussians` or
    :func:`sample_swiss_roll`, each with its defaults)."""
    check_prior(prior)
    if prior == "mixture":
        return sample_mixture(mixture_of_gaussians(), n, generator=generator)[0]
    return sample_swiss_roll(n, generator=generator)[0]


class AdversarialAutoencoder(nn.Module):
    """An :class:`AAE` with a 2-D code, its :class:`CodeDiscriminator` and a prior of
    :data:`PRIORS`, trained in the fit loop by three :class:`vaecourse.train.Step` s per batch:
    :meth:`reconstruction_step` (encoder and decoder), then the regularization phase,
    :meth:`discriminator_step` (D) and :meth:`encoder_step` (the encoder).

    ``supervised=True`` feeds the one-hot label to the decoder (batches are (images, labels)):
    the label carries the digit and the code the style.
    """

    def __init__(self, prior: str = "mixture", hidden: int = 512, supervised: bool = False):
        super().__init__()
        check_prior(prior)
        self.prior, self.supervised = prior, supervised
        self.autoencoder = AAE(latent=2, hidden=hidden, n_classes=CLASSES if supervised else 0)
        self.discriminator = CodeDiscriminator(latent=2, hidden=hidden)

    def images_and_labels(self, batch: Tensor | tuple | list) -> tuple[Tensor, Tensor | None]:
        """The images (B, 784) of a batch and, for the supervised AAE, its labels."""
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).flatten(1)
        if not self.supervised:
            return x, None
        if not isinstance(batch, (tuple, list)):
            raise ValueError("the supervised AAE needs batches of (images, labels), got images")
        return x, batch[1]

    def reconstruction_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction phase: -log p(x | Enc(x)) (and the label), batch mean."""
        loss = reconstruction_loss(self.autoencoder, *self.images_and_labels(batch))
        return loss, {"loss": loss.item()}

    def discriminator_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """Regularization phase, D: prior samples (1) against the batch's codes (0)."""
        codes = self.autoencoder.encode(self.images_and_labels(batch)[0])
        prior = sample_prior(self.prior, len(codes)).to(codes)
        loss = discriminator_phase_loss(self.discriminator, codes, prior)
        with torch.no_grad():
            d_prior, d_codes = (torch.sigmoid(self.discriminator(z)).mean().item()
                                for z in (prior, codes))
        return loss, {"loss": loss.item(), "d_prior": d_prior, "d_codes": d_codes}

    def encoder_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """Regularization phase, encoder: -mean log D(Enc(x)) (non-saturating)."""
        loss = encoder_phase_loss(self.discriminator,
                                  self.autoencoder.encode(self.images_and_labels(batch)[0]))
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: Tensor | None = None) -> Tensor:
        """``n`` images (n, 784): the decoder's Bernoulli means at prior codes drawn with
        ``generator``; the supervised AAE decodes them with ``labels`` (n,) (None: drawn
        uniformly)."""
        weight = next(self.parameters())
        z = sample_prior(self.prior, n, generator).to(weight)
        y = None
        if self.supervised:
            y = draw_labels(n, labels, CLASSES, generator).to(weight.device)
        elif labels is not None:
            raise ValueError("this AAE reads no label (supervised=False), got labels")
        return torch.sigmoid(self.autoencoder.decode(z, y))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's Bernoulli means at the codes of ``x`` (B, 784) (with labels)."""
        return torch.sigmoid(self.autoencoder.decode(self.autoencoder.encode(x.flatten(1)), y))
