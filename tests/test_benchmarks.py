"""Every benchmark script runs under the smoke preset and prints its machine line and table
(the figures themselves are measured by running the scripts, never asserted here)."""

import os
import subprocess
import sys

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
