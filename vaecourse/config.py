"""Presets, devices, seeds and provenance (used by every chapter; see the preface).

Every cost knob of the book (data size, epochs, samples, model width, seeds) is a field of one
:class:`Preset`. Four presets exist:

* ``smoke``: continuous integration, seconds per chapter;
* ``cpu``: the default without CUDA, a chapter in about ten minutes on a 2-core laptop, every
  model trained until its curves flatten, once;
* ``book``: the stored outputs of the book: ``cpu`` with every seed-dependent result repeated
  over three seeds and reported as mean +- standard error;
* ``gpu``: the default with CUDA, the full models.

The preset is resolved once, by :func:`preset` (a name given, else ``$VAECOURSE_PRESET``, else
``gpu`` with CUDA and ``cpu`` without), and the :class:`Preset` is then passed down as an
argument: this is the only module of the package that reads the environment for it.
"""

from __future__ import annotations

import datetime
import os
import platform
import random
from dataclasses import dataclass, replace

import numpy as np
import torch

ENV_VAR = "VAECOURSE_PRESET"


@dataclass(frozen=True)
class Preset:
    """The cost knobs of one preset. Chapters read them, never hard-code them."""

    name: str
    n_data: int  # data points averaged over in the toy-model chapters
    n_repeats: int  # independent repetitions of an estimator (bias / variance studies)
    max_samples: int  # largest Monte Carlo sample count in the toy-model chapters
    train_size: int | None  # training examples (None: the whole training set)
    test_size: int | None  # test examples (None: the whole test set)
    epochs: int
    batch_size: int
    hidden: int  # width of the hidden layers
    eval_samples: int  # importance samples per example for a log p(x) estimate
    image_size: int  # side of the images in the colorization and forecasting chapters
    vae_epochs: int  # training epochs of each VAE in chapters 6 and 7
    eval_size: int | None  # test images whose log p(x) is estimated (None: the whole test set)
    mnist_source: str  # MNIST of chapters 6-7: 'embedded' or 'auto' (full when available)
    vae_arch: str  # VAE networks of chapters 6-7: 'mlp' or 'conv'
    forecast_size: int  # training scenes of chapter 10 (its test set has a tenth as many)
    color_images: int  # training images of chapter 9 (its test set has a tenth, at least 32)
    color_epochs: int  # training epochs of each colorization network of chapter 9
    color_width: int  # channels of the first layer of the colorization networks of chapter 9
    ae_steps: int  # gradient steps of each deep autoencoder of chapter 1
    seeds: int  # training seeds of every result reported as mean +- s.e. (chapters 6-7)
    classifier_epochs: int  # training epochs of the digit classifier of chapter 6
    conv_epochs: int  # training epochs of chapter 6's convolutional VAE
    cvae_epochs: int  # training epochs of each model of chapter 8 (CVAE and its baseline)
    gan_epochs: int  # training epochs of the GAN of chapters 11-12 (VAE_Dis's first stage)
    vaegan_epochs: int  # training epochs of chapter 12's VAE/GAN and of VAE_Dis's second stage
    gan_width: int  # channels of the first layer of their networks (DCGAN's w)
    aae_epochs: int  # training epochs of chapter 13's adversarial autoencoders
    quality_samples: int  # samples whose sharpness and class histogram are measured (11-13)
    # chapters 14-16: factors of variation, attributes and flow, semi-supervised M2
    factor_images: int | None  # training images of chapters 14-15 (None: the whole factor grid)
    factor_epochs: int  # training epochs of each model of chapters 14 and 15
    factor_width: int  # channels of the factor classifier and the flow editor (chapter 15)
    edit_images: int  # training images of the factor classifier and the flow editor (chapter 15)
    edit_epochs: int  # training epochs of the factor classifier and the flow editor (chapter 15)
    m2_epochs: int  # training epochs of chapter 16's M2 and of its labels-only baseline


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", n_data=20, n_repeats=20, max_samples=10_000, train_size=500,
        test_size=100, epochs=1, batch_size=100, hidden=64, eval_samples=100, image_size=16,
        vae_epochs=2, eval_size=20, mnist_source="embedded", vae_arch="mlp",
        forecast_size=1000, color_images=128, color_epochs=1, color_width=4, ae_steps=500,
        seeds=1, classifier_epochs=1, conv_epochs=1, cvae_epochs=2, gan_epochs=1, gan_width=8,
        vaegan_epochs=1, aae_epochs=1, quality_samples=500,
        factor_images=512, factor_epochs=1, factor_width=4, edit_images=256, edit_epochs=1,
        m2_epochs=1,
    ),
    "cpu": Preset(
        name="cpu", n_data=200, n_repeats=200, max_samples=10_000, train_size=None,
        test_size=None, epochs=30, batch_size=100, hidden=256, eval_samples=5000, image_size=32,
        vae_epochs=120, eval_size=200, mnist_source="embedded", vae_arch="mlp",
        forecast_size=6000, color_images=2000, color_epochs=48, color_width=8, ae_steps=2000,
        seeds=1, classifier_epochs=20, conv_epochs=30, cvae_epochs=50, gan_epochs=60,
        gan_width=16, vaegan_epochs=180, aae_epochs=50, quality_samples=10_000,
        factor_images=None, factor_epochs=30, factor_width=8, edit_images=4000, edit_epochs=5,
        m2_epochs=10,
    ),
    "gpu": Preset(
        name="gpu", n_data=500, n_repeats=1000, max_samples=100_000, train_size=None,
        test_size=None, epochs=200, batch_size=128, hidden=512, eval_samples=5000, image_size=64,
        vae_epochs=200, eval_size=None, mnist_source="auto", vae_arch="conv",
        forecast_size=50_000, color_images=40_000, color_epochs=60, color_width=32,
        ae_steps=10_000, seeds=3, classifier_epochs=20,
        conv_epochs=100, cvae_epochs=100, gan_epochs=100, gan_width=64,
        vaegan_epochs=200, aae_epochs=200,
        quality_samples=10_000,
        factor_images=None, factor_epochs=100, factor_width=32, edit_images=18432,
        edit_epochs=30, m2_epochs=200,
    ),
}
# The stored outputs of the book: the cpu preset with every seed-dependent result repeated over
# three seeds (executed once by maintainers; the run times are on the execution page).
PRESETS["book"] = replace(PRESETS["cpu"], name="book", seeds=3)


