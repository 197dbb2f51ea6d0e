"""Tests of vaecourse.toys: exact likelihoods, posteriors and proposals of the toy models."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch

from vaecourse import estimators
from vaecourse.toys import (
    GaussianEncoder,
    LinearGaussianModel,
    MultivariateStudentT,
    RingModel,
    fit_encoder,
    log_std_normal,
)

F64 = torch.float64

# Points near the origin, on the ring, just inside it and far out (s = ||x|| up to 6).
RING_POINTS = torch.tensor(
    [[0.03, -0.02], [0.4, 0.3], [0.0, 0.95], [1.02, 0.0], [1.2, -0.9], [-2.1, 0.6],
     [2.5, 2.5], [0.0, -4.2], [5.0, -3.3]], dtype=F64)


def brute_force_log_marginal(model: RingModel, x: torch.Tensor, h: float) -> float:
    """log of the integral of p(x | z) p(z) over a square that covers the origin and the ray
    point where ||g(z)|| = ||x|| with a margin of 1.2 (6 radial posterior sds), by the midpoint
    rule.

    g jumps at z = 0, so the rule converges as h^2 only: one Richardson step on the spacings
    h and h/2 removes that term."""
    s = float(x.norm())
    centre = max((s - 1) / model.alpha, 0.0) * x / s
    lo = torch.minimum(centre, torch.zeros(2, dtype=F64)) - 1.2
    hi = torch.maximum(centre, torch.zeros(2, dtype=F64)) + 1.2
    sums = []
    for step in (h, h / 2):
        axes = [lo[i] + step * (torch.arange(int((hi[i] - lo[i]) / step), dtype=F64) + 0.5)
                for i in range(2)]
        z = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 2)
        log_joint = model.log_joint(x[None], z)[:, 0]
        sums.append(float(torch.exp(torch.logsumexp(log_joint, 0) - 60)) * step**2)
    return math.log((4 * sums[1] - sums[0]) / 3) + 60


def scipy_log_marginal(model: RingModel, x: np.ndarray) -> float:
    """log p(x) by scipy.integrate.quad of the radial integral, written independently with
    scipy.special.i0e, split at the peak and integrated relative to its maximum."""
    s, a, var = float(np.hypot(*x)), model.alpha, model.sigma**2

    def log_h(r: float) -> float:
        rho = a * r + 1
        return (math.log(r) - r * r / 2 - math.log(2 * math.pi * var) - (s - rho) ** 2 / (2 * var)
                + math.log(scipy.special.i0e(s * rho / var)))

    grid = np.linspace(1e-6, 80, 80_001)
    values = np.array([log_h(r) for r in grid])
    top, peak = values.max(), grid[values.argmax()]
    breaks = [0.0, max(peak - 1, 0), peak, peak + 1, 80.0]
    total = sum(scipy.integrate.quad(lambda r: math.exp(log_h(r) - top) if r > 0 else 0.0,
                                     b0, b1, epsabs=0, epsrel=1e-13, limit=400)[0]
                for b0, b1 in zip(breaks[:-1], breaks[1:], strict=True) if b1 > b0)
    return top + math.log(total)


def test_ring_log_marginal_matches_brute_force_2d_grid():
    model = RingModel()
    exact = model.log_marginal(RING_POINTS)
    for x, value in zip(RING_POINTS, exact, strict=True):
        h = 0.004 if x.norm() < 1.1 else 0.016  # finer where the posterior reaches the jump
        assert abs(brute_force_log_marginal(model, x, h) - float(value)) < 1e-3, x


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 2.0])
def test_ring_log_marginal_matches_scipy_quad_to_1e6(alpha):
    model = RingModel(alpha=alpha)
    points = RING_POINTS[[0, 2, 3, 4, 6, 8]]
    exact = model.log_marginal(points)
    for x, value in zip(points.numpy(), exact, strict=True):
        assert abs(scipy_log_marginal(model, x) - float(value)) < 1e-6, (alpha, x)


def test_ring_density_integrates_to_one():
    """Midpoint rule on [-6, 6]^2 with h = 0.1. p(x) is a Gaussian blur (sd sigma = 0.1) of the
    law of g(z), so the rule's aliasing error is below 4 exp(-2 pi^2 sigma^2 / h^2) < 1e-8, and
    the mass outside the box (||x|| > 6 needs ||z|| > 9.8) is below exp(-48): what remains is the
    1-D quadrature's error, below 1e-6."""
    model, h = RingModel(), 0.1
    axis = -6 + h * (torch.arange(120, dtype=F64) + 0.5)
    x = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    total = float(torch.exp(model.log_marginal(x)).sum() * h**2)
    assert abs(total - 1) < 1e-6


