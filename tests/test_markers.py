"""tests/markers.py: what it reads as needing a service or a dbt build, and what it does not."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from retail_pipeline.transform import run_transform
from tests import markers


def _cli(*args: str) -> None:
    subprocess.run(["retail-pipeline", *args], check=False)


def _builds(warehouse: Path) -> None:
    run_transform(warehouse)


def _calls_a_helper_that_builds() -> None:
    _builds(Path("wh.duckdb"))


def _runs_the_demo() -> None:
    _cli("demo", "--days", "1")


def _only_names_the_demo(name: str, root: Path, commands: dict[str, str]) -> object:
    if name == "demo":
        return root / "demo"
    return commands["demo"]


def _local_import() -> None:
    from tests.local.snowflake_fixtures import emulator_unavailable

    emulator_unavailable("not here")


# Looked up by name, so that the tests below do not themselves reach what the samples reach.
SAMPLES = {
    f.__name__: f
    for f in (_cli, _builds, _calls_a_helper_that_builds, _runs_the_demo, _only_names_the_demo)
}
SAMPLES["_local_import"] = _local_import


def needs(sample: str) -> set[str]:
    return markers._Reach().of(SAMPLES[sample])


def test_a_call_reaching_dbt_through_a_helper_needs_dbt() -> None:
    assert needs("_builds") == {"dbt"}
    assert needs("_calls_a_helper_that_builds") == {"dbt"}


def test_a_command_word_counts_as_an_argument_not_as_a_name_or_a_path() -> None:
    assert needs("_runs_the_demo") == {"dbt"}
    assert needs("_only_names_the_demo") == set()
    assert needs("_cli") == set()


def test_a_local_import_of_a_service_helper_counts() -> None:
    assert needs("_local_import") == {"emulator"}


def test_every_marker_is_registered() -> None:
    registered = Path(__file__).parents[1].joinpath("pyproject.toml").read_text()
    used = set(markers.SERVICE_FIXTURES.values()) | set(markers.STARTERS.values())
    used |= set(markers.COMMAND_WORDS.values()) | set(markers.PARAMETERS.values())
    assert used == set(markers.EXPENSIVE)
    for name in used:
        assert f'"{name}: ' in registered, name


def test_every_starter_still_exists() -> None:
    """A starter renamed or moved to a module of another name would silently stop marking: each
    name in STARTERS is still defined (or imported) where it says."""
    root = Path(__file__).parents[1]
    files = [*root.joinpath("src").rglob("*.py"), *root.joinpath("tests").rglob("*.py")]
    texts = {path: path.read_text() for path in files}
    for starter in markers.STARTERS:
        module, _, name = starter.rpartition(":")
        where = [p for p in files if not module or p.stem == module]
        found = [
            p
            for p in where
            if re.search(rf"^\s*(def|class) {name}\b|import .*\b{name}\b", texts[p], re.M)
        ]
        assert found, f"{starter}: no module {module or '*'}.py defines {name}"


def test_make_test_runs_the_fast_tier_and_exactly_its_complement() -> None:
    """`make test` (CI) runs three pytest sessions; together they must leave no test out."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no `test` target in the Makefile"
    runs = [line.strip() for line in recipe.group(1).splitlines() if "pytest" in line]
    assert runs == [
        '$(BIN)/pytest -m "$(FAST_TESTS)" -n $(FAST_WORKERS) --durations=10',
        '$(BIN)/pytest -m "not ($(FAST_TESTS)) and not timing" -n $(SERVICE_WORKERS)'
        " --dist loadfile --durations=30",
        '$(BIN)/pytest -m "not ($(FAST_TESTS)) and timing" --durations=10',
    ]
    fast = re.search(r"^FAST_TESTS := (.+)$", makefile, re.MULTILINE)
    assert fast, "no FAST_TESTS in the Makefile"
    # every expensive marker is left out of the fast tier, and so is `slow`
    assert set(re.findall(r"\w+", fast.group(1))) - {"not", "or"} == {*markers.EXPENSIVE, "slow"}
