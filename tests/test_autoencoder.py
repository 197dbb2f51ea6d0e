"""Tests of vaecourse.models.autoencoder: shapes, linear autoencoder = PCA, principal angles,
the regularizers and short training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaecourse import train
from vaecourse.models import autoencoder as ae


def low_rank_data(n: int = 400, d: int = 12, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Gaussian data with well separated variances 8, 4, 2, 1, 0.5, ... along random axes."""
    g = torch.Generator().manual_seed(seed)
    axes, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=dtype))
    scales = 8.0 ** 0.5 * 0.5 ** (torch.arange(d, dtype=dtype) / 2)
    return (torch.randn(n, d, generator=g, dtype=dtype) * scales) @ axes.T + 3.0


def test_shapes():
    x = torch.rand(5, 1, 28, 28)
    linear = ae.LinearAutoencoder(torch.zeros(784), k=3)
    assert linear.encode(x).shape == (5, 3) and linear(x).shape == (5, 784)
    deep = ae.Autoencoder(code=2, hidden=16)
    z = deep.encode(x)
    assert z.shape == (5, 2) and deep.decode(z).shape == (5, 784)
    out = deep(x)
    assert out.shape == (5, 784) and out.min() >= 0 and out.max() <= 1
    loss, metrics = deep.loss((x, torch.zeros(5)))  # a (images, labels) batch
    assert loss.shape == () and set(metrics) == {"loss", "reconstruction"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_pca_matches_numpy_and_tied_linear_ae_loss_is_pca_error(dtype, k):
    x = low_rank_data(dtype=dtype)
    mean, directions, variances = ae.pca(x, k)
    reference = np.linalg.eigvalsh(np.cov(x.double().numpy(), rowvar=False, bias=True))[::-1]
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(variances.double().numpy(), reference, rtol=rtol, atol=rtol)
    assert torch.allclose(directions.T @ directions, torch.eye(k, dtype=dtype), atol=rtol)
    model = ae.LinearAutoencoder(mean, k).to(dtype)
    with torch.no_grad():
        model.weight.copy_(directions)
    loss, _ = model.loss(x)
    assert math.isclose(loss.item(), variances[k:].sum().item(), rel_tol=10 * rtol)
    # Any other k-dimensional subspace reconstructs worse.
    with torch.no_grad():
        model.weight.copy_(torch.linalg.qr(directions + 0.1 * torch.randn_like(directions))[0])
    assert model.loss(x)[0].item() > variances[k:].sum().item() * (1 + 10 * rtol)


def test_principal_angles_hand_cases():
    e = np.eye(4)
    assert np.allclose(ae.principal_angles(e[:, :2], e[:, :2]), 0)
    mix = np.array([[2.0, 1.0], [-1.0, 3.0]])  # a change of basis leaves the span alone
    assert np.allclose(ae.principal_angles(e[:, :2] @ mix, torch.tensor(e[:, :2])), 0, atol=1e-7)
    assert np.allclose(ae.principal_angles(e[:, :2], e[:, 2:]), np.pi / 2)
    theta = 0.3  # span(e1, e2) vs span(e1, cos t e2 + sin t e3)
    tilted = np.stack([e[0], np.cos(theta) * e[1] + np.sin(theta) * e[2]], axis=1)
    assert np.allclose(ae.principal_angles(e[:, :2], tilted), [theta, 0.0])
    a, b = np.random.default_rng(0).normal(size=(2, 6, 3))
    cosines = np.linalg.svd(np.linalg.qr(a)[0].T @ np.linalg.qr(b)[0], compute_uv=False)
    assert np.allclose(np.sort(ae.principal_angles(a, b)), np.sort(np.arccos(cosines)))
    with pytest.raises(ValueError, match="a and b"):
        ae.principal_angles(np.ones((4, 2)), np.ones((5, 2)))


def test_gradient_descent_finds_the_pca_subspace():
    x = low_rank_data(dtype=torch.float64)
    k = 3
    mean, directions, variances = ae.pca(x, k)
    model = ae.LinearAutoencoder(mean, k, torch.Generator().manual_seed(0)).double()
    losses = ae.gradient_descent(model, x, steps=400, lr=0.2 / variances[0].item())
    assert losses[-1] < losses[0]
    assert ae.principal_angles(model.weight, directions).max() < 1e-4
    final = model.loss(x)[0].item()
    assert math.isclose(final, variances[k:].sum().item(), rel_tol=1e-8)
    with pytest.raises(ValueError, match="steps"):
        ae.gradient_descent(model, x, steps=0, lr=0.1)


def test_mask_noise_statistics():
    x = torch.full((200, 784), 0.7)
    p = 0.3
    noisy = ae.mask_noise(x, p, torch.Generator().manual_seed(0))
    zeroed = (noisy == 0).double()
    assert torch.all((noisy == 0) | (noisy == x))
    se = math.sqrt(p * (1 - p) / zeroed.numel())
    assert abs(zeroed.mean().item() - p) < 5 * se
    assert torch.equal(ae.mask_noise(x, 0.0), x)
    with pytest.raises(ValueError, match="p must"):
        ae.mask_noise(x, 1.0)


def test_contractive_penalty_is_the_jacobian_norm():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    encoder = encoder.double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    penalty = ae.contractive_penalty(x, encoder(x))
    for i in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(encoder, x[i].detach())
        assert torch.allclose(penalty[i], jacobian.pow(2).sum())
    linear = torch.nn.Linear(6, 3, bias=False).double()  # z = A x: the penalty is ||A||_F^2
    penalty = ae.contractive_penalty(x, linear(x))
    assert torch.allclose(penalty, linear.weight.pow(2).sum().expand(4))
    assert torch.autograd.gradcheck(lambda v: ae.contractive_penalty(v, encoder(v)), (x,))
    with pytest.raises(ValueError, match="require grad"):
        ae.contractive_penalty(x.detach(), encoder(x.detach()))


def test_regularized_losses():
    torch.manual_seed(0)
    x = torch.rand(8, 784)
    plain = ae.Autoencoder(code=4, hidden=64)
    assert not torch.allclose(plain(x), plain(ae.mask_noise(x, 0.5)), rtol=1e-3)  # x matters
    sparse = ae.Autoencoder(code=4, hidden=64, sparsity=0.5)
    sparse.load_state_dict(plain.state_dict())
    rec = torch.nn.functional.binary_cross_entropy(plain(x), x, reduction="sum") / len(x)
    assert torch.allclose(plain.loss(x)[0], rec, rtol=1e-5)
    l1 = plain.encode(x).abs().sum(-1).mean()
    assert torch.allclose(sparse.loss(x)[0], rec + 0.5 * l1, rtol=1e-5)
    contractive = ae.Autoencoder(code=4, hidden=64, contraction=2.0)
    contractive.load_state_dict(plain.state_dict())
    xg = x.clone().requires_grad_(True)
    penalty = ae.contractive_penalty(xg, plain.encode(xg)).mean()
    contractive.eval()
    with torch.no_grad():  # evaluation (as in train.run_epoch) still gets the penalty
        loss, _ = contractive.loss(x)
    assert torch.allclose(loss, rec + 2.0 * penalty, rtol=1e-5)
    # Denoising: corrupted input in training mode only; the target is always the clean x.
    denoising = ae.Autoencoder(code=4, hidden=64, noise=0.5)
    denoising.load_state_dict(plain.state_dict())
    denoising.eval()
    assert torch.allclose(denoising.loss(x)[0], rec, rtol=1e-5)
    denoising.train()
    torch.manual_seed(1)
    noisy = ae.mask_noise(x, 0.5)
    torch.manual_seed(1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        plain.decode(plain.encode(noisy)), x, reduction="sum") / len(x)
    assert torch.allclose(denoising.loss(x)[0], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="noise"):
        ae.Autoencoder(noise=1.0)


@pytest.mark.parametrize("options", [{}, {"noise": 0.3}, {"sparsity": 0.1},
                                     {"contraction": 0.1}])
def test_short_training_reduces_the_loss(options):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g).pow(3)  # grey images (fixed; no download)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=32)
    model = ae.Autoencoder(code=2, hidden=32, **options)
    history = train.fit(model, loader, test_loader=loader, epochs=15, seed=0, lr=3e-3,
                        progress=False)
    first, last = history["test"][0]["loss"], history["test"][-1]["loss"]
    assert last < first - 1.0, (first, last)