def test_ring_samples_match_exact_radial_density():
    """Chi-square test of the histogram of ||x|| for 50 000 draws against the exact bin
    probabilities 2 pi int s p(s) ds, at the 0.1% level (threshold from scipy.stats.chi2), and
    the noise x - g(z) has variance sigma^2 per coordinate (within 4 standard errors)."""
    model, n = RingModel(), 50_000
    x, z = model.sample(n, generator=torch.Generator().manual_seed(0), return_z=True)
    edges = torch.tensor([0.0, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.7,
                          1.9, 2.2, 2.6, 8.0], dtype=F64)
    nodes, weights = (torch.as_tensor(a, dtype=F64) for a in np.polynomial.legendre.leggauss(64))
    half, mid = (edges[1:] - edges[:-1]) / 2, (edges[1:] + edges[:-1]) / 2
    s = mid[:, None] + half[:, None] * nodes
    density = torch.exp(model.log_marginal(torch.stack([s, 0 * s], -1).reshape(-1, 2)))
    probs = (2 * math.pi * s * density.reshape(s.shape) * weights * half[:, None]).sum(-1)
    assert abs(float(probs.sum()) - 1) < 1e-6
    counts = torch.histogram(x.norm(dim=-1), bins=edges).hist
    expected = probs * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < scipy.stats.chi2.ppf(0.999, df=len(probs) - 1)
    noise_var = (x - model.decode(z)).var(0)
    assert ((noise_var - model.sigma**2).abs() < 4 * model.sigma**2 * math.sqrt(2 / n)).all()


def test_ring_posterior_grid_is_normalized_and_peaks_at_the_laplace_mean():
    model = RingModel()
    x = torch.tensor([1.3, 1.1], dtype=F64)
    z, log_unnorm, density = model.posterior_grid(x, extent=4.0, n=800)
    h = 8.0 / 800
    assert abs(float(density.sum()) * h**2 - 1) < 1e-6
    assert torch.allclose(density, torch.exp(log_unnorm - model.log_marginal(x[None])))
    laplace = model.laplace_proposal(x[None])
    grid_mode = z.reshape(-1, 2)[density.argmax()]
    assert float((grid_mode - laplace.loc[0]).abs().max()) <= h


def test_laplace_proposal_matches_closed_form_mode_and_curvature():
    """On the ray of x the mode has radius r* = alpha (s - 1) / (alpha^2 + sigma^2); the
    posterior variances there are sigma^2 / (alpha^2 + sigma^2) radially and
    sigma^2 r*^2 / (s rho*) tangentially, rho* = alpha r* + 1."""
    model = RingModel(alpha=0.7, sigma=0.15)
    x = torch.tensor([[1.5, 0.4], [-2.0, 1.0], [0.3, -3.1]], dtype=F64)
    q = model.laplace_proposal(x)
    s = x.norm(dim=-1)
    r_star = model.alpha * (s - 1) / (model.alpha**2 + model.sigma**2)
    u = x / s[:, None]
    torch.testing.assert_close(q.loc, r_star[:, None] * u, rtol=0, atol=1e-10)
    grad, _ = model.grad_hess(x, q.loc)
    assert float(grad.abs().max()) < 1e-8
    v = torch.stack([-u[:, 1], u[:, 0]], -1)
    rho = model.alpha * r_star + 1
    var_radial = model.sigma**2 / (model.alpha**2 + model.sigma**2)
    var_tangent = model.sigma**2 * r_star**2 / (s * rho)
    cov = (var_radial * u[:, :, None] * u[:, None]
           + var_tangent[:, None, None] * v[:, :, None] * v[:, None])
    torch.testing.assert_close(q.covariance_matrix, cov, rtol=1e-8, atol=0)
    wide = model.laplace_proposal(x, scale=2.0)
    torch.testing.assert_close(wide.covariance_matrix, 4 * cov, rtol=1e-8, atol=0)
    t = model.student_t_proposal(x, df=4.0)
    torch.testing.assert_close(t.loc, q.loc)
    torch.testing.assert_close(t.scale_tril, q.scale_tril)


