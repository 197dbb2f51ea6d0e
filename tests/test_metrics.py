"""Tests of vaecourse.metrics (VAE section): log p(x) vs quadrature, ELBO parts, active units."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vaecourse import metrics
from vaecourse.models import vae


def binary_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 784), 0.3, dtype=torch.float64), generator=g)


def exact_log_px(model: vae.VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of a 1-D latent model by quadrature: a 1-D grid, fine enough to be exact."""
    z = torch.linspace(-10, 10, 20_001, dtype=torch.float64)
    log_joint = (-vae.reconstruction_nll(model.decode(z[:, None, None]), x)  # (grid, B)
                 - 0.5 * z[:, None] ** 2 - 0.5 * math.log(2 * math.pi))
    return torch.logsumexp(log_joint, dim=0) + math.log(z[1] - z[0])


@torch.no_grad()
def test_log_likelihood_matches_quadrature_within_standard_errors():
    torch.manual_seed(0)
    model = vae.VAE(latent=1, hidden=8).double()
    x = binary_images(3)
    exact = exact_log_px(model, x)
    repeats, samples = 100, 60
    g = torch.Generator().manual_seed(1)
    # 100 independent estimates per image; chunks of 20 samples (max_elements) are combined
    log_px, elbo = metrics.log_likelihood(model, x.repeat(repeats, 1), samples, batch_size=300,
                                          max_elements=20 * 300 * 784, generator=g)
    ratio = torch.exp(log_px.reshape(repeats, 3) - exact)  # p_hat / p: unbiased for 1
    se = ratio.std(0) / math.sqrt(repeats)
    assert ((ratio.mean(0) - 1).abs() < 4 * se + 1e-12).all(), (ratio.mean(0), se)
    assert (elbo.reshape(repeats, 3).mean(0) < exact).all()  # Jensen: the ELBO is below


class WideProposal(vae.VAE):
    """A 1-D latent model whose q(z|x) = N(1, 2^2) is off-centre and wide: a large gap."""

    def encode(self, x):
        ones = torch.ones(len(x), 1, dtype=x.dtype)
        return ones, ones * math.log(4.0)


@torch.no_grad()
def test_bound_rises_with_samples_towards_log_px():
    torch.manual_seed(0)
    model = WideProposal(latent=1, hidden=8).double()
    x = binary_images(2, seed=3)
    exact = exact_log_px(model, x)
    g = torch.Generator().manual_seed(2)
    means, ses = [], []
    for k in (1, 10, 100):
        est = metrics.log_likelihood(model, x.repeat(200, 1), k, generator=g)[0].reshape(200, 2)
        means.append(est.mean(0))
        ses.append(est.std(0) / math.sqrt(200))
    for a, b, sa, sb in zip(means, means[1:], ses, ses[1:], strict=False):
        assert (b - a > -3 * (sa**2 + sb**2).sqrt()).all()
    assert (means[-1] < exact + 3 * ses[-1]).all()
    assert (means[-1] - means[0] > 3 * (ses[0] ** 2 + ses[-1] ** 2).sqrt()).all()


class ConstantModel(vae.VAE):
    """q(z|x) = p(z) = N(0, I) and a decoder that ignores z: log w = log p(x) exactly."""

    def __init__(self, logits: torch.Tensor):
        super().__init__(latent=2, hidden=4)
        self.logits = nn.Parameter(logits)

    def encode(self, x):
        zeros = torch.zeros(len(x), 2, dtype=x.dtype)
        return zeros, zeros.clone()

    def decode(self, z):
        return self.logits.expand(*z.shape[:-1], 784)


def test_log_likelihood_exact_for_a_constant_model_in_any_chunking():
    logits = torch.linspace(-3, 3, 784, dtype=torch.float64)
    model, x = ConstantModel(logits), binary_images(7)
    truth = -vae.reconstruction_nll(logits, x)
    for max_elements in (1, 3 * 784 * 7, 2**24):
        log_px, elbo = metrics.log_likelihood(model, x, 50, batch_size=4,
                                              max_elements=max_elements)
        torch.testing.assert_close(log_px, truth)
        torch.testing.assert_close(elbo, truth)
    with pytest.raises(ValueError, match="samples"):
        metrics.log_likelihood(model, x, 0)


