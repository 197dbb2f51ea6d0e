"""Tests of vaecourse.models.vae: shapes, the loss vs torch.distributions, the IWAE objective."""

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaecourse.models import vae


def binary_images(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 784), 0.3, dtype=dtype), generator=g)


def tiny_model(latent: int = 3, dtype: torch.dtype = torch.float32, **kw) -> vae.VAE:
    torch.manual_seed(1)
    return vae.VAE(latent=latent, hidden=16, **kw).to(dtype)


@pytest.mark.parametrize("network", [vae.VAE, vae.ConvVAE])
def test_shapes(network):
    torch.manual_seed(0)
    model = network(latent=4, hidden=32)
    x = binary_images(5)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    assert model.decode(torch.zeros(7, 5, 4)).shape == (7, 5, 784)
    logits, mu2, _ = model(x.reshape(5, 1, 28, 28))
    assert logits.shape == (5, 784) and torch.equal(mu, mu2)
    assert vae.log_weights(model, x, 6).shape == (5, 6)
    loss, metrics = model.loss((x, torch.zeros(5)))
    assert loss.shape == () and set(metrics) == {"loss", "elbo", "reconstruction", "kl"}


@pytest.mark.parametrize("network", [vae.VAE, vae.ConvVAE])
def test_sample_means_and_reconstruct_are_bernoulli_means(network):
    torch.manual_seed(0)
    model = network(latent=4, hidden=32).eval()
    means = model.sample_means(6, torch.Generator().manual_seed(3))
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    assert means.shape == (6, 784) and torch.allclose(means, torch.sigmoid(model.decode(z)))
    assert torch.equal(means, model.sample_means(6, torch.Generator().manual_seed(3)))
    x = binary_images(5)
    x_hat = model.reconstruct(x)
    assert x_hat.shape == (5, 784) and ((x_hat > 0) & (x_hat < 1)).all()
    assert torch.allclose(x_hat, torch.sigmoid(model.decode(model.encode(x)[0])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_elbo_matches_torch_distributions(dtype):
    model, x = tiny_model(dtype=dtype), binary_images(6, dtype=dtype)
    nelbo, recon, kl_per_dim = vae.negative_elbo(model, x, torch.Generator().manual_seed(5))
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps
    recon_ref = -Bernoulli(logits=model.decode(z)).log_prob(x).sum(-1)
    kl_ref = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(recon, recon_ref, **tol)
    torch.testing.assert_close(kl_per_dim, kl_ref, **tol)
    torch.testing.assert_close(nelbo, recon_ref + kl_ref.sum(-1), **tol)


def test_vae_loss_beta_and_free_bits_by_hand():
    model, x = tiny_model(latent=4, dtype=torch.float64), binary_images(8, dtype=torch.float64)
    _, recon, kl = vae.negative_elbo(model, x, torch.Generator().manual_seed(2))
    for beta, free_bits in [(1.0, 0.0), (3.0, 0.0), (0.5, 0.2), (1.0, 1e6)]:
        loss, metrics = vae.vae_loss(model, x, beta, free_bits, torch.Generator().manual_seed(2))
        kl_term = sum(max(free_bits, kl[:, j].mean().item()) for j in range(4))
        assert loss.item() == pytest.approx(recon.mean().item() + beta * kl_term, rel=1e-12)
        assert metrics["elbo"] == pytest.approx(-(recon + kl.sum(-1)).mean().item(), rel=1e-12)
    assert vae.vae_loss(model, x, 1.0, 0.0, torch.Generator().manual_seed(2))[0].item() == \
        pytest.approx((recon + kl.sum(-1)).mean().item(), rel=1e-12)


def test_loss_gradients_reach_encoder_and_decoder():
    model = tiny_model()
    model.loss(binary_images(4))[0].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_iwae_k1_is_the_elbo_for_the_same_noise():
    model, x = tiny_model(dtype=torch.float64), binary_images(5, dtype=torch.float64)
    log_w = vae.log_weights(model, x, 1, torch.Generator().manual_seed(3))[:, 0]
    _, recon, _ = vae.negative_elbo(model, x, torch.Generator().manual_seed(3))
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * eps
    log_ratio = Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    torch.testing.assert_close(log_w, -recon + log_ratio, rtol=1e-10, atol=1e-9)
    loss, _ = vae.iwae_loss(model, x, 1, torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(-(log_w.mean()).item(), rel=1e-12)


def test_iwae_k1_equals_the_elbo_in_expectation():
    model, x = tiny_model(dtype=torch.float64), binary_images(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    log_w = vae.log_weights(model, x, 20_000, g)  # (3, 20000), each an unbiased ELBO estimate
    nelbo, _, _ = vae.negative_elbo(model, x.repeat(20_000, 1), g)
    exact_kl_elbo = -nelbo.reshape(20_000, 3)  # analytic-KL ELBO estimates
    diff = log_w.mean(-1) - exact_kl_elbo.mean(0)
    se = (log_w.var(-1) / 20_000 + exact_kl_elbo.var(0) / 20_000).sqrt()
    assert (diff.abs() < 4 * se).all(), (diff, se)


def test_iwae_bound_above_elbo_and_rising_with_k():
    model, x = tiny_model(), binary_images(4)
    torch.manual_seed(0)
    bounds = [-vae.iwae_loss(model, x.repeat(500, 1), k)[0].item() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2]


def test_bad_inputs_raise_value_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="binarized"):
        vae.negative_elbo(model, torch.full((2, 784), 0.5))
    with pytest.raises(ValueError, match="28x28"):
        vae.negative_elbo(model, torch.zeros(2, 100))
    with pytest.raises(ValueError, match="objective"):
        vae.VAE(objective="gan")
    with pytest.raises(ValueError, match="k must be"):
        vae.VAE(objective="iwae", k=0)
    with pytest.raises(ValueError, match="beta"):
        vae.VAE(beta=-1.0)


def test_plotting_grid_and_tiles():
    from scipy.stats import norm

    from vaecourse import plotting

    z = plotting.latent_grid(n=5, span=0.9)
    assert z.shape == (25, 2)
    expected = norm.ppf([0.05, 0.275, 0.5, 0.725, 0.95])
    assert torch.allclose(z[:5, 0].double(), torch.tensor(expected), atol=1e-5)  # z1 rises
    assert torch.allclose(z[::5, 1].double(), torch.tensor(expected[::-1].copy()), atol=1e-5)
    canvas = plotting.tile(torch.ones(7, 784), ncols=3)
    assert canvas.shape == (3 * 29 + 1, 3 * 29 + 1)
    assert canvas[1:29, 1:29].min() == 1 and canvas[0, 0] == 0.25


def test_conv_vae_has_batch_norm_and_in_eval_mode_codes_ignore_the_batch():
    torch.manual_seed(0)
    model = vae.ConvVAE(latent=4, hidden=32)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4  # after each strided (transposed) convolution but the output layer
    x = binary_images(6)
    model.loss(x)[0].backward()  # one training batch moves the running statistics
    model.eval()
    alone, _ = model.encode(x[:1])
    together, _ = model.encode(x)
    torch.testing.assert_close(alone, together[:1])
    assert model.decode(torch.zeros(1, 4)).shape == (1, 784)
