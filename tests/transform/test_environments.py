"""Isolated environments (docs/transform.md#environments): production builds ``silver`` and
``gold``, a ``dev`` or ``ci`` environment ``<prefix>_silver`` and ``<prefix>_gold``, side by side
in one warehouse on the one shared Bronze, and every reader reads its own environment's Gold.
``transform --defer`` builds only what differs from a production manifest.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.dashboard.data import take_snapshot
from retail_pipeline.dashboard.powerbi import project_files
from retail_pipeline.errors import PipelineError
from retail_pipeline.monitoring.health import check_health
from retail_pipeline.settings import (
    LAYERS,
    check_schema_prefix,
    environment,
    layer_schema,
    schema_prefix,
    settings,
    user_prefix,
)
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import (
    TransformError,
    gold_status,
    read_answers,
    run_dbt,
    run_transform,
)
from retail_pipeline.warehouse import open_warehouse
from tests.cli.run import cli, one_error_line

from .conftest import Simulation, transform

SEED = 11  # the warehouse test_incremental and test_reconciliation build: shared in a session
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def env(name: str, prefix: str = "", **more: str) -> Iterator[None]:
    """Settings, the runner and every reader in environment ``name`` with ``prefix``."""
    with environment(RETAIL_ENVIRONMENT=name, RETAIL_SCHEMA_PREFIX=prefix, **more):
        yield


def schemas(warehouse: Path) -> dict[str, dict[str, tuple[str, int, int]]]:
    """Every built schema (Bronze left out): each relation's type, rows and a hash of all its
    rows, every column included (load times too), independent of row order."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        found: dict[str, dict[str, tuple[str, int, int]]] = {}
        for schema, table, kind in con.execute(
            "select table_schema, table_name, table_type from information_schema.tables"
            " where table_schema not in ('bronze', 'main') order by all"
        ).fetchall():
            rows, digest = con.execute(
                f'select count(*), coalesce(sum(hash(t)), 0) from "{schema}"."{table}" t'
            ).fetchone() or (0, 0)
            found.setdefault(schema, {})[table] = (kind, int(rows), int(digest))
        return found
    finally:
        con.close()


def layers(prefix: str) -> set[str]:
    return {f"{prefix}_{layer}" if prefix else layer for layer in LAYERS}


def holding_relations(prefix: str) -> set[str]:
    """The layers a build whose tests all pass leaves relations in: `test_failures` holds a
    view only while a test fails (dbt/macros/test_materialization.sql)."""
    return {f"{prefix}_{layer}" if prefix else layer for layer in ("silver", "gold")}


@pytest.fixture
def production(built: Callable[[int], Path], tmp_path: Path) -> Path:
    """A copy of a warehouse whose production schemas are built (the session's build), under
    the same file name: DuckDB's views name the catalog, which is the file's stem."""
    source = built(SEED)
    copy = tmp_path / "copy" / source.name
    copy.parent.mkdir()
    shutil.copy(source, copy)
    return copy


def truth_of(simulations: Callable[[int], Simulation]) -> dict[str, Any]:
    return json.loads(simulations(SEED).truth.read_text())  # type: ignore[no-any-return]


# --- the rule -----------------------------------------------------------------------------


def test_schema_names_by_environment() -> None:
    with env("prod"):
        assert [layer_schema(layer) for layer in LAYERS] == ["silver", "gold", "test_failures"]
    with env("dev", "alice"):
        assert layer_schema("gold") == "alice_gold"
    with env("ci", "pr_42"):
        assert layer_schema("silver") == "pr_42_silver"
    with env("dev"):  # the OS user, made an identifier
        assert schema_prefix() == user_prefix(__import__("getpass").getuser())
    assert user_prefix("Alice.Smith-2") == "alice_smith_2"
    assert user_prefix("1000") == "u_1000"
    assert user_prefix("---") is None
    assert user_prefix("x" * 40) == "x" * 31
    with env("prod", "alice"), pytest.raises(PipelineError, match="RETAIL_ENVIRONMENT=dev or ci"):
        layer_schema("gold")
    with env("ci"), pytest.raises(PipelineError, match="set RETAIL_SCHEMA_PREFIX"):
        layer_schema("gold")


