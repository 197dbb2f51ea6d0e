"""Every benchmark script runs under the smoke preset and prints its machine line and table
(the figures themselves are measured by running the scripts, never asserted here)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from notebooks import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "common.py")


def run_smoke(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``benchmarks/<script>`` under the smoke preset with ``args``; it must succeed."""
    env = {**os.environ, "VAECOURSE_PRESET": "smoke"}
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--preset", "smoke", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_prints_a_table_under_smoke(script):
    env = {**os.environ, "VAECOURSE_PRESET": "smoke"}
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--preset", "smoke"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: "), done.stdout[:300]
    assert "preset: smoke" in done.stdout
    assert "\n|---" in done.stdout, f"{script} printed no markdown table:\n{done.stdout[:1000]}"


@pytest.mark.slow
def test_vae_benchmark_over_two_seeds_reports_standard_errors():
    done = run_smoke("vae_mnist.py", "--seeds", "2")
    assert "seeds [0, 1]" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| VAE, latent 20")]
    assert len(rows) == 1 and rows[0].count("±") == 5, rows  # every figure but the epochs
    assert "free bits 0.5, latent 20 minus VAE, latent 20: L_K" in done.stdout


def test_over_seeds_and_cells_of_the_benchmark_tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import common
    finally:
        sys.path.pop(0)
    runs = [{"nll": 1.0, "coverage": None}, {"nll": 3.0, "coverage": None}]
    figures = common.over_seeds(runs, ("nll", "coverage"))
    assert figures["coverage"] is None and figures["nll"][0] == 2.0
    assert figures["nll"][1] == pytest.approx(1.0)  # std 1.414 / sqrt(2)
    assert common.cell(figures["nll"], 1) == "2.0 ± 1.0" and common.cell(None) == ""
    assert common.cell(common.over_seeds(runs[:1], ("nll",))["nll"]) == "1.00"  # one seed
    with pytest.raises(ValueError, match="at least one run"):
        common.over_seeds([], ("nll",))


def test_forecasting_benchmark_reports_mean_and_standard_error_over_seeds():
    done = run_smoke("forecasting.py", "--seeds", "2")
    assert "preset: smoke" in done.stdout and "seeds: [0, 1]" in done.stdout, done.stdout[:300]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| regressor")
            or line.startswith("| cvae")]
    assert len(rows) == 2 and all(line.count("±") == 9 for line in rows), done.stdout
    assert "met in " in done.stdout and " of 2 seeds" in done.stdout


def test_forecasting_aggregate_is_the_mean_and_standard_error_over_seeds():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import forecasting
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    runs = [{key: float(v) for key in forecasting.METRICS} | {"nll_gap_se": 0.5}
            for v in (1.0, 2.0, 6.0)]
    mean, se = forecasting.aggregate(runs)["nll"]
    assert mean == pytest.approx(3.0)
    assert se == pytest.approx(7 ** 0.5 / 3 ** 0.5)  # sample s.d. sqrt(14 / 2), three seeds
    assert forecasting.aggregate(runs[:1])["nll_gap"] == (1.0, 0.5)  # one seed: the scene s.e.
    with pytest.raises(ValueError, match="at least one run"):
        forecasting.aggregate([])


def test_colorization_benchmark_reports_mean_and_se_over_seeds():
    env = {**os.environ, "VAECOURSE_PRESET": "smoke"}
    done = subprocess.run([sys.executable, "benchmarks/colorization.py", "--preset", "smoke",
                           "--seeds", "2", "--data", "synthetic", "rotated"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seeds [0, 1]" in done.stdout and "wall time: " in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| rotated")]
    assert len(rows) == 3, done.stdout  # one row per model
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[3] == "2" and all(" ± " in c for c in cells[4:10]), cells
    assert cells[10] == "", cells  # no hue coverage off the synthetic set


def test_colorization_benchmark_averages_over_seeds():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import colorization
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    runs = [dict.fromkeys(colorization.FIGURES, float(v)) | {"hue_coverage": None}
            for v in (1.0, 2.0, 6.0)]
    summary = colorization.over_seeds(runs, colorization.FIGURES)
    mean, se = summary["diversity"]
    assert mean == pytest.approx(3.0) and se == pytest.approx(np.std([1, 2, 6], ddof=1) / 3**0.5)
    assert summary["hue_coverage"] is None


@pytest.mark.slow
def test_beyond_benchmark_puts_the_models_side_by_side_over_seeds():
    done = run_smoke("beyond.py", "--seeds", "2")
    assert "seeds [0, 1]" in done.stdout and "MMD bandwidths (0.25," in done.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in done.stdout.splitlines() if line.startswith("| ")}
    names = ("VAE", "GAN", "VAE/GAN", "VAE_Dis", "AAE, mixture prior", "AAE, swiss roll prior")
    assert set(names) | {"test digits"} <= set(rows), done.stdout
    assert all(" ± " in rows[n][3] and " ± " in rows[n][4] for n in names)  # sharpness, TV
    assert rows["GAN"][5] == "" and " ± " in rows["GAN"][7]  # no encoder; inversion
    assert " ± " in rows["VAE"][5] and rows["VAE"][8] == ""  # encoder; no adversarial prior
    assert " ± " in rows["AAE, swiss roll prior"][8] and " ± " in rows["AAE, mixture prior"][9]


def test_factors_benchmark_reports_mean_and_se_over_seeds():
    done = run_smoke("factors.py", "--seeds", "2")
    assert "preset: smoke" in done.stdout and "seeds [0, 1]" in done.stdout, done.stdout[:300]
    lines = done.stdout.splitlines()
    for start, figures in (("| beta-VAE", 7), ("| VAE", 7), ("| flow", 4), ("| latent", 4)):
        rows = [line for line in lines if line.startswith(start + " ")]
        assert len(rows) == 1 and rows[0].count("±") == figures, (start, done.stdout)
    assert any(line.startswith("- beta-VAE minus VAE, MIG: ") and "s.e.)" in line
               for line in lines), done.stdout
    assert any(line.startswith("- M2 minus labels-only, test accuracy: ") for line in lines)


def test_readme_quotes_the_stored_benchmark_tables():
    """README's benchmark tables are the files `make benchmarks` stores, not typed by hand: each
    stored result appears in README verbatim, came from a run over three seeds, and README
    quotes no other table under its Benchmarks heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    stored = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert stored, "benchmarks/results holds no table: run make benchmarks"
    for path in stored:
        text = path.read_text().strip()
        script, preset = path.stem.rsplit("-", 1)
        assert f"{script}.py" in SCRIPTS and text.startswith("machine: ")
        assert f"preset: {preset}" in text and "[0, 1, 2]" in text, path.name
        assert text in section, f"README's Benchmarks section does not quote {path.name} as stored"
    quoted = section.count("\n|---")
    assert quoted == sum(p.read_text().count("\n|---") for p in stored), quoted
