"""The variational autoencoder on MNIST (chapters 6 and 7).

Two networks with the same interface, ``encode(x) -> (mu, logvar)`` and ``decode(z) -> logits``
(and the book's model interface, :class:`vaecourse.estimators.LatentVariableModel`):
an MLP (:class:`VAE`) and a convolutional one (:class:`ConvVAE`, the gpu preset's). Images are
flattened to 784 binary pixels; the decoder is a product of Bernoulli distributions with logits.

The losses are functions of a model and a batch, and call :mod:`vaecourse.gaussian` and
:mod:`vaecourse.estimators` for the KL, the reparameterization and the log-mean-exp:

* :func:`negative_elbo`: ``-log p(x|z) + KL(q(z|x) || p(z))`` with one sample, per example;
* :func:`vae_loss`: its batch mean, with a KL weight ``beta`` and free bits;
* :func:`log_weights` and :func:`iwae_loss`: the importance weights and the IWAE bound.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecourse import estimators, gaussian

OBJECTIVES = ("vae", "iwae")  # what VAE.loss optimizes: the ELBO or the IWAE bound
IMAGE_SHAPE = (1, 28, 28)
DATA_DIM = 28 * 28


class VAE(nn.Module):
    """MLP encoder ``x -> (mu, logvar)`` and Bernoulli MLP decoder ``z -> logits`` (chapter 6).

    ``objective`` (``"vae"`` or ``"iwae"``), ``k``, ``beta`` and ``free_bits`` choose what
    :meth:`loss` optimizes; the training loop only calls :meth:`loss`.
    """

    def __init__(self, latent: int = 20, hidden: int = 256, data_dim: int = DATA_DIM,
                 objective: str = "vae", k: int = 1, beta: float = 1.0, free_bits: float = 0.0):
        super().__init__()
        check_objective(objective, k, beta, free_bits)
        self.latent, self.objective, self.k = latent, objective, k
        self.beta, self.free_bits, self.data_dim = beta, free_bits, data_dim
        self.encoder = nn.Sequential(
            nn.Linear(data_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, data_dim),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The parameters ``(mu, logvar)`` of q(z|x), each of shape (B, latent)."""
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """The Bernoulli logits of p(x|z), shape (..., 784)."""
        return self.decoder(z)

    def sample_means(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The Bernoulli means sigmoid(decode(z)) of ``n`` codes z ~ N(0, I) drawn with
        ``generator`` (a CPU generator works), (n, 784): the samples that
        :func:`vaecourse.recipes.vae_quality` measures."""
        weight = next(self.parameters())
        z = torch.randn(n, self.latent, generator=generator, dtype=weight.dtype)
        return torch.sigmoid(self.decode(z.to(weight.device)))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The Bernoulli means at the mean of q(z|x), (B, 784): the encoder's map back to z,
        then the decoder (the reconstructions of :func:`vaecourse.recipes.vae_quality`)."""
        return torch.sigmoid(self.decode(self.encode(x)[0]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, sample z with the reparameterization trick, decode: ``(logits, mu, logvar)``."""
        mu, logvar = self.encode(x)
        return self.decode(gaussian.reparameterize(mu, logvar)), mu, logvar

    def negative_elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The one-sample -ELBO per image (the first value of :func:`negative_elbo`)."""
        return negative_elbo(self, x, generator)[0]

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None
                    ) -> Tensor:
        """k importance log-weights per image, (B, k) (:func:`log_weights`)."""
        return log_weights(self, x, k, generator)

    def loss(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """The training loss of a batch (images, or ``(images, labels)``) and its metrics."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if self.objective == "iwae":
            return iwae_loss(self, x, self.k)
        return vae_loss(self, x, beta=self.beta, free_bits=self.free_bits)


class ConvVAE(VAE):
    """Convolutional encoder and decoder with the interface of :class:`VAE` (chapter 6).

    The architecture of the lectures, after DCGAN: strided 4x4 convolutions (transposed in the
    decoder) with batch normalization and ReLU, and one fully connected layer of ``hidden`` units
    between the feature maps and the code. In eval mode, batch normalization uses the running
    statistics of training, so an image's code does not depend on the rest of its batch.
    """

    def __init__(self, latent: int = 20, hidden: int = 512, objective: str = "vae", k: int = 1,
                 beta: float = 1.0, free_bits: float = 0.0):
        super().__init__(latent, hidden, DATA_DIM, objective, k, beta, free_bits)
        self.encoder = nn.Sequential(  # 1x28x28 -> 32x14x14 -> 64x7x7 -> hidden -> 2 * latent
            nn.Unflatten(1, IMAGE_SHAPE),
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent),
        )
        self.decoder = nn.Sequential(  # latent -> hidden -> 64x7x7 -> 32x14x14 -> 1x28x28
            nn.Linear(latent, hidden), nn.ReLU(),
            nn.Linear(hidden, 64 * 7 * 7), nn.Unflatten(1, (64, 7, 7)), nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1), nn.Flatten(),
        )

    def decode(self, z: Tensor) -> Tensor:
        """The Bernoulli logits of p(x|z), shape (..., 784); leading dims are flattened for conv."""
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], DATA_DIM)


def check_objective(objective: str, k: int, beta: float, free_bits: float) -> None:
    """Raise ValueError for an unknown objective, k < 1, a negative beta or negative free bits."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if objective == "vae" and k != 1:
        raise ValueError(f"k={k} needs objective 'iwae' (a VAE uses one sample), got 'vae'")
    if beta < 0 or free_bits < 0:
        raise ValueError(f"beta and free_bits must be >= 0, got beta={beta}, free_bits={free_bits}")


def pixels(model: nn.Module) -> int:
    """The pixels per image of ``model``: its ``data_dim``, else MNIST's 784 (a model written
    with the VAE's interface only, such as a problem set's, need not say)."""
    return getattr(model, "data_dim", DATA_DIM)


def check_binary_images(x: Tensor, data_dim: int = DATA_DIM) -> Tensor:
    """Flatten ``x`` to (B, data_dim) (MNIST: 784) and check that it holds binary pixels (a
    Bernoulli likelihood)."""
    x = x.flatten(1)
    if x.shape[1] != data_dim:
        shown = "28x28 images" if data_dim == DATA_DIM else f"images of {data_dim} pixels"
        raise ValueError(f"x must hold {shown}, got shape {tuple(x.shape)}")
    if not torch.all((x == 0) | (x == 1)):
        raise ValueError("x must be binarized (pixels 0 or 1) for a Bernoulli likelihood")
    return x


def reconstruction_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-log p(x|z) = -sum_i [x_i log s(l_i) + (1 - x_i) log(1 - s(l_i))]``, summed over pixels.

    ``logits`` and ``x`` broadcast (e.g. logits of shape (K, B, 784) against x of shape (B, 784)).
    """
    logits, x = torch.broadcast_tensors(logits, x)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def negative_elbo(model: VAE, x: Tensor, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """One-sample ``-ELBO = -log p(x|z) + KL(q(z|x) || p(z))``, z ~ q(z|x), per example.

    Returns ``(-ELBO, reconstruction term, KL per latent dimension of shape (B, D))``.
    """
    x = check_binary_images(x, pixels(model))
    mu, logvar = model.encode(x)
    z = gaussian.reparameterize(mu, logvar, generator=generator)
    recon = reconstruction_nll(model.decode(z), x)
    kl_per_dim = gaussian.kl_std_normal(mu.unsqueeze(-1), logvar.unsqueeze(-1))  # (B, D)
    return recon + kl_per_dim.sum(-1), recon, kl_per_dim


def vae_loss(model: VAE, x: Tensor, beta: float = 1.0, free_bits: float = 0.0,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """``mean_b[-log p(x_b|z_b)] + beta * sum_j max(free_bits, mean_b KL_bj)`` and its metrics.

    With ``beta = 1`` and ``free_bits = 0`` this is the batch mean of :func:`negative_elbo`.
    Free bits (Kingma et al. 2016) stop pushing a latent's batch-mean KL below ``free_bits`` nats.
    """
    nelbo, recon, kl_per_dim = negative_elbo(model, x, generator)
    kl_term = kl_per_dim.mean(0).clamp(min=free_bits).sum()
    loss = recon.mean() + beta * kl_term
    metrics = {"loss": loss.item(), "elbo": -nelbo.mean().item(),
               "reconstruction": recon.mean().item(), "kl": kl_per_dim.sum(-1).mean().item()}
    return loss, metrics


def log_weights(model: VAE, x: Tensor, k: int, generator: torch.Generator | None = None
                ) -> Tensor:
    """``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``, z_k ~ q(z|x): shape (B, k).

    Samples in the last dimension, the convention of :mod:`vaecourse.estimators`.
    """
    x = check_binary_images(x, pixels(model))
    mu, logvar = model.encode(x)
    zeros = torch.zeros_like(mu)
    return estimators.gaussian_log_weights(lambda z: -reconstruction_nll(model.decode(z), x),
                                           (zeros, zeros), (mu, logvar), k, generator)


def iwae_loss(model: VAE, x: Tensor, k: int, generator: torch.Generator | None = None
              ) -> tuple[Tensor, dict[str, float]]:
    """The negative IWAE bound ``-mean_b L_k(x_b)``, ``L_k = log mean_k w_k`` (Burda et al.)."""
    log_w = log_weights(model, x, k, generator)
    bound = estimators.iwae_bound(log_w, k)
    loss = -bound.mean()
    metrics = {"loss": loss.item(), "iwae_bound": bound.mean().item(),
               "elbo": estimators.elbo(log_w).mean().item()}
    return loss, metrics
