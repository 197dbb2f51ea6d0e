"""Tests of vaecourse.models.aae (chapter 13): shapes, the two phases' losses by hand, the
mixture prior's density and samples, the swiss roll's support."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli

from vaecourse.models import aae


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gaussian", [False, True])
def test_shapes_and_dtypes(gaussian, dtype):
    torch.manual_seed(0)
    model = aae.AAE(latent=2, hidden=16, gaussian=gaussian).to(dtype)
    x = images(5).to(dtype)
    z = model.encode(x.reshape(5, 1, 28, 28))
    assert z.shape == (5, 2) and z.dtype == dtype
    assert model.decode(z).shape == (5, 784) and model.decode(z).dtype == dtype
    disc = aae.CodeDiscriminator(latent=2, hidden=8).to(dtype)
    assert disc(z).shape == (5,) and disc(z).dtype == dtype
    supervised = aae.AAE(latent=2, hidden=16, n_classes=10).to(dtype)
    y = torch.tensor([0, 3, 9, 1, 1])
    assert supervised.decode(z, y).shape == (5, 784)
    assert aae.CodeDiscriminator(latent=2, hidden=8, n_classes=10).to(dtype)(z, y).shape == (5,)


def test_encoder_is_deterministic_unless_gaussian():
    torch.manual_seed(0)
    x = images(4)
    det, gauss = aae.AAE(hidden=16), aae.AAE(hidden=16, gaussian=True)
    torch.testing.assert_close(det.encode(x), det.encode(x))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    assert not torch.allclose(gauss.encode(x, g1), gauss.encode(x, g2))
    mu, logvar = gauss.encoder(x).chunk(2, -1)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gauss.encode(x, torch.Generator().manual_seed(1)),
                               mu + torch.exp(0.5 * logvar) * eps)


def test_label_errors_are_clear():
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"reads a label \(n_classes=10\), got none"):
        aae.AAE(hidden=8, n_classes=10).decode(z)
    with pytest.raises(ValueError, match=r"reads no label \(n_classes=0\), got labels"):
        aae.CodeDiscriminator(hidden=8)(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got 0..10"):
        aae.AAE(hidden=8, n_classes=10).decode(z, torch.tensor([0, 10, 2]))
    with pytest.raises(ValueError, match="one row per example, 3, got 2"):
        aae.AAE(hidden=8, n_classes=10).decode(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        aae.CodeDiscriminator(hidden=8, n_classes=10)(z, torch.zeros(3))
    with pytest.raises(ValueError, match="n_classes must be an int >= 0, got -1"):
        aae.AAE(n_classes=-1)


def test_reconstruction_loss_by_hand():
    torch.manual_seed(0)
    model, x = aae.AAE(hidden=16).double(), images(6).double()
    logits = model.decode(model.encode(x))
    # Grey-level targets: the Bernoulli cross-entropy sum_i -[x log s + (1 - x) log(1 - s)].
    expected = -(x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1).mean()
    torch.testing.assert_close(aae.reconstruction_loss(model, x), expected)
    binary = (x > 0.5).double()
    logits = model.decode(model.encode(binary))
    torch.testing.assert_close(aae.reconstruction_loss(model, binary),
                               -Bernoulli(logits=logits).log_prob(binary).sum(-1).mean())


def test_regularization_phase_losses_by_hand_and_their_gradients():
    torch.manual_seed(0)
    model, disc = aae.AAE(hidden=16).double(), aae.CodeDiscriminator(hidden=8).double()
    codes = model.encode(images(5).double())
    prior, _ = aae.sample_mixture(aae.mixture_of_gaussians(), 7, generator=torch.Generator())
    prior = prior.double()
    d_loss = aae.discriminator_phase_loss(disc, codes, prior)
    by_hand = -(torch.log(torch.sigmoid(disc(prior))).mean()
                + torch.log(1 - torch.sigmoid(disc(codes))).mean())
    torch.testing.assert_close(d_loss, by_hand)
    e_loss = aae.encoder_phase_loss(disc, codes)
    torch.testing.assert_close(e_loss, -torch.log(torch.sigmoid(disc(codes))).mean())
    # The discriminator step trains only D (codes are detached); the encoder step reaches the
    # encoder.
    d_loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in disc.parameters())
    e_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


# --- priors --------------------------------------------------------------------------------


def hand_mixture_log_prob(z: torch.Tensor, k: int, radius: float, sr: float, st: float
                          ) -> torch.Tensor:
    """log (1/K sum_k N(z; m_k, S_k)), the 2-D Gaussian density written out:
    N(z; m, S) = exp(-1/2 (z - m)^T S^-1 (z - m)) / (2 pi sqrt(det S))."""
    terms = []
    for j in range(k):
        a = 2 * math.pi * j / k
        u = torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64)  # radial
        v = torch.tensor([-math.sin(a), math.cos(a)], dtype=torch.float64)  # tangential
        cov = sr**2 * torch.outer(u, u) + st**2 * torch.outer(v, v)
        d = z - radius * u
        quad = torch.einsum("ni,ij,nj->n", d, torch.linalg.inv(cov), d)
        terms.append(-0.5 * quad - math.log(2 * math.pi) - 0.5 * math.log(torch.det(cov).item()))
    return torch.logsumexp(torch.stack(terms), 0) - math.log(k)


@pytest.mark.parametrize("k, radius, sr, st", [(10, 4.0, 1.0, 0.25), (3, 1.0, 0.5, 0.5)])
def test_mixture_log_prob_matches_the_hand_written_sum(k, radius, sr, st):
    prior = aae.mixture_of_gaussians(k, radius, sr, st)
    z = 6 * torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 3
    torch.testing.assert_close(prior.log_prob(z), hand_mixture_log_prob(z, k, radius, sr, st))
    means = prior.component_distribution.loc
    torch.testing.assert_close(means.norm(dim=-1), torch.full((k,), radius, dtype=torch.float64))


def test_mixture_samples_have_each_components_moments():
    prior = aae.mixture_of_gaussians()
    labels = torch.arange(10).repeat_interleave(4000)
    z, k = aae.sample_mixture(prior, 0, labels=labels, generator=torch.Generator().manual_seed(0))
    assert z.shape == (40_000, 2) and z.dtype == torch.float32 and torch.equal(k, labels)
    cov = prior.component_distribution.covariance_matrix
    for j in range(10):
        zj = z[k == j].double()
        se = (cov[j].diagonal() / len(zj)).sqrt()
        assert ((zj.mean(0) - prior.component_distribution.loc[j]).abs() < 4 * se).all()
        # Sample covariance entries: SE of a variance is ~ sqrt(2/n) sigma^2; 4 SE tolerance.
        tol = 4 * math.sqrt(2 / len(zj)) * cov[j].diagonal().max()
        assert (torch.cov(zj.T) - cov[j]).abs().max() < tol
    # Without labels the components come from the equal weights: each frequency within 4 SE.
    _, k = aae.sample_mixture(prior, 20_000, generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(k, minlength=10).double() / 20_000
    assert ((freq - 0.1).abs() < 4 * math.sqrt(0.1 * 0.9 / 20_000)).all()
    same = aae.sample_mixture(prior, 5, generator=torch.Generator().manual_seed(3))
    again = aae.sample_mixture(prior, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(same[0], again[0]) and torch.equal(same[1], again[1])


def test_mixture_components_are_elongated_along_their_radius():
    prior = aae.mixture_of_gaussians(10, 4.0, 1.0, 0.25)
    for cov, mean in zip(prior.component_distribution.covariance_matrix,
                         prior.component_distribution.loc, strict=True):
        values, vectors = torch.linalg.eigh(cov)
        torch.testing.assert_close(values, torch.tensor([0.25**2, 1.0], dtype=torch.float64))
        assert abs(abs(vectors[:, 1] @ mean / mean.norm()) - 1) < 1e-12


def test_swiss_roll_lies_on_its_curve_in_its_segments():
    scale, turns = 4.0, 1.5
    z, k = aae.sample_swiss_roll(5000, turns=turns, scale=scale,
                                 generator=torch.Generator().manual_seed(0))
    assert z.shape == (5000, 2) and k.shape == (5000,) and k.min() == 0 and k.max() == 9
    z = z.double()
    # On c(t) = scale t (cos 2 pi turns t, sin 2 pi turns t): |c(t)| = scale t.
    t = z.norm(dim=-1) / scale
    curve = scale * t.unsqueeze(-1) * torch.stack([torch.cos(2 * math.pi * turns * t),
                                                   torch.sin(2 * math.pi * turns * t)], -1)
    assert (z - curve).norm(dim=-1).max() < 1e-5  # float32 samples
    assert (t >= 0).all() and (t < 1 + 1e-6).all()
    segment = torch.floor(t * 10).clamp(max=9).long()
    assert (segment == k).float().mean() > 0.999  # all but float32 rounding at the borders
    given = torch.tensor([7] * 100)
    z7, k7 = aae.sample_swiss_roll(0, labels=given, generator=torch.Generator().manual_seed(1))
    t7 = z7.double().norm(dim=-1) / 4.0
    assert torch.equal(k7, given) and (t7 > 0.7 - 1e-6).all() and (t7 < 0.8 + 1e-6).all()


def test_swiss_roll_noise_leaves_the_curve_by_its_std():
    clean, _ = aae.sample_swiss_roll(2000, generator=torch.Generator().manual_seed(0))
    noisy, _ = aae.sample_swiss_roll(2000, noise=0.1, generator=torch.Generator().manual_seed(0))
    offset = (noisy - clean).double()  # the same t for the same seed, then the noise
    assert abs(offset.std().item() - 0.1) < 4 * 0.1 / math.sqrt(2 * 4000)
    with pytest.raises(ValueError, match="noise >= 0"):
        aae.sample_swiss_roll(10, noise=-1.0)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        aae.sample_swiss_roll(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_aae_phases_on_cuda():
    torch.manual_seed(0)
    model, disc = aae.AAE(hidden=16, gaussian=True).cuda(), aae.CodeDiscriminator(hidden=8).cuda()
    x = images(6).cuda()
    codes = model.encode(x, torch.Generator().manual_seed(0))  # a CPU generator works
    prior, _ = aae.sample_swiss_roll(6, generator=torch.Generator().manual_seed(1))
    for loss in (aae.reconstruction_loss(model, x), aae.encoder_phase_loss(disc, codes),
                 aae.discriminator_phase_loss(disc, codes, prior.cuda())):
        assert loss.is_cuda and torch.isfinite(loss)
