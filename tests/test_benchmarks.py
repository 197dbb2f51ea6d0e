"""Every benchmark script runs under the smoke preset and prints its machine line and table
(the figures themselves are measured by running the scripts, never asserted here)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from notebooks import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "common.py")


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
def test_colorization_benchmark_reports_mean_and_se_over_seeds():
    env = {**os.environ, "VAECOURSE_PRESET": "smoke"}
    done = subprocess.run([sys.executable, "benchmarks/colorization.py", "--preset", "smoke",
                           "--seeds", "2", "--data", "synthetic", "rotated"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seeds 0..1" in done.stdout and "wall time: " in done.stdout
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
    summary = colorization.over_seeds(runs)
    mean, se = summary["diversity"]
    assert mean == pytest.approx(3.0) and se == pytest.approx(np.std([1, 2, 6], ddof=1) / 3**0.5)
    assert summary["hue_coverage"] is None
