"""VAE/GAN: a VAE whose reconstruction is measured in a discriminator's feature space
(chapter 12 (learned similarity), Larsen et al. 2016).

Three networks: an :class:`Encoder` x -> (mu, logvar) of q(z|x), a decoder that is also the GAN's
generator (:class:`vaecourse.models.gan.Generator`) and a discriminator
(:class:`vaecourse.models.gan.Discriminator`) whose l-th block Dis_l(x) is the feature space.
For a batch x, with z ~ q(z|x) (reparameterized), x~ = Dec(z) and x_p = Dec(z_p), z_p ~ N(0, I),
the loss pieces are, per example:

* L_prior = KL(q(z|x) || N(0, I))                                                 (prior)
* L_llike^Dis_l = -log N(Dis_l(x); Dis_l(x~), I)                (feature likelihood)
  a Gaussian with unit variance on the features replaces the pixel likelihood;
* L_GAN = -[log D(x) + log(1 - D(x~)) + log(1 - D(x_p))]                     (GAN loss)
  the discriminator's cross-entropy on data, reconstructions and prior samples.

Larsen et al.'s Algorithm 1 updates each network on its own loss (batch means), here written
with L_GAN as the cross-entropy above, so that every network minimizes:

* encoder: L_prior + L_llike^Dis_l;
* decoder: gamma * L_llike^Dis_l - L_GAN, where -L_GAN's decoder-dependent part
  log(1 - D(x~)) + log(1 - D(x_p)) is the saturating generator loss; ``saturating=False``
  (the default) replaces it by the non-saturating -log D(x~) - log D(x_p);
* discriminator: L_GAN.

The discriminator is not trained on L_llike, and no network's gradient of another's loss is
applied: :func:`vaegan_losses` computes the three losses from one forward pass, and each must be
differentiated with respect to its own network's parameters only (e.g. with
``torch.autograd.grad(losses.encoder, encoder.parameters(), retain_graph=True)``).
VAE_Dis (a GAN trained first, its discriminator then frozen as the similarity, its generator the
decoder's starting point) trains encoder and decoder on the encoder's loss, L_prior + L_llike^Dis_l.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecourse import gaussian
from vaecourse.models import gan


class Encoder(nn.Module):
    """Convolutional encoder images -> ``(mu, logvar)`` of q(z|x), each (B, latent) (chapter 12).

    The discriminator's two strided-convolution blocks (1x28x28 -> w x 14 x 14 -> 2w x 7 x 7)
    followed by one linear layer to 2 * latent numbers.
    """

    def __init__(self, latent: int = 64, width: int = 64):
        super().__init__()
        gan.check_sizes(latent=latent, width=width)
        self.latent = latent
        self.blocks = gan.downsampling_blocks(width)
        self.head = nn.Linear(2 * width * 7 * 7, 2 * latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)``, each of shape (B, latent)."""
        h = gan.as_images(x)
        for block in self.blocks:
            h = block(h)
        mu, logvar = self.head(h.flatten(1)).chunk(2, dim=-1)
        return mu, logvar


def prior_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """L_prior = KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, shape (B,)."""
    return gaussian.kl_std_normal(mu, logvar)


def feature_nll(features_x: Tensor, features_recon: Tensor) -> Tensor:
    """L_llike^Dis_l = -log N(Dis_l(x); Dis_l(x~), I), summed over features: shape (B,).

    Up to the constant F/2 log 2 pi this is half the squared feature distance.
    """
    return -gaussian.log_normal_diag(features_x, features_recon, torch.zeros_like(features_recon))


def gan_loss(real_logits: Tensor, recon_logits: Tensor, prior_logits: Tensor) -> Tensor:
    """L_GAN = -[log D(x) + log(1 - D(x~)) + log(1 - D(x_p))] per example, shape (B,)."""
    for name, t in (("real_logits", real_logits), ("recon_logits", recon_logits),
                    ("prior_logits", prior_logits)):
        gan.check_logits(name, t)
    return -(F.logsigmoid(real_logits) + F.logsigmoid(-recon_logits)
             + F.logsigmoid(-prior_logits))


def decoder_gan_term(recon_logits: Tensor, prior_logits: Tensor, saturating: bool) -> Tensor:
    """The decoder's adversarial term per example: the part of -L_GAN that depends on the decoder,
    log(1 - D(x~)) + log(1 - D(x_p)) (saturating), or -log D(x~) - log D(x_p) (non-saturating)."""
    if saturating:
        return F.logsigmoid(-recon_logits) + F.logsigmoid(-prior_logits)
    return -(F.logsigmoid(recon_logits) + F.logsigmoid(prior_logits))


@dataclass
class VAEGANLosses:
    """The three per-network losses (batch means, scalars) and their float metrics."""

    encoder: Tensor
    decoder: Tensor
    discriminator: Tensor
    metrics: dict[str, float]


