"""The validation workers and their fork server: Ctrl-C is the loader's to handle."""

from __future__ import annotations

import glob
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from retail_pipeline.ingestion import fork_server, workers
from retail_pipeline.ingestion.workers import Validators

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


def _mapped_results() -> list[str]:
    """The workers' result files this process has mapped (unlinked: ``(deleted)``)."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return [line for line in maps if "retail-validate-" in line]


def _files(prefix: str) -> list[str]:
    return glob.glob(glob.escape(prefix) + "*")


def test_tables_come_back_through_shared_memory_mapped_not_copied() -> None:
    """A worker writes its result tables to shared memory and the loader maps them: equal
    tables, the mapping in this process, no file left behind."""
    if not Path(workers.SHARED_MEMORY).is_dir():
        raise AssertionError(f"{workers.SHARED_MEMORY} missing: the fast path is not tested")
    rows = {"n": list(range(50_000)), "text": [f"line {i}" for i in range(50_000)]}
    with Validators(1) as pool:
        prefix = pool._results
        assert Path(prefix).parent == Path(workers.SHARED_MEMORY)
        table = pool.submit(pa.table, rows).result(timeout=60)
        assert table.equals(pa.table(rows))
        assert _mapped_results(), "the result was copied, not mapped"
        assert _files(prefix) == []  # unlinked once mapped
    del table


def test_without_shared_memory_tables_come_back_through_the_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "SHARED_MEMORY", str(tmp_path / "missing"))
    rows = {"n": [1, 2, 3]}
    with Validators(1) as pool:
        assert pool._results == ""
        assert pool.submit(pa.table, rows).result(timeout=60).equals(pa.table(rows))


_KILLED_LOADER = """
import os, signal, sys
import pyarrow as pa
from retail_pipeline.ingestion.workers import Validators
pool = Validators(1)
if sys.argv[1] == "after-a-result":
    pool.submit(pa.table, {"n": [1]}).result(timeout=60)
print(pool._results, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("moment", ["before-any-worker", "after-a-result"])
def test_a_killed_loader_leaves_nothing_in_shared_memory(moment: str) -> None:
    """Nobody is left to close the pool of a SIGKILLed loader: nothing of it may stay in
    shared memory, whether a worker had started (it removes unread results as it leaves) or
    not (a directory made for the pool stayed there)."""
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_LOADER, moment], stdout=subprocess.PIPE, text=True
    ) as loader:
        assert loader.stdout is not None
        prefix = loader.stdout.readline().strip()
        # Reaped at once, as a shell would: a zombie still answers the workers' liveness check.
        assert loader.wait(timeout=60) == -signal.SIGKILL
    assert Path(prefix).parent == Path(workers.SHARED_MEMORY)
    deadline = time.monotonic() + 30
    while _files(prefix) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _files(prefix) == []


def test_a_result_shared_memory_cannot_hold_goes_through_the_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full tmpfs (here: a directory gone) makes the worker pickle the table itself."""
    monkeypatch.setattr(workers, "_results_prefix", str(tmp_path / "gone" / "r-"))
    table = pa.table({"n": [1, 2, 3]})
    rebuild, args = workers._reduce_table(table)
    assert rebuild is not workers._mapped_table
    assert rebuild(*args).equals(table)
    prefix = str(tmp_path / "r-")
    monkeypatch.setattr(workers, "_results_prefix", prefix)
    rebuild, args = workers._reduce_table(table)
    assert rebuild is workers._mapped_table and len(_files(prefix)) == 1
    assert rebuild(*args).equals(table)
    assert _files(prefix) == []
    workers._reduce_table(table)  # written, never read: removed like a killed loader's
    workers._remove_results(prefix)
    assert _files(prefix) == []


def test_a_name_taken_in_shared_memory_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may write in /dev/shm and the names there can be guessed once one is seen: a
    file or a symlink planted under the next result's name is neither written through nor
    read back as a result; the table goes through the pipe, and the planted files stay."""
    prefix = str(tmp_path / "r-")
    monkeypatch.setattr(workers, "_results_prefix", prefix)
    monkeypatch.setattr(workers, "_results", itertools.count())
    table = pa.table({"n": [1, 2, 3]})
    planted = Path(f"{prefix}{os.getpid()}-0.arrow")
    planted.write_bytes(b"someone else's rows")
    target = tmp_path / "victim"
    target.write_bytes(b"kept")
    Path(f"{prefix}{os.getpid()}-1.arrow").symlink_to(target)
    for _ in range(2):
        rebuild, args = workers._reduce_table(table)
        assert rebuild is not workers._mapped_table
        assert rebuild(*args).equals(table)
    assert planted.read_bytes() == b"someone else's rows"
    assert target.read_bytes() == b"kept"
    rebuild, args = workers._reduce_table(table)  # the next free name: shared memory again
    assert rebuild is workers._mapped_table and rebuild(*args).equals(table)
