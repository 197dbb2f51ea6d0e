"""Tests of vaecourse.models.gan and vaecourse.models.vaegan (chapters 11 and 12): shapes, the
losses against hand-computed cases, the optimal discriminator on a 1-D toy with known densities."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from vaecourse.models import gan, vaegan

LOG2 = math.log(2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [4, 8])
def test_network_shapes_and_dtypes(width, dtype):
    torch.manual_seed(0)
    g = gan.Generator(latent=5, width=width).to(dtype)
    d = gan.Discriminator(width=width).to(dtype)
    enc = vaegan.Encoder(latent=5, width=width).to(dtype)
    images = g(torch.randn(3, 5, dtype=dtype))
    assert images.shape == (3, 1, 28, 28) and images.dtype == dtype
    assert images.min() >= 0 and images.max() <= 1
    assert g.sample(4, torch.Generator().manual_seed(1)).shape == (4, 1, 28, 28)
    for x in (images, images.flatten(1)):
        assert d(x).shape == (3,) and d(x).dtype == dtype
        mu, logvar = enc(x)
        assert mu.shape == logvar.shape == (3, 5) and mu.dtype == dtype
    for layer in (1, 2):
        logits, features = d.logits_and_features(images, layer)
        assert features.shape == (3, d.feature_dim(layer)) and features.dtype == dtype
        torch.testing.assert_close(logits, d(images))
    assert d.feature_dim(1) == width * 14 * 14 and d.feature_dim(2) == 2 * width * 7 * 7


def test_dcgan_architecture():
    """Strided (transposed) convolutions, no pooling, BN, ReLU in G, LeakyReLU in D."""
    g, d = gan.Generator(latent=5, width=8), gan.Discriminator(width=8)
    g_types = {type(m) for m in g.modules()}
    d_types = {type(m) for m in d.modules()}
    assert nn_types_absent(g_types | d_types, ("MaxPool2d", "AvgPool2d"))
    assert torch.nn.ReLU in g_types and torch.nn.LeakyReLU not in g_types
    assert torch.nn.LeakyReLU in d_types and torch.nn.ReLU not in d_types
    assert torch.nn.BatchNorm2d in g_types and torch.nn.BatchNorm2d in d_types
    assert all(m.stride == (2, 2) for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    transposed = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.stride for m in transposed] == [(2, 2)] * 2
    assert sum(isinstance(m, torch.nn.Linear) for m in g.modules()) == 1  # the projection of z
    assert sum(isinstance(m, torch.nn.Linear) for m in d.modules()) == 1  # the logit


def nn_types_absent(types: set, names: tuple[str, ...]) -> bool:
    return not any(t.__name__ in names for t in types)


def test_bad_inputs_are_clear_errors():
    g, d = gan.Generator(latent=5, width=4), gan.Discriminator(width=4)
    with pytest.raises(ValueError, match=r"z must have shape \(B, 5\), got \(3, 4\)"):
        g(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\(B, 784\) or \(B, 1, 28, 28\), got \(2, 28, 28\)"):
        d(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"got \(784,\)"):
        d(torch.zeros(784))
    with pytest.raises(ValueError, match="floating-point"):
        d(torch.zeros(2, 784, dtype=torch.long))
    with pytest.raises(ValueError, match=r"layer must be an int in 1..2, got 3"):
        d.logits_and_features(torch.zeros(2, 784), 3)
    with pytest.raises(ValueError, match="width must be an int >= 1, got 0"):
        gan.Discriminator(width=0)
    with pytest.raises(ValueError, match="must be non-empty and finite"):
        gan.discriminator_loss(torch.tensor([math.nan]), torch.zeros(1))
    with pytest.raises(ValueError, match="fake_logits must be a floating-point"):
        gan.generator_loss_nonsaturating(torch.zeros(2, dtype=torch.long))


def test_losses_by_hand_at_logit_zero():
    zeros = torch.zeros(6)
    assert gan.discriminator_loss(zeros, torch.zeros(4)).item() == pytest.approx(2 * LOG2)
    assert gan.gan_value(zeros, zeros).item() == pytest.approx(-2 * LOG2)
    assert gan.generator_loss_saturating(zeros).item() == pytest.approx(-LOG2)
    assert gan.generator_loss_nonsaturating(zeros).item() == pytest.approx(LOG2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_losses_by_hand_and_against_bce(dtype):
    real, fake = torch.tensor([2.0, -0.5], dtype=dtype), torch.tensor([-1.0, 0.3, 4.0], dtype=dtype)

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    by_hand = (-(math.log(sig(2.0)) + math.log(sig(-0.5))) / 2
               - (math.log(1 - sig(-1.0)) + math.log(1 - sig(0.3)) + math.log(1 - sig(4.0))) / 3)
    assert gan.discriminator_loss(real, fake).item() == pytest.approx(by_hand, rel=1e-6)
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    torch.testing.assert_close(gan.discriminator_loss(real, fake), bce)
    saturating = np.mean([math.log(1 - sig(v)) for v in (-1.0, 0.3, 4.0)])
    nonsaturating = -np.mean([math.log(sig(v)) for v in (-1.0, 0.3, 4.0)])
    assert gan.generator_loss_saturating(fake).item() == pytest.approx(saturating, rel=1e-6)
    assert gan.generator_loss_nonsaturating(fake).item() == pytest.approx(nonsaturating, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_are_stable(dtype):
    """At +-100 sigmoid rounds to 0 or 1; the losses stay finite and exact, gradients too."""
    big = torch.tensor([100.0, -100.0], dtype=dtype, requires_grad=True)
    confident = gan.discriminator_loss(big[:1], big[1:])  # D right on both: loss ~ 0
    wrong = gan.discriminator_loss(big[1:], big[:1])      # D wrong on both: loss 200
    assert confident.item() == pytest.approx(0.0, abs=1e-30)
    assert wrong.item() == pytest.approx(200.0, rel=1e-6)
    rejected = big[1:]  # the discriminator rejects the sample with logit -100
    nonsat = gan.generator_loss_nonsaturating(rejected)
    sat = gan.generator_loss_saturating(rejected)
    assert nonsat.item() == pytest.approx(100.0, rel=1e-6) and sat.item() == pytest.approx(0.0)
    (grad_nonsat,) = torch.autograd.grad(nonsat, big)
    (grad_sat,) = torch.autograd.grad(sat, big)
    assert torch.isfinite(grad_nonsat).all() and torch.isfinite(grad_sat).all()
    # Non-saturating: d/dl = -(1 - sigmoid(l)) = -1; saturating: -sigmoid(l) ~ -e^-100, vanished.
    assert grad_nonsat[1].item() == pytest.approx(-1.0) and abs(grad_sat[1].item()) < 1e-40


def test_generator_gradients_saturate_as_stated():
    logits = torch.tensor([-5.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    (g_sat,) = torch.autograd.grad(gan.generator_loss_saturating(logits), logits)
    (g_non,) = torch.autograd.grad(gan.generator_loss_nonsaturating(logits), logits)
    s = torch.sigmoid(logits.detach())
    torch.testing.assert_close(g_sat, -s / 3)
    torch.testing.assert_close(g_non, -(1 - s) / 3)


def test_optimal_discriminator_by_hand_and_errors():
    assert gan.optimal_discriminator(3.0, 1.0) == pytest.approx(0.75)
    torch.testing.assert_close(gan.optimal_discriminator(torch.tensor([0.0, 2.0]),
                                                         torch.tensor([1.0, 2.0])),
                               torch.tensor([0.0, 0.5]))
    np.testing.assert_allclose(gan.optimal_discriminator(np.array([1.0]), np.array([4.0])), [0.2])
    with pytest.raises(ValueError, match="undefined where p_data"):
        gan.optimal_discriminator(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite densities >= 0"):
        gan.optimal_discriminator(-1.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        gan.optimal_discriminator(torch.ones(2), torch.ones(3))


# --- the 1-D toy: p_data = N(0, 1), p_g = N(1.5, 0.7^2), both known --------------------------

P_DATA, P_G = scipy.stats.norm(0.0, 1.0), scipy.stats.norm(1.5, 0.7)


def toy_samples(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n float64 samples of p_data and n of p_g."""
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(n, generator=gen, dtype=torch.float64)
    return real, 1.5 + 0.7 * torch.randn(n, generator=gen, dtype=torch.float64)