def test_elbo_parts_match_torch_distributions():
    """The reference: E_q[log Bernoulli(x | decode(z))] by Monte Carlo with torch.distributions and
    KL(q || N(0, I)) in closed form by torch.distributions.kl_divergence."""
    torch.manual_seed(0)
    model, x = vae.VAE(latent=3, hidden=8).double(), binary_images(30)
    with torch.no_grad():  # codes away from the prior, so that the KL is several nats
        model.encoder[-1].bias[:3] += 2.0
    parts = metrics.elbo_parts(model, x, batch_size=7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, logvar = model.encode(x)
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        kl = kl_divergence(q, Independent(Normal(torch.zeros_like(mu), 1.0), 1))
        z = q.sample((400,))
        log_px_z = Independent(Bernoulli(logits=model.decode(z)), 1).log_prob(x)  # (400, 30)
    assert parts["kl"] == pytest.approx(kl.mean().item(), rel=1e-9) and parts["kl"] > 3
    recon = -log_px_z.mean(0)  # per image, 400 samples
    # the same 30 images: only the Monte Carlo noise differs (one sample per image vs 400)
    se = math.sqrt(log_px_z.var(0).mean().item() / 30 * (1 + 1 / 400))
    assert abs(parts["reconstruction"] - recon.mean().item()) < 5 * se
    assert abs(parts["elbo"] - (-recon.mean() - kl.mean()).item()) < 5 * se


class LinearEncoder(vae.VAE):
    """mu_j = x . a_j with hand-chosen directions a_j (latent 4)."""

    def __init__(self, directions: torch.Tensor):
        super().__init__(latent=4, hidden=4)
        self.directions = directions

    def encode(self, x):
        mu = x @ self.directions.T
        return mu, torch.zeros_like(mu)


def test_active_units_on_a_hand_made_encoder():
    x = binary_images(500, seed=4)
    directions = torch.zeros(4, 784, dtype=torch.float64)
    directions[0, 0] = 1.0  # Var = 0.3 * 0.7 = 0.21: active
    directions[1, 1] = 0.1  # Var = 0.0021: inactive
    directions[2, :] = 0.0  # constant: inactive
    directions[3, 2:4] = 0.5  # Var = 0.5 * 0.21 = 0.105: active
    count, variances = metrics.active_units(LinearEncoder(directions), x, batch_size=64)
    mu = (x @ directions.T).numpy()
    np.testing.assert_allclose(variances.numpy(), mu.var(axis=0, ddof=1), rtol=1e-10)
    assert count == int((mu.var(axis=0, ddof=1) > 0.01).sum()) == 2
    assert metrics.active_units(LinearEncoder(directions), x, threshold=0.001)[0] == 3
    with pytest.raises(ValueError, match="at least 2"):
        metrics.active_units(LinearEncoder(directions), x[:1])


def test_evaluate_vae_is_exact_for_a_constant_model():
    """log w = log p(x) for every sample of ConstantModel: every likelihood metric equals the
    exact log p(x) (a product of Bernoullis, by torch.distributions), the gap is 0, no unit is
    active."""
    logits = torch.linspace(-3, 3, 784, dtype=torch.float64)
    model, x = ConstantModel(logits), binary_images(12)
    truth = Independent(Bernoulli(logits=logits), 1).log_prob(x)
    out = metrics.evaluate_vae(model, x, samples=30, eval_size=5)
    assert out["test_log_likelihood"] == pytest.approx(truth[:5].mean().item(), rel=1e-9)
    assert out["eval_elbo"] == pytest.approx(truth[:5].mean().item(), rel=1e-9)
    assert out["test_elbo"] == pytest.approx(truth.mean().item(), rel=1e-9)
    assert out["test_log_likelihood_se"] == pytest.approx(
        truth[:5].std().item() / math.sqrt(5), rel=1e-9)
    assert out["likelihood_gap"] == pytest.approx(0.0, abs=1e-9) and out["test_kl"] == 0.0
    assert out["active_units"] == 0


@pytest.mark.parametrize("eval_size", [0, -3, 2.5])
def test_evaluate_vae_rejects_a_bad_eval_size(eval_size):
    model, x = ConstantModel(torch.zeros(784, dtype=torch.float64)), binary_images(4)
    with pytest.raises(ValueError, match=f"eval_size must be an int >= 1, got {eval_size}"):
        metrics.evaluate_vae(model, x, samples=3, eval_size=eval_size)


def test_over_seeds_and_pm_report_mean_and_standard_error():
    mean, se = metrics.over_seeds([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(scipy.stats.sem([1.0, 2.0, 4.0]))
    assert metrics.pm(mean, se, 1) == "2.3 ± 0.9"
    one = metrics.over_seeds([5])
    assert one[0] == 5.0 and math.isnan(one[1])
    assert metrics.pm(*one, 1) == "5.0"  # one seed: no standard error to report


def test_seed_difference_is_over_seeds_or_over_examples_for_one_seed():
    a = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0]])
    b = torch.zeros(3, 2)
    mean, se = metrics.seed_difference(a, b + torch.tensor([[0.0], [1.0], [2.0]]))
    per_seed = [2.0, 1.0, 0.0]  # per-seed mean differences
    assert mean == pytest.approx(1.0)
    assert se == pytest.approx(scipy.stats.sem(per_seed))
    mean, se = metrics.seed_difference(a[:1], b[:1])
    assert (mean, se) == pytest.approx((2.0, scipy.stats.sem([1.0, 3.0])))
    with pytest.raises(ValueError, match=r"same shape \(seeds, N\)"):
        metrics.seed_difference(a, b[:2])


