"""One function per training job of the book: data -> model -> fit -> metrics (chapters 1,
6-16).

Every recipe takes an explicit :class:`~vaecourse.config.Preset` (the sizes, epochs and widths
of the job), a ``seed`` (every generator is seeded once, when the recipe starts), a ``device``
(default: CUDA when present), ``epochs`` (None: the preset's; an explicit number must be >= 1)
and the options of its job, and returns one :class:`Run`. The command line
(``python -m vaecourse train JOB``), the benchmarks and the chapters call these functions, and
nothing else wires data to models. :data:`RECIPES` lists them by job name; the tuples below
list each job's choices, so that the command line offers exactly what the recipes accept.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from vaecourse import config, disentanglement, metrics, train
from vaecourse import sample_quality as quality
from vaecourse.data import colorization as color_data
from vaecourse.data import factors, mnist, trajectories
from vaecourse.models import aae as aae_models
from vaecourse.models import autoencoder as ae_models
from vaecourse.models import classifier as classifier_models
from vaecourse.models import colorization as color_models
from vaecourse.models import cvae as cvae_models
from vaecourse.models import flow as flow_models
from vaecourse.models import forecasting as forecast_models
from vaecourse.models import gan as gan_models
from vaecourse.models import m2 as m2_models
from vaecourse.models import vae as vae_models
from vaecourse.models import vaegan as vaegan_models

VAE_ARCHS = ("mlp", "conv")  # chapters 6-7: the networks of recipes.vae
CVAE_MODELS = ("cvae", "baseline")  # chapter 8: the conditional VAE and the deterministic net
COLORIZERS = ("regressor", "cvae", "mdn")  # chapter 9
FORECASTERS = ("regressor", "cvae")  # chapter 10
COLOR_BATCH = 32  # images per batch of the colorizers (chapter 9)
VALIDATION_SHARE = 10  # chapter 8: a tenth of the training digits picks the early-stopping epoch
SATURATED_QUANTILE = 0.9  # chapter 9: pixels above this quantile of the training chroma are vivid
# Chapter 12: VAE/GAN's discriminator learns with the VAE ("learned"); VAE_Dis takes a GAN's,
# trained first and frozen ("pretrained").
VAEGAN_SIMILARITIES = ("learned", "pretrained")
AAE_PRIORS = aae_models.PRIORS  # chapter 13
GAN_ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}  # DCGAN's Adam (Radford et al. 2016), chapters 11-13
# Chapter 12's learning rates fall linearly to this fraction of their start over the epochs
# (Larsen et al.'s released code anneals its learning rate too).
VAEGAN_LR_FINAL = 0.1
# Chapter 13's two-sample statistic: a Gaussian kernel averaged over these bandwidths (code
# units), from the width of a mixture petal (0.25) to the priors' radius (4).
MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
MMD_POINTS = 2000  # at most this many test codes (and as many prior samples) per MMD estimate
INVERSION_DIGITS = 100  # chapter 11: test digits mapped back to z by GAN inversion
WATCHED_SAMPLES = 2000  # chapters 11-12: samples measured at each point of a training curve

Value = float | int | str | tuple | None


@dataclass
class Run:
    """What every recipe returns: the trained model and everything needed to report on it.

    ``provenance`` says what ran (job, preset, device, seed, epochs, data, options); ``metrics``
    are the test metrics (empty when the recipe was asked not to evaluate); ``seconds`` is the
    training time; ``test`` is the test data the metrics were computed on (for the figures).
    """

    model: nn.Module
    history: train.History
    metrics: dict[str, Value]
    seconds: float
    provenance: dict[str, Value]
    test: TensorDataset | color_data.ColorData = field(repr=False)

    def summary(self) -> dict[str, Value]:
        """The final JSON line of ``python -m vaecourse train``: provenance, the training
        time and the metrics."""
        return {**self.provenance, "train_seconds": round(self.seconds, 2), **self.metrics}


def start(preset: config.Preset, seed: int, device: torch.device | None) -> torch.device:
    """Check the preset, seed every generator (once per recipe) and pick the device."""
    if not isinstance(preset, config.Preset):
        raise ValueError(f"preset must be a vaecourse.config.Preset (e.g. config.preset('smoke')), "
                         f"got {preset!r:.60}")
    config.seed_everything(seed)
    return config.device() if device is None else torch.device(device)


def resolve_epochs(epochs: int | None, default: int) -> int:
    """``epochs`` when given (an int >= 1), else the preset's ``default``."""
    if epochs is None:
        return default
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1 (or None: the preset's {default}), "
                         f"got {epochs!r}")
    return epochs


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def timed_fit(model: nn.Module, loader: DataLoader, **options: object
              ) -> tuple[train.History, float]:
    """:func:`vaecourse.train.fit` and its wall time in seconds."""
    begin = time.perf_counter()
    history = train.fit(model, loader, **options)
    return history, time.perf_counter() - begin


def shuffled(*tensors: Tensor, batch_size: int, seed: int) -> DataLoader:
    """A shuffled DataLoader over equally long tensors, its order drawn from ``seed``."""
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def described(preset: config.Preset, device: torch.device, seed: int, job: str,
              **options: Value) -> dict[str, Value]:
    """The provenance of a run: job, preset, device, seed and the job's options."""
    return {"job": job, "preset": preset.name, "device": str(device), "seed": seed, **options}


# ---------------------------------------------------------------------------------------------
# Chapter 1: a deep autoencoder on MNIST
# ---------------------------------------------------------------------------------------------


def autoencoder(preset: config.Preset, *, code: int = 2, noise: float = 0.0,
                sparsity: float = 0.0, contraction: float = 0.0, epochs: int | None = None,
                seed: int = 0, device: torch.device | None = None, progress: bool = True) -> Run:
    """Chapter 1's MLP autoencoder (width ``hidden``) on grey MNIST digits, with Adam (lr 3e-3).

    ``epochs`` defaults to enough epochs for the preset's ``ae_steps`` gradient steps. Metrics:
    the test squared error ``||x - x_hat||^2`` per digit and, for comparison, that of PCA with
    as many directions as the code has dimensions (fitted on the training digits).
    """
    device = start(preset, seed, device)
    data = mnist.load_mnist("embedded", train_size=preset.train_size, test_size=preset.test_size)
    train_loader, _ = mnist.loaders(data, preset.batch_size, seed=seed)
    epochs = resolve_epochs(epochs, math.ceil(preset.ae_steps / len(train_loader)))
    model = ae_models.Autoencoder(code, preset.hidden, noise=noise, sparsity=sparsity,
                                  contraction=contraction)
    history, seconds = timed_fit(model, train_loader, epochs=epochs, lr=3e-3, device=device,
                                 progress=progress)
    x_test = data.x_test
    with torch.no_grad():
        error = (model(x_test.to(device)).cpu() - x_test).pow(2).sum(-1)
    mean, directions, _ = ae_models.pca(data.x_train, code)
    pca_error = ((x_test - mean) @ directions @ directions.T + mean - x_test).pow(2).sum(-1)
    results = {"test_squared_error": error.mean().item(),
               "pca_squared_error": pca_error.mean().item()}
    provenance = described(preset, device, seed, "autoencoder", data=data.source, epochs=epochs,
                           code=code, noise=noise, sparsity=sparsity, contraction=contraction)
    return Run(model, history, results, seconds, provenance,
               TensorDataset(data.x_test, data.y_test))


# ---------------------------------------------------------------------------------------------
# Chapters 6 and 7: the VAE and the IWAE on binarized MNIST
# ---------------------------------------------------------------------------------------------


