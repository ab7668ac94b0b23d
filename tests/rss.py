"""Peak memory of a command, measured as the tests assert it (memory follows the batch)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\npeak-rss-kib={usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs the command as a grandchild of this small process: Linux carries a process's peak RSS
across exec, so a command started straight from a big test process would report its size."""


@dataclass(frozen=True)
class Measured:
    """A finished command: its exit code, output and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    peak_bytes: int

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / (1 << 20)


def run_measured(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 600
) -> Measured:
    """``retail-pipeline args`` in a child process, with its peak RSS."""
    command = [sys.executable, "-c", _MEASURE, "-m", "retail_pipeline.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=False)
    err, _, peak = done.stderr.decode("utf-8", "replace").rpartition("\npeak-rss-kib=")
    return Measured(done.returncode, done.stdout.decode("utf-8", "replace"), err, int(peak) * 1024)