def preset_name() -> str:
    """The active preset: ``$VAECOURSE_PRESET`` if set, else ``gpu`` with CUDA, else ``cpu``."""
    name = os.environ.get(ENV_VAR, "").strip()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PRESETS:
        valid = ", ".join(sorted(PRESETS))
        raise ValueError(f"{ENV_VAR}={name!r} is not a preset: expected one of {valid}")
    return name


def preset(name: str | None = None) -> Preset:
    """The :class:`Preset` called ``name`` (None: the active one, see :func:`preset_name`).

    The command line calls it with its ``--preset`` flag, a chapter with nothing; both pass the
    result to :mod:`vaecourse.recipes`.
    """
    if name is None:
        name = preset_name()
    if name not in PRESETS:
        valid = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown preset {name!r}: expected one of {valid}")
    return PRESETS[name]


def device() -> torch.device:
    """The device to train on: CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device that holds a module's parameters (the CPU for a module without any)."""
    return next(module.parameters(), torch.empty(0)).device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded too."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def provenance() -> dict[str, str]:
    """Print and return what produces a chapter's results: device, preset, versions and date.

    Every chapter calls this in its first code cell.
    """
    dev = device()
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none"
    info = {
        "preset": preset_name(),
        "device": str(dev),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "date": datetime.date.today().isoformat(),
    }
    print("vaecourse provenance: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return info


def machine() -> str:
    """The CPU model, its core count and torch's threads, and the GPU's name when CUDA is present.

    Benchmarks print it above their tables.
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cpu = f"{cpu} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    return cpu + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")

