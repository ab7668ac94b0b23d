"""What the local services share: the excerpt of a service's log that an error message quotes."""

from __future__ import annotations

import re
from pathlib import Path

from retail_pipeline.local.services import LOG_EXCERPT_BYTES, log_excerpt


def test_the_first_telling_line_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("ERROR old run\nstarting\nWARN slow\nERROR: port in use\nFATAL: gone\nbye\n")
    old = len("ERROR old run\n")
    assert log_excerpt(log, old, ("FATAL:", "ERROR:")) == "FATAL: gone", "patterns in order"
    assert log_excerpt(log, old, ("ERROR",)) == "ERROR: port in use", "not before the offset"
    assert log_excerpt(log, old, ("PANIC:",)) == "bye", "else the last line"
    assert log_excerpt(log, log.stat().st_size, ("ERROR",)) == "no output"
    assert log_excerpt(tmp_path / "missing.log", 0, ("ERROR",)) == "no log"


def test_a_prefix_is_cut_and_a_long_line_shortened(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text("2026-12-06 05:00:00.123 UTC [42] FATAL:  " + "x" * 500 + "\n")
    prefix = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\] ")
    line = log_excerpt(log, 0, ("FATAL:",), prefix)
    assert line.startswith("FATAL:  xxx") and len(line) == 300


def test_a_huge_log_is_read_from_its_end_only(tmp_path: Path) -> None:
    """A log of any size costs at most LOG_EXCERPT_BYTES: an old match beyond that is not seen."""
    log = tmp_path / "big.log"
    with log.open("w") as handle:
        handle.write("ERROR: long ago\n")
        handle.write(("filler " * 15 + "\n") * (3 * LOG_EXCERPT_BYTES // 106))
        handle.write("ERROR: just now\nlast\n")
    assert log.stat().st_size > 2 * LOG_EXCERPT_BYTES
    assert log_excerpt(log, 0, ("ERROR:",)) == "ERROR: just now"