def vae(preset: config.Preset, *, latent: int = 20, objective: str = "vae", k: int = 1,
        beta: float = 1.0, free_bits: float = 0.0, anneal_epochs: int = 0,
        arch: str | None = None, data: str | None = None, epochs: int | None = None, seed: int = 0,
        device: torch.device | None = None, evaluate: bool = True, progress: bool = True) -> Run:
    """A VAE (``arch``, one of :data:`VAE_ARCHS`; None: the preset's ``vae_arch``; width
    ``hidden``) on dynamically binarized MNIST.

    Data: ``data`` (one of ``mnist.SOURCES``; None: the preset's ``mnist_source``) cut to the
    preset's train/test sizes, the test digits binarized once. ``epochs`` defaults to the
    preset's ``vae_epochs``; ``anneal_epochs > 0`` raises the KL weight linearly to 1 over that
    many epochs (:func:`vaecourse.train.kl_annealing`). Metrics: those of
    :func:`vaecourse.metrics.evaluate_vae` with the preset's ``eval_samples`` and ``eval_size``.
    """
    device = start(preset, seed, device)
    arch = preset.vae_arch if arch is None else arch
    check_choice("arch", arch, VAE_ARCHS)
    network = {"mlp": vae_models.VAE, "conv": vae_models.ConvVAE}[arch]
    model = network(latent, preset.hidden, objective=objective, k=k, beta=beta,
                    free_bits=free_bits)
    mnist_data = mnist.load_mnist(preset.mnist_source if data is None else data,
                                  train_size=preset.train_size, test_size=preset.test_size)
    train_loader, test_loader = mnist.loaders(mnist_data, preset.batch_size, "dynamic", seed=seed)
    epochs = resolve_epochs(epochs, preset.vae_epochs)
    hook = train.kl_annealing(anneal_epochs) if anneal_epochs else None
    history, seconds = timed_fit(model, train_loader, test_loader=test_loader, epochs=epochs,
                                 device=device, before_epoch=hook, progress=progress)
    x_test, _ = test_loader.dataset.tensors
    eval_size = len(x_test) if preset.eval_size is None else min(preset.eval_size, len(x_test))
    results = metrics.evaluate_vae(model, x_test, preset.eval_samples, eval_size) \
        if evaluate else {}
    provenance = described(preset, device, seed, "vae", data=mnist_data.source,
                           train_digits=len(mnist_data.x_train), test_digits=len(x_test),
                           epochs=epochs, arch=arch,
                           latent=latent, objective=objective, k=k, beta=beta,
                           free_bits=free_bits, anneal_epochs=anneal_epochs,
                           eval_samples=preset.eval_samples, eval_size=eval_size)
    return Run(model, history, results, seconds, provenance, test_loader.dataset)


def classifier(preset: config.Preset, *, epochs: int | None = None, seed: int = 0,
               device: torch.device | None = None, progress: bool = True) -> Run:
    """Chapter 6's digit classifier (:class:`~vaecourse.models.classifier.DigitClassifier`)
    trained on the grey training digits of ``mnist_source`` (the VAE's data), Adam (lr 1e-3).

    ``epochs`` defaults to the preset's ``classifier_epochs``. Metrics: the test accuracy on the
    grey test digits and on the test digits binarized as the VAE sees them (seed ``seed + 1``).
    """
    device = start(preset, seed, device)
    data = mnist.load_mnist(preset.mnist_source, train_size=preset.train_size,
                            test_size=preset.test_size)
    epochs = resolve_epochs(epochs, preset.classifier_epochs)
    net = classifier_models.DigitClassifier()
    loader = shuffled(data.x_train, data.y_train, batch_size=preset.batch_size, seed=seed)
    history, seconds = timed_fit(net, loader, epochs=epochs, device=device, progress=progress)
    results = {}
    for name, x in (("grey", data.x_test), ("binary", mnist.binarize_fixed(data.x_test, seed + 1))):
        label, _ = classifier_models.predict(net, x)
        results[f"test_accuracy_{name}"] = (label == data.y_test).float().mean().item()
    provenance = described(preset, device, seed, "classifier", data=data.source,
                           train_digits=len(data.x_train), test_digits=len(data.x_test),
                           epochs=epochs)
    return Run(net, history, results, seconds, provenance,
               TensorDataset(data.x_test, data.y_test))


# ---------------------------------------------------------------------------------------------
# Chapter 8: the conditional VAE on MNIST (class labels, or Sohn et al.'s quadrant completion)
# ---------------------------------------------------------------------------------------------


