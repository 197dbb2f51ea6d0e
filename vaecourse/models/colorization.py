"""Colorization networks of chapter 9: regressor, CVAE, and Deshpande et al.'s VAE + MDN.

Every model maps the grey image ``L`` (N, 1, H, W) in Lab units to colour ``ab`` (N, 2, H, W)
in Lab units, through ``colorize(L, n) -> (N, n, 2, H, W)``: n colourings per image.
Inside, the networks see ``L / 50 - 1`` and predict ``ab / AB_SCALE``.

* :class:`Regressor`: a deterministic network trained with L2; it predicts the conditional
  mean of ab, which averages the possible colours into grey.
* :class:`ColorCVAE`: a conditional VAE (chapter 8, :mod:`vaecourse.models.cvae`) with
  recognition network q(z | ab, L), prior network p(z | L) and a Gaussian decoder p(ab | z, L).
* Deshpande et al. 2017: :class:`ColorVAE` embeds ab fields in z with the decoder loss
  L_hist + λ_mah L_mah + λ_grad L_grad (:func:`hist_loss`, :func:`mahalanobis_loss`,
  :func:`grad_loss`) and an annealed KL weight; :class:`MDN` fits a mixture of 8 Gaussians
  with fixed σ = 0.1 to p(z | L); :class:`DiverseColorizer` decodes the mixture's means.
  Our decoder also sees the grey image, so z only has to carry what L cannot tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
from torch.utils.data import DataLoader, TensorDataset

from vaecourse import config, gaussian
from vaecourse.data import colorization as color_data
from vaecourse.models import cvae

AB_SCALE = 100.0  # ab / AB_SCALE is what the networks predict (|ab| <= ~110 in sRGB)
DECODER_TERMS = ("hist", "mah", "grad")  # the terms of the ColorVAE's decoder loss


def grey_input(L: Tensor) -> Tensor:
    """The network input ``L / 50 - 1`` in [-1, 1]."""
    return L / 50.0 - 1.0


def conv(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1) and ReLU."""
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, stride, 1), nn.ReLU())


