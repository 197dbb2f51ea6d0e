"""Tests of vaecourse.models.cvae: the conditional bound, importance weights, prior sampling."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from vaecourse import estimators, train
from vaecourse.models import cvae


def tiny(latent=2, x_dim=6, y_dim=3, learned_prior=True, mask=None, seed=0):
    torch.manual_seed(seed)
    return cvae.CVAE(x_dim, y_dim, latent, hidden=16, learned_prior=learned_prior,
                     output_mask=mask)


def binary(n, d, seed):
    return torch.bernoulli(torch.full((n, d), 0.5), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_fixed_prior():
    model = tiny(latent=3, learned_prior=False)
    x, y = binary(5, 6, 0), torch.randn(5, 3)
    mu, logvar = model.recognition(x, y)
    assert mu.shape == logvar.shape == (5, 3)
    mu_p, logvar_p = model.prior(y)
    assert torch.equal(mu_p, torch.zeros(5, 3)) and torch.equal(logvar_p, torch.zeros(5, 3))
    assert model.decode(torch.randn(7, 5, 3), y).shape == (7, 5, 6)
    assert cvae.sample(model, y, 4).shape == (4, 5, 6)
    assert cvae.log_weights(model, x, y, 9).shape == (5, 9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_elbo_terms_match_torch_distributions(dtype):
    model = tiny(latent=4).to(dtype)
    x, y = binary(8, 6, 1).to(dtype), torch.randn(8, 3, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    nelbo, recon, kl = cvae.negative_elbo(model, x, y, generator=g)
    mu_q, logvar_q = model.recognition(x, y)
    mu_p, logvar_p = model.prior(y)
    expected_kl = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()),
                                Normal(mu_p, (0.5 * logvar_p).exp())).sum(-1)
    torch.testing.assert_close(kl, expected_kl)
    eps = torch.randn(mu_q.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    z = mu_q + (0.5 * logvar_q).exp() * eps
    logits = model.decode(z, y)
    expected_recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    torch.testing.assert_close(recon, expected_recon)
    torch.testing.assert_close(nelbo, expected_recon + expected_kl)
    # the interface method is the same bound with the same noise
    torch.testing.assert_close(model.negative_elbo(x, y, torch.Generator().manual_seed(3)),
                               expected_recon + expected_kl)


def test_output_mask_counts_only_masked_pixels():
    mask = torch.tensor([1.0, 1, 0, 0, 1, 0])
    model = tiny(mask=mask)
    logits, x = torch.randn(4, 6), binary(4, 6, 2)
    x2 = x.clone()
    x2[:, mask == 0] = 1 - x2[:, mask == 0]  # change only the given (unmasked) pixels
    torch.testing.assert_close(model.nll(logits, x), model.nll(logits, x2))
    full = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(model.nll(logits, x), (full * mask).sum(-1))
    baseline = cvae.BaselineNet(6, 3, 16, output_mask=mask)
    y = torch.randn(4, 3)
    expected = (F.binary_cross_entropy_with_logits(baseline(y), x, reduction="none") * mask)
    torch.testing.assert_close(baseline.nll(x, y), expected.sum(-1))


def exact_log_marginal(model, x, y, grid=20001):
    """log p(x | y) for a 1-D latent by the trapezoid rule over z in mu_p +- 12 sd."""
    mu_p, logvar_p = model.prior(y)
    sd = (0.5 * logvar_p).exp()
    t = torch.linspace(-12, 12, grid, dtype=torch.float64)
    z = (mu_p.T + sd.T * t[:, None]).unsqueeze(-1)  # (grid, B, 1)
    log_joint = -model.nll(model.decode(z, y), x) + Normal(mu_p.T, sd.T).log_prob(z[..., 0])
    dz = (sd.T * (t[1] - t[0])).squeeze(0)
    return torch.logsumexp(log_joint, dim=0) + dz.log()  # Riemann sum


@pytest.mark.parametrize("proposal", ["recognition", "prior"])
def test_importance_estimate_matches_quadrature(proposal):
    model = tiny(latent=1, x_dim=4).double()
    x, y = binary(3, 4, 4).double(), torch.randn(3, 3, dtype=torch.float64)
    torch.manual_seed(5)
    with torch.no_grad():
        exact = exact_log_marginal(model, x, y)
        log_w = cvae.log_weights(model, x, y, 20_000, proposal=proposal)
    w = (log_w - exact[:, None]).exp()  # weights relative to p(x|y): mean 1
    se = w.std(dim=1) / math.sqrt(w.shape[1])
    assert torch.all((w.mean(dim=1) - 1).abs() < 5 * se + 1e-9), (w.mean(1), se)
    estimate = estimators.log_mean_exp(log_w)
    assert torch.all((estimate - exact).abs() < 5 * se + 1e-6)


def test_elbo_is_below_log_marginal():
    model = tiny(latent=1, x_dim=4).double()
    x, y = binary(6, 4, 6).double(), torch.randn(6, 3, dtype=torch.float64)
    torch.manual_seed(7)
    with torch.no_grad():
        exact = exact_log_marginal(model, x, y)
        log_w = cvae.log_weights(model, x, y, 4000)
    elbo = log_w.mean(1)
    se = log_w.std(1) / math.sqrt(4000)
    assert torch.all(elbo < exact + 3 * se)


def test_sample_uses_the_prior_network_only():
    model = tiny()

    def forbidden(*args):
        raise AssertionError("sampling at test time must not call the recognition network")

    model.recognition = forbidden
    y = torch.randn(4, 3)
    torch.manual_seed(0)
    a = cvae.sample(model, y, 3)
    mu_p, logvar_p = model.prior(y)
    torch.manual_seed(0)
    z = mu_p + (0.5 * logvar_p).exp() * torch.randn(3, *mu_p.shape)
    torch.testing.assert_close(a, model.decode(z, y))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="latent must be an int >= 1, got 0"):
        cvae.CVAE(6, 3, latent=0)
    model = tiny()
    with pytest.raises(ValueError, match="proposal"):
        cvae.log_weights(model, binary(2, 6, 0), torch.randn(2, 3), 3, proposal="posterior")


def test_tiny_fit_reduces_the_loss():
    # class-conditional toy: x is a fixed binary pattern of its class, with 10% of pixels flipped
    g = torch.Generator().manual_seed(0)
    patterns = torch.bernoulli(torch.full((3, 12), 0.5), generator=g)
    labels = torch.randint(3, (300,), generator=g)
    flips = torch.bernoulli(torch.full((300, 12), 0.1), generator=g)
    x = (patterns[labels] + flips) % 2
    y = F.one_hot(labels, 3).float()
    model = cvae.CVAE(12, 3, latent=2, hidden=32)
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50,
                                          shuffle=True, generator=torch.Generator().manual_seed(0))
    history = train.fit(model, batches, test_loader=batches, epochs=15, lr=1e-2, seed=0,
                        progress=False)
    first, last = history["test"][0]["loss"], history["test"][-1]["loss"]
    assert last < first - 2.0, (first, last)
    # 10% flips: the Bayes reconstruction cost is 12 H(0.1) = 3.9 nats; the bound is above it
    assert last > 12 * (-(0.1 * math.log(0.1) + 0.9 * math.log(0.9))) - 0.5


@pytest.mark.parametrize("given, pixels", [(1, 196), (2, 392), (3, 588)])
def test_quadrant_task(given, pixels):
    mask = cvae.given_mask(given)
    assert mask.shape == (784,) and mask.sum().item() == pixels
    assert mask.view(28, 28)[0, 0] == 1 and mask.view(28, 28)[27, 27] == 0  # bottom right missing
    x = binary(3, 784, given)
    x_out, y, missing = cvae.quadrant_task(x, given)
    assert torch.equal(x_out, x) and torch.equal(missing, 1 - mask)
    assert torch.equal(y, x * mask)  # nothing of the missing part leaks into the condition
    with pytest.raises(ValueError, match="given"):
        cvae.given_mask(4)
