"""The sandbox every piece of student code runs in while grading (book/instructors.md, "The
sandbox").

On Linux, `bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, Debian's
``bubblewrap``) gives each student kernel and each probe (:mod:`vaecourse.grading.verdict`):

- a read-only view of the system (``/usr``, ``/lib*``, ``/bin``, ``/etc``), of the Python
  interpreter, of the virtual environment and of the ``vaecourse`` package, and nothing else of
  the machine: not the repository (``solutions/``), the grading folder (gradebook, grades, other
  students) nor the instructor's HOME;
- one writable folder, the student's own working copy, and a private ``/tmp``;
- no network, its own PID, IPC and UTS namespaces, a new session, no capabilities, an unprivileged
  user id, a cleared environment, and death with its parent (nothing it starts outlives it);
- resource limits (:class:`Limits`) set with ``prlimit``: address space, file size, CPU time.

The kernel talks to the grader through Unix sockets (Jupyter's ``ipc`` transport) in a run folder
that only it and the grader see, since it has no network at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import vaecourse
from vaecourse import config

SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
INSTALL_HINT = ("grade needs bubblewrap to sandbox student code: install it (Debian/Ubuntu: "
                "apt-get install bubblewrap), or pass --unsandboxed to grade without a sandbox")


@dataclass(frozen=True)
class Limits:
    """What one student's notebook may use. The defaults fit the heaviest assignment (ps3-ps5
    train small models: under two minutes and about 2 GB on a laptop CPU)."""

    cell_seconds: int = 120      # wall time of one cell
    notebook_seconds: int = 600  # wall time of the whole notebook (kernel start included)
    cpu_seconds: int = 1200      # CPU time of the kernel (all threads)
    memory_mb: int = 8192        # address space of each process
    file_mb: int = 256           # largest file it may write
    cell_output_kb: int = 256    # output kept per cell; the rest is dropped with a note
    notebook_output_kb: int = 2048  # output kept per notebook

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"limit {name}: expected a positive integer, got {value!r}")


def available() -> bool:
    """Whether bubblewrap and prlimit are installed and bwrap can create its namespaces here."""
    if not (shutil.which("bwrap") and shutil.which("prlimit")):
        return False
    probe = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def readonly_paths() -> list[str]:
    """What a sandbox sees read-only: the system, the interpreter, the environment, the package.
    A path inside another is bound once."""
    package = Path(vaecourse.__file__).resolve().parent
    paths = [p for p in SYSTEM if os.path.exists(p)]
    for p in (sys.base_prefix, sys.prefix, str(package)):
        resolved = str(Path(p).resolve())
        if not any(resolved == q or resolved.startswith(q.rstrip("/") + "/") for q in paths):
            paths.append(resolved)
    return paths


def environment() -> dict[str, str]:
    """The only environment a sandbox gets (bwrap's --clearenv drops the rest)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp",
           "MPLCONFIGDIR": "/tmp", "MPLBACKEND": "agg", "PYTHONDONTWRITEBYTECODE": "1",
           "OMP_NUM_THREADS": "1"}
    env[config.ENV_VAR] = config.preset_name()  # the grader's preset, resolved once by config
    return env


def command(work: Path, limits: Limits, writable: tuple[Path, ...] = (),
            sandboxed: bool = True) -> list[str]:
    """The argv prefix that runs a program in the sandbox with ``work`` as its writable working
    folder (plus ``writable``); without ``sandboxed``, only the limits and the cleared
    environment, and death with its parent (the instructor's explicit ``--unsandboxed``)."""
    rlimits = ["prlimit", f"--as={limits.memory_mb * 2**20}", f"--fsize={limits.file_mb * 2**20}",
               f"--cpu={limits.cpu_seconds}", "--core=0", "--"]
    env = [f"{k}={v}" for k, v in environment().items()]
    if not sandboxed:
        return ["setpriv", "--pdeathsig", "KILL", "env", "-i", *env, *rlimits]
    argv = ["bwrap", "--tmpfs", "/tmp"]
    for path in readonly_paths():
        argv += ["--ro-bind", path, path]
    for path in (work, *writable):
        argv += ["--bind", str(path), str(path)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--unshare-all", "--unshare-user",
             "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--new-session",
             "--die-with-parent", "--clearenv", "--chdir", str(work)]
    for key, value in environment().items():
        argv += ["--setenv", key, value]
    return [*rlimits, *argv]


def kernelspec(folder: Path, work: Path, limits: Limits, sandboxed: bool) -> str:
    """Write a Jupyter kernelspec under ``folder/kernels`` whose kernel runs in the sandbox of
    ``work``, with ``folder`` (its sockets and connection file) writable; return its name."""
    spec = folder / "kernels" / "sandboxed-python"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [*command(work, limits, (folder,), sandboxed), sys.executable, "-m",
            "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": "Python (grading sandbox)", "language": "python",
        "interrupt_mode": "message"}))
    return spec.name
