"""Forecasting a trajectory from a static image: regressor, CVAE and the true density (chapter 10).

Every forecaster has the same two methods, which the metrics call:

* ``sample(images, n) -> (n, B, T, 2)``: n futures per image;
* ``log_prob(images, y) -> (B,)``: log p(x | y) of the futures ``y`` given the images, in nats
  per trajectory.

:class:`Regressor` predicts one path and adds a Gaussian fitted to its residuals;
:class:`CVAE` follows Walker et al. (2016): an image tower, an encoder tower q(z | x, y) used only
in training and a decoder tower p(x | y, z); its samples use the prior network p(z | y), and its
log p(x | y) is estimated by importance sampling with q as the proposal;
:class:`TrueForecaster` reads the open exits off the image and uses the exact density (eq. 10.1).
The CVAE implements the book's conditional model interface
(:class:`vaecourse.estimators.ConditionalLatentVariableModel`) with x = the futures and the
condition = the images; :mod:`vaecourse.recipes` trains both models.

Notation as in the book (book/notation.md): x is the future, the modelled variable, and y the
image, the condition. The arguments that hold futures are named ``y`` (``x`` in the interface
above), and h = g(y) are the image features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from vaecourse import estimators, gaussian
from vaecourse.data.trajectories import Junction


class ImageTower(nn.Module):
    """Average pooling to 16 x 16, two stride-2 convolutions and a linear layer: (B, hidden).

    The pooling makes the tower work at every preset's image size and keeps it cheap on a CPU
    (the roads are wider than a 16 x 16 pixel at every size).
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(16),
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 4 * 4, hidden), nn.ReLU(),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two hidden ReLU layers of width ``hidden``."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, outputs))


def split_batch(batch: tuple | list) -> tuple[Tensor, Tensor]:
    """The images and the flattened futures (B, 2T) of a batch ``(images, futures, ...)``."""
    return batch[0], batch[1].flatten(1)


class Regressor(nn.Module):
    """A deterministic path x = f(y), trained by squared error; then a Gaussian on its residuals.

    After :meth:`fit_residuals`, p(x | y) = N(x; f(y), Sigma), so that the regressor has an NLL
    and samples. By default Sigma = s^2 I, the likelihood that squared error assumes, with s^2
    fitted by maximum likelihood; ``full=True`` fits a full covariance instead.
    """

    def __init__(self, steps: int, hidden: int):
        super().__init__()
        self.steps = steps
        self.tower = ImageTower(hidden)
        self.head = mlp(hidden, hidden, 2 * steps)
        self.register_buffer("residual_cov", torch.eye(2 * steps))

    def forward(self, images: Tensor) -> Tensor:
        """The predicted path, flattened: shape (B, 2T)."""
        return self.head(self.tower(images))

    def loss(self, batch: tuple | list) -> tuple[Tensor, dict[str, float]]:
        """Squared error summed over the 2T coordinates, averaged over the batch."""
        images, y = split_batch(batch)
        loss = (self(images) - y).pow(2).sum(-1).mean()
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def fit_residuals(self, images: Tensor, y: Tensor, full: bool = False,
                      batch_size: int = 1000) -> None:
        """Fit Sigma to the residuals r_i = x_i - f(y_i) by maximum likelihood around f.

        Sigma = mean_i(|r_i|^2) / 2T * I (isotropic, the default) or mean_i r_i r_i^T (full).
        """
        self.eval()
        device = self.residual_cov.device
        batches = zip(images.split(batch_size), y.split(batch_size), strict=True)
        r = torch.cat([yb.flatten(1).to(device) - self(xb.to(device)) for xb, yb in batches])
        if full:
            self.residual_cov = r.T @ r / len(r)
        else:
            self.residual_cov = r.pow(2).mean() * torch.eye(r.shape[1], device=device)

    def density(self, images: Tensor) -> MultivariateNormal:
        """N(f(y), Sigma) over flattened futures, batch shape (B,)."""
        return MultivariateNormal(self(images), self.residual_cov)

    @torch.no_grad()
    def sample(self, images: Tensor, n: int) -> Tensor:
        """n draws of N(f(y), Sigma) per image: shape (n, B, T, 2)."""
        return self.density(images).sample((n,)).unflatten(-1, (self.steps, 2))

    @torch.no_grad()
    def log_prob(self, images: Tensor, y: Tensor) -> Tensor:
        """log N(x; f(y), Sigma): shape (B,)."""
        return self.density(images).log_prob(y.flatten(-2))


