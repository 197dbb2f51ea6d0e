"""Shared fixtures. The whole test run uses the smoke preset (see DESIGN.md, Tests and CI)."""

import os
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
