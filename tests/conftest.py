"""Shared fixtures. The whole test run uses the smoke preset (README.md, Presets and GPUs)."""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from vaecourse.data import download

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


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every pooch download fails as it does without a network; the attempts are recorded."""
    attempts = []

    def retrieve(url, **kwargs):
        attempts.append(url)
        raise requests.ConnectionError(f"no network (test) for {url}")

    monkeypatch.setattr(download.pooch, "retrieve", retrieve)
    return attempts


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_mirror(tmp_path):
    """A loopback HTTP server (no network needed) serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
