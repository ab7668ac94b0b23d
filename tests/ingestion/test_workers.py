"""The validation workers and their fork server: Ctrl-C is the loader's to handle."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

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


# A main script that must never be imported again, like the `airflow` command in an Airflow
# task (importing it there initialises Airflow with the database URL a task is refused).
_FATAL_MAIN = """
import sys
from pathlib import Path
if __name__ != "__main__":
    sys.exit("the caller's main script was imported by a worker")

from retail_pipeline.ingestion.workers import Validators

with Validators(2) as pool:
    results = [pool.submit(pow, n, 2) for n in range(6)]
    print(sum(future.result(timeout=60) for future in results))
print(__file__ == sys.argv[0], __spec__ is None)
"""


def test_workers_never_import_the_callers_main_script(tmp_path: Path) -> None:
    """multiprocessing would run the caller's main script in every worker it starts; for a
    Kafka DAG in Airflow that script is `airflow`, and each worker died. Hidden while workers
    start, and put back after."""
    script = tmp_path / "fatal_main.py"
    script.write_text(_FATAL_MAIN)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert (result.returncode, result.stdout.split()) == (0, ["55", "True", "True"]), (
        result.stdout + result.stderr
    )
