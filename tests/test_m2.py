"""Tests of vaecourse.models.m2: the M2 bounds against brute-force sums over labels and against
the exact log p(x) of a small linear-Gaussian model with a discrete label."""

import math

import pytest
import torch
from torch import distributions as D

from vaecourse import gaussian
from vaecourse.models import m2

F64 = torch.float64


class LabelledLinearGaussian:
    """p(y) = 1/3, p(z) = N(0, I_2), p(x | y, z) = N(W z + b_y, s^2 I_3).

    W has orthogonal columns, so the exact posterior p(z | x, y) is a diagonal Gaussian (what
    q(z | x, y) can be) and every bound has a closed form."""

    W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=F64)
    b = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 1.0], [-1.0, 2.0, -2.0]], dtype=F64)
    s = 0.5
    classes = 3

    def log_joint(self, x):
        """log p(x, y) for every label: (B, 3), from p(x | y) = N(b_y, W W^T + s^2 I)."""
        cov = self.W @ self.W.T + self.s**2 * torch.eye(3, dtype=F64)
        p_x_given_y = D.MultivariateNormal(self.b, covariance_matrix=cov)
        return p_x_given_y.log_prob(x[:, None, :]) - math.log(self.classes)

    def posterior(self, x):
        """(mu, logvar) of p(z | x, y) for every label: each (B, 3, 2)."""
        precision = 1 + (self.W**2).sum(0) / self.s**2  # diagonal of I + W^T W / s^2
        mu = ((x[:, None, :] - self.b) @ self.W) / self.s**2 / precision
        return mu, (-precision.log()).expand_as(mu)

    def label_elbos(self, x, mu, logvar):
        """-L(x, y) of q(z | x, y) = N(mu, exp(logvar)), each (B, 3, 2), in closed form."""
        mean = mu @ self.W.T + self.b  # E_q of the decoder's mean
        spread = (logvar.exp() * (self.W**2).sum(0)).sum(-1)  # tr(W S W^T)
        log_likelihood = (gaussian.log_normal_diag(x[:, None, :], mean,
                                                   torch.full_like(mean, 2 * math.log(self.s)))
                          - spread / (2 * self.s**2))
        return m2.labelled_bound(log_likelihood, gaussian.kl_std_normal(mu, logvar),
                                 self.classes)


def points(n=6, seed=0):
    return 2 * torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_unlabelled_bound_is_the_sum_over_labels():
    g = torch.Generator().manual_seed(0)
    elbos = -100 * torch.rand(4, 5, generator=g, dtype=F64)
    logits = 3 * torch.randn(4, 5, generator=g, dtype=F64)
    bound = m2.unlabelled_bound(elbos, logits)
    for i in range(4):
        z = sum(math.exp(v) for v in logits[i].tolist())
        q = [math.exp(v) / z for v in logits[i].tolist()]
        by_hand = sum(q[y] * elbos[i, y].item() - q[y] * math.log(q[y]) for y in range(5))
        assert bound[i].item() == pytest.approx(by_hand, abs=1e-10)


def test_a_confident_classifier_reduces_the_bound_to_its_label():
    elbos = torch.tensor([[-10.0, -20.0, -30.0]], dtype=F64)
    logits = torch.tensor([[0.0, 100.0, 0.0]], dtype=F64)  # q(y = 1 | x) = 1, entropy 0
    assert m2.unlabelled_bound(elbos, logits).item() == pytest.approx(-20.0, abs=1e-10)


def test_exact_posteriors_make_the_bounds_tight():
    model, x = LabelledLinearGaussian(), points()
    log_joint = model.log_joint(x)
    elbos = model.label_elbos(x, *model.posterior(x))
    assert torch.allclose(elbos, log_joint, atol=1e-10)  # -L(x, y) = log p(x, y)
    log_px = torch.logsumexp(log_joint, -1)
    exact_classifier = log_joint - log_px[:, None]  # logits of p(y | x)
    assert torch.allclose(m2.unlabelled_bound(elbos, exact_classifier), log_px, atol=1e-10)


