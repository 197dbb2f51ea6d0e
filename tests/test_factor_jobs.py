"""Tests of the jobs of chapters 14-16 (vaecourse.recipes: betavae, attrcvae, flowedit, m2) and of
the networks they add: the factor classifier, the flow editor, the VAE on 32x32 images."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaecourse import config, metrics, recipes, sample_quality
from vaecourse.data import factors
from vaecourse.models import classifier, flow, m2, vae

SMOKE = config.PRESETS["smoke"]
GPU = config.PRESETS["gpu"]


def factor_images(n: int = 64, seed: int = 0) -> factors.FactorImages:
    return factors.generate(n, seed)


class LookupReader(nn.Module):
    """A perfect factor reader for a known set of images: the factors of the nearest image."""

    def __init__(self, data: factors.FactorImages):
        super().__init__()
        self.register_buffer("images", data.images.flatten(1))
        self.factors = data.factors
        self.sizes = factors.FACTOR_SIZES

    def forward(self, images):
        nearest = torch.cdist(images.flatten(1), self.images).argmin(1)
        rows = self.factors[nearest]
        return tuple(F.one_hot(rows[:, k], n).float() for k, n in enumerate(self.sizes))


# ---------------------------------------------------------------------------------------------
# the networks
# ---------------------------------------------------------------------------------------------


def test_the_vae_reads_images_of_its_own_size():
    model = vae.VAE(latent=3, hidden=8, data_dim=32 * 32)
    x = torch.bernoulli(torch.full((4, 1, 32, 32), 0.3), generator=torch.Generator().manual_seed(0))
    assert model.negative_elbo(x).shape == (4,) and vae.log_weights(model, x, 5).shape == (4, 5)
    with pytest.raises(ValueError, match="x must hold images of 1024 pixels, got shape"):
        model.negative_elbo(torch.zeros(4, 784))
    with pytest.raises(ValueError, match="x must hold 28x28 images"):
        vae.VAE(latent=3, hidden=8).negative_elbo(x)


def test_mean_codes_are_the_encoder_means():
    model = vae.VAE(latent=3, hidden=8)
    x = torch.rand(7, 784, generator=torch.Generator().manual_seed(1))
    codes = metrics.mean_codes(model, x, batch_size=3)
    torch.testing.assert_close(codes, model.encode(x)[0].detach())
    assert metrics.active_units(model, x, threshold=0.0)[1].allclose(codes.var(0))


def test_factor_classifier_loss_is_the_sum_of_the_cross_entropies():
    torch.manual_seed(0)
    net = classifier.FactorClassifier(factors.FACTOR_SIZES, width=2, hidden=8)
    data = factor_images(5)
    logits = net(data.images)
    assert [t.shape for t in logits] == [(5, n) for n in factors.FACTOR_SIZES]
    loss, scores = net.loss((data.images, data.factors))
    expected = sum(F.cross_entropy(logits[k], data.factors[:, k]) for k in range(6))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    read = classifier.predict_factors(net, data.images, batch_size=2)
    assert read.shape == (5, 6) and read.dtype == torch.int64
    assert torch.equal(read, torch.stack([t.argmax(-1) for t in logits], 1))
    assert scores["accuracy"] == pytest.approx((read == data.factors).float().mean().item())


def test_an_untrained_flow_editor_is_the_identity():
    editor = flow.FlowEditor(values=4, width=3)
    data = factor_images(6)
    source, target = data.factors[:, 1], (data.factors[:, 1] + 1) % 4
    assert torch.equal(editor.flow(data.images, source, target), torch.zeros(6, 32, 32, 2))
    torch.testing.assert_close(editor(data.images, source, target), data.images)


def test_the_flow_editor_learns_a_one_pixel_shift():
    """Pairs that differ by a one-pixel move to the right: the editor learns it, its error falls
    more than tenfold, and its flow reads the left neighbour (flow x = -1 where the shape is)."""
    torch.manual_seed(0)
    data = factor_images(32, seed=3)
    moved = torch.roll(data.images, 1, dims=3)
    editor = flow.FlowEditor(values=2, width=8)
    zeros = torch.zeros(32, dtype=torch.int64)
    batch = (data.images, zeros, zeros + 1, moved)
    start, _ = editor.loss(batch)
    optimizer = torch.optim.Adam(editor.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = editor.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < start.item() / 10
    on_shape = moved[:, 0] > 0.5
    dx = editor.flow(*batch[:3]).detach()[..., 0][on_shape]
    assert (dx.mean() + 1).abs() < 0.2


def test_flow_editor_rejects_bad_values():
    editor = flow.FlowEditor(values=4, width=3)
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"target must be int64 values in 0\.\.3 of shape \(2,\)"):
        editor(x, torch.tensor([0, 1]), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="values must be an int >= 2"):
        flow.FlowEditor(values=1)


# ---------------------------------------------------------------------------------------------
# the recipes' parts
# ---------------------------------------------------------------------------------------------


def test_held_out_split_is_a_seeded_partition():
    train, test = recipes.held_out_split(100, seed=4)
    assert len(test) == 10 and len(train) == 90
    assert sorted(torch.cat([train, test]).tolist()) == list(range(100))
    assert torch.equal(recipes.held_out_split(100, seed=4)[1], test)
    assert not torch.equal(recipes.held_out_split(100, seed=5)[1], test)


def test_attribute_codes_are_one_hot_per_attribute():
    data = factor_images(9)
    y = recipes.attribute_codes(data.factors)
    sizes = [len(factors.FACTORS[name]) for name in recipes.ATTRIBUTES]
    assert y.shape == (9, sum(sizes))
    for block, name in zip(y.split(sizes, 1), recipes.ATTRIBUTES, strict=True):
        assert torch.equal(block.argmax(1), data.factors[:, factors.FACTOR_NAMES.index(name)])
        assert torch.equal(block.sum(1), torch.ones(9))


@pytest.mark.parametrize("attribute", recipes.EDITS)
def test_edit_pairs_change_one_attribute_only(attribute):
    data = factor_images(50)
    k = factors.FACTOR_NAMES.index(attribute)
    target, edited = recipes.edit_pairs(data, attribute, seed=2)
    assert (target != data.factors[:, k]).all()
    assert set(target.tolist()) == set(range(factors.FACTOR_SIZES[k]))  # every value drawn
    expected = data.factors.clone()
    expected[:, k] = target
    assert torch.equal(edited, factors.render(expected))


def test_edit_metrics_of_perfect_and_of_missing_edits():
    """With a perfect reader: the true edited images have no identity, attribute or target
    error and the sharpness of the real images; the unedited sources keep their identity but
    miss every requested attribute value; edits that also change the thickness hit the target
    but lose one of the five other factors."""
    data = factor_images(40)
    k, t = factors.FACTOR_NAMES.index("scale"), factors.FACTOR_NAMES.index("thickness")
    target, edited = recipes.edit_pairs(data, "scale", seed=1)
    edited_factors = data.factors.index_put((torch.arange(40), torch.tensor(k)), target)
    drifted_factors = edited_factors.clone()
    drifted_factors[:, t] = (drifted_factors[:, t] + 1) % factors.FACTOR_SIZES[t]
    drifted = factors.render(drifted_factors)
    reader = LookupReader(factors.FactorImages(torch.cat([data.images, edited, drifted]),
                                               torch.cat([data.factors, edited_factors,
                                                          drifted_factors])))
    perfect = recipes.edit_metrics(edited, target, edited, data.factors, reader, k)
    assert perfect["identity_error"] == 0 and perfect["attribute_error"] == 0
    assert perfect["target_error"] == 0
    assert perfect["sharpness"] == pytest.approx(
        sample_quality.gradient_energy(edited).mean().item())
    unedited = recipes.edit_metrics(data.images, target, edited, data.factors, reader, k)
    assert unedited["identity_error"] == 0 and unedited["attribute_error"] == 1
    assert unedited["target_error"] > 0
    drift = recipes.edit_metrics(drifted, target, edited, data.factors, reader, k)
    assert drift["identity_error"] == pytest.approx(1 / 5) and drift["attribute_error"] == 0


def test_labelled_subset_draws_as_many_of_every_class():
    labels = torch.arange(300) % 10
    chosen = recipes.labelled_subset(labels, 10, seed=0)
    assert len(chosen) == 100 and len(set(chosen.tolist())) == 100
    assert torch.equal(torch.bincount(labels[chosen]), torch.full((10,), 10))
    assert not torch.equal(recipes.labelled_subset(labels, 10, seed=1), chosen)
    with pytest.raises(ValueError, match="30 labels per class need more than 30"):
        recipes.labelled_subset(labels, 30, seed=0)


def test_the_baseline_trains_the_classifier_only():
    model = m2.M2(x_dim=784, latent=2, hidden=8)
    x = torch.bernoulli(torch.full((4, 784), 0.5), generator=torch.Generator().manual_seed(0))
    loss, _ = recipes.labels_only_loss(model, (x, torch.tensor([0, 1, 2, 3]), x))
    loss.backward()
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert all(p.grad is None for p in [*model.encoder.parameters(),
                                        *model.decoder.parameters()])


# ---------------------------------------------------------------------------------------------
# the recipes
# ---------------------------------------------------------------------------------------------


def test_betavae_reports_disentanglement_rate_and_distortion():
    run = recipes.betavae(SMOKE, beta=2.0, latent=4, epochs=1, progress=False)
    assert run.provenance["beta"] == 2.0 and run.model.beta == 2.0 and run.model.latent == 4
    assert 0 <= run.metrics["mig"] <= 1 and 0 <= run.metrics["dci_disentanglement"] <= 1
    x, _ = run.test.tensors
    parts = metrics.elbo_parts(run.model, x)
    assert run.metrics["rate"] == pytest.approx(parts["kl"], rel=0.05)
    assert run.metrics["distortion"] > 0 and run.metrics["rate"] >= 0


def test_attrcvae_measures_generated_attributes():
    run = recipes.attrcvae(SMOKE, samples=200, epochs=1, progress=False)
    m = run.metrics
    per_attribute = [m[f"{name}_error"] for name in recipes.ATTRIBUTES]
    assert m["attribute_error"] == pytest.approx(sum(per_attribute) / 4, abs=1e-6)
    assert 0 < m["attribute_error_se"] <= 0.5 / 199 ** 0.5  # a mean of values in [0, 1]
    assert run.provenance["images"] + run.provenance["test_images"] == SMOKE.factor_images


def test_flowedit_compares_the_flow_and_the_latent_edit():
    run = recipes.flowedit(SMOKE, attribute="rotation", epochs=1, progress=False)
    assert isinstance(run.model, flow.FlowEditor) and run.model.values == 8
    for method in ("flow", "latent"):
        for key in ("sharpness", "identity_error", "attribute_error", "target_error"):
            assert f"{method}_{key}" in run.metrics
    assert run.metrics["real_sharpness"] > 0


def test_m2_labels_are_checked():
    with pytest.raises(ValueError, match="labels must be a positive multiple of 10"):
        recipes.m2(SMOKE, labels=95)


def test_the_gpu_preset_sizes_run_one_batch():
    """The gpu widths of the new networks (classifier and editor ``factor_width``, hidden
    ``hidden``) on one batch, on any device."""
    data = factor_images(4)
    net = classifier.FactorClassifier(factors.FACTOR_SIZES, GPU.factor_width)
    editor = flow.FlowEditor(4, GPU.factor_width)
    model = vae.VAE(10, GPU.hidden, data_dim=1024)
    losses = [net.loss((data.images, data.factors))[0],
              editor.loss((data.images, data.factors[:, 1], (data.factors[:, 1] + 1) % 4,
                           data.images))[0],
              model.loss((data.images > 0.5).float())[0],
              m2.M2(784, hidden=GPU.hidden).loss(torch.zeros(2, 784), torch.tensor([0, 1]),
                                                 torch.ones(3, 784))[0]]
    assert all(torch.isfinite(loss) for loss in losses)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("job", ["betavae", "attrcvae", "flowedit", "m2"])
def test_the_jobs_run_on_cuda(job):
    run = recipes.RECIPES[job](dataclasses.replace(SMOKE, factor_images=256), epochs=1,
                               device="cuda", progress=False)
    assert run.provenance["device"] == "cuda"
    assert next(run.model.parameters()).is_cuda
    assert all(v is None or isinstance(v, (int, float)) for v in run.metrics.values())
