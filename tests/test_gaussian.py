"""Tests of vaecourse.gaussian against torch.distributions (chapter 5)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaecourse import gaussian

DTYPES = [torch.float32, torch.float64]
SEEDS = range(6)


def diag_normal(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    """The reference distribution N(mu, diag(exp(logvar))) of torch.distributions."""
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def random_gaussian(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype,
                    mu_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mu ~ U(-mu_scale, mu_scale), logvar ~ U(-30, 30) of the given shape and dtype."""
    mu = (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1) * mu_scale
    logvar = (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1) * 30
    return mu.to(dtype), logvar.to(dtype)


def random_shape(gen: torch.Generator) -> tuple[int, ...]:
    """A random batch shape of 0 to 2 dimensions followed by an event dimension."""
    n_batch = int(torch.randint(0, 3, (), generator=gen))
    return tuple(int(s) for s in torch.randint(1, 5, (n_batch + 1,), generator=gen))


def tolerance(dtype: torch.dtype, scale: torch.Tensor) -> torch.Tensor:
    """Rounding-error bound: a few ulps of the sum of the magnitudes of the terms."""
    return 64 * torch.finfo(dtype).eps * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mu_scale", [3.0, 1e4])
def test_kl_std_normal_matches_torch(dtype, seed, mu_scale):
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = random_gaussian(gen, random_shape(gen), dtype, mu_scale)
    ours = gaussian.kl_std_normal(mu, logvar)
    assert ours.dtype == dtype and ours.shape == mu.shape[:-1]
    mu64, lv64 = mu.double(), logvar.double()
    ref = kl_divergence(diag_normal(mu64, lv64), diag_normal(0 * mu64, 0 * lv64))
    scale = (mu64**2 + lv64.exp() + lv64.abs() + 1).sum(-1)
    assert torch.all((ours.double() - ref).abs() <= tolerance(dtype, scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mu_scale", [3.0, 1e3])
def test_kl_diag_gaussians_matches_torch_with_broadcasting(dtype, seed, mu_scale):
    gen = torch.Generator().manual_seed(seed)
    shape = (3,) + random_shape(gen)
    mu_q, lv_q = random_gaussian(gen, shape, dtype, mu_scale)
    mu_p, lv_p = random_gaussian(gen, shape[-1:], dtype, mu_scale)  # one p for the whole batch
    ours = gaussian.kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p)
    assert ours.dtype == dtype and ours.shape == shape[:-1]
    q, p = diag_normal(mu_q.double(), lv_q.double()), diag_normal(mu_p.double(), lv_p.double())
    ref = kl_divergence(q, p)
    r = lv_q.double() - lv_p.double()
    scale = (r.exp() + r.abs() + 1 + (mu_q.double() - mu_p.double()) ** 2 * (-lv_p.double()).exp())
    assert torch.all((ours.double() - ref).abs() <= tolerance(dtype, scale.sum(-1)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mu_scale", [3.0, 1e3])
def test_log_normal_diag_matches_torch_over_samples(dtype, seed, mu_scale):
    gen = torch.Generator().manual_seed(seed)
    shape = random_shape(gen)
    mu, logvar = random_gaussian(gen, shape, dtype, mu_scale)
    x = mu + torch.randn((5,) + shape, generator=gen, dtype=torch.float64).to(dtype) * mu_scale
    ours = gaussian.log_normal_diag(x, mu, logvar)
    assert ours.dtype == dtype and ours.shape == (5,) + shape[:-1]
    ref = diag_normal(mu.double(), logvar.double()).log_prob(x.double())
    lv = logvar.double()
    scale = (math.log(2 * math.pi) + lv.abs() + (x.double() - mu.double()) ** 2 * (-lv).exp())
    assert torch.all((ours.double() - ref).abs() <= tolerance(dtype, scale.sum(-1)))


@pytest.mark.parametrize("logvar", [1e-3, -1e-3, 1e-2])
def test_kl_keeps_relative_accuracy_near_logvar_zero_in_float32(logvar):
    # exp(logvar) - 1 - logvar ~ logvar^2 / 2 is far smaller than its terms: the naive
    # 1 + logvar - exp(logvar) loses ~5% here in float32, expm1 keeps it to ~1e-4.
    lv = torch.full((1, 1), logvar, dtype=torch.float32)
    exact = 0.5 * (torch.expm1(lv.double()) - lv.double()).sum(-1)
    for ours in (gaussian.kl_std_normal(torch.zeros_like(lv), lv),
                 gaussian.kl_diag_gaussians(torch.zeros_like(lv), lv, torch.zeros_like(lv),
                                            torch.zeros_like(lv))):
        assert torch.all(((ours.double() - exact) / exact).abs() < 1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_values_stay_finite(dtype):
    mu = torch.tensor([[1e4, -1e4, 0.0]], dtype=dtype)
    lv = torch.tensor([[30.0, -30.0, 30.0]], dtype=dtype)
    outputs = [gaussian.kl_std_normal(mu, lv), gaussian.kl_diag_gaussians(mu, lv, -mu, -lv),
               gaussian.log_normal_diag(-mu, mu, -lv), gaussian.reparameterize(mu, lv)]
    for out in outputs:
        assert torch.isfinite(out).all()


def test_shared_parameters_broadcast_like_expanded_ones():
    gen = torch.Generator().manual_seed(8)
    mu, lv = random_gaussian(gen, (4, 3), torch.float64, 3.0)
    shared = lv[0]  # one logvar of shape (D,) for the whole batch
    full = shared.expand(4, 3)
    torch.testing.assert_close(gaussian.kl_std_normal(mu, shared), gaussian.kl_std_normal(mu, full))
    torch.testing.assert_close(gaussian.log_normal_diag(mu[:, None], mu, shared),
                               gaussian.log_normal_diag(mu[:, None], mu, full))
    z = gaussian.reparameterize(mu, shared, torch.Generator().manual_seed(0), sample_shape=(2,))
    z_full = gaussian.reparameterize(mu, full, torch.Generator().manual_seed(0), sample_shape=(2,))
    assert z.shape == (2, 4, 3)
    torch.testing.assert_close(z, z_full)


def test_reparameterize_is_the_formula_and_equals_rsample():
    gen = torch.Generator().manual_seed(1)
    mu, logvar = random_gaussian(gen, (4, 3), torch.float64, 5.0)
    z = gaussian.reparameterize(mu, logvar, torch.Generator().manual_seed(7), sample_shape=(2,))
    eps = torch.randn((2, 4, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps, rtol=1e-12, atol=0)
    torch.manual_seed(3)
    ours = gaussian.reparameterize(mu, logvar, sample_shape=(2,))
    torch.manual_seed(3)
    ref = Normal(mu, torch.exp(0.5 * logvar)).rsample((2,))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reparameterize_moments_within_standard_errors(dtype):
    n = 200_000
    mu = torch.tensor([-2.0, 0.0, 1e3, 5.0], dtype=dtype)
    logvar = torch.tensor([-4.0, 0.0, 6.0, 20.0], dtype=dtype)
    z = gaussian.reparameterize(mu, logvar, torch.Generator().manual_seed(0), sample_shape=(n,))
    z = z.double()
    var = logvar.double().exp()
    se_mean = (var / n).sqrt()
    se_var = var * math.sqrt(2.0 / (n - 1))  # standard error of the sample variance of a Gaussian
    assert torch.all((z.mean(0) - mu.double()).abs() < 4 * se_mean)
    assert torch.all((z.var(0) - var).abs() < 4 * se_var)


def test_monte_carlo_kl_within_three_standard_errors():
    n = 200_000
    gen = torch.Generator().manual_seed(2)
    mu_q, lv_q, mu_p, lv_p = (torch.randn(*shape, generator=gen, dtype=torch.float64)
                              for shape in [(3, 4), (3, 4), (4,), (4,)])
    z = gaussian.reparameterize(mu_q, lv_q, gen, sample_shape=(n,))
    for closed, log_p in [
        (gaussian.kl_std_normal(mu_q, lv_q), gaussian.log_normal_diag(z, 0 * mu_p, 0 * lv_p)),
        (gaussian.kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p),
         gaussian.log_normal_diag(z, mu_p, lv_p)),
    ]:
        terms = gaussian.log_normal_diag(z, mu_q, lv_q) - log_p
        se = terms.std(0) / math.sqrt(n)
        assert torch.all((terms.mean(0) - closed).abs() < 3 * se)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(4)
    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    mu, lv, mu_p, lv_p, x = leaf(2, 3), leaf(2, 3), leaf(3), leaf(3), leaf(4, 2, 3)
    assert torch.autograd.gradcheck(gaussian.kl_std_normal, (mu, lv))
    assert torch.autograd.gradcheck(gaussian.kl_diag_gaussians, (mu, lv, mu_p, lv_p))
    assert torch.autograd.gradcheck(gaussian.log_normal_diag, (x, mu, lv))
    def sample(m, v):
        return gaussian.reparameterize(m, v, torch.Generator().manual_seed(0), sample_shape=(5,))
    assert torch.autograd.gradcheck(sample, (mu, lv))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_torch_at_extremes(dtype):
    mu = torch.tensor([[1e3, -50.0, 0.5]], dtype=dtype, requires_grad=True)
    lv = torch.tensor([[30.0, -30.0, 1e-3]], dtype=dtype, requires_grad=True)
    ours = torch.autograd.grad(gaussian.kl_std_normal(mu, lv).sum(), (mu, lv))
    mu64 = mu.detach().double().requires_grad_()
    lv64 = lv.detach().double().requires_grad_()
    kl = kl_divergence(diag_normal(mu64, lv64), diag_normal(0 * mu64, 0 * lv64))
    ref = torch.autograd.grad(kl.sum(), (mu64, lv64))
    for g, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(g.double(), r, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(5)
    mu, lv = random_gaussian(gen, (8, 4), torch.float64, 10.0)
    mu_p, lv_p = random_gaussian(gen, (4,), torch.float64, 10.0)
    cuda = torch.device("cuda")
    for fn, args in [(gaussian.kl_std_normal, (mu, lv)),
                     (gaussian.kl_diag_gaussians, (mu, lv, mu_p, lv_p)),
                     (gaussian.log_normal_diag, (mu_p, mu, lv))]:
        out = fn(*(a.to(cuda) for a in args))
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(*args))
    # a CPU generator drives CUDA tensors: the same noise as on the CPU
    z_cuda = gaussian.reparameterize(mu.to(cuda), lv.to(cuda), torch.Generator().manual_seed(0))
    z_cpu = gaussian.reparameterize(mu, lv, torch.Generator().manual_seed(0))
    assert z_cuda.device.type == "cuda"
    torch.testing.assert_close(z_cuda.cpu(), z_cpu)


GOOD = torch.zeros(2, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gaussian.kl_std_normal(GOOD, torch.zeros(2, 4)),
         r"logvar must have the event dimension of mu, 3, got shape \(2, 4\)"),
        (lambda: gaussian.reparameterize(GOOD, torch.zeros(4, 3)),
         r"logvar must broadcast against mu of shape \(2, 3\), got shape \(4, 3\)"),
        (lambda: gaussian.kl_std_normal(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2)),
         "mu must be finite, got a tensor containing nan"),
        (lambda: gaussian.reparameterize(GOOD, torch.full((2, 3), float("inf"))),
         "logvar must be finite, got a tensor containing inf"),
        (lambda: gaussian.kl_std_normal(torch.tensor(0.0), torch.tensor(0.0)),
         r"mu must have shape \(\.\.\., D\)"),
        (lambda: gaussian.kl_std_normal(torch.zeros(2, 3, dtype=torch.long), GOOD),
         "mu must be a floating-point torch.Tensor, got torch.int64"),
        (lambda: gaussian.kl_std_normal([0.0], GOOD), "mu must be a floating-point torch.Tensor"),
        (lambda: gaussian.kl_diag_gaussians(GOOD, GOOD, torch.zeros(2), torch.zeros(2)),
         r"mu_p must have the event dimension of mu_q, 3, got shape \(2,\)"),
        (lambda: gaussian.kl_diag_gaussians(GOOD, GOOD, torch.zeros(4, 3), torch.zeros(4, 3)),
         r"mu_p must broadcast against mu_q, logvar_q of shape \(2, 3\), got shape \(4, 3\)"),
        (lambda: gaussian.kl_diag_gaussians(GOOD, GOOD, GOOD, GOOD - math.inf),
         "logvar_p must be finite, got a tensor containing -inf"),
        (lambda: gaussian.log_normal_diag(torch.zeros(5, 2, 2), GOOD, GOOD),
         r"mu must have the event dimension of x, 2, got shape \(2, 3\)"),
        (lambda: gaussian.log_normal_diag(GOOD + math.nan, GOOD, GOOD), "x must be finite"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