def test_the_unlabelled_gap_is_the_two_kls():
    """log p(x) - (-U(x)) = KL(q(y|x) || p(y|x)) + sum_y q(y|x) KL(q(z|x,y) || p(z|x,y)) >= 0."""
    model, x = LabelledLinearGaussian(), points(seed=1)
    g = torch.Generator().manual_seed(2)
    mu_p, logvar_p = model.posterior(x)
    mu_q = mu_p + 0.5 * torch.randn(mu_p.shape, generator=g, dtype=F64)
    logvar_q = logvar_p + 0.5 * torch.randn(mu_p.shape, generator=g, dtype=F64)
    logits = torch.randn(len(x), 3, generator=g, dtype=F64)
    bound = m2.unlabelled_bound(model.label_elbos(x, mu_q, logvar_q), logits)
    log_joint = model.log_joint(x)
    log_px = torch.logsumexp(log_joint, -1)
    q_y = logits.softmax(-1)
    kl_y = (q_y * (logits.log_softmax(-1) - (log_joint - log_px[:, None]))).sum(-1)
    kl_z = (q_y * gaussian.kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)).sum(-1)
    assert torch.allclose(log_px - bound, kl_y + kl_z, atol=1e-10)
    assert (bound < log_px).all()


def test_classification_loss_is_minus_the_log_probability_of_the_label():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=F64)
    y = torch.tensor([1, 0])
    expected = -D.Categorical(logits=logits).log_prob(y)
    assert torch.allclose(m2.classification_loss(logits, y), expected, atol=1e-12)


def test_semi_supervised_loss_weighs_every_image_once():
    labelled = torch.tensor([-10.0, -20.0], dtype=F64)
    unlabelled = torch.tensor([-30.0, -40.0, -50.0], dtype=F64)
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=F64)
    y = torch.tensor([1, 0])
    ce = (math.log(2) + (math.log(1 + math.exp(-2)))) / 2
    loss = m2.semi_supervised_loss(labelled, unlabelled, logits, y, alpha=0.5)
    assert loss.item() == pytest.approx(150 / 5 + 0.5 * ce, abs=1e-12)


def small_model(seed=0):
    torch.manual_seed(seed)
    return m2.M2(x_dim=6, classes=3, latent=2, hidden=8)


def binary_images(n, seed=0):
    return torch.bernoulli(torch.full((n, 6), 0.5), generator=torch.Generator().manual_seed(seed))


