"""What the commands print (``cli/output.py``): outside text made printable, progress bars."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from retail_pipeline.cli import output
from retail_pipeline.transform import NodeProgress
from tests.cli.run import cli, not_utf8, ok


def test_output_naming_a_path_that_is_not_utf8_is_printable(tmp_path: Path) -> None:
    """A summary quoting such a path prints it escaped (no UnicodeEncodeError), and escape
    sequences in it never reach the terminal."""
    out_dir = not_utf8(tmp_path, b"sim\xfe\x1b[31m")
    lines = ok(
        cli("generate", "--days", "1", "--out", out_dir, warehouse=tmp_path / "w", cwd=tmp_path)
    )
    assert "sim\\udcfe?[31m" in lines[-1] or "sim\\udcfe" in lines[-1]
    assert "\x1b" not in "".join(lines)
    assert (out_dir / "truth.json").is_file()
    lines = ok(cli("schemas", "--out", out_dir / "schemas", warehouse=tmp_path / "w", cwd=tmp_path))
    assert "\x1b" not in lines[0] and "\\udcfe" in lines[0]


def _drawn(monkeypatch: pytest.MonkeyPatch, *, terminal: bool) -> io.StringIO:
    """Make the commands' stderr console draw into a string, as a terminal or not."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=terminal, width=100, color_system=None)
    monkeypatch.setattr(output, "console", console)
    return screen


def test_progress_bars_count_items_bytes_and_dbt_nodes_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = _drawn(monkeypatch, terminal=True)
    with output.progress("simulating days", 3) as advance:
        advance(1)
        advance(2)
    with output.progress("ingesting", 2048, in_bytes=True) as advance:
        advance(2048)
    with output.node_progress() as node_done:
        node_done(NodeProgress(1, 2, "stg_orders", "model", "success", 0.1))
        node_done(NodeProgress(2, 2, "not_null_x", "test", "fail", 0.1))
    drawn = screen.getvalue()
    assert "simulating days" in drawn and "3/3" in drawn
    assert "ingesting" in drawn and "2.0/2.0 kB" in drawn
    assert "dbt test not_null_x" in drawn and "2/2" in drawn
    assert "FAIL test not_null_x\n" in drawn, "a failing node is printed above the bar"
    assert "success" not in drawn.lower(), "a node that succeeded is not a line of its own"


def test_progress_bars_draw_nothing_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped or captured stderr gets no bar and no escape sequence (the summary says it all)."""
    screen = _drawn(monkeypatch, terminal=False)
    with output.progress("ingesting", 10, in_bytes=True) as advance:
        advance(10)
    with output.node_progress() as node_done:
        node_done(NodeProgress(1, 1, "not_null_x", "test", "fail", 0.1))
    assert screen.getvalue() == ""
