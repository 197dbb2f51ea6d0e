"""Shared fixtures. The whole test run uses the smoke preset (see DESIGN.md, Tests and CI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["VAECOURSE_PRESET"] = "smoke"

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


def train_cli(*args: str) -> tuple[dict, str]:
    """Run ``python -m vaecourse train ARGS`` under the smoke preset.

    Returns the metrics of its last stdout line (JSON) and its stderr (the progress).
    """
    env = {**os.environ, "VAECOURSE_PRESET": "smoke"}
    done = subprocess.run([sys.executable, "-m", "vaecourse", "train", *args],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr
