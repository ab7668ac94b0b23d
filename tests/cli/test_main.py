"""The ``retail-pipeline`` command as a whole (``cli/__init__.py``): every command's help,
the version, and usage errors as printable lines.

Every case that runs a command runs the installed console script in a subprocess
(``tests/cli/run.py``), against a warehouse file in ``tmp_path``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.run import cli, ok


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    lines = ok(cli("--version", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path))
    assert lines == [f"retail-pipeline {version('retail-pipeline')}"]


def _commands() -> dict[str, Any]:
    """Every leaf command of the CLI by its name, e.g. ``"kafka up"``."""
    import typer.main

    from retail_pipeline.cli import app

    found: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if not hasattr(command, "commands"):
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_option_with_its_text_default_and_environment(name: str) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app

    result = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # undo the wrapping
    options = text.partition(" Options: ")[2]
    assert options and "<" not in options, f"a type placeholder such as <bool> in: {options}"
    for param in _commands()[name].params:
        if param.param_type_name == "option":
            assert param.help, f"{name} {param.opts[0]} has no help text"
            assert " ".join(param.help.split()) in text, f"{param.opts[0]}'s help is mangled"
            assert all(opt in text for opt in param.opts)
    if name == "demo":  # the demo keeps a warehouse of its own
        assert "[default: DIR/warehouse.duckdb; RETAIL_WAREHOUSE is not used]" in text
    elif "--warehouse" in text:
        assert "[env var: RETAIL_WAREHOUSE; default: data/warehouse.duckdb]" in text
    if "--bootstrap" in text:
        assert "[env var: RETAIL_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]" in text
    if "--topic-prefix" in text:
        assert "[env var: RETAIL_TOPIC_PREFIX]" in text


TARGET_NAMES = re.compile(r"\b(duckdb|snowflake)\b", re.IGNORECASE)


@pytest.mark.parametrize("name", ["", *sorted(_commands())])
def test_no_help_names_one_target_alone(name: str) -> None:
    """Every command can work on DuckDB or Snowflake (``--target``, ``RETAIL_TARGET``), or on
    neither: wherever its help or an option's speaks of one, it says what happens on the other."""
    import typer.main

    from retail_pipeline.cli import app

    command = _commands()[name] if name else typer.main.get_command(app)
    texts = {"the command": command.help or ""}
    texts.update((p.opts[0], p.help or "") for p in command.params if p.param_type_name == "option")
    for where, text in texts.items():
        named = {word.lower() for word in TARGET_NAMES.findall(text)}
        assert len(named) != 1, f"{name or 'retail-pipeline'} {where}: only {named}: {text!r}"


HEAVY = {"pyarrow", "pandas", "numpy", "duckdb", "confluent_kafka", "dbt", "psycopg", "snowflake"}
"""What a command loads when it runs, never for its help."""

_HELP_EVERYWHERE = """
import json, sys
from retail_pipeline.cli import main
for command in json.loads(sys.argv[1]):
    sys.argv = ["retail-pipeline", *command, "--help"]
    main()
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})), file=sys.stderr)
"""


def test_help_loads_no_warehouse_dbt_or_kafka_client() -> None:
    """``--help`` (of the command and of each of its commands) stays quick: the modules a command
    delegates to are imported when it runs."""
    commands = [[], *(name.split() for name in _commands()), ["kafka"], ["postgres"]]
    result = subprocess.run(
        [sys.executable, "-c", _HELP_EVERYWHERE, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Usage: retail-pipeline") == len(commands)
    loaded = set(json.loads(result.stderr.splitlines()[-1]))
    assert "retail_pipeline" in loaded and "typer" in loaded
    assert loaded & HEAVY == set()


def test_usage_errors_are_printable_one_line_messages(tmp_path: Path) -> None:
    result = cli("generate", "--days", "x\x1b]0;owned\x07", warehouse=tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "--days" in error
    result = cli("counts", "--bogus\x1b[2J", warehouse=tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("error", [RuntimeError("Query interrupted"), ValueError("anything")])
def test_an_error_a_ctrl_c_caused_is_an_abort_not_a_traceback(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A library that turns the KeyboardInterrupt of a Ctrl-C into its own error (DuckDB's
    "Query interrupted", raised wherever a query ran when the signal came) ends the command
    as a Ctrl-C does: "aborted", exit 130; without a Ctrl-C the error is not swallowed."""
    import retail_pipeline.cli as entry
    from retail_pipeline import interrupts

    def command(**_: object) -> None:
        interrupts.note()
        raise error

    monkeypatch.setattr(entry, "app", command)
    try:
        with pytest.raises(SystemExit) as stopped:
            entry.main()
        assert stopped.value.code == entry.ABORTED
        assert capsys.readouterr().err.strip() == "aborted"
    finally:
        interrupts.handled()

    def failing(**_: object) -> None:
        raise error

    monkeypatch.setattr(entry, "app", failing)
    with pytest.raises(type(error)):
        entry.main()
