"""Toy latent-variable models with an exact likelihood (chapters 2, 3 and 4).

* :class:`LinearGaussianModel`: z ~ N(0, 1), x | z ~ N(theta z, sigma^2), so that
  p(x; theta) = N(0, theta^2 + sigma^2) and the posterior is Gaussian.
* :class:`RingModel`: the toy of "Introduction to Diabolo networks". z ~ N(0, I_2), decoder
  g(z) = alpha z + z / ||z||, x | z ~ N(g(z), sigma^2 I_2). With alpha = 0.5 the data lie around
  the ring x = z/2 + z/||z||. Radial symmetry reduces p(x) to a 1-D integral over r = ||z||.

Both models share one interface: ``sample``, ``decode``, ``log_prior``, ``log_likelihood``,
``log_joint``, ``log_marginal`` (exact) and ``log_posterior``, and the book's model interface
(:class:`vaecourse.estimators.ExactLatentVariableModel`): ``log_weights`` and ``negative_elbo``
with the exact posterior (linear model) or the Laplace approximation (ring) as q. Data ``x``
have shape (N, D); latents ``z`` have shape (..., N, d) and log densities come back with shape
(..., N), so that K samples per data point, z of shape (K, N, d), give log p(x | z) of shape
(K, N).
Exact computations are done in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, constraints

from vaecourse import estimators, gaussian

DTYPE = torch.float64
TRUE_ALPHA = 0.5  # the alpha of the lecture's data generator x = z/2 + z/||z||


def _as_data(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    """``x`` as a float64 tensor of shape (N, dim) with finite values, else ValueError."""
    x = torch.as_tensor(x, dtype=DTYPE)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(x)).sum())} "
                         "non-finite values")
    return x


def _as_latent(z: torch.Tensor, dim: int, name: str = "z") -> torch.Tensor:
    """``z`` as a float64 tensor of shape (..., dim) with finite values, else ValueError."""
    z = torch.as_tensor(z, dtype=DTYPE)
    if z.ndim < 1 or z.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(z)).sum())} "
                         "non-finite values")
    return z


def _check_pair(x: torch.Tensor, z: torch.Tensor, dx: int, dz: int) -> tuple[torch.Tensor, ...]:
    """Validate x (N, dx) against z (..., N, dz)."""
    x, z = _as_data(x, dx), _as_latent(z, dz)
    if z.ndim < 2 or z.shape[-2] != x.shape[0]:
        raise ValueError(f"z must have shape (..., N, {dz}) with N = {x.shape[0]} as in x, "
                         f"got {tuple(z.shape)}")
    return x, z


def _check_positive(value: float, name: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_count(n: int, name: str = "n") -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    return n


def log_normal_iso(x: torch.Tensor, mean: torch.Tensor | float, var: torch.Tensor | float
                   ) -> torch.Tensor:
    """log N(x; mean, var I) summed over the last dimension, by :func:`gaussian.log_normal_diag`;
    ``mean`` and ``var`` broadcast against x."""
    mean, var = torch.as_tensor(mean, dtype=x.dtype), torch.as_tensor(var, dtype=x.dtype)
    shape = torch.broadcast_shapes(x.shape, mean.shape, var.shape)
    return gaussian.log_normal_diag(x, mean.expand(shape), var.log().expand(shape))


def log_std_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return log_normal_iso(z, 0.0, 1.0)


def std_normal_prior(dim: int) -> Independent:
    """p(z) = N(0, I_dim) as a torch distribution (float64, batch shape (), event (dim,))."""
    return Independent(Normal(torch.zeros(dim, dtype=DTYPE), torch.ones(dim, dtype=DTYPE)), 1)


class GaussianDecoderModel:
    """z ~ N(0, I), x | z ~ N(decode(z), sigma^2 I): what both toy models share.

    Subclasses set ``data_dim``, ``latent_dim``, ``sigma`` and ``prior`` and define ``decode``.
    """

    data_dim: int
    latent_dim: int
    sigma: float

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None,
               return_z: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """n draws x = decode(z) + sigma eps (shape (n, data_dim)), and z too if ``return_z``."""
        n = _check_count(n)
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=DTYPE)
        noise = torch.randn(n, self.data_dim, generator=generator, dtype=DTYPE)
        x = self.decode(z) + self.sigma * noise
        return (x, z) if return_z else x

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = log N(z; 0, I), shape (...)."""
        return log_std_normal(_as_latent(z, self.latent_dim))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) = log N(x; decode(z), sigma^2 I) for x (N, D), z (..., N, d): (..., N)."""
        x, z = _check_pair(x, z, self.data_dim, self.latent_dim)
        # Written out rather than gaussian.log_normal_diag, which rejects non-finite means: the
        # ring's decoder is undefined (NaN) at z = 0, and the mode search steps over that NaN.
        sq = ((x - self.decode(z)) ** 2).sum(-1)
        log_norm = 0.5 * self.data_dim * math.log(2 * math.pi * self.sigma**2)
        return -0.5 * sq / self.sigma**2 - log_norm

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x | z) + log p(z), shape (..., N)."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def proposal(self, x: torch.Tensor) -> Distribution:
        """The q(z | x) of :meth:`log_weights` and :meth:`negative_elbo`, batch shape (N,)."""
        raise NotImplementedError

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """k log-weights log p(x, z) - log q(z | x), z ~ :meth:`proposal`: shape (N, k)."""
        x = _as_data(x, self.data_dim)
        return estimators.sample_log_weights(x, self.log_likelihood, self.prior, k,
                                             self.proposal(x))

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The one-sample -ELBO with q = :meth:`proposal`: shape (N,)."""
        return -self.log_weights(x, 1).squeeze(-1)


