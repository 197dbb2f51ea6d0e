"""The package, tests, benchmarks and book extension pass ruff (settings in pyproject.toml)."""

import subprocess

from conftest import BIN
from notebooks import ROOT


def test_ruff_is_clean():
    paths = ["vaecourse", "tests", "benchmarks", "book/_ext"]
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