def quadratic_features(x: torch.Tensor) -> torch.Tensor:
    """(1, x, x^2): for two Gaussians log p_data - log p_g is quadratic in x, so the logistic
    discriminator sigmoid(w . (1, x, x^2)) contains D* exactly."""
    return torch.stack([torch.ones_like(x), x, x**2], -1)


def test_trained_discriminator_approaches_the_optimal_one():
    """Train a tiny discriminator with gan.discriminator_loss (full-batch Adam, seeded) and
    compare it with D* = p/(p+q) on a grid.

    Tolerance: the minimizer of the cross-entropy over n samples per class is the logistic
    regression estimate, whose covariance is the inverse Hessian H^-1 of the summed loss
    (H = sum_i s_i (1 - s_i) phi_i phi_i^T). The standard error of D(x) is then
    D(1 - D) sqrt(phi(x)^T H^-1 phi(x)) (delta method); we require |D - D*| < 4 SE + 0.005
    (0.005 for Adam's remaining optimization error, checked by the gradient norm below).
    """
    n = 4000
    real, fake = toy_samples(n, seed=0)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        loss = gan.discriminator_loss(quadratic_features(real) @ w, quadratic_features(fake) @ w)
        loss.backward()
        opt.step()
    assert w.grad.norm() < 1e-4, f"Adam has not converged: gradient norm {w.grad.norm():.2e}"
    phi = quadratic_features(torch.cat([real, fake])).detach()
    s = torch.sigmoid(phi @ w.detach())
    hessian = (phi * (s * (1 - s)).unsqueeze(-1)).T @ phi  # of the summed log-likelihood
    grid = torch.linspace(-2.0, 3.0, 51, dtype=torch.float64)
    d_hat = torch.sigmoid(quadratic_features(grid) @ w.detach())
    phi_grid = quadratic_features(grid)
    se = d_hat * (1 - d_hat) * torch.einsum("gi,ij,gj->g", phi_grid,
                                              torch.linalg.inv(hessian), phi_grid).sqrt()
    d_star = torch.tensor(gan.optimal_discriminator(P_DATA.pdf(grid.numpy()),
                                                    P_G.pdf(grid.numpy())))
    error = (d_hat - d_star).abs()
    assert (error < 4 * se + 0.005).all(), f"max |D - D*| {error.max():.4f}, SE <= {se.max():.4f}"
    assert se.max() < 0.05, "the check must be tight enough to tell D from D*"
    # The check can fail: 1 - D (the labels swapped) is far from D* on the grid.
    assert (d_star - (1 - d_hat)).abs().max() > 0.5