class Backbone(nn.Module):
    """A small U-Net: the image (and a code z, tiled at 1/4 resolution) to 2 ab channels.

    ``in_channels`` x H x W -> width (H/2) -> 2 width (H/4) [+ z] -> width (H/2) -> width (H),
    with skip connections; the last 3x3 convolution sees the input image again, so that
    colour edges can follow the grey image's edges.
    """

    def __init__(self, in_channels: int = 1, z_dim: int = 0, width: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.down1 = conv(in_channels, width, stride=2)
        self.down2 = conv(width, 2 * width, stride=2)
        self.middle = nn.Sequential(conv(2 * width + z_dim, 2 * width), conv(2 * width, 2 * width))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU())
        self.merge2 = conv(2 * width, width)
        self.up1 = nn.Sequential(nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU())
        self.out = nn.Conv2d(width + in_channels, 2, 3, 1, 1)

    def forward(self, image: Tensor, z: Tensor | None = None) -> Tensor:
        """ab / AB_SCALE of shape (B, 2, H, W) (H, W multiples of 4); z of shape (B, z_dim)."""
        if self.z_dim and (z is None or z.shape != (len(image), self.z_dim)):
            given = None if z is None else tuple(z.shape)
            raise ValueError(f"z must have shape (B, z_dim) = {(len(image), self.z_dim)} for a "
                             f"Backbone with z_dim={self.z_dim}, got {given}")
        e1 = self.down1(image)
        h = self.down2(e1)
        if self.z_dim:
            h = torch.cat([h, z[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)
        h = self.middle(h)
        h = self.merge2(torch.cat([self.up2(h), e1], dim=1))
        return self.out(torch.cat([self.up1(h), image], dim=1))


class ConvEncoder(nn.Module):
    """Strided convolutions, global average pooling and a linear layer: image -> vector."""

    def __init__(self, in_channels: int, out_dim: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            conv(in_channels, width, 2), conv(width, 2 * width, 2), conv(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, out_dim),
        )

    def forward(self, image: Tensor) -> Tensor:
        """A (B, out_dim) vector."""
        return self.net(image)


def check_batch(L: Tensor) -> None:
    """Raise ValueError unless L is (N, 1, H, W) with H and W multiples of 4."""
    if L.dim() != 4 or L.shape[1] != 1 or L.shape[2] % 4 or L.shape[3] % 4:
        raise ValueError(f"L must have shape (N, 1, H, W) with H, W multiples of 4, "
                         f"got {tuple(L.shape)}")


def repeat(ab: Tensor, n: int) -> Tensor:
    """(N, 2, H, W) -> (N, n, 2, H, W): n copies of a deterministic prediction."""
    return ab.unsqueeze(1).expand(-1, n, -1, -1, -1)


class Regressor(nn.Module):
    """Deterministic L2 regressor: the grey image to the conditional mean of ab."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = Backbone(1, 0, width)

    def predict(self, L: Tensor) -> Tensor:
        """ab in Lab units, (N, 2, H, W)."""
        check_batch(L)
        return self.net(grey_input(L)) * AB_SCALE

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean squared error in ab / AB_SCALE, summed over pixels, averaged over images."""
        L, ab = batch
        loss = (self.net(grey_input(L)) - ab / AB_SCALE).pow(2).sum((1, 2, 3)).mean()
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def colorize(self, L: Tensor, n: int) -> Tensor:
        """n (identical) colourings per image: (N, n, 2, H, W)."""
        return repeat(self.predict(L), n)


class ColorCVAE(cvae.ConditionalVAE):
    """CVAE for colour: q(z | ab, L), p(z | L) learned, p(ab | z, L) Gaussian with fixed σ.

    Implements the interface of :mod:`vaecourse.models.cvae` with x = ab / AB_SCALE and
    y = the grey input; σ is in units of ab / AB_SCALE.
    """

    def __init__(self, latent: int = 16, width: int = 32, sigma: float = 0.1, beta: float = 1.0):
        super().__init__()
        self.latent, self.sigma, self.beta = latent, sigma, beta
        self.recognition_net = ConvEncoder(3, 2 * latent, width)
        self.prior_net = ConvEncoder(1, 2 * latent, width)
        self.decoder = Backbone(1, latent, width)

    def recognition(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | ab, L)."""
        mu, logvar = self.recognition_net(torch.cat([y, x], dim=1)).chunk(2, -1)
        return mu, logvar

    def prior(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of the prior network p(z | L)."""
        mu, logvar = self.prior_net(y).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """Mean of p(ab | z, L); z of shape (..., B, latent) gives (..., B, 2, H, W)."""
        lead = z.shape[:-1]
        y = y.expand(*lead[:-1], *y.shape).reshape(-1, *y.shape[1:])
        return self.decoder(y, z.reshape(-1, self.latent)).reshape(*lead, 2, *y.shape[2:])

    def nll(self, mean: Tensor, x: Tensor) -> Tensor:
        """``-log N(x; mean, σ² I)`` summed over channels and pixels."""
        mean, x = mean.flatten(-3), x.flatten(-3)
        logvar = torch.full(mean.shape[-1:], 2 * math.log(self.sigma), device=mean.device)
        return -gaussian.log_normal_diag(x, mean, logvar)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean ``-ELBO`` of a batch ``(L, ab)`` (:func:`vaecourse.models.cvae.cvae_loss`)."""
        L, ab = batch
        return cvae.cvae_loss(self, ab / AB_SCALE, grey_input(L), self.beta)

    @torch.no_grad()
    def colorize(self, L: Tensor, n: int) -> Tensor:
        """n colourings per image with z ~ p(z | L): (N, n, 2, H, W)."""
        check_batch(L)
        return cvae.sample(self, grey_input(L), n).movedim(0, 1) * AB_SCALE


# ---------------------------------------------------------------------------------------------
# Deshpande et al. 2017: the decoder losses, the VAE on ab fields, the MDN
# ---------------------------------------------------------------------------------------------


@dataclass
class ColorStatistics:
    """Training-set statistics the decoder losses need (ab in units of AB_SCALE)."""

    bin_weights: Tensor  # (bins * bins,) inverse-frequency weight of each ab bin
    bins: int
    components: Tensor  # (k, 2 * H * W) top principal directions of the ab fields
    eigenvalues: Tensor  # (k,) their variances
    mean: Tensor  # (2 * H * W,) the mean ab field


def ab_bin(ab: Tensor, bins: int) -> Tensor:
    """Index of the square ab bin (of ``bins`` x ``bins`` over [-1.1, 1.1]²) of each pixel."""
    idx = ((ab.clamp(-1.1, 1.0999) + 1.1) / 2.2 * bins).long()
    return idx[:, 0] * bins + idx[:, 1]


def color_statistics(ab: Tensor, bins: int = 16, k: int = 20, mix: float = 0.5
                     ) -> ColorStatistics:
    """Bin weights ``w ∝ 1 / ((1 - mix) p + mix / Q)`` with E_p[w] = 1 and the top-k PCA.

    p is the frequency of each ab bin over the training pixels and Q the number of bins that
    occur (Zhang et al.'s rebalancing, used for L_hist); the PCA of the flattened ab fields
    gives L_mah its directions and variances: the exact eigendecomposition
    (``torch.linalg.eigh``) of their covariance matrix, in float64. Directions with a variance
    below ``1e-6`` of the largest are dropped: a set of flat or few fields spans fewer than k,
    and dividing by a zero variance would make L_mah infinite.
    """
    if ab.dim() != 4 or ab.shape[1] != 2 or len(ab) < 2:
        raise ValueError(f"ab must have shape (N >= 2, 2, H, W), got {tuple(ab.shape)}")
    counts = torch.bincount(ab_bin(ab, bins).flatten(), minlength=bins * bins).double()
    p = counts / counts.sum()
    w = 1.0 / ((1 - mix) * p + mix / (counts > 0).sum())
    w = w / (p * w).sum()
    flat = ab.flatten(1).double()
    mean = flat.mean(0)
    eigenvalues, vectors = principal_components(flat - mean, k)
    keep = eigenvalues > 1e-6 * eigenvalues.max()
    return ColorStatistics(w.float(), bins, vectors.T[keep].float(), eigenvalues[keep].float(),
                           mean.float())


def principal_components(centred: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top-k variances (descending) and directions (D, k) of centred data (N, D), exactly.

    ``torch.linalg.eigh`` of the covariance ``X^T X / (N - 1)`` (D x D), or, with fewer
    examples than dimensions, of the Gram matrix ``X X^T / (N - 1)`` (N x N), whose
    eigenvectors u give the directions ``X^T u / ||X^T u||`` with the same eigenvalues.
    """
    n, d = centred.shape
    if n <= d:
        eigenvalues, u = torch.linalg.eigh(centred @ centred.T / (n - 1))
        eigenvalues, u = eigenvalues.flip(0)[:k], u.flip(1)[:, :k]
        vectors = centred.T @ u
        return eigenvalues, vectors / vectors.norm(dim=0).clamp(min=1e-300)
    eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / (n - 1))
    return eigenvalues.flip(0)[:k], vectors.flip(1)[:, :k]


def hist_loss(pred: Tensor, target: Tensor, stats: ColorStatistics) -> Tensor:
    """L_hist = sum over pixels of w(bin of the true ab) ||pred - target||², per example."""
    w = stats.bin_weights.to(target.device)[ab_bin(target, stats.bins)]
    return (w * (pred - target).pow(2).sum(1)).sum((1, 2))


def mahalanobis_loss(pred: Tensor, target: Tensor, stats: ColorStatistics) -> Tensor:
    """L_mah = sum_{i<=k} ((pred - target) · v_i)² / λ_i over the top-k principal directions."""
    proj = (pred - target).flatten(1) @ stats.components.to(pred.device).T
    return (proj.pow(2) / stats.eigenvalues.to(pred.device)).sum(-1)


def grad_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L_grad = ||∂x pred - ∂x target||² + ||∂y pred - ∂y target||² (finite differences)."""
    d = pred - target
    dx = d[..., :, 1:] - d[..., :, :-1]
    dy = d[..., 1:, :] - d[..., :-1, :]
    return dx.pow(2).sum((1, 2, 3)) + dy.pow(2).sum((1, 2, 3))


class ColorVAE(nn.Module):
    """VAE on ab fields: q(z | ab, L), decoder ab(z, L), loss L_hist + λ_mah L_mah + λ_grad L_grad.

    ``terms`` names the decoder-loss terms in use (an ablation drops one); without ``"hist"``
    the pixel term is the unweighted squared error. The KL to N(0, I) has weight
    ``beta_max * anneal``; :func:`vaecourse.recipes.colorization` raises ``anneal`` linearly
    to 1. Deshpande et al. anneal to 0.01 for their loss normalization; our decoder loss is a
    SUM over pixels of ab / AB_SCALE, and we use ``beta_max = 1`` (with a much smaller weight
    the codes of two synthetic hues can merge).
    """

    def __init__(self, stats: ColorStatistics, latent: int = 16, width: int = 32,
                 terms: tuple[str, ...] = DECODER_TERMS, lambda_mah: float = 0.1,
                 lambda_grad: float = 1.0, beta_max: float = 1.0):
        super().__init__()
        unknown = set(terms) - set(DECODER_TERMS)
        if unknown:
            raise ValueError(f"terms must be among {DECODER_TERMS}, got {sorted(unknown)}")
        self.stats, self.latent, self.terms = stats, latent, tuple(terms)
        self.lambda_mah, self.lambda_grad = lambda_mah, lambda_grad
        self.beta_max, self.anneal = beta_max, 1.0
        self.encoder = ConvEncoder(3, 2 * latent, width)
        self.decoder = Backbone(1, latent, width)

    def encode(self, L: Tensor, ab: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | ab, L) (Lab units in)."""
        mu, logvar = self.encoder(torch.cat([grey_input(L), ab / AB_SCALE], 1)).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, L: Tensor) -> Tensor:
        """ab in Lab units, (B, 2, H, W)."""
        return self.decoder(grey_input(L), z) * AB_SCALE

    def decoder_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """L_hist (or plain L2) + λ_mah L_mah + λ_grad L_grad per example, in ab / AB_SCALE."""
        loss = (hist_loss(pred, target, self.stats) if "hist" in self.terms
                else (pred - target).pow(2).sum((1, 2, 3)))
        if "mah" in self.terms:
            loss = loss + self.lambda_mah * mahalanobis_loss(pred, target, self.stats)
        if "grad" in self.terms:
            loss = loss + self.lambda_grad * grad_loss(pred, target)
        return loss

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean decoder loss + beta_max anneal KL(q(z | ab, L) || N(0, I)) of a batch (L, ab)."""
        L, ab = batch
        mu, logvar = self.encode(L, ab)
        z = gaussian.reparameterize(mu, logvar)
        recon = self.decoder_loss(self.decode(z, L) / AB_SCALE, ab / AB_SCALE).mean()
        kl = gaussian.kl_std_normal(mu, logvar).mean()
        loss = recon + self.beta_max * self.anneal * kl
        return loss, {"loss": loss.item(), "decoder_loss": recon.item(), "kl": kl.item()}


class MDN(nn.Module):
    """Mixture density network p(z | L) = sum_c π_c(L) N(z; m_c(L), σ² I), σ fixed."""

    def __init__(self, latent: int = 16, width: int = 32, components: int = 8,
                 sigma: float = 0.1):
        super().__init__()
        self.latent, self.components, self.sigma = latent, components, sigma
        self.net = ConvEncoder(1, components * (1 + latent), width)

    def mixture(self, L: Tensor) -> MixtureSameFamily:
        """The mixture p(z | L) as a ``torch.distributions`` object of batch shape (B,)."""
        out = self.net(grey_input(L))
        logits, means = out[:, :self.components], out[:, self.components:]
        means = means.reshape(-1, self.components, self.latent)
        return MixtureSameFamily(Categorical(logits=logits),
                                 Independent(Normal(means, self.sigma), 1))

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean ``-log p(z | L)`` of a batch ``(L, z)`` (z: the VAE's codes of the truth)."""
        L, z = batch
        loss = -self.mixture(L).log_prob(z).mean()
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def codes(self, L: Tensor, n: int) -> Tensor:
        """n codes per image, (B, n, latent): the component means by decreasing weight, then
        (for n > components) draws from the mixture."""
        mix = self.mixture(L)
        order = mix.mixture_distribution.probs.argsort(dim=-1, descending=True)
        means = mix.component_distribution.mean.gather(
            1, order[..., None].expand(-1, -1, self.latent))[:, :n]
        if n <= self.components:
            return means
        return torch.cat([means, mix.sample((n - self.components,)).movedim(0, 1)], dim=1)


class DiverseColorizer(nn.Module):
    """Deshpande et al.'s pipeline: MDN codes z ~ p(z | L), decoded by the ColorVAE."""

    def __init__(self, vae: ColorVAE, mdn: MDN):
        super().__init__()
        self.vae, self.mdn = vae, mdn

    @torch.no_grad()
    def colorize(self, L: Tensor, n: int) -> Tensor:
        """n colourings per image (the mixture's modes first): (N, n, 2, H, W)."""
        check_batch(L)
        z = self.mdn.codes(L, n)
        out = self.vae.decode(z.flatten(0, 1), L.repeat_interleave(n, dim=0))
        return out.reshape(len(L), n, *out.shape[1:])


# ---------------------------------------------------------------------------------------------
# Batches and codes (the recipes of chapter 9 train these models: vaecourse.recipes)
# ---------------------------------------------------------------------------------------------


def loader(*tensors: Tensor, batch_size: int, seed: int) -> DataLoader:
    """A shuffled, seeded DataLoader over tensors of equal length."""
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def vae_codes(vae: ColorVAE, data: color_data.ColorData, batch_size: int = 256) -> Tensor:
    """The posterior means of q(z | ab, L) of every image (the MDN's targets)."""
    vae.eval()
    device = config.module_device(vae)
    pairs = zip(data.L.split(batch_size), data.ab.split(batch_size), strict=True)
    return torch.cat([vae.encode(L.to(device), ab.to(device))[0].cpu() for L, ab in pairs])
