"""The validation workers and their fork server: Ctrl-C is the loader's to handle."""

from __future__ import annotations

import signal
import subprocess
import sys

from retail_pipeline.ingestion import fork_server, workers

_AS_FORK_SERVER = """
import importlib, signal, sys
import multiprocessing.forkserver  # what a fork server has imported when its preload runs
from retail_pipeline.ingestion import workers
importlib.import_module(workers._PRELOAD[0])
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_the_fork_server_ignores_ctrl_c_before_it_imports_the_validator() -> None:
    """Its first preload makes it ignore Ctrl-C (the workers it forks inherit that), so a
    Ctrl-C during its imports of pyarrow and pandas is not a traceback beside "aborted"."""
    assert workers._PRELOAD == [
        "retail_pipeline.ingestion.fork_server",
        "retail_pipeline.ingestion.staging",
    ]
    result = subprocess.run(
        [sys.executable, "-c", _AS_FORK_SERVER], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"


def test_importing_it_elsewhere_changes_nothing() -> None:
    assert not fork_server.in_fork_server()
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
