"""Tests of chapter 9: colour data, colorization networks, their metrics and the command line."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis

from vaecourse import config, metrics, recipes, train
from vaecourse.data import colorization as data
from vaecourse.models import colorization as models

# The smoke preset with 32 training images of 16 x 16 pixels: a recipe in about a second.
TINY = dataclasses.replace(config.PRESETS["smoke"], color_images=32, image_size=16,
                           color_width=4, color_epochs=1)

# ------------------------------------------------------------------------------ data


def test_synthetic_shapes_and_colours():
    d = data.synthetic(40, 16, seed=0)
    assert d.L.shape == (40, 1, 16, 16) and d.ab.shape == (40, 2, 16, 16)
    assert d.L.dtype == d.ab.dtype == torch.float32 and d.mask.dtype == torch.bool
    assert set(d.hue.tolist()) == {0, 1, 2, 3}
    expected = data.hue_ab()[d.hue].view(40, 2, 1, 1) * d.mask
    assert torch.equal(d.ab, expected)  # the object has its hue, the background is neutral
    lo, hi = data.OBJECT_L
    assert torch.all((d.L[d.mask] >= lo - 1e-4) & (d.L[d.mask] <= hi + 1e-4))
    lo, hi = data.BACKGROUND_L
    assert torch.all((d.L[~d.mask] >= lo - 1e-4) & (d.L[~d.mask] <= hi + 1e-4))
    assert d.mask.float().mean((1, 2, 3)).min() > 0.05  # every scene holds an object


def test_hues_share_lightness_and_chroma_and_average_to_grey():
    hues = data.hue_ab()
    torch.testing.assert_close(hues.norm(dim=1), torch.full((4,), data.CHROMA))
    torch.testing.assert_close(hues.mean(0), torch.zeros(2), atol=1e-5, rtol=0)


def test_grey_image_carries_no_hue_information_exactly():
    a = data.synthetic(50, 16, seed=3, hue_seed=10)
    b = data.synthetic(50, 16, seed=3, hue_seed=11)
    assert not torch.equal(a.hue, b.hue)
    assert torch.equal(a.L, b.L) and torch.equal(a.mask, b.mask)  # bit for bit


def test_every_hue_renders_to_the_same_lightness_in_srgb():
    # Render the same scene in each of the K hues through sRGB and back: the lightness (the
    # grey image a camera records) is the same for every hue, and the hues are in gamut.
    d = data.synthetic(6, 16, seed=1)
    lights = []
    for k in range(4):
        ab = data.hue_ab()[k].view(1, 2, 1, 1) * d.mask
        L, ab_back = data.rgb_to_lab(data.lab_to_rgb(d.L, ab))
        torch.testing.assert_close(ab_back, ab, atol=0.05, rtol=0)  # in gamut: no clipping
        lights.append(L)
    for L in lights[1:]:
        torch.testing.assert_close(L, lights[0], atol=1e-3, rtol=0)


def test_synthetic_is_reproducible_and_checks_arguments():
    assert torch.equal(data.synthetic(5, 16, 2).ab, data.synthetic(5, 16, 2).ab)
    with pytest.raises(ValueError, match="size"):
        data.synthetic(5, 4)
    with pytest.raises(ValueError, match="n must"):
        data.synthetic(0, 16)


def test_natural_patches():
    train_set = data.natural_patches(14, 16, "train", seed=0)
    test_set = data.natural_patches(7, 16, "test", seed=0)
    assert train_set.L.shape == (14, 1, 16, 16) and test_set.ab.shape == (7, 2, 16, 16)
    assert train_set.hue is None and train_set.mask is None
    assert train_set.L.min() >= 0 and train_set.L.max() <= 100.01
    assert train_set.ab.abs().max() < 128 and train_set.ab.std() > 1  # real colour
    assert torch.equal(test_set.L, data.natural_patches(7, 16, "test", seed=0).L)
    with pytest.raises(ValueError, match="split"):
        data.natural_patches(3, 16, "valid")


def test_natural_test_patches_come_from_the_right_quarter():
    photo = data.photos_lab(16)[0]  # every 7th patch comes from the first photo
    cut = 3 * photo.shape[2] // 4
    patch = data.natural_patches(1, 16, "test", seed=4).ab[0]
    windows = photo[1:].unfold(1, 16, 1).unfold(2, 16, 1)  # (2, rows, cols, 16, 16)
    hits = (windows - patch[:, None, None]).abs().amax(dim=(0, 3, 4)) < 1e-6
    cols = hits.nonzero()[:, 1]
    assert len(cols) >= 1 and cols.min() >= cut


def test_hue_rotated_turns_each_field_by_a_random_quarter_turn():
    patches = data.natural_patches(400, 8, "train", seed=0)
    turned = data.hue_rotated(patches, seed=3)
    assert turned.source == "rotated" and torch.equal(turned.L, patches.L)  # grey kept bit for bit
    chroma = patches.ab.pow(2).sum(1).sqrt()
    assert torch.allclose(turned.ab.pow(2).sum(1).sqrt(), chroma, atol=1e-3)  # chroma kept
    a, b = patches.ab[:, 0], patches.ab[:, 1]
    quarter_turns = torch.stack([patches.ab, torch.stack([-b, a], 1), -patches.ab,
                                 torch.stack([b, -a], 1)])  # 0, 90, 180, 270 degrees
    error = (quarter_turns - turned.ab).abs().amax(dim=(2, 3, 4))  # (4 turns, N)
    assert torch.all(error.amin(0) < 1e-3)  # every field is one of its four quarter turns
    counts = torch.bincount(error.argmin(0), minlength=4).double()
    # each turn has probability 1/4: its count is Binomial(400, 1/4), s.e. sqrt(400 * 3/16)
    assert torch.all((counts - 100).abs() < 5 * (400 * 3 / 16) ** 0.5), counts
    assert torch.equal(data.hue_rotated(patches, seed=3).ab, turned.ab)  # seeded
    with pytest.raises(ValueError, match="turns"):
        data.hue_rotated(patches, seed=0, turns=1)


def test_rotated_source_is_natural_patches_with_turned_hues():
    train_set, test_set = data.load("rotated", 14, 7, 16, seed=0)
    plain_train, plain_test = data.load("natural", 14, 7, 16, seed=0)
    assert torch.equal(train_set.L, plain_train.L) and torch.equal(test_set.L, plain_test.L)
    assert not torch.allclose(train_set.ab, plain_train.ab)


def test_rgb_lab_round_trip_agrees_with_skimage():
    from skimage import color

    rgb = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 3))
    L, ab = data.rgb_to_lab(rgb)
    lab = color.rgb2lab(rgb)
    np.testing.assert_allclose(L[:, 0].numpy(), lab[..., 0], atol=1e-4)
    np.testing.assert_allclose(data.lab_to_rgb(L, ab), rgb, atol=1e-4)
    with pytest.raises(ValueError, match="rgb"):
        data.rgb_to_lab(rgb[0])


# ------------------------------------------------------------------------------ metrics


def field(a, b, n=1, size=4):
    """n ab fields of constant (a, b)."""
    return torch.tensor([a, b], dtype=torch.float32).view(1, 2, 1, 1).expand(n, 2, size, size)


def test_best_of_k_and_ab_error_on_hand_made_cases():
    target = field(0.0, 0.0)
    samples = torch.stack([field(3.0, 4.0), field(0.6, 0.8), field(0.0, 3.0)], dim=1)
    torch.testing.assert_close(metrics.ab_error(samples, target.unsqueeze(1)),
                               torch.tensor([[5.0, 1.0, 3.0]]))
    assert metrics.best_of_k_error(samples, target, 1).item() == pytest.approx(5.0)
    assert metrics.best_of_k_error(samples, target, 2).item() == pytest.approx(1.0)
    assert metrics.best_of_k_error(samples, target, 3).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must"):
        metrics.best_of_k_error(samples, target, 4)
    with pytest.raises(ValueError, match="samples"):
        metrics.best_of_k_error(samples[:, :, :1], target, 1)


def test_diversity_and_chroma_ratio_on_hand_made_cases():
    target = field(6.0, 8.0)  # chroma 10
    same = torch.stack([field(3.0, 4.0)] * 3, dim=1)
    assert metrics.diversity(same).item() == 0.0
    assert metrics.chroma_ratio(same, target) == pytest.approx(0.5)
    pair = torch.stack([field(0.0, 0.0), field(3.0, 4.0)], dim=1)
    assert metrics.diversity(pair).item() == pytest.approx(5.0)
    three = torch.stack([field(0.0, 0.0), field(3.0, 4.0), field(0.0, 0.0)], dim=1)
    assert metrics.diversity(three).item() == pytest.approx(4 * 5.0 / 6)  # 4 of 6 pairs differ
    with pytest.raises(ValueError, match="chroma"):
        metrics.chroma_ratio(same, field(0.0, 0.0))


def test_hue_coverage_on_hand_made_cases():
    hues = data.hue_ab()
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 1:3, 1:3] = True

    def painted(k):  # hue k on the object, a wrong colour on the background (ignored)
        return (hues[k].view(1, 2, 1, 1) * mask + field(50.0, -50.0) * ~mask)

    every = torch.stack([painted(k) for k in (0, 1, 2, 3, 1)], dim=1)
    assert metrics.hue_coverage(every, mask, hues).item() == 4
    two = torch.stack([painted(k) for k in (2, 2, 0)], dim=1)
    assert metrics.hue_coverage(two, mask, hues).item() == 2
    grey = torch.zeros(1, 3, 2, 4, 4)
    assert metrics.hue_coverage(grey, mask, hues).item() == 0
    with pytest.raises(ValueError, match="mask"):
        metrics.hue_coverage(grey, mask[..., :2], hues)


def test_colorization_metrics_keys():
    target = field(6.0, 8.0, n=2)
    samples = torch.stack([field(6.0, 8.0, n=2)] * 10, dim=1)
    out = metrics.colorization_metrics(samples, target)
    assert set(out) == {"best_of_1_error", "best_of_5_error", "best_of_10_error", "diversity",
                        "chroma_ratio"}
    assert out["best_of_10_error"] == 0.0 and out["chroma_ratio"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ losses


def test_decoder_losses_against_reference_formulas():
    g = torch.Generator().manual_seed(0)
    ab = torch.randn(300, 2, 2, 2, generator=g) * 0.3
    stats = models.color_statistics(ab, bins=8, k=8)  # k = all 8 dimensions
    p = torch.bincount(models.ab_bin(ab, 8).flatten(), minlength=64).double()
    p = p / p.sum()
    assert (p * stats.bin_weights.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
    pred, target = ab[:5] + 0.1, ab[5:10]
    # with every principal component, L_mah is the squared Mahalanobis distance
    cov = np.cov(ab.flatten(1).double().numpy(), rowvar=False)
    inverse = np.linalg.inv(cov)
    expected = [mahalanobis(u, v, inverse) ** 2
                for u, v in zip(pred.flatten(1).numpy(), target.flatten(1).numpy(), strict=True)]
    np.testing.assert_allclose(models.mahalanobis_loss(pred, target, stats).numpy(), expected,
                               rtol=1e-3)
    w = stats.bin_weights[models.ab_bin(target, 8)]
    torch.testing.assert_close(models.hist_loss(pred, target, stats),
                               (w * (pred - target).pow(2).sum(1)).sum((1, 2)))
    assert models.grad_loss(target + 0.7, target).abs().max() < 1e-10  # a constant shift
    ramp = torch.zeros(1, 2, 3, 3)
    ramp[0, 0] = torch.arange(3.0)  # each row of channel a is 0, 1, 2: 3 x 2 steps of 1
    assert models.grad_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(6.0)


def test_mahalanobis_of_rank_deficient_fields_is_finite():
    """Flat ab fields span 2 of the 8 dimensions: L_mah keeps those 2 and equals the squared
    Mahalanobis distance with the pseudo-inverse of the covariance."""
    g = torch.Generator().manual_seed(1)
    ab = (torch.randn(20, 2, 1, 1, generator=g) * 0.3).expand(20, 2, 2, 2).contiguous()
    stats = models.color_statistics(ab, bins=8, k=8)
    assert stats.components.shape == (2, 8) and stats.eigenvalues.shape == (2,)
    pred, target = ab[:5] + 0.1, ab[5:10]
    pinv = np.linalg.pinv(np.cov(ab.flatten(1).double().numpy(), rowvar=False))
    expected = [mahalanobis(u, v, pinv) ** 2
                for u, v in zip(pred.flatten(1).numpy(), target.flatten(1).numpy(), strict=True)]
    np.testing.assert_allclose(models.mahalanobis_loss(pred, target, stats).numpy(), expected,
                               rtol=1e-3)


# ------------------------------------------------------------------------------ models


def small_set(n=64):
    return data.synthetic(n, 16, seed=0)


@pytest.mark.parametrize("kind", recipes.COLORIZERS)
def test_colorizer_recipes_output_shapes(kind):
    run = recipes.colorization(TINY, model=kind, latent=3, evaluate=False, progress=False)
    assert run.provenance["model"] == kind and run.provenance["train_images"] == 32
    assert run.metrics == {} and len(run.history["train"]) == 1
    out = run.model.colorize(small_set(5).L, 10)
    assert out.shape == (5, 10, 2, 16, 16) and torch.isfinite(out).all()
    spread = metrics.diversity(out)
    if kind == "regressor":
        assert torch.all(spread == 0)
    else:
        assert torch.all(spread > 0)
    if kind == "mdn":  # the MDN was trained after the VAE, on its codes
        assert len(run.history["mdn_train"]) == 1


def test_mdn_codes_are_the_modes_by_decreasing_weight():
    torch.manual_seed(0)
    mdn = models.MDN(latent=3, width=4, components=8)
    L = small_set(4).L
    mix = mdn.mixture(L)
    codes = mdn.codes(L, 10)
    assert codes.shape == (4, 10, 3)
    probs = mix.mixture_distribution.probs
    first = probs.argmax(dim=1)
    torch.testing.assert_close(codes[:, 0], mix.component_distribution.mean[torch.arange(4), first])
    torch.testing.assert_close(mix.mixture_distribution.probs.sum(1), torch.ones(4))
    assert mix.component_distribution.stddev.unique().tolist() == pytest.approx([0.1])


@pytest.mark.parametrize("kind", ["regressor", "cvae"])
def test_tiny_fit_reduces_the_loss(kind):
    d = small_set(64)
    torch.manual_seed(0)
    model = models.Regressor(4) if kind == "regressor" else models.ColorCVAE(3, 4)
    batches = models.loader(d.L, d.ab, batch_size=16, seed=0)
    history = train.fit(model, batches, test_loader=batches, epochs=4, lr=3e-3, seed=0,
                        progress=False)
    assert history["test"][-1]["loss"] < 0.7 * history["test"][0]["loss"]


def test_cvae_colorize_samples_from_the_prior_network():
    torch.manual_seed(0)
    model = models.ColorCVAE(3, 4)

    def forbidden(*args):
        raise AssertionError("test-time colourings must not use the recognition network")

    model.recognition = forbidden
    L = small_set(3).L
    torch.manual_seed(1)
    out = model.colorize(L, 4)
    mu, logvar = model.prior(models.grey_input(L))
    torch.manual_seed(1)
    z = mu + (0.5 * logvar).exp() * torch.randn(4, *mu.shape)
    expected = model.decode(z, models.grey_input(L)).movedim(0, 1) * models.AB_SCALE
    torch.testing.assert_close(out, expected)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="model must be one of"):
        recipes.colorization(TINY, model="gan")
    with pytest.raises(ValueError, match="data must be one of"):
        recipes.colorization(TINY, data="faces")
    with pytest.raises(ValueError, match="terms"):
        models.ColorVAE(models.color_statistics(small_set(8).ab / 100), terms=("hist", "tv"))
    with pytest.raises(ValueError, match="L must"):
        models.Regressor(4).colorize(torch.zeros(2, 1, 10, 10), 3)
    with pytest.raises(ValueError, match=r"z must have shape \(B, z_dim\) = \(2, 3\).*got None"):
        models.Backbone(1, z_dim=3, width=4)(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"ab must have shape \(N >= 2, 2, H, W\)"):
        models.color_statistics(torch.zeros(1, 2, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_and_colorize_on_cuda():
    run = recipes.colorization(TINY, model="mdn", latent=3, progress=False)
    assert next(run.model.parameters()).is_cuda and run.provenance["device"] == "cuda"
    on_cpu = metrics.evaluate_colorizer(run.model.cpu(), run.test)
    assert set(on_cpu) == set(run.metrics)


# ------------------------------------------------------------------------------ evaluation


def test_evaluate_colorizer_scores_a_known_colourist():
    """An oracle that paints each object in its true hue: zero error, full coverage of one hue
    per sample; its first sample is the truth and the others the other hues."""
    test = small_set(6)
    hues = data.hue_ab()

    class Oracle(torch.nn.Module):
        def colorize(self, L, n):
            index = torch.nonzero((test.L == L[:1]).flatten(1).all(1))[0, 0]
            rows = []
            for i in range(index, index + len(L)):
                order = [(test.hue[i] + j) % 4 for j in range(n)]
                rows.append(torch.stack([hues[k].view(2, 1, 1) * test.mask[i] for k in order]))
            return torch.stack(rows)

    out = metrics.evaluate_colorizer(Oracle(), test, samples=4, batch_size=6)
    assert out["best_of_1_error"] == 0.0 and out["chroma_ratio"] == pytest.approx(1.0)
    assert out["hue_coverage"] == 4.0  # the 4 samples paint the 4 hues
    # two distinct hues differ by |h_k - h_j| on the object's pixels, 0 elsewhere
    gaps = torch.cdist(hues, hues)
    pair_mean = (gaps.sum() / 12).item()
    expected = (pair_mean * test.mask.float().mean((1, 2, 3))).mean().item()
    assert out["diversity"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="samples must be an int >= 1, got 0"):
        metrics.evaluate_colorizer(Oracle(), test, samples=0)


def test_color_pca_is_exact_and_deterministic():
    """The principal variances equal numpy's eigenvalues of the covariance (to 1e-6), with more
    and with fewer fields than dimensions."""
    g = torch.Generator().manual_seed(2)
    scales = torch.logspace(0, -1.5, 32).view(1, 2, 4, 4)
    for n in (500, 12):
        ab = torch.randn(n, 2, 4, 4, generator=g) * scales * 0.3
        stats = models.color_statistics(ab, bins=8, k=6)
        expected = np.linalg.eigvalsh(np.cov(ab.flatten(1).double().numpy(), rowvar=False))
        np.testing.assert_allclose(stats.eigenvalues.numpy(), expected[::-1][:6], rtol=1e-5)
        np.testing.assert_allclose((stats.components @ stats.components.T).numpy(), np.eye(6),
                                   atol=1e-5)


# ------------------------------------------------------------------------------ command line

KEYS = {"job", "preset", "device", "data", "train_seconds", "chroma_ratio", "best_of_1_error",
        "best_of_5_error", "best_of_10_error", "diversity", "hue_coverage"}


def test_cli_natural_in_process(capsys):
    from vaecourse.__main__ import main

    assert main(["train", "colorization", "--model", "regressor", "--data", "natural",
                 "--preset", "smoke"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS <= set(results)
    assert results["data"] == "natural" and results["hue_coverage"] is None
    assert results["diversity"] == 0.0  # the regressor's colourings are all the same


def test_chapter_states_every_setting_as_the_code_has_it():
    """Chapter 9's table of settings must hold the values the recipes and models use."""
    import inspect

    import nbformat
    from notebooks import ROOT

    notebook = nbformat.read(ROOT / "book" / "09_colorization.ipynb", as_version=4)
    text = " ".join(" ".join(c.source.split()) for c in notebook.cells if c.cell_type == "markdown")

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    def per_preset(field):
        value = {name: getattr(config.PRESETS[name], field) for name in ("cpu", "smoke", "gpu")}
        return f"{value['cpu']} under cpu (smoke {value['smoke']}, gpu {value['gpu']})"

    bins = default(models.color_statistics, "bins")
    edge = round(1.1 * models.AB_SCALE)  # ab_bin's range, checked below
    assert models.ab_bin(torch.tensor([-1.2, 1.2]).view(1, 2, 1, 1), bins).item() == bins - 1
    assert models.ab_bin(torch.tensor([-1.09, -1.1]).view(1, 2, 1, 1), bins).item() == 0
    rows = {
        "training images (`color_images`)": per_preset("color_images"),
        "image side in pixels (`image_size`)": per_preset("image_size"),
        "epochs of each network (`color_epochs`)": per_preset("color_epochs"),
        "first-layer width (`color_width`)": per_preset("color_width"),
        "optimizer": f"Adam, learning rate `lr` = {default(train.fit, 'lr')}, batches of "
                     f"`COLOR_BATCH` = {recipes.COLOR_BATCH} images",
        "latent size of the CVAE and the VAE (`latent`)": default(recipes.colorization, "latent"),
        "CVAE decoder standard deviation (`sigma`)": default(models.ColorCVAE, "sigma"),
        r"weight of $L_{\text{mah}}$ (`lambda_mah`)": default(models.ColorVAE, "lambda_mah"),
        r"weight of $L_{\text{grad}}$ (`lambda_grad`)": default(models.ColorVAE, "lambda_grad"),
        "final KL weight of the VAE (`beta_max`)": default(models.ColorVAE, "beta_max"),
        r"ab bins of $L_{\text{hist}}$ (`bins`)": f"{bins} x {bins} over $[-{edge}, {edge}]^2$",
        r"rebalancing mix $\lambda$ of $L_{\text{hist}}$ (`mix`)":
            default(models.color_statistics, "mix"),
        r"principal components of $L_{\text{mah}}$ (`k`)": default(models.color_statistics, "k"),
        "MDN components (`components`)": default(models.MDN, "components"),
        "MDN standard deviation (`sigma`)": default(models.MDN, "sigma"),
        "hue turns of the turned patches (`HUE_TURNS`)":
            f"{data.HUE_TURNS} (multiples of {360 // data.HUE_TURNS}°)",
        "vivid pixels of the ablation (`SATURATED_QUANTILE`)":
            f"a true chroma above the {recipes.SATURATED_QUANTILE} quantile of the training pixels",
    }
    for name, value in rows.items():
        assert f"| {name} | {value} |" in text, f"chapter 9 should state: | {name} | {value} |"
    assert (recipes.color_sets(TINY, "synthetic")[1].L.shape[0] == 32
            and "| test images | a tenth of the training images, at least 32 |" in text)
