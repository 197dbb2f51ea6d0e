"""The book's latent-variable model interface (vaecourse.estimators): the toys, the VAEs and
the CVAEs implement it, and their log p(x) estimates agree with exact values."""

import math

import pytest
import scipy.stats
import torch

from vaecourse import estimators, toys
from vaecourse.data.trajectories import Junction
from vaecourse.models import colorization, cvae, forecasting, vae

UNCONDITIONAL = [toys.LinearGaussianModel(2.0, 0.5), toys.RingModel(), vae.VAE(3, 8),
                 vae.ConvVAE(3, 8)]
CONDITIONAL = [cvae.CVAE(6, 3, 2, 8), colorization.ColorCVAE(2, 4),
               forecasting.CVAE(Junction().steps, 8, 2, eval_samples=5)]


@pytest.mark.parametrize("model", UNCONDITIONAL, ids=lambda m: type(m).__name__)
def test_unconditional_models_implement_the_interface(model):
    assert isinstance(model, estimators.LatentVariableModel)
    exact = isinstance(model, toys.GaussianDecoderModel)
    assert isinstance(model, estimators.ExactLatentVariableModel) == exact
    if exact:
        x = model.sample(5, torch.Generator().manual_seed(0))
    else:
        x = torch.bernoulli(torch.full((5, 784), 0.3), generator=torch.Generator().manual_seed(0))
    assert model.negative_elbo(x).shape == (5,)  # the ring's Laplace q needs autograd
    assert model.log_weights(x, 7).shape == (5, 7)


@pytest.mark.parametrize("model", CONDITIONAL, ids=lambda m: type(m).__module__)
def test_conditional_models_implement_the_interface(model):
    assert isinstance(model, estimators.ConditionalLatentVariableModel)
    assert not isinstance(model, estimators.ExactLatentVariableModel)


def test_linear_toy_weights_with_the_exact_posterior_are_log_p_x():
    """With q = p(z | x) every log-weight is log p(x) = log N(x; 0, theta^2 + sigma^2)."""
    model = toys.LinearGaussianModel(2.0, 0.5)
    x = torch.tensor([[-1.0], [0.3], [2.5]], dtype=torch.float64)
    exact = scipy.stats.norm.logpdf(x[:, 0].numpy(), 0.0, math.sqrt(2.0**2 + 0.5**2))
    torch.manual_seed(0)
    log_w = model.log_weights(x, 50)
    torch.testing.assert_close(log_w, torch.tensor(exact)[:, None].expand(3, 50))
    torch.testing.assert_close(-model.negative_elbo(x), torch.tensor(exact))


def test_ring_estimate_through_the_estimator_matches_the_exact_marginal():
    """log p^(x) from chunks of Laplace-proposal weights lies within 5 standard errors of the
    exact log p(x) (quadrature, checked against 2-D integration in test_toys.py)."""
    model = toys.RingModel()
    x = model.sample(4, torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    log_w = estimators.chunked_log_weights(lambda k: model.log_weights(x, k), 20_000, chunk=3000)
    assert log_w.shape == (4, 20_000)
    w = (log_w - model.log_marginal(x)[:, None]).exp()  # w / p(x): mean 1
    se = w.std(1) / math.sqrt(20_000)
    assert torch.all((w.mean(1) - 1).abs() < 5 * se + 1e-9), (w.mean(1), se)
    estimate = estimators.log_marginal_estimate(lambda k: model.log_weights(x, k), 20_000, 3000)
    assert torch.all((estimate - model.log_marginal(x)).abs() < 5 * se + 1e-6)


def test_chunks_concatenate_every_sample_once():
    calls = []

    def log_weights(k):
        calls.append(k)
        return torch.zeros(2, k)

    assert estimators.chunked_log_weights(log_weights, 7, chunk=3).shape == (2, 7)
    assert calls == [3, 3, 1]
    with pytest.raises(ValueError, match="samples must be a positive int, got 0"):
        estimators.chunked_log_weights(log_weights, 0)