def test_laplace_proposal_is_proper_at_the_cusp():
    """Points on or inside the unit circle have their posterior mode at z -> 0, where -H has
    eigenvalues up to 1e29 or negative ones: q must remain a valid Gaussian whose covariance
    eigenvalues are clipped to [1e-8, 1], with finite log densities."""
    model = RingModel()
    x = torch.tensor([[0.2, 0.1], [0.0, 0.99], [1.0, 0.0], [-0.6978, 0.7056], [0.7586, 0.6571]],
                     dtype=F64)
    q = model.laplace_proposal(x)
    eig = torch.linalg.eigvalsh(q.covariance_matrix)
    assert (eig >= 1e-8 * (1 - 1e-9)).all() and (eig <= 1 + 1e-9).all()
    z = q.sample((10,))
    assert torch.isfinite(q.log_prob(z)).all()
    assert torch.isfinite(model.log_joint(x, z)).all()


def test_importance_sampling_with_laplace_is_unbiased_and_beats_naive():
    """E_q[p^(x)] = p(x): the mean of 400 estimates p^/p (k = 10 each) is 1 within 4 standard
    errors; and at these points the Laplace weights have a larger ESS than the prior's."""
    torch.manual_seed(0)
    model = RingModel()
    x = torch.tensor([[1.4, 0.9], [-0.5, -1.9]], dtype=F64)
    exact = model.log_marginal(x)
    q = model.laplace_proposal(x)
    ratios = torch.stack([torch.exp(estimators.importance_log_marginal(
        x, model.log_likelihood, model.prior, q, 10) - exact) for _ in range(400)])
    se = ratios.std(0) / math.sqrt(len(ratios))
    assert ((ratios.mean(0) - 1).abs() < 4 * se + 1e-12).all()
    log_w_q = estimators.sample_log_weights(x, model.log_likelihood, model.prior, 1000, q)
    log_w_p = estimators.sample_log_weights(x, model.log_likelihood, model.prior, 1000)
    ess_q = estimators.effective_sample_size(log_w_q)
    ess_p = estimators.effective_sample_size(log_w_p)
    assert (ess_q > 5 * ess_p).all()


@pytest.mark.parametrize("df", [1.0, 3.0, 12.5])
def test_student_t_log_prob_matches_scipy(df):
    gen = torch.Generator().manual_seed(int(df * 10))
    loc = 3 * torch.randn(4, 2, generator=gen, dtype=F64)
    a = torch.randn(4, 2, 2, generator=gen, dtype=F64)
    cov = a @ a.mT + 0.1 * torch.eye(2, dtype=F64)
    dist = MultivariateStudentT(df, loc, torch.linalg.cholesky(cov))
    value = 5 * torch.randn(7, 4, 2, generator=gen, dtype=F64)
    ours = dist.log_prob(value)
    assert ours.shape == (7, 4)
    for b in range(4):
        ref = scipy.stats.multivariate_t(loc[b].numpy(), cov[b].numpy(), df=df)
        np.testing.assert_allclose(ours[:, b].numpy(), ref.logpdf(value[:, b].numpy()),
                                   rtol=1e-10)


def test_student_t_samples_have_the_f_distributed_mahalanobis_distance():
    """For a d-variate t, ||L^{-1}(z - loc)||^2 / d ~ F(d, df): a Kolmogorov-Smirnov test on
    20 000 draws at the 0.1% level."""
    torch.manual_seed(0)
    loc = torch.tensor([1.0, -2.0], dtype=F64)
    tril = torch.tensor([[0.5, 0.0], [0.3, 0.2]], dtype=F64)
    dist = MultivariateStudentT(3.0, loc, tril)
    z = dist.sample((20_000,))
    assert z.shape == (20_000, 2)
    white = torch.linalg.solve_triangular(tril, (z - loc).T, upper=False).T
    stat = (white**2).sum(-1).numpy() / 2
    assert scipy.stats.kstest(stat, scipy.stats.f(2, 3.0).cdf).pvalue > 1e-3