def js_divergence(p, q) -> float:
    """JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q)/2, by quadrature."""
    def half_kl(a, b):
        m = lambda x: (a.pdf(x) + b.pdf(x)) / 2  # noqa: E731
        return scipy.integrate.quad(lambda x: a.pdf(x) * np.log(a.pdf(x) / m(x)), -7, 7)[0] / 2
    return half_kl(p, q) + half_kl(q, p)


def test_gan_value_at_the_optimal_discriminator_is_2js_minus_log4():
    def integrand(x: float) -> float:
        p, q = P_DATA.pdf(x), P_G.pdf(x)  # 1 - D*(x) = q / (p + q), without rounding D* to 1
        d_star, one_minus = gan.optimal_discriminator(p, q), gan.optimal_discriminator(q, p)
        return p * np.log(d_star) + q * np.log(one_minus)
    value = scipy.integrate.quad(integrand, -7, 7)[0]  # the tails beyond hold < 1e-10
    js = js_divergence(P_DATA, P_G)
    assert 0 < js < LOG2
    assert value == pytest.approx(2 * js - math.log(4), abs=1e-8)
    # gan_value on samples with the optimal logits log p_data - log p_g estimates the same number.
    n = 200_000
    real, fake = toy_samples(n, seed=1)

    def logit(x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(P_DATA.logpdf(x.numpy()) - P_G.logpdf(x.numpy()))
    estimate = gan.gan_value(logit(real), logit(fake)).item()
    se = math.sqrt((F.logsigmoid(logit(real)).var() + F.logsigmoid(-logit(fake)).var()).item() / n)
    assert abs(estimate - value) < 4 * se, (estimate, value, se)


# --- VAE/GAN -------------------------------------------------------------------------------


def tiny_vaegan(dtype=torch.float64):
    torch.manual_seed(3)
    return (vaegan.Encoder(latent=3, width=4).to(dtype), gan.Generator(latent=3, width=4).to(dtype),
            gan.Discriminator(width=4).to(dtype))


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("saturating", [False, True])
def test_vaegan_losses_by_hand(layer, saturating):
    enc, dec, dis = tiny_vaegan()
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gamma = 0.3
    losses = vaegan.vaegan_losses(enc, dec, dis, x, gamma=gamma, layer=layer,
                                  saturating=saturating, generator=torch.Generator().manual_seed(7))
    # The same computation with torch.distributions and BCE, drawing the same noise.
    gen = torch.Generator().manual_seed(7)
    mu, logvar = enc(x)
    q = Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
    z_p = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
    l_prior = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1).mean()
    real, f_x = dis.logits_and_features(x, layer)
    recon, f_r = dis.logits_and_features(dec(z), layer)
    prior = dis(dec(z_p))
    l_llike = -Normal(f_r, 1.0).log_prob(f_x).sum(-1).mean()
    bce = F.binary_cross_entropy_with_logits
    l_gan = (bce(real, torch.ones_like(real)) + bce(recon, torch.zeros_like(recon))
             + bce(prior, torch.zeros_like(prior)))
    if saturating:  # gamma L_llike - L_GAN, less its decoder-free term mean log D(x)
        decoder = gamma * l_llike - l_gan + bce(real, torch.ones_like(real))
    else:
        decoder = gamma * l_llike + bce(recon, torch.ones_like(recon)) + bce(prior,
                                                                            torch.ones_like(prior))
    torch.testing.assert_close(losses.encoder, l_prior + l_llike)
    torch.testing.assert_close(losses.decoder, decoder)
    torch.testing.assert_close(losses.discriminator, l_gan)
    assert losses.metrics["gan"] == pytest.approx(l_gan.item())


