"""Every chapter and every problem-set master runs top to bottom under the smoke preset, and the
outputs marked ``# NBVAL_CHECK_OUTPUT`` still match what the code computes (nbval, --nbval-lax)."""

import os
import subprocess
import sys

import pytest
from notebooks import CHAPTERS, MASTERS, ROOT, ids

NOTEBOOKS = CHAPTERS + MASTERS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_runs_under_nbval(path, tmp_path):
    env = {**os.environ, "VAECOURSE_PRESET": "smoke", "MPLBACKEND": "agg"}
    command = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout=900", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
        "-c", os.devnull, str(path),
    ]
    result = subprocess.run(command, cwd=path.parent, env=env, capture_output=True, text=True)
    name = path.relative_to(ROOT)
    assert result.returncode == 0, f"nbval failed on {name}:\n{result.stdout[-6000:]}"