def test_linear_log_marginal_and_likelihood_match_torch_normal():
    gen = torch.Generator().manual_seed(1)
    for theta, sigma in [(0.0, 1.0), (2.5, 0.1), (-30.0, 1e-3), (1e-3, 40.0)]:
        model = LinearGaussianModel(theta, sigma)
        x = 10 * torch.randn(13, 1, generator=gen, dtype=F64)
        z = 3 * torch.randn(5, 13, 1, generator=gen, dtype=F64)
        ref = torch.distributions.Normal(0.0, math.sqrt(theta**2 + sigma**2))
        torch.testing.assert_close(model.log_marginal(x), ref.log_prob(x)[:, 0])
        torch.testing.assert_close(model.log_marginal(x.float()), ref.log_prob(x)[:, 0])
        lik = torch.distributions.Normal(theta * z, sigma).log_prob(x)[..., 0]
        torch.testing.assert_close(model.log_likelihood(x, z), lik)
        torch.testing.assert_close(model.log_prior(z), model.prior.log_prob(z))


def test_linear_posterior_is_bayes_rule_on_a_grid():
    model = LinearGaussianModel(theta=1.7, sigma=0.6)
    x = torch.tensor([[-2.0], [0.3], [4.0]], dtype=F64)
    h = 0.001
    z = (-8 + h * (torch.arange(16_000, dtype=F64) + 0.5))[:, None, None].expand(-1, 3, 1)
    joint = torch.exp(model.log_joint(x, z))
    evidence = joint.sum(0) * h
    torch.testing.assert_close(torch.log(evidence), model.log_marginal(x), rtol=0, atol=1e-9)
    bayes = joint / evidence
    torch.testing.assert_close(torch.exp(model.log_posterior(z, x)), bayes, rtol=0, atol=1e-9)
    mean, var = model.posterior(x)
    torch.testing.assert_close((bayes * z[..., 0]).sum(0) * h, mean[:, 0])
    torch.testing.assert_close((bayes * (z[..., 0] - mean[:, 0]) ** 2).sum(0) * h, var[:, 0])


def test_linear_samples_have_the_marginal_variance():
    model = LinearGaussianModel(theta=2.0, sigma=0.5)
    x, z = model.sample(50_000, generator=torch.Generator().manual_seed(3), return_z=True)
    assert x.shape == z.shape == (50_000, 1)
    var = model.theta**2 + model.sigma**2
    se = var * math.sqrt(2 / len(x))  # sd of the sample variance of a Gaussian
    assert abs(float(x.var()) - var) < 4 * se
    resid = x - model.decode(z)
    assert abs(float(resid.var()) - model.sigma**2) < 4 * model.sigma**2 * math.sqrt(2 / len(x))