def vaegan_losses(encoder: Encoder, decoder: gan.Generator, discriminator: gan.Discriminator,
                  x: Tensor, *, gamma: float, layer: int = 2, saturating: bool = False,
                  generator: torch.Generator | None = None) -> VAEGANLosses:
    """The losses of encoder, decoder and discriminator on a batch ``x`` (B, 784) or
    (B, 1, 28, 28) (Larsen et al.'s Algorithm 1, see the module docstring).

    ``gamma`` weights the feature likelihood against the adversarial term in the decoder's
    loss; ``layer`` is the discriminator block of the features; ``generator`` draws the noise
    of z ~ q(z|x) and of z_p ~ N(0, I). The decoder's loss leaves out the term log D(x) of
    -L_GAN, which does not depend on the decoder.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    x = gan.as_images(x)
    mu, logvar = encoder(x)
    z = gaussian.reparameterize(mu, logvar, generator=generator)
    z_p = gaussian.reparameterize(torch.zeros_like(mu), torch.zeros_like(logvar),
                                  generator=generator)
    real_logits, features_x = discriminator.logits_and_features(x, layer)
    recon_logits, features_recon = discriminator.logits_and_features(decoder(z), layer)
    prior_logits = discriminator(decoder(z_p))
    l_prior = prior_loss(mu, logvar).mean()
    l_llike = feature_nll(features_x, features_recon).mean()
    l_gan = gan_loss(real_logits, recon_logits, prior_logits).mean()
    adversarial = decoder_gan_term(recon_logits, prior_logits, saturating).mean()
    metrics = {"prior": l_prior.item(), "llike": l_llike.item(), "gan": l_gan.item(),
               "d_real": torch.sigmoid(real_logits).mean().item(),
               "d_recon": torch.sigmoid(recon_logits).mean().item(),
               "d_prior": torch.sigmoid(prior_logits).mean().item()}
    return VAEGANLosses(encoder=l_prior + l_llike, decoder=gamma * l_llike + adversarial,
                        discriminator=l_gan, metrics=metrics)


class VAEGAN(nn.Module):
    """Encoder, decoder (a :class:`~vaecourse.models.gan.Generator`) and discriminator of a
    VAE/GAN, each trained on its own loss of :func:`vaegan_losses` (chapter 12).

    Each of :meth:`encoder_step`, :meth:`decoder_step` and :meth:`discriminator_step` is one
    :class:`vaecourse.train.Step` of the fit loop, with an optimizer over that network's
    parameters only (so the gradient a loss leaves on the other networks is never applied).
    ``frozen_discriminator=True`` is VAE_Dis: the discriminator (and the decoder's starting
    weights) come from a GAN trained first (:meth:`from_gan`); the discriminator stays in eval
    mode, and one step trains encoder and decoder together on the encoder's loss
    (:meth:`encoder_step`).
    """

    def __init__(self, latent: int = 64, width: int = 64, gamma: float = 1.0, layer: int = 2,
                 frozen_discriminator: bool = False):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.layer, self.frozen_discriminator = gamma, layer, frozen_discriminator
        self.encoder = Encoder(latent, width)
        self.decoder = gan.Generator(latent, width)
        self.discriminator = gan.Discriminator(width)
        gan.check_layer(layer, len(self.discriminator.blocks))

    @classmethod
    def from_gan(cls, trained: gan.GAN, gamma: float = 1.0, layer: int = 2) -> VAEGAN:
        """VAE_Dis: a fresh encoder, a decoder that starts as a copy of ``trained``'s generator,
        and ``trained``'s discriminator, frozen.

        The frozen discriminator was trained on data and on the generator's samples only; a
        decoder started from random weights would begin far from both, where its features were
        never asked to tell anything apart.
        """
        g = trained.generator
        model = cls(g.latent, g.width, gamma, layer, frozen_discriminator=True)
        model.decoder.load_state_dict(g.state_dict())
        model.discriminator.load_state_dict(trained.discriminator.state_dict())
        model.discriminator.requires_grad_(False)
        return model.train(False)

    def train(self, mode: bool = True) -> VAEGAN:
        """Train or eval mode, keeping a frozen discriminator in eval mode (its batch norm uses
        the GAN's statistics)."""
        super().train(mode)
        if self.frozen_discriminator:
            self.discriminator.eval()
        return self

    def losses(self, batch: Tensor | tuple | list) -> VAEGANLosses:
        """:func:`vaegan_losses` of a batch (images, or ``(images, labels)``)."""
        return vaegan_losses(self.encoder, self.decoder, self.discriminator,
                             gan.real_images(batch), gamma=self.gamma, layer=self.layer)

    def encoder_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """L_prior + L_llike^Dis_l and every loss piece's metric."""
        losses = self.losses(batch)
        return losses.encoder, {"loss": losses.encoder.item(), **losses.metrics}

    def decoder_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """gamma L_llike^Dis_l plus the (non-saturating) adversarial term."""
        losses = self.losses(batch)
        return losses.decoder, {"loss": losses.decoder.item()}

    def discriminator_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """L_GAN on data, reconstructions and prior samples: the discriminator's loss of
        :func:`vaegan_losses`, with the reconstructions and samples computed without gradients
        (its gradient for the discriminator is the same; no backward pass through the encoder
        and decoder)."""
        x = gan.real_images(batch)
        with torch.no_grad():
            mu, logvar = self.encoder(x)
            recon = self.decoder(gaussian.reparameterize(mu, logvar))
            prior = self.decoder.sample(len(x))
        loss = gan_loss(self.discriminator(x), self.discriminator(recon),
                        self.discriminator(prior)).mean()
        return loss, {"loss": loss.item()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` prior samples x_p = Dec(z_p) (:meth:`vaecourse.models.gan.Generator.sample`)."""
        return self.decoder.sample(n, generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Dec(mu(x)): the decoder's image at the mean code, (B, 1, 28, 28)."""
        mu, _ = self.encoder(gan.as_images(x))
        return self.decoder(mu)