def cvae_samples(preset: config.Preset) -> int:
    """Importance samples per digit of chapter 8's -log p(x | y): a tenth of ``eval_samples``,
    at least 10."""
    return max(10, preset.eval_samples // 10)


def cvae(preset: config.Preset, *, model: str = "cvae", given: int | None = None,
         latent: int = 20, epochs: int | None = None, seed: int = 0,
         device: torch.device | None = None, evaluate: bool = True, progress: bool = True
         ) -> Run:
    """Chapter 8's conditional model of fixed-binarized MNIST digits x given y.

    ``given=None``: y is the one-hot label and the CVAE's prior is N(0, I); ``given`` = 1, 2 or
    3: y shows that many quadrants of the digit, the likelihood counts the missing pixels only
    and the CVAE learns its prior network (Sohn et al.). ``model`` is ``"cvae"`` or the
    deterministic ``"baseline"``. The digits come from the embedded set, the preset's sizes,
    binarized once (seeds ``seed`` and ``seed + 1``). The last 1/:data:`VALIDATION_SHARE` of
    the training digits is held out: the model trains on the rest for the preset's
    ``cvae_epochs`` and keeps the weights of the epoch with the lowest validation loss (early
    stopping: with 4,000 digits these models overfit; ``history["test"]`` is the validation
    curve). Metrics on the preset's ``eval_size``
    test digits: ``test_nll`` = mean -log p(x | y) (the CVAE's by importance sampling with
    :func:`cvae_samples` samples) with its standard error; for the CVAE also the one-sample
    conditional ``test_elbo``, ``test_reconstruction`` and ``test_kl`` on all test digits.
    """
    device = start(preset, seed, device)
    check_choice("model", model, CVAE_MODELS)
    if given is not None:
        check_choice("given", given, tuple(cvae_models.QUADRANTS))
    data = mnist.load_mnist("embedded", train_size=preset.train_size, test_size=preset.test_size)
    x_train = mnist.binarize_fixed(data.x_train, seed)
    x_test = mnist.binarize_fixed(data.x_test, seed + 1)
    if given is None:
        y_train, y_test = F.one_hot(data.y_train, 10).float(), F.one_hot(data.y_test, 10).float()
        missing = None
    else:
        _, y_train, missing = cvae_models.quadrant_task(x_train, given)
        _, y_test, _ = cvae_models.quadrant_task(x_test, given)
    if model == "cvae":
        net: nn.Module = cvae_models.CVAE(x_train.shape[1], y_train.shape[1], latent,
                                          preset.hidden, learned_prior=given is not None,
                                          output_mask=missing)
    else:
        net = cvae_models.BaselineNet(x_train.shape[1], y_train.shape[1], preset.hidden,
                                      output_mask=missing)
    epochs = resolve_epochs(epochs, preset.cvae_epochs)
    n_fit = len(x_train) - len(x_train) // VALIDATION_SHARE
    validation = DataLoader(TensorDataset(x_train[n_fit:], y_train[n_fit:]),
                            batch_size=preset.batch_size)
    history, seconds = timed_fit(net, shuffled(x_train[:n_fit], y_train[:n_fit],
                                               batch_size=preset.batch_size, seed=seed),
                                 test_loader=validation, keep_best=True, epochs=epochs,
                                 device=device, progress=progress)
    n_eval = len(x_test) if preset.eval_size is None else min(preset.eval_size, len(x_test))
    results: dict[str, Value] = {}
    samples = cvae_samples(preset) if model == "cvae" else None
    if evaluate:
        xe, ye = x_test[:n_eval], y_test[:n_eval]
        if model == "cvae":
            nll = metrics.conditional_nll(net, xe, ye, samples)
            with torch.no_grad():
                nelbo, recon, kl = cvae_models.negative_elbo(net, x_test.to(device),
                                                             y_test.to(device))
            results = {"test_elbo": -nelbo.mean().item(),
                       "test_reconstruction": recon.mean().item(), "test_kl": kl.mean().item()}
        else:
            with torch.no_grad():
                nll = net.nll(xe.to(device), ye.to(device)).cpu()
        mean, se = metrics.mean_and_se(nll)
        results = {"test_nll": mean, "test_nll_se": se, **results}
    best = min(range(epochs), key=lambda e: history["test"][e]["loss"]) + 1
    provenance = described(preset, device, seed, "cvae", model=model,
                           condition="label" if given is None else "quadrants", given=given,
                           data=data.source, train_digits=n_fit,
                           validation_digits=len(x_train) - n_fit, test_digits=len(x_test),
                           epochs=epochs, best_epoch=best,
                           latent=latent if model == "cvae" else None, eval_samples=samples,
                           eval_size=n_eval)
    return Run(net, history, results, seconds, provenance, TensorDataset(x_test, y_test))


# ---------------------------------------------------------------------------------------------
# Chapter 9: colorization (regressor, CVAE, Deshpande et al.'s VAE + MDN)
# ---------------------------------------------------------------------------------------------


def color_sets(preset: config.Preset, source: str, seed: int = 0
               ) -> tuple[color_data.ColorData, color_data.ColorData]:
    """The preset's training and test images of ``source`` (one of ``color_data.SOURCES``):
    ``color_images`` training images, a tenth of that (at least 32) test images, ``image_size``
    pixels square (for LFW at most what each split holds)."""
    check_choice("data", source, color_data.SOURCES)
    return color_data.load(source, preset.color_images, max(32, preset.color_images // 10),
                           preset.image_size, seed)


def colorization(preset: config.Preset, *, model: str = "cvae", data: str = "synthetic",
                 terms: tuple[str, ...] = color_models.DECODER_TERMS, latent: int = 4,
                 samples: int = 10, epochs: int | None = None, seed: int = 0,
                 device: torch.device | None = None, evaluate: bool = True,
                 progress: bool = True) -> Run:
    """Train one of chapter 9's colorizers (:data:`COLORIZERS`) on the preset's images.

    Width ``color_width``, ``epochs`` default ``color_epochs``, Adam (lr 1e-3), batches of
    :data:`COLOR_BATCH`. ``"mdn"`` trains the :class:`ColorVAE` (decoder-loss ``terms``; KL
    weight raised linearly to ``beta_max`` over the first half of the epochs) and then the
    :class:`MDN` on its codes, each for ``epochs``. The history holds the per-epoch training
    and test losses (``"train"``, ``"test"``; for ``"mdn"`` also ``"mdn_train"``,
    ``"mdn_test"``). Metrics:
    :func:`vaecourse.metrics.evaluate_colorizer` with ``samples`` colourings per test image
    (``hue_coverage`` None off the synthetic set).
    """
    device = start(preset, seed, device)
    check_choice("model", model, COLORIZERS)
    train_set, test_set = color_sets(preset, data, seed)
    epochs = resolve_epochs(epochs, preset.color_epochs)
    batches = color_models.loader(train_set.L, train_set.ab, batch_size=COLOR_BATCH, seed=seed)
    test_batches = color_models.loader(test_set.L, test_set.ab, batch_size=COLOR_BATCH, seed=seed)
    options = {"epochs": epochs, "device": device, "progress": progress,
               "test_loader": test_batches}
    if model == "regressor":
        net: nn.Module = color_models.Regressor(preset.color_width)
        history, seconds = timed_fit(net, batches, **options)
    elif model == "cvae":
        net = color_models.ColorCVAE(latent, preset.color_width)
        history, seconds = timed_fit(net, batches, **options)
    else:
        stats = color_models.color_statistics(train_set.ab / color_models.AB_SCALE)
        color_vae = color_models.ColorVAE(stats, latent, preset.color_width, tuple(terms))
        history, seconds = timed_fit(color_vae, batches, **options, before_epoch=train.kl_annealing(
            max(1, epochs // 2), attribute="anneal"))
        mdn = color_models.MDN(latent, preset.color_width)
        codes = color_models.loader(train_set.L, color_models.vae_codes(color_vae, train_set),
                                    batch_size=COLOR_BATCH, seed=seed)
        test_codes = color_models.loader(test_set.L, color_models.vae_codes(color_vae, test_set),
                                         batch_size=COLOR_BATCH, seed=seed)
        mdn_history, mdn_seconds = timed_fit(mdn, codes, **{**options, "test_loader": test_codes})
        history = {**history, "mdn_train": mdn_history["train"], "mdn_test": mdn_history["test"]}
        seconds += mdn_seconds
        net = color_models.DiverseColorizer(color_vae, mdn)
    results: dict[str, Value] = {}
    if evaluate:
        results = {"hue_coverage": None, **metrics.evaluate_colorizer(net, test_set, samples)}
        if model == "mdn":
            results.update(vae_reconstruction(net.vae, train_set, test_set))
    provenance = described(preset, device, seed, "colorization", model=model, data=data,
                           image_size=preset.image_size, train_images=len(train_set),
                           test_images=len(test_set), epochs=epochs, width=preset.color_width,
                           latent=None if model == "regressor" else latent,
                           terms=tuple(terms) if model == "mdn" else None, samples=samples)
    return Run(net.eval(), history, results, seconds, provenance, test_set)


@torch.no_grad()
def vae_reconstruction(vae: color_models.ColorVAE, train_set: color_data.ColorData,
                       test_set: color_data.ColorData) -> dict[str, float]:
    """``vae_``-prefixed :func:`vaecourse.metrics.colour_field_errors` of the VAE's test
    reconstructions (z = the mean of q(z | ab, L)); vivid pixels: a true chroma of at least the
    :data:`SATURATED_QUANTILE` quantile of the training pixels' chroma."""
    device = config.module_device(vae)
    codes = color_models.vae_codes(vae, test_set)
    pred = torch.cat([vae.decode(z.to(device), L.to(device)).cpu()
                      for z, L in zip(codes.split(256), test_set.L.split(256), strict=True)])
    chroma = train_set.ab.pow(2).sum(1).sqrt().flatten().numpy()
    saturated = float(np.quantile(chroma, SATURATED_QUANTILE))
    errors = metrics.colour_field_errors(pred, test_set.ab, saturated)
    return {f"vae_{k}": v for k, v in errors.items()}


# ---------------------------------------------------------------------------------------------
# Chapter 10: forecasting futures at a junction (regressor, CVAE)
# ---------------------------------------------------------------------------------------------


def junction_scenes(preset: config.Preset, seed: int = 0
                    ) -> tuple[trajectories.Junction, TensorDataset, TensorDataset]:
    """The junction and the preset's scenes: ``forecast_size`` training scenes and a tenth as
    many test scenes, ``image_size`` pixels square, drawn from a generator seeded by ``seed``."""
    junction = trajectories.Junction()
    generator = torch.Generator().manual_seed(seed)
    train_set = trajectories.make_dataset(junction, preset.forecast_size, preset.image_size,
                                          generator)
    test_set = trajectories.make_dataset(junction, max(1, preset.forecast_size // 10),
                                         preset.image_size, generator)
    return junction, train_set, test_set


def kde_samples(preset: config.Preset) -> int:
    """Samples per scene for KDE-NLL: Trajectron++'s 2000, at most the preset's eval_samples."""
    return min(2000, preset.eval_samples)


def forecasting(preset: config.Preset, *, model: str = "cvae", latent: int = 4,
                epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
                evaluate: bool = True, progress: bool = True) -> Run:
    """Train one of chapter 10's forecasters (:data:`FORECASTERS`) on :func:`junction_scenes`.

    Width ``hidden``, ``epochs`` default the preset's ``epochs``, Adam (lr 1e-3), the test loss
    recorded after every epoch (``history["test"]``); the regressor's residual Gaussian is
    fitted on the training scenes after training; the CVAE estimates log p(x | y) (future x,
    image y) with the preset's ``eval_samples``. Metrics:
    :func:`vaecourse.metrics.evaluate_forecaster` on the preset's ``eval_size`` test scenes with
    :func:`kde_samples` samples for KDE-NLL.
    """
    device = start(preset, seed, device)
    check_choice("model", model, FORECASTERS)
    junction, train_set, test_set = junction_scenes(preset, seed)
    net = (forecast_models.Regressor(junction.steps, preset.hidden) if model == "regressor"
           else forecast_models.CVAE(junction.steps, preset.hidden, latent, preset.eval_samples))
    epochs = resolve_epochs(epochs, preset.epochs)
    loader = DataLoader(train_set, batch_size=preset.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=preset.batch_size)  # the test-loss curve
    history, seconds = timed_fit(net, loader, epochs=epochs, test_loader=test_loader,
                                 device=device, progress=progress)
    if model == "regressor":
        net.fit_residuals(*train_set.tensors[:2])
    results: dict[str, Value] = {}
    if evaluate:
        images, y, open_mask, _ = test_set.tensors
        results = metrics.evaluate_forecaster(net, junction, images, y, open_mask,
                                              preset.eval_size, kde_samples=kde_samples(preset))
    provenance = described(preset, device, seed, "forecasting", model=model,
                           image_size=preset.image_size, train_scenes=len(train_set),
                           epochs=epochs, latent=latent if model == "cvae" else None,
                           eval_samples=preset.eval_samples if model == "cvae" else None)
    return Run(net, history, results, seconds, provenance, test_set)


# ---------------------------------------------------------------------------------------------
# Chapters 11-13: GAN, VAE/GAN and VAE_Dis, adversarial autoencoders
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def digit_classifier(preset: config.Preset, seed: int, device: torch.device) -> nn.Module:
    """The measuring instrument of chapters 11-13: :func:`classifier`'s network for this preset
    and seed, trained once per process and then reused."""
    return classifier(preset, seed=seed, device=device, progress=False).model


def draw(sample: Callable[[int, torch.Generator], Tensor], n: int, seed: int,
         chunk: int = 1000) -> Tensor:
    """``n`` samples (n, 784) on the CPU from ``sample(count, generator)``, in chunks, with a
    CPU generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return torch.cat([sample(min(chunk, n - i), generator).flatten(1).cpu()
                          for i in range(0, n, chunk)])


def image_quality(samples: Tensor, test: TensorDataset, net: nn.Module) -> dict[str, float]:
    """Chapter 11's sample measures: ``sharpness`` (mean gradient energy of the samples,
    :func:`vaecourse.quality.gradient_energy`) and ``class_tv`` (total variation between
    the samples' class histogram under the digit classifier ``net`` and uniform); the same two
    for the grey test digits (``test_sharpness``, ``test_class_tv``) for reference."""
    x_test, _ = test.tensors
    results = {}
    for prefix, images in (("", samples), ("test_", x_test)):
        label, _ = classifier_models.predict(net, images)
        results[f"{prefix}sharpness"] = quality.gradient_energy(images).mean().item()
        results[f"{prefix}class_tv"] = quality.class_total_variation(label)
    return results


def reconstruction_quality(reconstruct: Callable[[Tensor, Tensor], Tensor], test: TensorDataset,
                           net: nn.Module, device: torch.device) -> dict[str, float]:
    """``recon_error``: the mean over the grey test digits x of ||x - x_hat||^2 (summed over the
    784 pixels), x_hat = ``reconstruct(x, labels)``; ``recon_accuracy``: how often the digit
    classifier ``net`` reads x_hat as the label of x."""
    x_test, y_test = test.tensors
    with torch.no_grad():
        x_hat = torch.cat([reconstruct(x.to(device), y.to(device)).flatten(1).cpu()
                           for x, y in zip(x_test.split(500), y_test.split(500), strict=True)])
    label, _ = classifier_models.predict(net, x_hat)
    return {"recon_error": (x_hat - x_test).pow(2).sum(1).mean().item(),
            "recon_accuracy": (label == y_test).float().mean().item()}


def quality_watcher(curve: list[tuple[int, dict[str, float]]], test: TensorDataset,
                    net: nn.Module, every: int, samples: int = WATCHED_SAMPLES,
                    digits: int | None = None) -> Callable[[int, nn.Module], None]:
    """A :func:`vaecourse.train.fit` ``before_epoch`` hook that watches a model train (chapters
    11-12): before epochs 0, ``every``, 2 ``every``, ... (call it once more after the last) it
    appends ``(epoch, scores)`` to ``curve``, the scores :func:`image_quality` of ``samples``
    samples of ``model.sample`` (drawn with seed 1) and, with ``digits``, the
    :func:`reconstruction_quality` of ``model.reconstruct`` on the first ``digits`` of ``test``.
    """
    watched = TensorDataset(*(t[:digits] for t in test.tensors)) if digits else None

    def watch(epoch: int, model: nn.Module) -> None:
        if epoch % every == 0:
            model.eval()
            scores = image_quality(draw(model.sample, samples, seed=1), test, net)
            if watched is not None:
                scores |= reconstruction_quality(lambda x, y: model.reconstruct(x), watched, net,
                                                 config.module_device(model))
            curve.append((epoch, scores))
    return watch


def grey_digits(preset: config.Preset, seed: int) -> tuple[DataLoader, TensorDataset, str]:
    """Chapters 11-13's data: the VAE's digits (``mnist_source``, the preset's sizes) as grey
    levels: a shuffled training loader, the test set and the source's name."""
    data = mnist.load_mnist(preset.mnist_source, train_size=preset.train_size,
                            test_size=preset.test_size)
    loader = shuffled(data.x_train, data.y_train, batch_size=preset.batch_size, seed=seed)
    return loader, TensorDataset(data.x_test, data.y_test), data.source


def adam(parameters: Iterable[nn.Parameter], loss_fn: train.LossFn, name: str,
         lr: float = GAN_ADAM["lr"]) -> train.Step:
    """One player's :class:`~vaecourse.train.Step`: Adam (DCGAN's betas) over ``parameters``."""
    return train.Step(torch.optim.Adam(parameters, lr=lr, betas=GAN_ADAM["betas"]), loss_fn,
                      name)


def annealed(steps: Sequence[train.Step], epochs: int, final: float,
             before_epoch: Callable[[int, nn.Module], None] | None = None
             ) -> Callable[[int, nn.Module], None]:
    """A :func:`vaecourse.train.fit` hook that lowers every step's learning rate linearly, from
    its start value at the first epoch to ``final`` times it at the last
    (``torch.optim.lr_scheduler.LinearLR``), then calls ``before_epoch``."""
    if not 0 < final <= 1:
        raise ValueError(f"final must be a fraction in (0, 1], got {final}")
    schedulers = [torch.optim.lr_scheduler.LinearLR(step.optimizer, 1.0, final,
                                                    max(1, epochs - 1)) for step in steps]

    def hook(epoch: int, model: nn.Module) -> None:
        if epoch > 0:
            for scheduler in schedulers:
                scheduler.step()
        if before_epoch is not None:
            before_epoch(epoch, model)

    return hook


def fit_gan(preset: config.Preset, loader: DataLoader, test: TensorDataset, latent: int,
            epochs: int, device: torch.device, progress: bool,
            before_epoch: Callable[[int, nn.Module], None] | None = None
            ) -> tuple[gan_models.GAN, train.History, float]:
    """Train chapter 11's GAN (width ``gan_width``): per batch a discriminator step, then a
    generator step; the test history holds both losses on the test digits. ``before_epoch``
    is :func:`vaecourse.train.fit`'s hook (chapter 11 measures the samples with it)."""
    model = gan_models.GAN(latent, preset.gan_width)
    steps = [adam(model.discriminator.parameters(), gan_models.GAN.discriminator_step,
                  "discriminator"),
             adam(model.generator.parameters(), gan_models.GAN.generator_step, "generator")]
    history, seconds = timed_fit(model, loader, epochs=epochs, steps=steps, device=device,
                                 test_loader=DataLoader(test, batch_size=preset.batch_size),
                                 before_epoch=before_epoch, progress=progress)
    return model, history, seconds


def gan(preset: config.Preset, *, latent: int = 64, epochs: int | None = None, seed: int = 0,
        device: torch.device | None = None, evaluate: bool = True, progress: bool = True,
        before_epoch: Callable[[int, nn.Module], None] | None = None) -> Run:
    """Chapter 11's DCGAN on the grey digits of :func:`grey_digits`, Adam as in DCGAN.

    ``epochs`` defaults to the preset's ``gan_epochs``; ``before_epoch`` is passed to
    :func:`vaecourse.train.fit` (its time counts as training time). Metrics:
    :func:`image_quality` of the preset's ``quality_samples`` samples; GAN inversion
    (:func:`vaecourse.models.gan.invert`) of the first :data:`INVERSION_DIGITS` test digits:
    ``inversion_error`` (mean ||x - G(z*)||^2) and ``inversion_seconds``.
    """
    device = start(preset, seed, device)
    loader, test, source = grey_digits(preset, seed)
    epochs = resolve_epochs(epochs, preset.gan_epochs)
    model, history, seconds = fit_gan(preset, loader, test, latent, epochs, device, progress,
                                      before_epoch)
    results: dict[str, Value] = {}
    if evaluate:
        results = image_quality(draw(model.generator.sample, preset.quality_samples, seed),
                                test, digit_classifier(preset, seed, device))
        x = test.tensors[0][:INVERSION_DIGITS].to(device)
        begin = time.perf_counter()
        z = gan_models.invert(model.generator, x, seed=seed)
        results["inversion_seconds"] = time.perf_counter() - begin
        with torch.no_grad():
            error = (model.generator(z).flatten(1) - x).pow(2).sum(1).mean().item()
        results["inversion_error"] = error
    provenance = described(preset, device, seed, "gan", data=source,
                           train_digits=len(loader.dataset), test_digits=len(test),
                           epochs=epochs, latent=latent, width=preset.gan_width,
                           samples=preset.quality_samples)
    return Run(model, history, results, seconds, provenance, test)


def vaegan(preset: config.Preset, *, similarity: str = "learned", latent: int = 64,
           gamma: float = 1.0, layer: int = 2, epochs: int | None = None, seed: int = 0,
           device: torch.device | None = None, evaluate: bool = True, progress: bool = True,
           before_epoch: Callable[[int, nn.Module], None] | None = None,
           trained: gan_models.GAN | None = None) -> Run:
    """Chapter 12's VAE/GAN (``similarity="learned"``) or VAE_Dis (``"pretrained"``) on the
    grey digits of :func:`grey_digits`.

    VAE/GAN: per batch an encoder, a decoder and a discriminator step, each on its own loss of
    :func:`vaecourse.models.vaegan.vaegan_losses` (feature layer ``layer``, weight ``gamma``).
    VAE_Dis: chapter 11's GAN (``trained``, or trained first by :func:`fit_gan` for the preset's
    ``gan_epochs``: then its curves are ``history["gan_train"]`` and ``["gan_test"]`` and its
    time is counted) gives the frozen discriminator and the decoder's starting weights
    (:meth:`VAEGAN.from_gan <vaecourse.models.vaegan.VAEGAN.from_gan>`); encoder and decoder
    then train on L_prior + L_llike, a VAE without a game, with one Adam at lr 1e-3 (as the AAE's
    reconstruction phase). Both lower their learning rates to :data:`VAEGAN_LR_FINAL` of the
    start over the epochs (:func:`annealed`). Width ``gan_width``; ``epochs`` (of the VAE/GAN, or of
    VAE_Dis's second stage) default ``vaegan_epochs``. ``before_epoch`` is
    :func:`vaecourse.train.fit`'s hook for the VAE/GAN, or for VAE_Dis's second stage (its time
    counts as training time). Metrics: :func:`image_quality` of the decoder's prior samples and
    :func:`reconstruction_quality` of Dec(mu(x)).
    """
    device = start(preset, seed, device)
    check_choice("similarity", similarity, VAEGAN_SIMILARITIES)
    if trained is not None and similarity != "pretrained":
        raise ValueError(f"a trained GAN is VAE_Dis's (similarity='pretrained'), got "
                         f"similarity={similarity!r}")
    loader, test, source = grey_digits(preset, seed)
    epochs = resolve_epochs(epochs, preset.vaegan_epochs)
    test_loader = DataLoader(test, batch_size=preset.batch_size)
    options = {"epochs": epochs, "device": device, "test_loader": test_loader,
               "progress": progress}
    if similarity == "learned":
        model = vaegan_models.VAEGAN(latent, preset.gan_width, gamma, layer)
        steps = [adam(model.encoder.parameters(), vaegan_models.VAEGAN.encoder_step, "encoder"),
                 adam(model.decoder.parameters(), vaegan_models.VAEGAN.decoder_step, "decoder"),
                 adam(model.discriminator.parameters(), vaegan_models.VAEGAN.discriminator_step,
                      "discriminator")]
        hook = annealed(steps, epochs, VAEGAN_LR_FINAL, before_epoch)
        history, seconds = timed_fit(model, loader, steps=steps, before_epoch=hook, **options)
    else:
        gan_history, gan_seconds = {}, 0.0
        if trained is None:
            trained, gan_history, gan_seconds = fit_gan(preset, loader, test, latent,
                                                        preset.gan_epochs, device, progress)
            gan_history = {"gan_train": gan_history["train"], "gan_test": gan_history["test"]}
        model = vaegan_models.VAEGAN.from_gan(trained, gamma, layer).to(device)
        parameters = itertools.chain(model.encoder.parameters(), model.decoder.parameters())
        steps = [adam(parameters, vaegan_models.VAEGAN.encoder_step, "vae", lr=1e-3)]
        hook = annealed(steps, epochs, VAEGAN_LR_FINAL, before_epoch)
        history, seconds = timed_fit(model, loader, steps=steps, before_epoch=hook, **options)
        history, seconds = {**history, **gan_history}, seconds + gan_seconds
    results: dict[str, Value] = {}
    if evaluate:
        net = digit_classifier(preset, seed, device)
        results = {**image_quality(draw(model.decoder.sample, preset.quality_samples, seed),
                                   test, net),
                   **reconstruction_quality(lambda x, y: model.reconstruct(x), test, net,
                                            device)}
    provenance = described(preset, device, seed, "vaegan", similarity=similarity, data=source,
                           train_digits=len(loader.dataset), test_digits=len(test),
                           epochs=epochs, latent=model.encoder.latent,
                           width=model.decoder.width, gamma=gamma, layer=layer,
                           lr_final=VAEGAN_LR_FINAL, samples=preset.quality_samples)
    return Run(model, history, results, seconds, provenance, test)


def vae_quality(run: Run, preset: config.Preset) -> dict[str, float]:
    """Chapter 11's measures of a :func:`vae` run, as the other recipes of chapters 11-13 take
    them (the classifier of the run's seed): :func:`image_quality` of its prior samples (the
    decoder's Bernoulli means at z ~ N(0, I)) and :func:`reconstruction_quality` of the grey
    test digits, x_hat the Bernoulli means at the mean of q(z|x) (:meth:`VAE.reconstruct
    <vaecourse.models.vae.VAE.reconstruct>`)."""
    model, seed = run.model, run.provenance["seed"]
    device = config.module_device(model)
    _, test, _ = grey_digits(preset, seed)
    net = digit_classifier(preset, seed, device)
    return {**image_quality(draw(model.sample_means, preset.quality_samples, seed), test, net),
            **reconstruction_quality(lambda x, y: model.reconstruct(x), test, net, device)}


def prior_mmd(codes: Tensor, prior_samples: Tensor, seed: int) -> tuple[float, float]:
    """MMD^2_u of codes and prior samples (kernel :data:`MMD_BANDWIDTHS`) and its jackknife
    standard error (:func:`vaecourse.quality.mmd_test`, the permutations seeded)."""
    result = quality.mmd_test(codes, prior_samples, MMD_BANDWIDTHS,
                              generator=torch.Generator().manual_seed(seed))
    return result.mmd2, result.se


def aae(preset: config.Preset, *, prior: str = "mixture", supervised: bool = False,
        epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
        evaluate: bool = True, progress: bool = True,
        before_epoch: Callable[[int, nn.Module], None] | None = None) -> Run:
    """Chapter 13's adversarial autoencoder with a 2-D code shaped to ``prior`` (one of
    :data:`AAE_PRIORS`), on the grey digits of :func:`grey_digits`; ``supervised`` feeds the
    label to the decoder.

    Per batch: the reconstruction step (Adam, lr 1e-3), then the regularization phase's
    discriminator and encoder steps (:data:`GAN_ADAM`); width ``hidden``, ``epochs`` default
    ``aae_epochs``; ``before_epoch`` is :func:`vaecourse.train.fit`'s hook (its time counts as
    training time). Metrics: :func:`image_quality` of decoded prior samples (with uniform labels
    when supervised; then also ``label_accuracy``, how often the classifier reads the label
    given), :func:`reconstruction_quality`, and ``prior_mmd`` (with ``_se``): MMD^2_u of at most
    :data:`MMD_POINTS` test codes against as many prior samples; ``vae_prior_mmd``: the same
    statistic, same prior samples, for the means of q(z|x) of :func:`vae` with latent 2 trained
    for as many epochs on the same digits (binarized, as that recipe trains).
    """
    device = start(preset, seed, device)
    check_choice("prior", prior, AAE_PRIORS)
    loader, test, source = grey_digits(preset, seed)
    epochs = resolve_epochs(epochs, preset.aae_epochs)
    model = aae_models.AdversarialAutoencoder(prior, preset.hidden, supervised)
    Game = aae_models.AdversarialAutoencoder
    steps = [adam(model.autoencoder.parameters(), Game.reconstruction_step, "reconstruction",
                  lr=1e-3),
             adam(model.discriminator.parameters(), Game.discriminator_step, "discriminator"),
             adam(model.autoencoder.encoder.parameters(), Game.encoder_step, "encoder")]
    history, seconds = timed_fit(model, loader, epochs=epochs, steps=steps, device=device,
                                 test_loader=DataLoader(test, batch_size=preset.batch_size),
                                 before_epoch=before_epoch, progress=progress)
    results: dict[str, Value] = {}
    if evaluate:
        net = digit_classifier(preset, seed, device)
        if supervised:  # every digit equally often, each sample decoded with its label
            labels = torch.arange(preset.quality_samples) % aae_models.CLASSES
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                samples = torch.cat([model.sample(len(y), generator, y).cpu()
                                     for y in labels.split(1000)])
        else:
            samples = draw(model.sample, preset.quality_samples, seed)
        results = {**image_quality(samples, test, net),
                   **reconstruction_quality(model.reconstruct if supervised
                                            else lambda x, y: model.reconstruct(x),
                                            test, net, device)}
        if supervised:
            read, _ = classifier_models.predict(net, samples)
            results["label_accuracy"] = (read == labels).float().mean().item()
        vae_run = vae(preset, latent=2, epochs=epochs, seed=seed, device=device, evaluate=False,
                      progress=progress)
        x_test = test.tensors[0][:MMD_POINTS]
        with torch.no_grad():
            codes = model.autoencoder.encode(x_test.to(device)).cpu()
            vae_codes, _ = vae_run.model.encode(vae_run.test.tensors[0][:MMD_POINTS].to(device))
        prior_samples = aae_models.sample_prior(prior, len(x_test),
                                                torch.Generator().manual_seed(seed))
        for name, z in (("prior_mmd", codes), ("vae_prior_mmd", vae_codes.cpu())):
            results[name], results[f"{name}_se"] = prior_mmd(z, prior_samples, seed)
    provenance = described(preset, device, seed, "aae", prior=prior, supervised=supervised,
                           data=source, train_digits=len(loader.dataset), test_digits=len(test),
                           epochs=epochs, hidden=preset.hidden, samples=preset.quality_samples,
                           mmd_bandwidths=MMD_BANDWIDTHS)
    return Run(model, history, results, seconds, provenance, test)


# ---------------------------------------------------------------------------------------------
# Chapters 14-16: disentanglement (beta-VAE), attributes (CVAE, editing by flow), M2
# ---------------------------------------------------------------------------------------------

ATTRIBUTES = ("shape", "scale", "rotation", "thickness")  # chapter 15: what the CVAE is given
EDITS = ("scale", "rotation")  # chapter 15: the attributes that the flow editor changes
HELD_OUT = 0.1  # chapter 15: the fraction of the factor images kept out of training


def factor_set(preset: config.Preset, seed: int) -> tuple[factors.FactorImages, Tensor]:
    """The factor images of chapters 14-15 (``factor_images`` random combinations of the grid;
    None: all of it) and the same images binarized once (seed ``seed``), flattened (N, 1024)."""
    data = factors.generate(preset.factor_images, seed)
    return data, mnist.binarize_fixed(data.images.flatten(1), seed)


def held_out_split(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices of the training images and of the :data:`HELD_OUT` test images (at least one)
    among n, from a permutation drawn with ``seed``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(HELD_OUT * n))
    return order[n_test:], order[:n_test]


def betavae(preset: config.Preset, *, beta: float = 4.0, latent: int = 10,
            epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
            evaluate: bool = True, progress: bool = True) -> Run:
    """Chapter 14's beta-VAE (the MLP :class:`~vaecourse.models.vae.VAE`, width ``hidden``, KL
    weight ``beta``; ``beta=1`` is the plain VAE) on the binarized factor images.

    ``epochs`` defaults to the preset's ``factor_epochs``. Metrics, on the training images
    (disentanglement is a property of the representation of the data): ``mig`` and
    ``dci_disentanglement``, ``dci_completeness`` of the posterior means against the exact
    factors (:mod:`vaecourse.disentanglement`), the ``distortion`` E_q[-log p(x | z)] and the
    ``rate`` KL(q(z | x) || p(z)) (nats per image, one sample) and the ``active_units``.
    """
    device = start(preset, seed, device)
    data, x = factor_set(preset, seed)
    model = vae_models.VAE(latent, preset.hidden, data_dim=x.shape[1], beta=beta)
    epochs = resolve_epochs(epochs, preset.factor_epochs)
    history, seconds = timed_fit(model, shuffled(x, batch_size=preset.batch_size, seed=seed),
                                 epochs=epochs, device=device, progress=progress)
    results: dict[str, Value] = {}
    if evaluate:
        codes = metrics.mean_codes(model, x)
        dci = disentanglement.dci(codes, data.factors)
        parts = metrics.elbo_parts(model, x)
        results = {"mig": disentanglement.mig(codes, data.factors),
                   "dci_disentanglement": dci["disentanglement"],
                   "dci_completeness": dci["completeness"],
                   "distortion": parts["reconstruction"], "rate": parts["kl"],
                   "active_units": metrics.active_units(model, x)[0]}
    provenance = described(preset, device, seed, "betavae", images=len(x), epochs=epochs,
                           latent=latent, beta=beta)
    return Run(model, history, results, seconds, provenance, TensorDataset(x, data.factors))


def attribute_codes(factor_indices: Tensor) -> Tensor:
    """The CVAE's condition y: the one-hot values of the :data:`ATTRIBUTES`, concatenated."""
    return torch.cat([F.one_hot(factor_indices[:, factors.FACTOR_NAMES.index(name)],
                                len(factors.FACTORS[name])) for name in ATTRIBUTES], -1).float()


def attribute_cvae(preset: config.Preset, x: Tensor, factor_indices: Tensor, latent: int,
                   epochs: int, seed: int, device: torch.device, progress: bool
                   ) -> tuple[cvae_models.CVAE, train.History, float]:
    """Chapter 15's CVAE of binarized factor images x given their :func:`attribute_codes`
    (Attribute2Image; prior N(0, I), so z carries what the attributes leave open: the
    position), trained as chapter 8's; returns the model, its history and training time."""
    y = attribute_codes(factor_indices)
    model = cvae_models.CVAE(x.shape[1], y.shape[1], latent, preset.hidden, learned_prior=False)
    history, seconds = timed_fit(model, shuffled(x, y, batch_size=preset.batch_size, seed=seed),
                                 epochs=epochs, device=device, progress=progress)
    return model, history, seconds


def factor_classifier(preset: config.Preset, data: factors.FactorImages, train_index: Tensor,
                      test_index: Tensor, seed: int, device: torch.device,
                      progress: bool) -> tuple[classifier_models.FactorClassifier, float]:
    """The measuring instrument of chapter 15: a :class:`FactorClassifier` (width
    ``factor_width``) trained for ``edit_epochs`` on the first ``edit_images`` real images of
    ``train_index``; returns it and its error on the real images ``test_index`` (the fraction
    of factors it reads wrong)."""
    net = classifier_models.FactorClassifier(factors.FACTOR_SIZES, preset.factor_width)
    train_index = train_index[:preset.edit_images]
    loader = shuffled(data.images[train_index], data.factors[train_index],
                      batch_size=preset.batch_size, seed=seed)
    train.fit(net, loader, epochs=preset.edit_epochs, device=device, progress=progress)
    read = classifier_models.predict_factors(net, data.images[test_index])
    return net, (read != data.factors[test_index]).float().mean().item()


def attrcvae(preset: config.Preset, *, latent: int = 10, samples: int = 1000,
             epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
             evaluate: bool = True, progress: bool = True) -> Run:
    """Chapter 15's attribute-conditioned CVAE (:func:`attribute_cvae`) on the factor images.

    Trained on all but the :data:`HELD_OUT` images, ``epochs`` default ``factor_epochs``.
    Metrics: ``samples`` images generated with attributes drawn
    uniformly (seed ``seed + 1``; z ~ N(0, I)) are read by the classifier; ``attribute_error``
    is the mean over images of the fraction of the requested attributes read differently, with
    its standard error ``attribute_error_se``, and ``<attribute>_error`` per attribute;
    ``classifier_error`` is the classifier's own error on the held-out real images.
    """
    device = start(preset, seed, device)
    metrics.check_count("samples", samples)
    data, x = factor_set(preset, seed)
    train_index, test_index = held_out_split(len(x), seed)
    epochs = resolve_epochs(epochs, preset.factor_epochs)
    model, history, seconds = attribute_cvae(preset, x[train_index], data.factors[train_index],
                                             latent, epochs, seed, device, progress)
    results: dict[str, Value] = {}
    if evaluate:
        reader, reader_error = factor_classifier(preset, data, train_index, test_index, seed,
                                                 device, progress)
        generator = torch.Generator().manual_seed(seed + 1)
        requested = torch.stack([torch.randint(n, (samples,), generator=generator)
                                 for n in factors.FACTOR_SIZES], 1)
        y = attribute_codes(requested).to(device)
        images = cvae_models.sample(model, y, 1)[0].sigmoid().cpu()
        read = classifier_models.predict_factors(reader, images.reshape(-1, 1, factors.SIZE,
                                                                        factors.SIZE))
        columns = [factors.FACTOR_NAMES.index(name) for name in ATTRIBUTES]
        wrong = (read[:, columns] != requested[:, columns]).float()
        mean, se = metrics.mean_and_se(wrong.mean(1))
        results = {"attribute_error": mean, "attribute_error_se": se,
                   **{f"{name}_error": wrong[:, i].mean().item()
                      for i, name in enumerate(ATTRIBUTES)},
                   "classifier_error": reader_error}
    provenance = described(preset, device, seed, "attrcvae", images=len(train_index),
                           test_images=len(test_index), epochs=epochs, latent=latent,
                           attributes=ATTRIBUTES, samples=samples)
    return Run(model, history, results, seconds, provenance,
               TensorDataset(x[test_index], data.factors[test_index]))


def edit_pairs(data: factors.FactorImages, attribute: str, seed: int) -> tuple[Tensor, Tensor]:
    """For each image, a different value of ``attribute`` drawn uniformly (seed ``seed``) and
    the true image with that value and every other factor kept: (N,) targets, (N, 1, 32, 32)."""
    k = factors.FACTOR_NAMES.index(attribute)
    n = factors.FACTOR_SIZES[k]
    shift = torch.randint(1, n, (len(data),), generator=torch.Generator().manual_seed(seed))
    target = (data.factors[:, k] + shift) % n
    edited = data.factors.clone()
    edited[:, k] = target
    return target, factors.render(edited)


def edit_metrics(images: Tensor, target: Tensor, edited: Tensor, source_factors: Tensor,
                 reader: classifier_models.FactorClassifier, k: int) -> dict[str, float]:
    """How well ``images`` (N, 1, 32, 32) edit factor k of ``source_factors`` to ``target``:
    ``sharpness`` (mean gradient energy, :func:`vaecourse.quality.gradient_energy`) with
    its s.e.; ``identity_error``, the fraction of the other factors that the reader reads
    differently from the source's, with its s.e.; ``attribute_error``, the fraction whose edited
    factor is not read as the target; ``target_error``, the squared error (summed over pixels)
    to the true edited image ``edited``."""
    read = classifier_models.predict_factors(reader, images.clamp(0, 1))
    others = [j for j in range(source_factors.shape[1]) if j != k]
    sharpness = metrics.mean_and_se(quality.gradient_energy(images))
    identity = metrics.mean_and_se((read[:, others] != source_factors[:, others]).float().mean(1))
    return {"sharpness": sharpness[0], "sharpness_se": sharpness[1],
            "identity_error": identity[0], "identity_error_se": identity[1],
            "attribute_error": (read[:, k] != target).float().mean().item(),
            "target_error": (images - edited).pow(2).flatten(1).sum(-1).mean().item()}


def flowedit(preset: config.Preset, *, attribute: str = "scale", latent: int = 10,
             epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
             evaluate: bool = True, progress: bool = True) -> Run:
    """Chapter 15's edit of one attribute (one of :data:`EDITS`) by flow, against the latent
    edit of the attribute CVAE.

    Pairs: each factor image and the true image with ``attribute`` changed (:func:`edit_pairs`,
    seed ``seed + 1``). The :class:`~vaecourse.models.flow.FlowEditor` (width ``factor_width``)
    learns to warp the image into its pair; the latent edit encodes the binarized image with its
    attributes, z = the mean of q(z | x, y), and decodes it with the edited attribute (the
    Bernoulli means). The CVAE (:func:`attribute_cvae`) trains on all but the :data:`HELD_OUT`
    images for ``epochs`` (default ``factor_epochs``); the editor and the
    :func:`factor_classifier` on the first ``edit_images`` of them for ``edit_epochs``. Metrics
    on the held-out pairs: :func:`edit_metrics` of each edit, prefixed ``flow_`` and
    ``latent_``, and ``real_sharpness``, that of the true images.
    """
    device = start(preset, seed, device)
    check_choice("attribute", attribute, EDITS)
    data, x = factor_set(preset, seed)
    k = factors.FACTOR_NAMES.index(attribute)
    target, edited = edit_pairs(data, attribute, seed + 1)
    source = data.factors[:, k]
    train_index, test_index = held_out_split(len(x), seed)
    epochs = resolve_epochs(epochs, preset.factor_epochs)
    editor = flow_models.FlowEditor(factors.FACTOR_SIZES[k], preset.factor_width)
    pairs = shuffled(*(t[train_index[:preset.edit_images]]
                       for t in (data.images, source, target, edited)),
                     batch_size=preset.batch_size, seed=seed)
    history, seconds = timed_fit(editor, pairs, epochs=preset.edit_epochs, device=device,
                                 progress=progress)
    results: dict[str, Value] = {}
    if evaluate:
        cvae, _, _ = attribute_cvae(preset, x[train_index], data.factors[train_index], latent,
                                    epochs, seed, device, progress)
        reader, reader_error = factor_classifier(preset, data, train_index, test_index, seed,
                                                 device, progress)
        test_factors = data.factors[test_index]
        edited_factors = test_factors.clone()
        edited_factors[:, k] = target[test_index]
        with torch.no_grad():
            flow_images = editor(data.images[test_index].to(device), source[test_index].to(device),
                                 target[test_index].to(device)).cpu()
            mu, _ = cvae.recognition(x[test_index].to(device),
                                     attribute_codes(test_factors).to(device))
            latent_images = cvae.decode(mu, attribute_codes(edited_factors).to(device)).sigmoid()
        latent_images = latent_images.cpu().reshape(flow_images.shape)
        for name, images in (("flow", flow_images), ("latent", latent_images)):
            scores = edit_metrics(images, target[test_index], edited[test_index], test_factors,
                                  reader, k)
            results.update({f"{name}_{key}": value for key, value in scores.items()})
        results["real_sharpness"] = quality.gradient_energy(edited[test_index]).mean().item()
        results["classifier_error"] = reader_error
    provenance = described(preset, device, seed, "flowedit", attribute=attribute,
                           images=len(train_index), test_images=len(test_index), epochs=epochs,
                           edit_images=min(preset.edit_images, len(train_index)),
                           edit_epochs=preset.edit_epochs, width=preset.factor_width,
                           latent=latent)
    return Run(editor, history, results, seconds, provenance,
               TensorDataset(data.images[test_index], source[test_index], target[test_index],
                             edited[test_index]))


def labelled_subset(labels: Tensor, per_class: int, seed: int) -> Tensor:
    """Indices of ``per_class`` images of every class, drawn without replacement (seed ``seed``):
    chapter 16's labelled set."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(classifier_models.CLASSES):
        members = (labels == label).nonzero().flatten()
        if len(members) <= per_class:
            raise ValueError(f"{per_class} labels per class need more than {per_class} training "
                             f"digits of each class (the rest are unlabelled), got "
                             f"{len(members)} of class {label}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


def m2_loss(model: m2_models.M2, batch: tuple[Tensor, Tensor, Tensor]
            ) -> tuple[Tensor, dict[str, float]]:
    """M2's J^alpha of a batch ``(labelled images, labels, unlabelled images)``."""
    return model.loss(*batch)


def labels_only_loss(model: m2_models.M2, batch: tuple[Tensor, Tensor, Tensor]
                     ) -> tuple[Tensor, dict[str, float]]:
    """The baseline: -log q(y | x) of the labelled images of the batch only (the classifier of
    M2 alone; the unlabelled images are ignored)."""
    x, y, _ = batch
    loss = m2_models.classification_loss(model.classify(x), y).mean()
    return loss, {"loss": loss.item()}


def m2(preset: config.Preset, *, labels: int = 100, alpha: float = 10.0, latent: int = 5,
       epochs: int | None = None, seed: int = 0, device: torch.device | None = None,
       evaluate: bool = True, progress: bool = True) -> Run:
    """Chapter 16's M2 (Kingma et al. 2014) on the embedded MNIST digits with ``labels`` labels
    (as many per class, drawn with ``seed``), the other training digits unlabelled, all
    binarized once (test digits: seed ``seed + 1``).

    Width ``hidden``, Adam (lr 1e-3), ``epochs`` default ``m2_epochs``. Each batch pairs
    ``batch_size`` unlabelled digits with as many labelled ones (the labelled set cycled).
    ``alpha`` weighs the classification term per labelled digit; Kingma et al.'s 0.1 N on sums
    over N digits is 0.1 ``labels`` per digit. A small ``latent`` leaves the class to y (with
    20 latents z carries it too, and M2 fell below the baseline). The baseline is the same
    classifier network trained on the same labelled batches alone (:func:`labels_only_loss`),
    same seed and epochs.
    Metrics on the test digits: ``test_accuracy`` (M2's q(y | x)) and ``baseline_accuracy``,
    each with its binomial standard error (``_se``).
    """
    device = start(preset, seed, device)
    if not isinstance(labels, int) or labels < classifier_models.CLASSES \
            or labels % classifier_models.CLASSES:
        raise ValueError(f"labels must be a positive multiple of {classifier_models.CLASSES} "
                         f"(as many per class), got {labels!r}")
    data = mnist.load_mnist("embedded", train_size=preset.train_size, test_size=preset.test_size)
    x_train = mnist.binarize_fixed(data.x_train, seed)
    x_test = mnist.binarize_fixed(data.x_test, seed + 1)
    labelled = labelled_subset(data.y_train, labels // classifier_models.CLASSES, seed)
    unlabelled = torch.ones(len(x_train), dtype=torch.bool)
    unlabelled[labelled] = False
    x_unlabelled = x_train[unlabelled]
    cycled = labelled[torch.arange(len(x_unlabelled)) % len(labelled)]
    batches = shuffled(x_train[cycled], data.y_train[cycled], x_unlabelled,
                       batch_size=preset.batch_size, seed=seed)
    epochs = resolve_epochs(epochs, preset.m2_epochs)
    model = m2_models.M2(x_train.shape[1], classifier_models.CLASSES, latent, preset.hidden,
                         alpha)
    history, seconds = timed_fit(model, batches, epochs=epochs, loss_fn=m2_loss, device=device,
                                 progress=progress)
    baseline = m2_models.M2(x_train.shape[1], classifier_models.CLASSES, latent, preset.hidden)
    timed_fit(baseline, batches, epochs=epochs, loss_fn=labels_only_loss, device=device,
              progress=progress)
    results: dict[str, Value] = {}
    if evaluate:
        for name, net in (("test_accuracy", model), ("baseline_accuracy", baseline)):
            with torch.no_grad():
                predicted = net.classify(x_test.to(device)).argmax(-1).cpu()
            results[name], results[f"{name}_se"] = metrics.mean_and_se(
                (predicted == data.y_test).float())
    provenance = described(preset, device, seed, "m2", data=data.source,
                           train_digits=len(x_train), labels=labels, test_digits=len(x_test),
                           epochs=epochs, latent=latent, alpha=alpha)
    return Run(model, history, results, seconds, provenance, TensorDataset(x_test, data.y_test))


RECIPES: dict[str, Callable[..., Run]] = {
    "autoencoder": autoencoder,
    "vae": vae,
    "classifier": classifier,
    "cvae": cvae,
    "colorization": colorization,
    "forecasting": forecasting,
    # chapters 11-13
    "gan": gan,
    "vaegan": vaegan,
    "aae": aae,
    # chapters 14-16
    "betavae": betavae,
    "attrcvae": attrcvae,
    "flowedit": flowedit,
    "m2": m2,
}
