"""Run the real ``retail-pipeline`` command in a subprocess and check how it ended (imported by
the tests of every package that drive the command line)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb


def _command() -> list[str]:
    script = shutil.which("retail-pipeline") or shutil.which(
        "retail-pipeline", path=str(Path(sys.executable).parent)
    )
    return [script] if script else [sys.executable, "-m", "retail_pipeline.cli"]


COMMAND = _command()


def cli(
    *args: str | Path, warehouse: Path, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the command with ``RETAIL_WAREHOUSE`` pointing at ``warehouse`` (and ``env`` set)."""
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), **env}
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The stdout lines of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines, "a command prints at least its summary line"
    return lines


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a clean failure: exit != 0, exactly one ``error:`` line naming every needle."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("error:"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def bronze_state(path: Path) -> dict[str, int] | None:
    """Row counts of every table in the ``bronze`` schema (None when there is no file)."""
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'bronze'"
            " order by 1"
        ).fetchall()
        state = {}
        for (table,) in tables:
            row = con.execute(f'select count(*) from bronze."{table}"').fetchone()
            state[table] = int(row[0]) if row else -1
        return state


def nothing_loaded(path: Path) -> bool:
    """The warehouse was not created, or holds only its empty schema."""
    state = bronze_state(path)
    return state is None or all(n == 0 for t, n in state.items() if t != "_meta")


def not_utf8(parent: Path, name: bytes) -> Path:
    """``parent / name`` for a name that is not UTF-8 (as Python sees it: surrogate-escaped)."""
    return parent / os.fsdecode(name)
