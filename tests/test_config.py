"""vaecourse.config: presets, device, seeds, provenance."""

import dataclasses
import os
import re

import numpy as np
import pytest
import torch

from vaecourse import config


def test_preset_from_environment(monkeypatch):
    for name in ("smoke", "cpu", "book", "gpu"):
        monkeypatch.setenv(config.ENV_VAR, name)
        assert config.preset_name() == name
        assert config.preset().name == name


def test_default_preset_follows_cuda(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    for cuda, expected in ((True, "gpu"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        assert config.preset_name() == expected


def test_empty_variable_means_automatic(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.preset_name() == "cpu"


def test_unknown_preset_lists_valid_ones(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "laptop")
    with pytest.raises(ValueError, match=r"'laptop'.*book, cpu, gpu, smoke"):
        config.preset_name()
    with pytest.raises(ValueError, match=r"'tiny'.*book, cpu, gpu, smoke"):
        config.preset("tiny")


def test_presets_grow_in_cost():
    order = ("smoke", "cpu", "book", "gpu")
    for field in dataclasses.fields(config.Preset):
        values = [getattr(config.PRESETS[n], field.name) for n in order]
        if any(isinstance(v, str) for v in values):
            continue
        sizes = [float("inf") if v is None else v for v in values]  # None: the whole data set
        assert sizes == sorted(sizes), f"{field.name} should not shrink along {order}: {values}"
    assert set(config.PRESETS) == set(order)
    assert all(config.PRESETS[n].name == n for n in config.PRESETS)


def test_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device() == torch.device("cuda")


def test_seed_everything_makes_runs_repeatable():
    draws = []
    for _ in range(2):
        generator = config.seed_everything(123)
        draws.append((torch.rand(3), np.random.rand(3), torch.rand(3, generator=generator)))
    for first, second in zip(*draws, strict=True):
        assert np.array_equal(np.asarray(first), np.asarray(second))


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        config.seed_everything(seed)


def test_provenance_prints_what_produced_the_results(capsys, monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    info = config.provenance()
    out = capsys.readouterr().out
    assert out.startswith("vaecourse provenance: preset=cpu, device=")
    for key in ("preset", "device", "gpu", "python", "torch", "numpy", "date"):
        assert f"{key}={info[key]}" in out
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", info["date"])
    assert info["torch"] == torch.__version__


def test_machine_names_cpu_cores_and_threads(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = config.machine()
    assert f"({os.cpu_count()} cores, torch threads {torch.get_num_threads()})" in text
    assert "GPU" not in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_and_gpu_preset(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.device().type == "cuda"
    assert config.preset_name() == "gpu"
    assert torch.ones(2, device=config.device()).sum().item() == 2


def test_book_preset_is_the_cpu_preset_over_three_seeds():
    book, cpu = config.PRESETS["book"], config.PRESETS["cpu"]
    assert dataclasses.replace(book, name="cpu", seeds=cpu.seeds) == cpu
    assert book.seeds >= 3 > cpu.seeds