class LinearGaussianModel(GaussianDecoderModel):
    """z ~ N(0, 1), x | z ~ N(theta z, sigma^2): p(x; theta) = N(0, theta^2 + sigma^2)."""

    data_dim = 1
    latent_dim = 1

    def __init__(self, theta: float, sigma: float) -> None:
        if not (isinstance(theta, int | float) and math.isfinite(theta)):
            raise ValueError(f"theta must be a finite number, got {theta!r}")
        self.theta = float(theta)
        self.sigma = _check_positive(sigma, "sigma")
        self.prior = std_normal_prior(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z): theta z."""
        return self.theta * _as_latent(z, 1)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log N(x; 0, theta^2 + sigma^2), shape (N,)."""
        return log_normal_iso(_as_data(x, 1), 0.0, self.theta**2 + self.sigma**2)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of p(z | x) = N(theta x / (theta^2 + sigma^2),
        sigma^2 / (theta^2 + sigma^2)), each of shape (N, 1)."""
        x = _as_data(x, 1)
        var = self.theta**2 + self.sigma**2
        return self.theta * x / var, torch.full_like(x, self.sigma**2 / var)

    def log_posterior(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(z | x) for z (..., N, 1), x (N, 1): shape (..., N)."""
        x, z = _check_pair(x, z, 1, 1)
        mean, var = self.posterior(x)
        return log_normal_iso(z, mean, var)

    def proposal(self, x: torch.Tensor) -> Independent:
        """The exact posterior p(z | x): with it the ELBO equals log p(x)."""
        mean, var = self.posterior(x)
        return Independent(Normal(mean, var.sqrt()), 1)


class MultivariateStudentT(Distribution):
    """Multivariate Student-t with ``df`` degrees of freedom, location ``loc`` (..., d) and
    lower-triangular scale ``scale_tril`` (..., d, d):

    log t(x) = lgamma((nu + d)/2) - lgamma(nu/2) - d/2 log(nu pi) - log|L|
               - (nu + d)/2 log(1 + ||L^{-1}(x - loc)||^2 / nu).

    A draw is loc + L eps / sqrt(u / nu) with eps ~ N(0, I) and u ~ chi^2(nu).
    """

    arg_constraints = {"loc": constraints.real_vector, "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, df: float, loc: torch.Tensor, scale_tril: torch.Tensor) -> None:
        self.df = _check_positive(df, "df")
        self.loc, self.scale_tril = loc, scale_tril
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        u = torch.distributions.Chi2(torch.tensor(self.df, dtype=self.loc.dtype)).sample(
            shape[:-1])
        scaled = (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
        return self.loc + scaled / torch.sqrt(u / self.df).unsqueeze(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        d, nu = self.loc.shape[-1], self.df
        diff = (value - self.loc).unsqueeze(-1)
        tril = self.scale_tril.expand(diff.shape[:-2] + self.scale_tril.shape[-2:])
        white = torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)
        maha = (white**2).sum(-1)
        log_det = torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1)).sum(-1)
        return (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
                - log_det - 0.5 * (nu + d) * torch.log1p(maha / nu))


