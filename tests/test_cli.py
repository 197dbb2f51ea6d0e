"""Tests of ``python -m vaecourse train``: every job runs under the smoke preset and prints the
summary that its recipe builds; bad options are clear errors."""

import json
import os

import pytest
from conftest import train_cli

from vaecourse import config, recipes
from vaecourse.__main__ import main
from vaecourse.models import vae

SMOKE = config.PRESETS["smoke"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("job", list(recipes.RECIPES))
def test_every_job_prints_the_summary_of_its_recipe(job, capsys):
    """The JSON line is the recipe's Run.summary(): the same numbers as calling the recipe with
    the same preset and seed (everything is seeded once, at the start of the recipe), except the
    timings (train_seconds; the GAN's inversion_seconds)."""
    assert main(["train", job, "--preset", "smoke", "--epochs", "1", "--seed", "3"]) == 0
    printed = last_json(capsys)
    direct = json.loads(json.dumps(recipes.RECIPES[job](SMOKE, epochs=1, seed=3,
                                                        progress=False).summary()))
    timings = [key for key in printed if key.endswith("_seconds")]  # measured, never equal
    assert timings and all(printed.pop(k) >= 0 and direct.pop(k) >= 0 for k in timings)
    assert printed == direct
    assert printed["job"] == job and printed["preset"] == "smoke" and printed["seed"] == 3
    assert printed["epochs"] == 1


def test_train_cvae_subprocess_prints_json_and_progress():
    results, progress = train_cli("cvae", "--given", "2", "--latent", "3")
    assert results["job"] == "cvae" and results["condition"] == "quadrants"
    assert results["given"] == 2 and results["latent"] == 3
    assert results["epochs"] == SMOKE.cvae_epochs and results["eval_size"] == SMOKE.eval_size
    assert results["eval_samples"] == recipes.cvae_samples(SMOKE)
    assert results["train_digits"] + results["validation_digits"] == SMOKE.train_size
    assert results["validation_digits"] == SMOKE.train_size // recipes.VALIDATION_SHARE
    assert 1 <= results["best_epoch"] <= SMOKE.cvae_epochs
    assert "fit" in progress  # the progress bar goes to stderr


def test_arch_chooses_the_vae_networks(capsys):
    assert main(["train", "vae", "--preset", "smoke", "--arch", "conv", "--epochs", "1"]) == 0
    assert last_json(capsys)["arch"] == "conv"
    run = recipes.vae(SMOKE, arch="conv", epochs=1, evaluate=False, progress=False)
    assert isinstance(run.model, vae.ConvVAE)
    assert recipes.vae(SMOKE, epochs=1, evaluate=False, progress=False).provenance["arch"] == "mlp"


def test_seed_changes_the_run(capsys):
    runs = [recipes.cvae(SMOKE, epochs=1, seed=seed, progress=False).metrics for seed in (0, 1)]
    assert runs[0]["test_nll"] != runs[1]["test_nll"]


def test_the_preset_is_passed_down_not_read_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    run = recipes.cvae(SMOKE, seed=0, evaluate=False, progress=False)
    assert run.provenance["preset"] == "smoke" and len(run.history["train"]) == SMOKE.cvae_epochs
    assert len(run.test) == SMOKE.test_size
    assert main(["train", "cvae", "--preset", "smoke", "--model", "baseline"]) == 0
    assert last_json(capsys)["preset"] == "smoke"
    assert os.environ[config.ENV_VAR] == "gpu"  # the command line did not write it


@pytest.mark.parametrize("argv, message", [
    (["train", "pixelcnn", "--preset", "smoke"], "invalid choice: 'pixelcnn'"),
    (["train", "vae", "--preset", "huge"], "invalid choice: 'huge'"),
    (["train", "vae", "--objective", "elbo"], "invalid choice: 'elbo'"),
    (["train", "vae", "--epochs", "0"], "expected an int >= 1, got 0"),
    (["train", "cvae", "--given", "4"], "invalid choice: 4"),
    (["train", "forecasting", "--seed", "-1"], "expected an int >= 0, got -1"),
    (["train", "vae", "--beta", "-2"], "expected a number >= 0, got -2"),
    (["train", "aae", "--prior", "gaussian"], "invalid choice: 'gaussian'"),
    (["train", "vaegan", "--layer", "3"], "invalid choice: 3"),
    (["train", "vaegan", "--gamma", "-1"], "expected a number >= 0, got -1"),
    (["train", "gan", "--latent", "0"], "expected an int >= 1, got 0"),
    (["train", "vaegan", "--similarity", "pixels"], "invalid choice: 'pixels'"),
    (["train", "betavae", "--beta", "-1"], "expected a number >= 0, got -1"),
    (["train", "attrcvae", "--samples", "0"], "expected an int >= 1, got 0"),
    (["train", "flowedit", "--attribute", "colour"], "invalid choice: 'colour'"),
    (["train", "m2", "--labels", "0"], "expected an int >= 1, got 0"),
    (["train", "m2", "--alpha", "x"], "expected a number >= 0, got 'x'"),
])
def test_bad_options_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_k_without_iwae_is_an_error(capsys):
    assert main(["train", "vae", "--preset", "smoke", "--k", "5"]) == 2
    assert "needs objective 'iwae'" in capsys.readouterr().err


@pytest.mark.parametrize("call, message", [
    (lambda: recipes.vae(SMOKE, epochs=0), "epochs must be an int >= 1"),
    (lambda: recipes.vae("smoke"), "preset must be a vaecourse.config.Preset"),
    (lambda: recipes.vae(SMOKE, arch="resnet"), r"arch must be one of \('mlp', 'conv'\)"),
    (lambda: recipes.forecasting(SMOKE, model="oracle"), "model must be one of"),
    (lambda: recipes.cvae(SMOKE, given=0), r"given must be one of \(1, 2, 3\), got 0"),
])
def test_recipes_reject_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_help_shows_the_recipes_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "colorization", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "colorizer (default: cvae)" in out and "(default: hist mah grad)" in out


# ---------------------------------------------------------------------------------------------
# chapters 14-16: the figures that the issue names are in the JSON line
# ---------------------------------------------------------------------------------------------

FACTOR_JOB_FIGURES = {
    "betavae": ("mig", "dci_disentanglement", "distortion", "rate"),
    "attrcvae": ("attribute_error", "attribute_error_se"),
    "flowedit": ("flow_sharpness", "flow_identity_error", "latent_sharpness",
                 "latent_identity_error"),
    "m2": ("test_accuracy", "baseline_accuracy"),
}


@pytest.mark.parametrize("job, option", [("betavae", ["--beta", "1"]),
                                         ("attrcvae", ["--samples", "50"]),
                                         ("flowedit", ["--attribute", "rotation"]),
                                         ("m2", ["--labels", "20", "--alpha", "2"])])
def test_factor_jobs_print_their_figures(job, option, capsys):
    assert main(["train", job, "--preset", "smoke", "--seed", "2", *option]) == 0
    printed = last_json(capsys)
    for key in ("preset", "device", "seed", "train_seconds", *FACTOR_JOB_FIGURES[job]):
        assert isinstance(printed[key], (int, float, str)), (key, printed)
    assert printed["seed"] == 2 and printed["preset"] == "smoke"
    assert printed[option[0][2:]] == type(printed[option[0][2:]])(option[1])


def test_m2_labels_not_a_multiple_of_ten_is_an_error(capsys):
    assert main(["train", "m2", "--preset", "smoke", "--labels", "15"]) == 2
    assert "labels must be a positive multiple of 10 (as many per class), got 15" \
        in capsys.readouterr().err