def test_ring_likelihood_prior_decode_against_torch_distributions():
    gen = torch.Generator().manual_seed(2)
    model = RingModel(alpha=0.8, sigma=0.3)
    x = 4 * torch.randn(6, 2, generator=gen, dtype=F64)
    z = 5 * torch.randn(3, 6, 2, generator=gen, dtype=F64)
    g = 0.8 * z + z / z.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(model.decode(z), g)
    ref = torch.distributions.MultivariateNormal(g, 0.09 * torch.eye(2, dtype=F64))
    torch.testing.assert_close(model.log_likelihood(x, z), ref.log_prob(x))
    assert model.log_likelihood(x, z[0]).shape == (6,)
    torch.testing.assert_close(model.log_prior(z), model.prior.log_prob(z))
    torch.testing.assert_close(log_std_normal(z), model.prior.log_prob(z))
    torch.testing.assert_close(model.log_posterior(z, x),
                               model.log_joint(x, z) - model.log_marginal(x))
    assert model.sample(0).shape == (0, 2)
    assert model.log_marginal(torch.zeros(0, 2)).shape == (0,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: RingModel().log_marginal(torch.zeros(3)),
         r"x must have shape \(N, 2\), got \(3,\)"),
        (lambda: RingModel().log_marginal(torch.tensor([[0.0, math.nan]])), "x must be finite"),
        (lambda: RingModel().sample(-1), "n must be a non-negative int, got -1"),
        (lambda: RingModel().sample(2.5), "n must be a non-negative int, got 2.5"),
        (lambda: RingModel().log_likelihood(torch.zeros(4, 2), torch.ones(3, 5, 2)),
         r"z must have shape \(\.\.\., N, 2\) with N = 4 as in x, got \(3, 5, 2\)"),
        (lambda: RingModel().log_prior(torch.ones(3, 1)), r"z must have shape \(\.\.\., 2\)"),
        (lambda: RingModel().decode(torch.tensor([[math.inf, 1.0]])), "z must be finite"),
        (lambda: RingModel(alpha=-0.5), "alpha must be a finite number >= 0, got -0.5"),
        (lambda: RingModel(sigma=0.0), "sigma must be a finite number > 0, got 0.0"),
        (lambda: RingModel().laplace_proposal(torch.ones(2, 2), scale=-1.0),
         "scale must be a finite number > 0"),
        (lambda: RingModel().student_t_proposal(torch.ones(2, 2), df=0.0),
         "df must be a finite number > 0"),
        (lambda: RingModel().posterior_grid(torch.ones(2), n=0), "n must be a positive int"),
        (lambda: LinearGaussianModel(1.0, -2.0), "sigma must be a finite number > 0, got -2.0"),
        (lambda: LinearGaussianModel(math.nan, 1.0), "theta must be a finite number"),
        (lambda: LinearGaussianModel(1.0, 1.0).log_marginal(torch.zeros(3, 2)),
         r"x must have shape \(N, 1\), got \(3, 2\)"),
        (lambda: GaussianEncoder(2, 2, hidden=0), "hidden must be a positive int, got 0"),
        (lambda: GaussianEncoder(2, 2)(torch.zeros(3, 1)), r"x must have shape \(N, 2\)"),
        (lambda: fit_encoder(RingModel(), steps=0), "steps and batch_size must be positive"),
        (lambda: fit_encoder(RingModel(), lr=-1.0), "lr must be a finite number > 0"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("full", [True, False])
def test_encoder_proposal_is_the_gaussian_of_its_mean_and_cholesky_factor(full):
    torch.manual_seed(0)
    encoder = GaussianEncoder(2, 3, hidden=8, full_covariance=full)
    x = torch.randn(5, 2, dtype=F64)
    mu, scale_tril = encoder(x)
    assert mu.shape == (5, 3) and scale_tril.shape == (5, 3, 3)
    assert torch.equal(scale_tril, scale_tril.tril()) and (scale_tril.diagonal(0, -2, -1) > 0).all()
    lower = scale_tril.tril(-1)
    assert (lower.abs().sum() > 0) == full  # diagonal encoder: no correlations
    z = torch.randn(4, 5, 3, dtype=F64)
    cov = (scale_tril @ scale_tril.mT).detach().numpy()
    expected = np.stack([scipy.stats.multivariate_normal(mu[b].detach().numpy(), cov[b])
                         .logpdf(z[:, b].numpy()) for b in range(5)], -1)
    got = encoder.proposal(x).log_prob(z).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_fit_encoder_learns_the_exact_posterior_of_the_linear_model():
    """The ELBO's optimum over Gaussians is the exact Gaussian posterior N(theta x / (theta^2 +
    sigma^2), sigma^2 / (theta^2 + sigma^2)): the trained encoder's KL to it is small."""
    model = LinearGaussianModel(theta=1.5, sigma=0.5)
    encoder, history = fit_encoder(model, steps=1500, seed=0)
    assert len(history) == 1500
    assert sum(history[-100:]) > sum(history[:100])  # the ELBO went up
    x = model.sample(2000, generator=torch.Generator().manual_seed(1))
    mean, var = model.posterior(x)
    q = encoder.proposal(x)
    posterior = torch.distributions.MultivariateNormal(mean, var[..., None])
    kl = torch.distributions.kl_divergence(q, posterior)
    assert kl.mean() < 0.01, kl.mean()
    again, history_again = fit_encoder(model, steps=1500, seed=0)
    assert history_again == history  # one seed, one run