@pytest.mark.parametrize(
    "prefix", ["Alice", "1pr", "_x", "a-b", "a b", "x;drop schema gold", 'a"b', "é", "a" * 32, ""]
)
def test_a_prefix_is_a_lowercase_identifier(prefix: str) -> None:
    with pytest.raises(ValueError, match="lowercase identifier"):
        check_schema_prefix(prefix)
    if prefix:
        with env("dev", prefix), pytest.raises(PipelineError) as refused:
            settings()
        assert str(refused.value).startswith("RETAIL_SCHEMA_PREFIX=")
        assert "\n" not in str(refused.value)


# --- side by side -------------------------------------------------------------------------


def test_two_prefixes_and_production_build_side_by_side(
    production: Path, simulations: Callable[[int], Simulation]
) -> None:
    """alice (dev) and pr_42 (ci) build next to production in one DuckDB file on its Bronze:
    each has its own Silver and Gold, each answers the truth, and building, rebuilding or
    dropping one leaves every other relation exactly as it was."""
    truth = truth_of(simulations)
    before = schemas(production)
    assert set(before) == holding_relations("")
    for name, prefix in (("dev", "alice"), ("ci", "pr_42")):
        with env(name, prefix):
            summary = transform(production)
            assert not summary.failures
        after = schemas(production)
        assert set(after) - set(before) == holding_relations(prefix)
        assert {s: after[s] for s in before} == before, f"building {prefix} changed another"
        before = after
        # the same models in every environment
        assert after[f"{prefix}_gold"].keys() == after["gold"].keys()
        assert after[f"{prefix}_silver"].keys() == after["silver"].keys()

    built_at = {}
    for name, prefix in (("prod", ""), ("dev", "alice"), ("ci", "pr_42")):
        with env(name, prefix):
            assert compare_with_truth(read_answers(production), truth) == {}, prefix
            built_at[prefix] = gold_status(production).built_at
            with open_warehouse(production, read_only=True) as wh:
                report = check_health(wh)
            last_build = next(c for c in report.checks if c.name == "gold.last_build")
            assert last_build.status == "ok", last_build.message

    assert len(set(built_at.values())) == 3  # each reads its own build_info
    alice_built = built_at["alice"]

    # rebuild pr_42 from all of Bronze: alice and production stay byte for byte
    others = {s: t for s, t in before.items() if not s.startswith("pr_42_")}
    with env("ci", "pr_42"):
        transform(production, full_refresh=True)
    after = schemas(production)
    assert {s: t for s, t in after.items() if not s.startswith("pr_42_")} == others

    # drop pr_42: the others neither notice nor change
    with duckdb.connect(str(production)) as con:
        for schema in layers("pr_42"):
            con.execute(f"drop schema if exists {schema} cascade")
    assert schemas(production) == others
    with env("dev", "alice"):
        assert compare_with_truth(read_answers(production), truth) == {}
        snapshot = take_snapshot(production)  # the dashboard reads alice's Gold
        snapshot.close()
        assert snapshot.status.built_at == alice_built
    with env("ci", "pr_42"), pytest.raises(PipelineError, match="missing pr_42_gold"):
        read_answers(production)


def test_a_bad_or_missing_prefix_builds_nothing(production: Path, tmp_path: Path) -> None:
    before = schemas(production)
    cases = [
        ({"RETAIL_ENVIRONMENT": "dev", "RETAIL_SCHEMA_PREFIX": "x;drop schema gold"}, "lowercase"),
        ({"RETAIL_ENVIRONMENT": "prod", "RETAIL_SCHEMA_PREFIX": "alice"}, "dev or ci"),
        ({"RETAIL_ENVIRONMENT": "ci", "RETAIL_SCHEMA_PREFIX": ""}, "RETAIL_SCHEMA_PREFIX"),
        ({"RETAIL_ENVIRONMENT": "qa"}, "RETAIL_ENVIRONMENT="),
    ]
    for variables, needle in cases:
        result = cli("transform", warehouse=production, cwd=tmp_path, **variables)
        one_error_line(result, needle)
    with env("ci", "pr_1"):  # --defer needs --state, and a manifest in it
        result = cli("transform", "--defer", warehouse=production, cwd=tmp_path)
        one_error_line(result, "--defer and --state DIR go together")
        with pytest.raises(TransformError, match=r"no manifest\.json"):
            run_transform(production, defer_state=tmp_path)
    with env("prod"), pytest.raises(TransformError, match="production"):
        run_transform(production, defer_state=tmp_path)
    assert schemas(production) == before