def test_vaegan_gradients_reach_each_network():
    enc, dec, dis = tiny_vaegan(torch.float32)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    losses = vaegan.vaegan_losses(enc, dec, dis, x, gamma=1.0, generator=torch.Generator())
    for loss, net in ((losses.encoder, enc), (losses.decoder, dec), (losses.discriminator, dis)):
        grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True,
                                    allow_unused=True)
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        vaegan.vaegan_losses(enc, dec, dis, x, gamma=-1.0)


def test_feature_nll_is_half_the_squared_distance_plus_a_constant():
    a, b = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    expected = 0.5 * (a - b).pow(2).sum(-1) + 5 * math.log(2 * math.pi)
    torch.testing.assert_close(vaegan.feature_nll(a, b), expected)
    kl = vaegan.prior_loss(torch.zeros(2, 4), torch.zeros(2, 4))
    torch.testing.assert_close(kl, torch.zeros(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gan_and_vaegan_on_cuda():
    enc, dec, dis = (net.cuda() for net in tiny_vaegan(torch.float32))
    x = torch.rand(4, 784, device="cuda")
    assert dec.sample(3, torch.Generator().manual_seed(0)).is_cuda  # a CPU generator works
    losses = vaegan.vaegan_losses(enc, dec, dis, x, gamma=1.0, generator=torch.Generator())
    for loss in (losses.encoder, losses.decoder, losses.discriminator):
        assert loss.is_cuda and torch.isfinite(loss)
    gan.discriminator_loss(dis(x), dis(dec.sample(4))).backward()
    assert all(p.grad.is_cuda for p in dis.parameters())