def test_seed_mean_is_over_seeds_or_over_examples_for_one_seed():
    values = torch.tensor([[1.0, 3.0], [2.0, 6.0], [0.0, 4.0]])
    assert metrics.seed_mean(values) == pytest.approx((8 / 3, scipy.stats.sem([2.0, 4.0, 2.0])))
    assert metrics.seed_mean(values[1:2]) == pytest.approx((4.0, scipy.stats.sem([2.0, 6.0])))
    with pytest.raises(ValueError, match=r"shape \(seeds, N\), got \(2,\)"):
        metrics.seed_mean(values[0])


def test_colour_field_errors_by_hand():
    g = torch.Generator().manual_seed(0)
    target = 20 * torch.randn(3, 2, 6, 5, generator=g)
    vivid = target.pow(2).sum(1, keepdim=True).sqrt() >= 25
    offset = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # an error of length 5
    pred = target + offset * vivid
    errors = metrics.colour_field_errors(pred, target, saturated=25)
    assert errors["saturated_error"] == pytest.approx(5.0, rel=1e-5)
    assert errors["ab_error"] == pytest.approx(5.0 * vivid.double().mean().item(), rel=1e-5)
    d = (pred - target).numpy()
    dx, dy = np.diff(d, axis=3)[:, :, :-1, :], np.diff(d, axis=2)[:, :, :, :-1]
    expected = np.sqrt((dx**2 + dy**2).sum(1)).mean()
    assert errors["gradient_error"] == pytest.approx(expected, rel=1e-5)
    shifted = metrics.colour_field_errors(target + offset, target, saturated=25)
    assert shifted["gradient_error"] == pytest.approx(0.0, abs=1e-5)  # a constant shift: no edge
    with pytest.raises(ValueError, match="shape"):
        metrics.colour_field_errors(pred[:, :1], target[:, :1], saturated=25)
    with pytest.raises(ValueError, match="saturated"):
        metrics.colour_field_errors(pred, target, saturated=1e6)