class CVAE(nn.Module):
    """The conditional VAE of Walker et al. (2016) on flattened futures x (2T numbers).

    * image tower h = g(y);
    * prior network p(z | y) = N(mu_p(h), diag exp(logvar_p(h))), a learned prior (Sohn et al.);
    * encoder tower q(z | x, y) = N(mu_q(h, x), diag exp(logvar_q(h, x))), used only in training
      and as the importance sampler of :meth:`log_prob`;
    * decoder tower p(x | y, z) = N(mu_d(h, z), diag exp(logvar_d)), logvar_d learned per
      coordinate. Its first layer W [h; z] + b is written as (W_h h + b) + W_z z, so that the
      image's part is computed once for all samples of z.
    """

    def __init__(self, steps: int, hidden: int, latent: int = 4, eval_samples: int = 1000):
        super().__init__()
        for name, value in (("steps", steps), ("hidden", hidden), ("latent", latent),
                            ("eval_samples", eval_samples)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.steps, self.latent, self.eval_samples = steps, latent, eval_samples
        self.tower = ImageTower(hidden)
        self.prior_net = nn.Linear(hidden, 2 * latent)
        self.encoder = mlp(hidden + 2 * steps, hidden, 2 * latent)
        self.decoder_h = nn.Linear(hidden, hidden)
        self.decoder_z = nn.Linear(latent, hidden, bias=False)
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * steps))
        self.decoder_logvar = nn.Parameter(torch.full((2 * steps,), -6.0))

    def prior(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of p(z | y) from image features h: each (B, latent)."""
        mu, logvar = self.prior_net(h).chunk(2, -1)
        return mu, logvar

    def encode(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z | x, y) from image features h and flattened futures ``y``."""
        mu, logvar = self.encoder(torch.cat([h, y], -1)).chunk(2, -1)
        return mu, logvar

    def decode(self, h: Tensor, z: Tensor) -> Tensor:
        """The mean of p(x | y, z) for z of shape (..., B, latent): shape (..., B, 2T)."""
        return self.decoder(self.decoder_h(h) + self.decoder_z(z))

    def log_likelihood(self, y: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """log p(x | y, z) for flattened futures ``y`` (B, 2T) and z (..., B, latent): (..., B)."""
        mean = self.decode(h, z)
        return gaussian.log_normal_diag(y, mean, self.decoder_logvar.expand_as(mean))

    def elbo_terms(self, y: Tensor, images: Tensor) -> tuple[Tensor, Tensor]:
        """-log p(x | y, z), z ~ q(z | x, y), and KL(q(z | x, y) || p(z | y)), each (B,)."""
        h, y = self.tower(images), y.flatten(1)
        mu_q, logvar_q = self.encode(h, y)
        z = gaussian.reparameterize(mu_q, logvar_q)
        kl = gaussian.kl_diag_gaussians(mu_q, logvar_q, *self.prior(h))
        return -self.log_likelihood(y, h, z), kl

    def negative_elbo(self, x: Tensor, condition: Tensor) -> Tensor:
        """The one-sample -ELBO of futures ``x`` (B, T, 2) given images ``condition``: (B,)."""
        recon, kl = self.elbo_terms(x, condition)
        return recon + kl

    def loss(self, batch: tuple | list) -> tuple[Tensor, dict[str, float]]:
        """-ELBO = -log p(x | y, z) + KL(q(z | x, y) || p(z | y)), z ~ q; the batch mean."""
        recon, kl = self.elbo_terms(batch[1], batch[0])
        loss = (recon + kl).mean()
        return loss, {"loss": loss.item(), "reconstruction": recon.mean().item(),
                      "kl": kl.mean().item()}

    @torch.no_grad()
    def sample(self, images: Tensor, n: int, from_prior: bool = True,
               y: Tensor | None = None) -> Tensor:
        """n futures per image, z ~ p(z | y) (or z ~ q(z | x, y) with ``from_prior=False``).

        Each future is a draw of p(x | y, z), noise included: shape (n, B, T, 2).
        """
        h = self.tower(images)
        if from_prior:
            mu, logvar = self.prior(h)
        elif y is None:
            raise ValueError("y must be given to sample from the recognition network q(z | x, y)")
        else:
            mu, logvar = self.encode(h, y.flatten(-2))
        z = gaussian.reparameterize(mu, logvar, sample_shape=(n,))
        out = gaussian.reparameterize(self.decode(h, z), self.decoder_logvar.expand(
            *z.shape[:-1], 2 * self.steps))
        return out.unflatten(-1, (self.steps, 2))

    @torch.no_grad()
    def log_weights(self, x: Tensor, k: int, condition: Tensor) -> Tensor:
        """log w = log p(x | y, z) + log p(z | y) - log q(z | x, y), z ~ q, for futures
        ``x`` (B, T, 2) and images ``condition`` (the book's y): shape (B, k)."""
        h, y = self.tower(condition), x.flatten(-2)
        return estimators.gaussian_log_weights(lambda z: self.log_likelihood(y, h, z),
                                               self.prior(h), self.encode(h, y), k)

    @torch.no_grad()
    def log_prob(self, images: Tensor, y: Tensor, chunk: int = 500) -> Tensor:
        """log p(x | y) ~ log mean_k w_k with k = ``eval_samples`` draws of q: shape (B,)."""
        return estimators.log_marginal_estimate(lambda k: self.log_weights(y, k, images),
                                                self.eval_samples, chunk)


class TrueForecaster(nn.Module):
    """The oracle: reads the open exits off each image and uses the exact density (eq. 10.1)."""

    def __init__(self, junction: Junction):
        super().__init__()
        self.junction = junction

    @torch.no_grad()
    def sample(self, images: Tensor, n: int) -> Tensor:
        """n exact draws of p(x | y) per image: shape (n, B, T, 2)."""
        y, _ = self.junction.sample(self.junction.read_open_exits(images.cpu()), n)
        return y.to(images.device)

    @torch.no_grad()
    def log_prob(self, images: Tensor, y: Tensor) -> Tensor:
        """The exact log p(x | y): shape (B,)."""
        open_mask = self.junction.read_open_exits(images.cpu())
        return self.junction.log_prob(y.cpu(), open_mask).to(images.device)
