"""Tests of vaecourse.estimators (chapters 2-4) on a 1-D linear Gaussian model built here.

The model: z ~ N(0, 1), x | z ~ N(theta z, sigma^2), so p(x) = N(0, theta^2 + sigma^2) and
p(z | x) = N(theta x / (theta^2 + sigma^2), sigma^2 / (theta^2 + sigma^2)) exactly.
"""

from __future__ import annotations

import math

import pytest
import scipy.special
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaecourse import estimators

THETA, SIGMA = 2.0, 0.5
DTYPES = [torch.float32, torch.float64]
NEG_INF = -math.inf


def normal(mean: float | torch.Tensor, sd: float | torch.Tensor) -> Independent:
    """A 1-D Gaussian as a distribution over z of shape (..., 1)."""
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1, 1)
    sd = torch.as_tensor(sd, dtype=torch.float64).reshape(-1, 1)
    return Independent(Normal(mean.squeeze(0) if mean.shape[0] == 1 else mean,
                              sd.squeeze(0) if sd.shape[0] == 1 else sd), 1)


PRIOR = normal(0.0, 1.0)


def log_likelihood(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x | z) for x of shape (B, 1) and z of shape (S, B, 1): shape (S, B)."""
    return Normal(THETA * z, SIGMA).log_prob(x).sum(-1)


def log_marginal(x: float) -> float:
    return Normal(0.0, math.sqrt(THETA**2 + SIGMA**2)).log_prob(torch.tensor(x)).item()


def posterior(x: float) -> tuple[float, float]:
    var = THETA**2 + SIGMA**2
    return THETA * x / var, SIGMA / math.sqrt(var)


def data(x: float, n: int) -> torch.Tensor:
    return torch.full((n, 1), x, dtype=torch.float64)


# --- log_mean_exp -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_log_mean_exp_matches_logsumexp_minus_log_n(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(int(s) for s in torch.randint(1, 6, (3,), generator=gen))
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 1e4).to(dtype)  # exp overflows
    x[torch.rand(shape, generator=gen) < 0.3] = NEG_INF  # zero weights
    for dim in (-1, 0, 1):
        # an independent reference: scipy's log-sum-exp with weights b = 1/n, in float64
        ref = scipy.special.logsumexp(x.double().numpy(), axis=dim, b=1.0 / shape[dim])
        torch.testing.assert_close(estimators.log_mean_exp(x, dim=dim),
                                   torch.as_tensor(ref, dtype=dtype))
        assert estimators.log_mean_exp(x, dim=dim, keepdim=True).shape[dim] == 1


def test_log_mean_exp_hand_cases():
    x = torch.tensor([[1e4, 1e4], [0.0, NEG_INF], [NEG_INF, NEG_INF], [-1e4, -1e4]])
    out = estimators.log_mean_exp(x)
    assert out[0] == 1e4 and out[3] == -1e4 and out[2] == NEG_INF
    assert abs(out[1].item() - math.log(0.5)) < 1e-7
    small = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(estimators.log_mean_exp(small), small.exp().mean(-1).log())


# --- effective sample size ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_effective_sample_size_hand_cases(dtype):
    log_w = torch.tensor([[5.0] * 4, [0.0, -800.0, -800.0, -800.0], [0.0, 0.0, NEG_INF, NEG_INF],
                          [NEG_INF] * 4, [1e4] * 4], dtype=dtype)
    expected = torch.tensor([4.0, 1.0, 2.0, 0.0, 4.0], dtype=dtype)
    torch.testing.assert_close(estimators.effective_sample_size(log_w), expected)


def test_effective_sample_size_formula_and_scale_invariance():
    log_w = torch.randn(3, 50, dtype=torch.float64) * 2
    w = log_w.exp()
    ess = estimators.effective_sample_size(log_w)
    torch.testing.assert_close(ess, w.sum(-1) ** 2 / (w**2).sum(-1))
    torch.testing.assert_close(estimators.effective_sample_size(log_w + 1e4), ess)
    torch.testing.assert_close(estimators.effective_sample_size(log_w.T, dim=0), ess)


# --- ELBO and IWAE bounds -----------------------------------------------------------------


def test_iwae_terms_group_consecutive_samples():
    log_w = torch.randn(2, 3, 12, dtype=torch.float64)
    terms = estimators.iwae_terms(log_w, 4)
    assert terms.shape == (2, 3, 3)
    for g in range(3):
        torch.testing.assert_close(terms[..., g], log_w[..., 4 * g:4 * g + 4].exp().mean(-1).log())
    torch.testing.assert_close(estimators.iwae_bound(log_w, 1), estimators.elbo(log_w))
    torch.testing.assert_close(estimators.iwae_bound(log_w, 12), estimators.log_mean_exp(log_w))
    torch.testing.assert_close(estimators.iwae_bound(log_w.movedim(-1, 0), 4, dim=0),
                               terms.mean(-1))


def test_elbo_matches_closed_form_within_three_standard_errors():
    # ELBO = log p(x) - KL(q || p(z | x)) in closed form for a Gaussian q
    x0, n = 1.5, 100_000
    m, s = posterior(x0)
    q = normal(m + 0.8, 1.3 * s)
    torch.manual_seed(0)
    log_w = estimators.sample_log_weights(data(x0, 1), log_likelihood, PRIOR, n, q)
    exact = log_marginal(x0) - kl_divergence(q, normal(m, s)).item()
    se = log_w.std().item() / math.sqrt(n)
    assert abs(estimators.elbo(log_w).item() - exact) < 3 * se


def test_iwae_bounds_are_ordered_up_to_log_marginal():
    # L_1 <= L_5 <= L_50 <= log p(x): each L_k from its own samples with its standard error
    x0, n_groups = 3.0, 4000
    m, s = posterior(x0)
    q = normal(m - s, 1.5 * s)
    torch.manual_seed(1)
    bound, se = {}, {}
    for k in (1, 5, 50):
        log_w = estimators.sample_log_weights(data(x0, 1), log_likelihood, PRIOR, k * n_groups, q)
        terms = estimators.iwae_terms(log_w, k)
        bound[k] = estimators.iwae_bound(log_w, k).item()
        se[k] = terms.std().item() / math.sqrt(n_groups)
    for a, b in [(1, 5), (5, 50)]:  # a real increase, far beyond the noise
        assert bound[b] - bound[a] > 3 * math.hypot(se[a], se[b])
    assert bound[50] < log_marginal(x0) + 3 * se[50]
    assert log_marginal(x0) - bound[50] < 0.2 * (log_marginal(x0) - bound[1])


def test_exact_posterior_proposal_gives_log_marginal_every_time():
    x0 = torch.tensor([[-1.0], [0.3], [4.0]], dtype=torch.float64)
    mean, sd = posterior(1.0)
    q = normal(x0.squeeze(-1) * mean, torch.full((3,), sd))  # one proposal per example
    log_w = estimators.sample_log_weights(x0, log_likelihood, PRIOR, 64, q)
    assert log_w.shape == (3, 64)
    exact = torch.tensor([log_marginal(v) for v in x0.squeeze(-1).tolist()], dtype=torch.float64)
    torch.testing.assert_close(log_w, exact[:, None].expand(3, 64))
    torch.testing.assert_close(estimators.effective_sample_size(log_w),
                               torch.full((3,), 64.0, dtype=torch.float64))
    torch.testing.assert_close(
        estimators.importance_log_marginal(x0, log_likelihood, PRIOR, q, 64), exact)


# --- naive and importance-sampled estimators of p(x) --------------------------------------


def test_naive_estimator_of_p_is_unbiased_and_its_log_biased_low():
    x0, n_rep, n_samples = 2.5, 20_000, 10
    torch.manual_seed(2)
    log_p_hat = estimators.naive_log_marginal(data(x0, n_rep), log_likelihood, PRIOR, n_samples)
    assert log_p_hat.shape == (n_rep,)
    p_hat, p = log_p_hat.exp(), math.exp(log_marginal(x0))
    assert abs(p_hat.mean().item() - p) < 3 * p_hat.std().item() / math.sqrt(n_rep)
    log_bias = log_p_hat.mean().item() - log_marginal(x0)
    assert log_bias < -3 * log_p_hat.std().item() / math.sqrt(n_rep)


def test_importance_estimator_of_p_is_unbiased():
    x0, n_rep, n_samples = 2.5, 20_000, 5
    m, s = posterior(x0)
    torch.manual_seed(3)
    p_hat = estimators.importance_log_marginal(
        data(x0, n_rep), log_likelihood, PRIOR, normal(m + s, 2 * s), n_samples).exp()
    p = math.exp(log_marginal(x0))
    assert abs(p_hat.mean().item() - p) < 3 * p_hat.std().item() / math.sqrt(n_rep)


def test_log_weights_are_differentiable_in_the_proposal():
    # z is drawn by rsample: z = mean + sd * eps, so dz/dmean = 1 for every draw (pathwise)
    mean = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    q = Independent(Normal(mean, torch.tensor([0.3], dtype=torch.float64)), 1)
    drawn = []

    def recording_log_likelihood(x, z):
        drawn.append(z)
        return log_likelihood(x, z)

    torch.manual_seed(4)
    log_p = estimators.importance_log_marginal(data(1.0, 2), recording_log_likelihood, PRIOR, q, 8)
    (dz_dmean,) = torch.autograd.grad(drawn[0].sum(), mean, retain_graph=True)
    assert dz_dmean.item() == drawn[0].numel()
    (grad,) = torch.autograd.grad(log_p.sum(), mean)
    assert torch.isfinite(grad).all() and grad.abs() > 0


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_bad_sample_counts_raise(n):
    with pytest.raises(ValueError, match=f"n_samples must be a positive int, got {n!r}"):
        estimators.naive_log_marginal(data(0.0, 2), log_likelihood, PRIOR, n)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        estimators.importance_log_marginal(data(0.0, 2), log_likelihood, PRIOR, PRIOR, n)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: estimators.iwae_bound(torch.zeros(2, 10), 3),
         "the sample count 10 of log_w must be a multiple of k, got k=3"),
        (lambda: estimators.iwae_bound(torch.zeros(2, 10), 0), "k must be a positive int, got 0"),
        (lambda: estimators.log_mean_exp(torch.tensor([0.0, math.nan])),
         "x must be finite or -inf"),
        (lambda: estimators.elbo(torch.tensor([0.0, math.inf])), "log_w must be finite or -inf"),
        (lambda: estimators.log_mean_exp(torch.zeros(3, 0)),
         "x must hold at least one sample along dim -1, got 0"),
        (lambda: estimators.effective_sample_size(torch.zeros(3), dim=1),
         r"log_w must have a dimension 1, got shape \(3,\)"),
        (lambda: estimators.log_mean_exp(torch.zeros(3, dtype=torch.long)),
         "x must be a floating-point torch.Tensor, got torch.int64"),
        (lambda: estimators.naive_log_marginal(data(0.0, 2), log_likelihood, normal(
            torch.zeros(5), torch.ones(5)), 4),
         r"prior must have batch shape \(\) or \(2,\) \(one per example\), got \(5,\)"),
        (lambda: estimators.naive_log_marginal(
            data(0.0, 2), lambda x, z: log_likelihood(x, z).sum(0), PRIOR, 4),
         r"log_likelihood\(x, z\) must return shape \(n_samples, B\) = \(4, 2\), got \(2,\)"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
