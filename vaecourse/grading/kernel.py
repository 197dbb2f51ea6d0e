"""Executing a student's notebook in its sandbox (book/instructors.md, "The sandbox"), for the
feedback: the visible tests run there as the plain asserts the student ran, but no score is read
from this run (the verdict is :mod:`vaecourse.grading.verdict`'s).

:class:`CappedClient` is nbclient's client with a byte budget per cell and per notebook and a wall
time for the whole notebook on top of the per-cell timeout.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output

from vaecourse.grading.sandbox import Limits, kernelspec


class CappedClient(NotebookClient):
    """NotebookClient that keeps at most ``limits.cell_output_kb`` of output per cell and
    ``limits.notebook_output_kb`` per notebook (a note says what was dropped), and gives the
    whole notebook ``limits.notebook_seconds``."""

    def __init__(self, nb: NotebookNode, limits: Limits, **kwargs) -> None:
        stopped = {"ename": "CellTimeoutError", "evalue": "", "traceback": []}
        super().__init__(nb, timeout_func=self.cell_timeout, interrupt_on_timeout=True,
                         error_on_timeout=stopped, **kwargs)
        self.limits, self.deadline = limits, time.monotonic() + limits.notebook_seconds
        self.cell_bytes: dict[int, int] = {}
        self.total_bytes, self.capped = 0, set()

    def cell_timeout(self, cell: NotebookNode) -> int:
        """The per-cell timeout, or what is left of the notebook's time if that is less."""
        left = int(self.deadline - time.monotonic())
        return max(1, min(self.limits.cell_seconds, left))

    async def _async_handle_timeout(self, timeout, cell=None):
        """Interrupt the kernel (nbclient), mark the cell as stopped and go on with the next."""
        cell.outputs.append(new_output("error", ename="CellTimeoutError",
                                       evalue=f"the cell ran past {timeout} s",
                                       traceback=[f"CellTimeoutError: ran past {timeout} s"]))
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {})))
        used = self.cell_bytes.get(cell_index, 0)
        if (used + size > self.limits.cell_output_kb * 1024
                or self.total_bytes + size > self.limits.notebook_output_kb * 1024):
            if cell_index not in self.capped:
                self.capped.add(cell_index)
                outs.append(new_output("stream", name="stdout", text=(
                    f"[output cut by the grader: more than {self.limits.cell_output_kb} kB in "
                    f"this cell or {self.limits.notebook_output_kb} kB in the notebook]\n")))
            return None
        self.cell_bytes[cell_index] = used + size
        self.total_bytes += size
        return super().output(outs, msg, display_id, cell_index)


def execute(nb: NotebookNode, work: Path, run: Path, limits: Limits,
            sandboxed: bool = True) -> tuple[NotebookNode, str]:
    """Run ``nb`` in a sandboxed kernel whose only writable folder is ``work`` (sockets and the
    kernel's log in ``run``). Errors in cells are kept as outputs. Returns the executed notebook
    and '' or why the run stopped (the kernel died, or the notebook ran out of time)."""
    name = kernelspec(run, work, limits, sandboxed)
    km = AsyncKernelManager(kernel_name=name, transport="ipc", ip=str(run / "ipc"),
                       connection_file=str(run / "connection.json"),
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(run / "kernels")]))
    client = CappedClient(nb, limits, km=km, allow_errors=True,
                          startup_timeout=120, resources={"metadata": {"path": str(work)}})
    log = run / "kernel.log"
    try:
        with open(log, "wb") as stderr:
            client.execute(stdout=subprocess.DEVNULL, stderr=stderr)
    except DeadKernelError:
        return nb, "kernel died (the notebook crashed Python, ran out of memory or CPU time)"
    except RuntimeError as err:  # the kernel did not start
        return nb, f"kernel did not start: {err}; {log.read_text(errors='replace')[-300:]}"
    finally:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=True)
    if time.monotonic() > client.deadline:
        return nb, f"the notebook ran past {limits.notebook_seconds} s"
    return nb, ""