class RingModel(GaussianDecoderModel):
    """z ~ N(0, I_2), g(z) = alpha z + z/||z||, x | z ~ N(g(z), sigma^2 I_2), alpha >= 0."""

    data_dim = 2
    latent_dim = 2

    def __init__(self, alpha: float = TRUE_ALPHA, sigma: float = 0.1) -> None:
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.sigma = _check_positive(sigma, "sigma")
        self.prior = std_normal_prior(2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """g(z) = alpha z + z / ||z||, shape (..., 2)."""
        z = _as_latent(z, 2)
        return self.alpha * z + z / z.norm(dim=-1, keepdim=True)

    def log_radial_integrand(self, r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """log h(r; s), the integrand of p(x) = int_0^inf h(r; s) dr, where s = ||x||,
        rho = alpha r + 1 = ||g(z)|| and

            h = r exp(-r^2/2) exp(-(s - rho)^2 / (2 sigma^2)) i0e(s rho / sigma^2) / (2 pi sigma^2).

        The angle was integrated analytically, int_0^{2 pi} exp(k cos phi) dphi = 2 pi I0(k), and
        i0e(k) = exp(-k) I0(k) is the exponentially scaled Bessel function.
        """
        rho, var = self.alpha * r + 1, self.sigma**2
        return (torch.log(r) - 0.5 * r**2 - math.log(2 * math.pi * var)
                - 0.5 * (s - rho) ** 2 / var + torch.log(torch.special.i0e(s * rho / var)))

    def log_marginal(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Exact log p(x) (shape (N,)) for x (N, 2): the integral over r of
        :meth:`log_radial_integrand`, by composite Gauss-Legendre quadrature.

        log h is close to the parabola -r^2/2 - (s - 1 - alpha r)^2 / (2 sigma^2), peaked at
        r* = alpha (s - 1) / (alpha^2 + sigma^2) with width w = (1 + alpha^2/sigma^2)^(-1/2).
        A grid of 256 cells on [0, r* + 15 w + 1] finds the cells where log h is within 60 nats
        of its maximum; 16 panels of 16 Gauss-Legendre nodes integrate that window.
        """
        s_all = _as_data(x, 2).norm(dim=-1)
        nodes, weights = (torch.as_tensor(a, dtype=DTYPE)
                          for a in np.polynomial.legendre.leggauss(16))
        width = (1 + self.alpha**2 / self.sigma**2) ** -0.5
        cells = (torch.arange(256, dtype=DTYPE) + 0.5) / 256
        out = []
        for s in s_all.split(chunk):
            s = s[:, None]
            r_peak = (self.alpha * (s - 1) / (self.alpha**2 + self.sigma**2)).clamp(min=0)
            r_max = r_peak + 15 * width + 1
            coarse = self.log_radial_integrand(r_max * cells, s)
            keep = coarse > coarse.max(-1, keepdim=True).values - 60
            first = torch.argmax(keep.to(torch.int8), -1, keepdim=True)
            last = 255 - torch.argmax(keep.flip(-1).to(torch.int8), -1, keepdim=True)
            lo = r_max * (first - 1).clamp(min=0) / 256
            hi = r_max * (last + 2).clamp(max=256) / 256
            edges = lo + (hi - lo) * torch.linspace(0, 1, 17, dtype=DTYPE)
            half, mid = (edges[:, 1:] - edges[:, :-1]) / 2, (edges[:, 1:] + edges[:, :-1]) / 2
            r = (mid[:, :, None] + half[:, :, None] * nodes).flatten(1)
            log_w = torch.log(half[:, :, None] * weights).flatten(1)
            out.append(torch.logsumexp(self.log_radial_integrand(r, s) + log_w, -1))
        return torch.cat(out) if out else s_all.new_zeros(0)

    def log_posterior(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(z | x) = log p(x, z) - log p(x) for z (..., N, 2), x (N, 2): (..., N)."""
        return self.log_joint(x, z) - self.log_marginal(x)

    def posterior_grid(self, x: torch.Tensor, extent: float = 4.0,
                       n: int = 400) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact posterior of one point x (shape (2,)) on the n x n cell midpoints of
        [-extent, extent]^2: returns z (n, n, 2), log p(x, z) (unnormalized, (n, n)) and
        p(z | x) (normalized by the exact p(x), (n, n))."""
        x = _as_data(torch.as_tensor(x, dtype=DTYPE).reshape(1, -1), 2)
        extent = _check_positive(extent, "extent")
        if _check_count(n) == 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        axis = -extent + (torch.arange(n, dtype=DTYPE) + 0.5) * (2 * extent / n)
        z = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)
        log_unnorm = self.log_joint(x, z.reshape(-1, 1, 2))[:, 0].reshape(n, n)
        return z, log_unnorm, torch.exp(log_unnorm - self.log_marginal(x))

    def grad_hess(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient (N, 2) and Hessian (N, 2, 2) of log p(x, z) in z, for x and z of shape (N, 2),
        by automatic differentiation (each point's log p(x, z) depends on its own z only)."""
        z = z.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.log_joint(x, z).sum(), z, create_graph=True)
        rows = [torch.autograd.grad(grad[:, i].sum(), z, retain_graph=True)[0] for i in range(2)]
        return grad.detach(), torch.stack(rows, -2)

    def posterior_mode(self, x: torch.Tensor, steps: int = 30) -> torch.Tensor:
        """The mode of p(z | x) (shape (N, 2)) by Newton ascent on log p(x, z) with step
        halving, started on the ray of x where ||g(z)|| = ||x|| (radius at least 0.1)."""
        x = _as_data(x, 2)
        s = x.norm(dim=-1, keepdim=True)
        r0 = ((s - 1) / max(self.alpha, 1e-3)).clamp(min=0.1, max=10.0)
        z = r0 * x / s
        for _ in range(steps):
            grad, hess = self.grad_hess(x, z)
            newton, info = torch.linalg.solve_ex(hess, -grad.unsqueeze(-1))
            concave = (torch.linalg.eigvalsh(hess).max(-1).values < 0) & (info == 0)
            step = torch.where(concave[:, None], newton.squeeze(-1), grad)  # else: gradient ascent
            step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            t, f0 = torch.ones_like(s), self.log_joint(x, z)
            for _ in range(40):  # halve the step until log p(x, z) does not decrease (or is NaN)
                worse = ~(self.log_joint(x, z + t * step) >= f0)
                if not worse.any():
                    break
                t = torch.where(worse[:, None], t / 2, t)
            z = z + torch.where(worse[:, None], 0.0, t * step)
        return z

    def laplace_proposal(self, x: torch.Tensor, scale: float = 1.0) -> MultivariateNormal:
        """q(z | x) = N(mode, scale^2 (-H)^{-1}): the Laplace approximation of p(z | x), with
        H the Hessian of log p(x, z) at the mode. ``scale`` < 1 makes it too narrow,
        ``scale`` > 1 too wide. Batch shape (N,), event shape (2,).

        The eigenvalues of -H are clipped to [1, 1e8] (1 is the prior's precision) so that q
        stays a proper Gaussian near the cusp of g at z = 0, where the posterior of a point
        on or inside the unit circle has its mode and is far from Gaussian."""
        scale = _check_positive(scale, "scale")
        x = _as_data(x, 2)
        mode = self.posterior_mode(x)
        _, hess = self.grad_hess(x, mode)
        eigval, eigvec = torch.linalg.eigh(-hess.detach())
        cov = eigvec @ torch.diag_embed(1 / eigval.clamp(min=1.0, max=1e8)) @ eigvec.mT
        return MultivariateNormal(mode, covariance_matrix=scale**2 * cov)

    def proposal(self, x: torch.Tensor) -> MultivariateNormal:
        """The Laplace approximation of p(z | x) (:meth:`laplace_proposal`)."""
        return self.laplace_proposal(x)

    def student_t_proposal(self, x: torch.Tensor, df: float = 3.0,
                           scale: float = 1.0) -> MultivariateStudentT:
        """A heavy-tailed q(z | x): a multivariate Student-t with the Laplace location and scale."""
        laplace = self.laplace_proposal(x, scale)
        return MultivariateStudentT(df, laplace.loc, laplace.scale_tril)


class GaussianEncoder(torch.nn.Module):
    """An amortized proposal q_phi(z | x) = N(mu_phi(x), L_phi(x) L_phi(x)^T) (chapter 3, "The
    role of the encoder"): one network maps every x to the parameters of its Gaussian, instead of
    a Newton optimization per point as in :meth:`RingModel.laplace_proposal`.

    A tanh MLP maps x (N, data_dim) to the mean (N, d) and the Cholesky factor L (N, d, d) with a
    positive diagonal exp(.); with ``full_covariance=False`` L is diagonal, the VAE's usual
    N(mu, diag sigma^2) with log sigma^2 = 2 log diag L. Float64, like the toy models."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int = 64,
                 full_covariance: bool = True) -> None:
        super().__init__()
        for name, value in (("data_dim", data_dim), ("latent_dim", latent_dim),
                            ("hidden", hidden)):
            if _check_count(value, name) == 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.full_covariance = bool(full_covariance)
        n_lower = latent_dim * (latent_dim - 1) // 2 if self.full_covariance else 0
        self.net = torch.nn.Sequential(
            torch.nn.Linear(data_dim, hidden), torch.nn.Tanh(),
            torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
            torch.nn.Linear(hidden, 2 * latent_dim + n_lower),
        ).to(DTYPE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean (N, d) and the Cholesky factor (N, d, d) of q(z | x)."""
        out = self.net(_as_data(x, self.data_dim).to(DTYPE))
        d = self.latent_dim
        mu, log_diag, lower = out[:, :d], out[:, d:2 * d], out[:, 2 * d:]
        scale_tril = torch.diag_embed(log_diag.exp())
        if self.full_covariance:
            rows, cols = torch.tril_indices(d, d, offset=-1)
            off_diagonal = torch.zeros_like(scale_tril)
            off_diagonal[:, rows, cols] = lower
            scale_tril = scale_tril + off_diagonal
        return mu, scale_tril

    def proposal(self, x: torch.Tensor) -> MultivariateNormal:
        """q(z | x) as a distribution with batch shape (N,) and event shape (latent_dim,)."""
        mu, scale_tril = self(x)
        return MultivariateNormal(mu, scale_tril=scale_tril)


def fit_encoder(model: GaussianDecoderModel, steps: int = 2000, batch_size: int = 256,
                lr: float = 1e-2, hidden: int = 64, full_covariance: bool = True, seed: int = 0
                ) -> tuple[GaussianEncoder, list[float]]:
    """Train a :class:`GaussianEncoder` for a fixed toy model by maximizing the ELBO (chapter 4,
    eq. ``eq-elbo``): each Adam step draws a fresh batch x ~ p(x) from the model and ascends
    mean_x [log p(x, z) - log q(z | x)] with one reparameterized z = mu + L eps per point
    (chapter 5). Every draw comes from one generator seeded with ``seed``.

    Returns the encoder (in eval mode, gradients off) and the ELBO of every step, averaged over
    its batch, so that a caller can check that the curve has flattened."""
    steps, batch_size = _check_count(steps, "steps"), _check_count(batch_size, "batch_size")
    if steps == 0 or batch_size == 0:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    lr = _check_positive(lr, "lr")
    generator = torch.Generator().manual_seed(seed)
    encoder = GaussianEncoder(model.data_dim, model.latent_dim, hidden, full_covariance)
    with torch.no_grad():  # initial weights from the same generator, reproducible
        for p in encoder.parameters():
            bound = 1 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.1
            p.uniform_(-bound, bound, generator=generator)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)  # lr decays to 0
    history = []
    for _ in range(steps):
        x = model.sample(batch_size, generator=generator)
        q = encoder.proposal(x)
        eps = torch.randn(x.shape[0], model.latent_dim, 1, generator=generator, dtype=DTYPE)
        z = q.loc + (q.scale_tril @ eps).squeeze(-1)
        elbo = (model.log_joint(x, z) - q.log_prob(z)).mean()
        optimizer.zero_grad()
        (-elbo).backward()
        optimizer.step()
        schedule.step()
        history.append(elbo.item())
    return encoder.eval().requires_grad_(False), history