# --- defer --------------------------------------------------------------------------------


def test_defer_builds_only_what_changed(
    production: Path,
    simulations: Callable[[int], Simulation],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With production's manifest, a change to one model builds that model and its children
    into pr_7's schemas; the rest is cloned from production (views on DuckDB), so pr_7's Gold
    is whole and answers the truth, and production is untouched."""
    state = tmp_path / "prod-state"
    project = tmp_path / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("RETAIL_DBT_PROJECT_DIR", str(project))
    monkeypatch.setenv("RETAIL_DBT_TARGET_DIR", str(project / "target"))
    with env("prod"):  # production's manifest, as its build writes it (a parse is enough)
        assert run_dbt(["parse"], production).success
    state.mkdir()
    shutil.copy(project / "target" / "manifest.json", state / "manifest.json")

    model = project / "models" / "gold" / "facts" / "fct_payments.sql"
    model.write_text(model.read_text() + "\n-- a change under review\n")
    before = schemas(production)
    with env("ci", "pr_7"):
        summary = run_transform(production, defer_state=state)
    assert summary.success, summary.failures
    built = {
        "fct_payments",
        "daily_revenue",
        "dim_date",
        "build_info",
        "figure_ledger",
    }  # and its children
    assert summary.counts["model"] == {"success": len(built)}
    assert summary.cloned > 20

    after = schemas(production)
    assert {s: after[s] for s in before} == before
    tables = {
        (schema, name)
        for schema in layers("pr_7") - {"pr_7_test_failures"}
        for name, (kind, _, _) in after[schema].items()
        if kind == "BASE TABLE"
    }
    assert tables == {("pr_7_gold", name) for name in built | {"build_log"}}
    assert after["pr_7_gold"].keys() == after["gold"].keys()
    assert after["pr_7_silver"].keys() == after["silver"].keys()
    with env("ci", "pr_7"):
        assert compare_with_truth(read_answers(production), truth_of(simulations)) == {}


# --- Snowflake ----------------------------------------------------------------------------


def test_power_bi_reads_the_environments_gold() -> None:
    """The generated Power BI model's partitions name the environment's Gold schema."""

    def schemas_named() -> set[str]:
        files = project_files(REPO / "dbt")
        text = "".join(t for path, t in files.items() if path.endswith(".tmdl"))
        return set(re.findall(r'Name = "(\w+)", Kind = "Schema"', text))

    with env("prod"):
        assert schemas_named() == {"GOLD"}
    with env("ci", "pr_42"):
        assert schemas_named() == {"PR_42_GOLD"}


def _parse_snowflake(project: Path, **variables: str) -> Any:
    from dbt.cli.main import dbtRunner

    args = ["parse", "--target", "snowflake", "--project-dir", str(project)]
    args += ["--profiles-dir", str(project), "--log-level", "none", "--no-partial-parse"]
    with environment(SNOWFLAKE_ACCOUNT="xy12345", SNOWFLAKE_USER="dbt", **variables):
        return dbtRunner().invoke(args)


def test_snowflake_target_names_the_same_schemas(tmp_path: Path) -> None:
    """``dbt parse --target snowflake`` (no account needed): the same rule names the schemas,
    and a prefix that is not an identifier stops dbt itself (run by hand, without the CLI)."""
    project = tmp_path / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    result = _parse_snowflake(project, RETAIL_ENVIRONMENT="dev", RETAIL_SCHEMA_PREFIX="alice")
    assert result.success, result.exception
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    by_type: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "test"):
            by_type.setdefault(node["resource_type"], set()).add(node["schema"])
    assert by_type == {"model": {"alice_silver", "alice_gold"}, "test": {"alice_test_failures"}}
    assert {node["database"] for node in manifest["nodes"].values()} == {"RETAIL"}

    refused = _parse_snowflake(
        project, RETAIL_ENVIRONMENT="dev", RETAIL_SCHEMA_PREFIX="alice; drop schema gold"
    )
    assert not refused.success
    assert "RETAIL_SCHEMA_PREFIX must be a lowercase identifier" in str(refused.exception)