def test_the_model_elbo_estimates_its_monte_carlo_definition():
    """E[one-sample -L(x, y)] with the closed-form KL equals E_q[log p(x|y,z) + log p(y) +
    log p(z) - log q(z|x,y)] estimated with torch.distributions (5 standard errors)."""
    model, x = small_model(), binary_images(2)
    samples = 4000
    y = torch.tensor([0, 2]).repeat(samples)
    xs = x.repeat(samples, 1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ours = model.elbo(xs, y, g).reshape(samples, 2)
        mu, logvar = model.encode(xs, y)
        q = D.Normal(mu, (0.5 * logvar).exp())
        z = q.sample()
        reference = (D.Bernoulli(logits=model.decode(z, y)).log_prob(xs).sum(-1)
                     - math.log(3) + D.Normal(0.0, 1.0).log_prob(z).sum(-1)
                     - q.log_prob(z).sum(-1)).reshape(samples, 2)
    se = (ours.var(0) / samples + reference.var(0) / samples).sqrt()
    assert ((ours.mean(0) - reference.mean(0)).abs() < 5 * se).all(), (ours.mean(0),
                                                                       reference.mean(0), se)


def test_label_elbos_hold_each_labels_bound():
    model, x = small_model(), binary_images(3)
    samples = 2000
    g = torch.Generator().manual_seed(3)
    xs = x.repeat(samples, 1)
    with torch.no_grad():
        table = model.label_elbos(xs, g)
        assert table.shape == (3 * samples, 3)
        table = table.reshape(samples, 3, 3)  # (sample, image, label)
        for label in range(3):
            direct = model.elbo(xs, torch.full((3 * samples,), label), g).reshape(samples, 3)
            se = (table[:, :, label].var(0) / samples + direct.var(0) / samples).sqrt()
            assert ((table[:, :, label].mean(0) - direct.mean(0)).abs() < 5 * se).all()


def test_the_loss_trains_all_three_networks():
    model = small_model()
    x_l, x_u = binary_images(4, seed=1), binary_images(5, seed=2)
    y = torch.tensor([0, 1, 2, 1])
    for alpha in (0.0, 1.0):
        model.alpha = alpha
        model.zero_grad()
        loss, metrics = model.loss(x_l, y, x_u, torch.Generator().manual_seed(0))
        loss.backward()
        for name in ("classifier", "encoder", "decoder"):
            grads = [p.grad for p in getattr(model, name).parameters()]
            assert all(gr is not None and torch.isfinite(gr).all() for gr in grads), name
            assert sum(gr.abs().sum() for gr in grads) > 0, (name, alpha)
        assert set(metrics) == {"loss", "labelled_elbo", "unlabelled_elbo", "labelled_accuracy"}
        assert metrics["loss"] == pytest.approx(loss.item())


def test_the_loss_is_the_objective_of_its_parts():
    model, x_l, x_u = small_model(), binary_images(4, seed=1), binary_images(5, seed=2)
    y = torch.tensor([0, 1, 2, 1])
    model.alpha = 0.3
    loss, metrics = model.loss(x_l, y, x_u, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same noise, drawn in the same order
    labelled = model.elbo(x_l, y, g)
    unlabelled = m2.unlabelled_bound(model.label_elbos(x_u, g), model.classify(x_u))
    ce = m2.classification_loss(model.classify(x_l), y)
    expected = -(labelled.sum() + unlabelled.sum()) / 9 + 0.3 * ce.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["unlabelled_elbo"] == pytest.approx(unlabelled.mean().item(), rel=1e-6)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: m2.unlabelled_bound(torch.zeros(2, 3), torch.zeros(3)), r"logits must be .*\(B, Y\)"),
    (lambda: m2.unlabelled_bound(torch.zeros(2, 4), torch.zeros(2, 3)), "shape of logits"),
    (lambda: m2.classification_loss(torch.zeros(2, 3), torch.tensor([0, 3])), r"0\.\.2"),
    (lambda: m2.classification_loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), "int64"),
    (lambda: m2.classification_loss(torch.zeros(2, 3), torch.tensor([0])), r"shape \(2,\)"),
    (lambda: m2.semi_supervised_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2, 3),
                                     torch.tensor([0, 1]), alpha=-1.0), "alpha must be >= 0"),
    (lambda: m2.semi_supervised_loss(torch.zeros(2), torch.zeros(3), torch.zeros(3, 3),
                                     torch.tensor([0, 1, 2]), alpha=1.0), "same number of rows"),
    (lambda: m2.semi_supervised_loss(torch.zeros(2, 1), torch.zeros(3), torch.zeros(2, 3),
                                     torch.tensor([0, 1]), alpha=1.0), "per-example bounds"),
    (lambda: small_model().encode(torch.zeros(2, 6), torch.tensor([0, 5])), r"0\.\.2"),
    (lambda: m2.M2(x_dim=6, alpha=-0.1), "alpha must be >= 0"),
])
def test_bad_inputs_are_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_loss_runs_on_cuda():
    model = small_model().cuda()
    x_l, x_u = binary_images(4, seed=1).cuda(), binary_images(5, seed=2).cuda()
    y = torch.tensor([0, 1, 2, 1]).cuda()
    loss, _ = model.loss(x_l, y, x_u)
    loss.backward()
    assert loss.is_cuda and torch.isfinite(loss)
    assert model.label_elbos(x_u).shape == (5, 3)
    same_weights_on_cpu = small_model()
    assert torch.allclose(model.classify(x_u).cpu(), same_weights_on_cpu.classify(x_u.cpu()),
                          atol=1e-4)
