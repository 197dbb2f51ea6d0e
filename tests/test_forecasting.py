"""Tests of the forecasters, their metrics and ``train forecasting`` (chapter 10)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from torch.distributions import MultivariateNormal, Normal
from torch.utils.data import DataLoader

from vaecourse import metrics, train
from vaecourse.data.trajectories import Junction, make_dataset
from vaecourse.models import forecasting

J = Junction()
T = J.steps


@pytest.fixture(scope="module")
def scenes():
    return make_dataset(J, 300, 16, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("size", [16, 32])
def test_shapes(size):
    images = J.render(J.sample_open(5, torch.Generator().manual_seed(1)), size)
    y = torch.zeros(5, T, 2)
    reg, cvae = forecasting.Regressor(T, 32), forecasting.CVAE(T, 32, latent=3, eval_samples=7)
    assert reg(images).shape == (5, 2 * T)
    for model in (reg, cvae, forecasting.TrueForecaster(J)):
        assert model.sample(images, 4).shape == (4, 5, T, 2)
        assert model.log_prob(images, y).shape == (5,)
    assert cvae.log_weights(y, 6, images).shape == (5, 6)
    assert cvae.sample(images, 4, from_prior=False, y=y).shape == (4, 5, T, 2)
    with pytest.raises(ValueError, match="y must be given"):
        cvae.sample(images, 4, from_prior=False)


@pytest.mark.parametrize("kind", ["regressor", "cvae"])
def test_loss_decreases_on_a_tiny_problem(kind, scenes):
    torch.manual_seed(0)
    model = forecasting.Regressor(T, 32) if kind == "regressor" else forecasting.CVAE(T, 32)
    loader = DataLoader(scenes, batch_size=50, shuffle=True)
    history = train.fit(model, loader, epochs=6, lr=3e-3, seed=0, progress=False)
    losses = [epoch["loss"] for epoch in history["train"]]
    # squared error falls by a fifth; the CVAE's -ELBO (nats) by more than 5 nats
    assert losses[-1] < (0.8 * losses[0] if kind == "regressor" else losses[0] - 5.0), losses


def test_prior_and_recognition_sampling_use_their_own_networks():
    """Make p(z | x) a point mass at +3 and q(z | x, y) one at -3: the samples must follow."""
    cvae = forecasting.CVAE(T, 16, latent=2)
    with torch.no_grad():
        for layer, mu in ((cvae.prior_net, 3.0), (cvae.encoder[-1], -3.0)):
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor([mu, mu, -30.0, -30.0]))
        cvae.decoder_logvar.fill_(-30.0)
    images = J.render(torch.tensor([[True, True, True]]), 16)
    h = cvae.tower(images)
    for from_prior, mu in ((True, 3.0), (False, -3.0)):
        s = cvae.sample(images, 3, from_prior=from_prior, y=torch.zeros(1, T, 2))
        expected = cvae.decode(h, torch.full((1, 2), mu)).unflatten(-1, (T, 2))
        torch.testing.assert_close(s, expected.expand(3, 1, T, 2), atol=1e-4, rtol=0)


def test_cvae_log_prob_is_exact_when_the_decoder_ignores_z():
    """With q = p(z | x) = N(0, I) and a decoder blind to z, every weight is p(y | x) itself."""
    cvae = forecasting.CVAE(T, 16, latent=2, eval_samples=30)
    with torch.no_grad():
        cvae.decoder_z.weight.zero_()
        cvae.prior_net.weight.zero_(), cvae.prior_net.bias.zero_()
        cvae.encoder[-1].weight.zero_(), cvae.encoder[-1].bias.zero_()
    images = J.render(J.sample_open(4, torch.Generator().manual_seed(2)), 16)
    y = torch.randn(4, T, 2) * 0.1
    h = cvae.tower(images)
    mean = cvae.decode(h, torch.zeros(4, 2))
    exact = Normal(mean, cvae.decoder_logvar.mul(0.5).exp()).log_prob(y.flatten(1)).sum(-1)
    torch.testing.assert_close(cvae.log_prob(images, y), exact, atol=1e-4, rtol=1e-5)


def test_regressor_density_is_the_residual_gaussian():
    reg = forecasting.Regressor(T, 16)
    with torch.no_grad():
        reg.head[-1].weight.zero_(), reg.head[-1].bias.zero_()  # predicts the zero path
    y = torch.randn(200, T, 2, generator=torch.Generator().manual_seed(3))
    images = torch.zeros(200, 1, 16, 16)
    flat = y.flatten(1)
    reg.fit_residuals(images, y)  # isotropic: the likelihood that squared error assumes
    torch.testing.assert_close(reg.residual_cov, flat.pow(2).mean() * torch.eye(2 * T))
    ref = Normal(0.0, flat.pow(2).mean().sqrt()).log_prob(flat[:5]).sum(-1)
    torch.testing.assert_close(reg.log_prob(images[:5], y[:5]), ref)
    reg.fit_residuals(images, y, full=True)
    torch.testing.assert_close(reg.residual_cov, flat.T @ flat / 200)
    ref = MultivariateNormal(torch.zeros(2 * T), flat.T @ flat / 200).log_prob(flat[:5])
    torch.testing.assert_close(reg.log_prob(images[:5], y[:5]), ref)


def test_true_forecaster_reads_the_image_and_uses_the_exact_density(scenes):
    images, y, open_mask, _ = scenes[:10]
    oracle = forecasting.TrueForecaster(J)
    torch.testing.assert_close(oracle.log_prob(images, y), J.log_prob(y, open_mask))


# ---- metrics on hand-made cases ---------------------------------------------------------------

def test_displacement_errors_by_hand():
    y = torch.zeros(1, 2, 2)
    samples = torch.tensor([[[[3.0, 4.0], [0.0, 1.0]]],  # ADE (5 + 1)/2 = 3, FDE 1
                            [[[0.0, 0.0], [0.0, 2.0]]]])  # ADE (0 + 2)/2 = 1, FDE 2
    ade, fde = metrics.displacement_errors(samples, y)
    torch.testing.assert_close(ade, torch.tensor([1.0]))
    torch.testing.assert_close(fde, torch.tensor([1.0]))  # each minimized on its own
    with pytest.raises(ValueError, match="samples must have shape"):
        metrics.displacement_errors(samples[:, :, :1], y)


def test_frequencies_coverage_and_total_variation_by_hand():
    exits = torch.tensor([[0, 1], [0, 1], [2, 1], [1, 1]])  # 4 samples of 2 scenes
    freq = metrics.mode_frequencies(exits, 3)
    torch.testing.assert_close(freq, torch.tensor([[0.5, 0.25, 0.25], [0, 1.0, 0]]).double())
    open_mask = torch.tensor([[True, False, True], [True, True, False]])
    # scene 1 reaches both open exits (and a closed one, which does not count), scene 2 one of 2
    assert metrics.mode_coverage(freq, open_mask) == pytest.approx(3 / 4)
    probs = torch.tensor([[0.5, 0, 0.5], [0.5, 0.5, 0]]).double()
    torch.testing.assert_close(metrics.mode_total_variation(freq, probs),
                               torch.tensor([0.25, 0.5]).double())


def test_kde_nll_is_the_clipped_mean_of_scott_kde_log_densities():
    rng = np.random.default_rng(4)
    samples = torch.tensor(rng.normal(size=(6, 1, 2, 2)))
    y = torch.tensor([[[0.1, -0.2], [40.0, 40.0]]])  # the second step is far: clipped at -20
    pts = samples[:, 0, 0].numpy()
    cov = np.cov(pts.T) * len(pts) ** (-2 / 6)  # Scott's factor n^(-1/(d+4)), d = 2
    by_hand = logsumexp(stats.multivariate_normal(np.zeros(2), cov).logpdf(pts - [0.1, -0.2]))
    by_hand -= math.log(len(pts))
    expected = -(by_hand + -20.0) / 2
    assert metrics.kde_nll(samples, y).item() == pytest.approx(expected, rel=1e-9)
    assert metrics.kde_nll(samples, y, clip=-1e9).item() > 1e3


def test_oracle_metrics_on_true_samples():
    images, y, open_mask, _ = make_dataset(J, 40, 16, torch.Generator().manual_seed(5)).tensors
    r = metrics.evaluate_forecaster(forecasting.TrueForecaster(J), J, images, y, open_mask,
                                    eval_size=10, kde_samples=200)
    assert r["nll_gap"] == pytest.approx(0.0, abs=1e-9) and r["eval_size"] == 10
    assert r["min_ade_20"] > 0 and r["mode_coverage"] > 0.9 and r["closed_exit_rate"] == 0
    # 200 exact samples: the TV of the empirical frequencies is below 5 of its standard errors
    assert r["mode_tv"] < 5 * math.sqrt(0.25 / 200) * J.exits
    assert r["kde_nll"] > r["exact_step_nll"] - 1.0


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="eval_samples must be an int >= 1, got 0"):
        forecasting.CVAE(T, 16, eval_samples=0)
    with pytest.raises(ValueError, match="latent must be an int >= 1, got 0"):
        forecasting.CVAE(T, 16, latent=0)
    images, y, open_mask, _ = make_dataset(J, 4, 16, torch.Generator().manual_seed(5)).tensors
    with pytest.raises(ValueError, match="kde_samples must be an int >= 1, got 0"):
        metrics.evaluate_forecaster(forecasting.TrueForecaster(J), J, images, y, open_mask,
                                    kde_samples=0)
    with pytest.raises(ValueError, match="eval_size must be an int >= 1, got 0"):
        metrics.evaluate_forecaster(forecasting.TrueForecaster(J), J, images, y, open_mask,
                                    eval_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cvae_trains_and_samples_on_cuda(scenes):
    model = forecasting.CVAE(T, 32, eval_samples=50)
    train.fit(model, DataLoader(scenes, batch_size=100), epochs=1, device=torch.device("cuda"),
              progress=False)
    images, y = scenes.tensors[0][:8].cuda(), scenes.tensors[1][:8].cuda()
    assert model.sample(images, 3).device.type == "cuda"
    assert torch.isfinite(model.log_prob(images, y)).all()
    r = metrics.evaluate_forecaster(model, J, *scenes.tensors[:3], eval_size=5, kde_samples=50)
    assert math.isfinite(r["nll"])
