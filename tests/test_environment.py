"""The installed stack is the pinned one: exact pins, one CPU-or-CUDA torch 2.13.0, no conflicts."""

import os
import re
import subprocess
import sys
from importlib import metadata

from notebooks import ROOT


def requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [entry for line in lines if (entry := line.split("#")[0].strip())]


def pins() -> dict[str, str]:
    return dict(entry.split("==") for entry in requirements())


def test_every_requirement_is_pinned_exactly():
    loose = [entry for entry in requirements() if "==" not in entry]
    assert not loose, f"requirements.txt must pin exact versions, these are not: {loose}"


def test_installed_versions_match_the_pins():
    wrong = {}
    for name, version in pins().items():
        installed = metadata.version(name).split("+")[0]
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed differs from requirements.txt (pinned, installed): {wrong}"


def test_one_torch_and_no_stray_cuda_wheels():
    import torch

    assert pins()["torch"] == "2.13.0" and torch.__version__.startswith("2.13.0")
    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    if torch.version.cuda is None:  # a CPU build must not drag CUDA libraries along
        assert not {n for n in names if n.startswith("nvidia-")}, "CUDA wheels next to a CPU torch"


def test_pip_check_finds_no_conflict():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_binder_builds_the_same_environment():
    """Binder (the launch buttons) reads .binder/: the same Python as the Makefile, the pinned
    requirements with the CPU torch, and the vaecourse package installed after them."""
    binder = ROOT / ".binder"
    makefile = (ROOT / "Makefile").read_text()
    version = re.search(r"^PYTHON \?= python(\d+\.\d+)$", makefile, flags=re.M).group(1)
    assert (binder / "runtime.txt").read_text().strip() == f"python-{version}"
    lines = [line.strip() for line in (binder / "requirements.txt").read_text().splitlines()]
    assert "-r ../requirements.txt" in lines
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    post_build = binder / "postBuild"
    assert os.access(post_build, os.X_OK), ".binder/postBuild must be executable"
    assert "pip install --no-deps -e ." in post_build.read_text()
