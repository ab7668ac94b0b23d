"""The dbt DAG's dbt: the one place its task layout and its dbt configuration come from.

The layout is chosen per target (:func:`dag_layout`, ``RETAIL_DBT_DAG_TASKS``). On DuckDB one
file serialises every model, so the DAG has one task, ``dbt_build`` (:func:`build_project`): the
project's own in-process build, ``run_transform``, as ``retail-pipeline transform`` runs it,
with a task log line per dbt node and one error naming the failing models and tests; its
outlets are the Silver and Gold models' Assets (:func:`model_assets`, from the manifest). On
Snowflake, whose warehouse builds models in parallel (and on DuckDB with
``RETAIL_DBT_DAG_TASKS=models``), Cosmos renders the project instead.

Cosmos renders one Airflow task per model, ``dbt build`` of the model and its tests
(``TestBehavior.BUILD``), from dbt's ``manifest.json`` (``LoadMode.DBT_MANIFEST``: no dbt
call while Airflow parses the DAG file) and runs them in the worker's process with dbt's
in-process runner (``ExecutionMode.LOCAL`` + ``InvocationMode.DBT_RUNNER``). A task per model
is a partial build, so the run is planned once, as ``transform`` plans a whole build: the
short-circuit :func:`plan_models_build` skips every model task when nothing is new, else its
plan says what the tasks' tests read (:func:`scope_model_task`, Cosmos's interceptor), and
:func:`record_models_build`, after every task passed, records the build's input signature.
Each model task emits its model as an Asset (``emit_datasets``, found by OpenLineage's dbt
processor) and, by the callback :func:`emit_lineage`, its OpenLineage run to the file or
endpoint the loads use, with datasets named as theirs (docs/operations.md, "Lineage"). The
profile on Snowflake is a Cosmos profile mapping of the Airflow connection ``retail_snowflake``
(:func:`profile_config`) when it is defined; else, and on DuckDB, it is the project's own
``dbt/profiles.yml``, which reads the same settings the CLI does: the target
(``RETAIL_TARGET``), the DuckDB file (``RETAIL_WAREHOUSE``, handed over as an absolute path) or
the Snowflake account (``SNOWFLAKE_*``).

The manifest is generated, never committed: :func:`ensure_manifest` runs ``dbt parse`` into
``<dbt project>/target/cosmos/<target>-<digest>/`` when no manifest exists for the project's
current sources and target, so an edited model gets a fresh manifest the next time the DAG file
is parsed (about 5 s, once), and an unchanged project costs a hash of its files (milliseconds).
``retail-pipeline airflow up`` makes it before the scheduler starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.orchestration.connections import (
    CONNECTION_IDS,
    Resolved,
    connections,
    resolve,
)
from retail_pipeline.settings import environment, schema_prefix, settings
from retail_pipeline.warehouse import resolve_target

if TYPE_CHECKING:
    from retail_pipeline import lineage
    from retail_pipeline.transform.runner import NodeFailure, NodeProgress

log = logging.getLogger(__name__)
Layout = Literal["build", "models"]

PROFILE_NAME = "retail"
PROJECT_NAME = "retail"

# Cosmos reports usage to Astronomer unless told not to; a deployment may still set it to True.
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")


def project_dir() -> Path:
    """The dbt project (``RETAIL_DBT_PROJECT_DIR``, else ``dbt/`` of the checkout)."""
    from retail_pipeline.transform.runner import project_dir as runner_project_dir

    return runner_project_dir()


def dbt_env(target: str | None = None) -> dict[str, str]:
    """The variables the profile reads that must not depend on dbt's working directory.

    Cosmos runs dbt in a temporary copy of the project, so a relative ``RETAIL_WAREHOUSE``
    (which the profile would read relative to the project) is made absolute here; the
    Snowflake target reads ``SNOWFLAKE_*`` from the worker's environment as it is. The
    environment and its schema prefix are the resolved ones, as ``transform`` hands them to
    dbt (a ``dev`` environment's default prefix, the OS user, included), so the DAG builds the
    schemas that ``answers`` and the DAG's own checks read (``settings.layer_schema``).
    """
    config = settings()
    env = {"RETAIL_ENVIRONMENT": config.environment, "RETAIL_SCHEMA_PREFIX": schema_prefix(config)}
    if resolve_target(target) == "duckdb":
        env["RETAIL_WAREHOUSE"] = str(config.warehouse.resolve())
    return env


def project_digest(project: Path, target: str) -> str:
    """A digest of the project's sources (models, macros, tests, config) and the target: the
    one ``transform`` signs its builds with."""
    from retail_pipeline.transform.runner import project_digest as sources_digest

    return sources_digest(project, target)


def _manifest_key(target: str) -> str:
    """What a manifest depends on beyond the sources: the target, and the environment and
    prefix that name its schemas."""
    env = dbt_env(target)
    return f"{target}\0{env['RETAIL_ENVIRONMENT']}\0{env['RETAIL_SCHEMA_PREFIX']}"


def manifest_path(target: str | None = None, project: Path | None = None) -> Path:
    """Where the manifest of the project's current sources for ``target`` is (or will be)."""
    project = project or project_dir()
    chosen = resolve_target(target)
    return (
        project
        / "target"
        / "cosmos"
        / f"{chosen}-{project_digest(project, _manifest_key(chosen))}"
        / ("manifest.json")
    )


def ensure_manifest(target: str | None = None) -> Path:
    """The manifest for the current project and target, made with ``dbt parse`` if missing.

    Written to a temporary folder and renamed into place, so a DAG file parsed twice at once
    (scheduler and worker) never reads half a manifest; older manifests of the target are
    removed.
    """
    project = project_dir()
    chosen = resolve_target(target)
    path = manifest_path(chosen, project)
    if path.is_file():
        return path
    cache = path.parent.parent
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.parent.name}-", dir=cache))
    try:
        _parse(project, chosen, scratch)
        try:
            scratch.rename(path.parent)
        except OSError:  # another process made it first
            if not path.is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for stale in cache.glob(f"{chosen}-*"):
        if stale != path.parent:
            shutil.rmtree(stale, ignore_errors=True)
    return path


def _parse(project: Path, target: str, out: Path) -> None:
    from dbt.cli.main import dbtRunner

    from retail_pipeline.transform.runner import _release_duckdb

    args = ["parse", "--project-dir", str(project), "--profiles-dir", str(project)]
    args += ["--target", target, "--target-path", str(out), "--log-path", str(out)]
    args += ["--no-partial-parse", "--log-level", "none"]
    with environment(**dbt_env(target)):
        try:
            outcome = dbtRunner().invoke(args)
        finally:
            _release_duckdb()
    if not outcome.success or not (out / "manifest.json").is_file():
        raise PipelineError(one_line(f"dbt parse of {project} failed: {outcome.exception}"))


def warehouse_env(target: str | None = None) -> dict[str, str]:
    """What names the warehouse in lineage (no credential): the DuckDB file, or the Snowflake
    account and database, as the loads' ``Warehouse.dbt_env()`` gives them."""
    chosen = resolve_target(target)
    if chosen == "duckdb":
        return dbt_env(chosen)
    snowflake = settings().snowflake
    return {"SNOWFLAKE_ACCOUNT": snowflake.account, "SNOWFLAKE_DATABASE": snowflake.database}


def task_run(ti: Any) -> lineage.ParentRun | None:
    """The OpenLineage run of an Airflow task instance (job ``<dag>.<task>``, a run id stable
    per DAG run and try), the parent of the dbt model runs it emits; None outside a task."""
    from retail_pipeline import lineage

    if ti is None:
        return None
    key = f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'try_number', 0)}"
    return lineage.ParentRun(f"{ti.dag_id}.{ti.task_id}", str(uuid.uuid5(uuid.NAMESPACE_URL, key)))


def emit_lineage(project: str, context: Any = None, **_: Any) -> None:
    """Cosmos's callback after each dbt task: one OpenLineage run per model the task built,
    from the artifacts of its copy of the project (``target/manifest.json`` and
    ``run_results.json``), datasets named as the loads name Bronze, parent the Airflow task's
    run. Called before Cosmos raises for a failed node, so a failed model is a FAIL; never
    raises."""
    from retail_pipeline import lineage

    parent = task_run((context or {}).get("ti"))
    target = resolve_target(None)
    try:
        # on Snowflake the account of ``retail_snowflake`` (if defined) names the tables
        with connections():
            tables = lineage.warehouse_tables(target, warehouse_env(target))
    except PipelineError:  # the dbt task itself says what is wrong with the connection
        tables = lineage.warehouse_tables(target, warehouse_env(target))
    lineage.record_dbt_artifacts(Path(project) / "target", tables, parent)


def snowflake_profile_args(resolved: Resolved) -> dict[str, Any]:
    """What dbt's profile takes from the Snowflake settings a connection gives, beyond Cosmos's
    mapping of it: the objects (with the settings' defaults where the connection has none), the
    emulator's protocol, threads and connection retries, as ``dbt/profiles.yml`` sets them. No
    secret: Cosmos hands those to dbt as environment variables."""
    with environment(**resolved.variables):
        config = settings().snowflake
    args: dict[str, Any] = {
        "role": config.role,
        "warehouse": config.warehouse,
        "database": config.database,
        "schema": config.schema_name,
        "threads": config.threads,
        "connect_retries": config.connect_retries,
        "connect_timeout": config.connect_timeout,
    }
    if config.host:
        args |= {"host": config.host, "protocol": config.protocol}
        if config.port:
            args["port"] = config.port
    return args


def profile_config(target: str, project: Path, snowflake_conn_id: str | None = None) -> Any:
    """Cosmos's ``ProfileConfig``: on Snowflake, a profile mapping of the Airflow connection
    (``retail_snowflake``, or ``snowflake_conn_id``) when it is defined, so dbt gets the
    credentials the loaders get; else (DuckDB, or no connection) the project's own
    ``profiles.yml``, which reads the environment as the CLI does."""
    from cosmos import ProfileConfig

    if target == "snowflake":
        from cosmos.profiles import get_automatic_profile_mapping

        conn_id = snowflake_conn_id or CONNECTION_IDS["snowflake"]
        resolved = resolve("snowflake", conn_id)
        if resolved is not None:
            try:
                mapping = get_automatic_profile_mapping(conn_id, snowflake_profile_args(resolved))
            except ValueError as exc:
                raise PipelineError(one_line(f"Airflow connection {conn_id}: {exc}")) from None
            return ProfileConfig(
                profile_name=PROFILE_NAME, target_name=target, profile_mapping=mapping
            )
    return ProfileConfig(
        profile_name=PROFILE_NAME,
        target_name=target,
        profiles_yml_filepath=project / "profiles.yml",
    )


def task_group_args(
    target: str | None = None, *, snowflake_conn_id: str | None = None
) -> dict[str, Any]:
    """Keyword arguments of Cosmos's ``DbtTaskGroup`` for the project on ``target``."""
    from cosmos import ExecutionConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    chosen = resolve_target(target)
    project = project_dir()
    env = dbt_env(chosen)
    return {
        "project_config": ProjectConfig(
            dbt_project_path=project,
            manifest_path=ensure_manifest(chosen),
            project_name=PROJECT_NAME,
            install_dbt_deps=False,  # the project has no packages
            env_vars=env,
        ),
        "profile_config": profile_config(chosen, project, snowflake_conn_id),
        "execution_config": ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER
        ),
        "render_config": RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            # a test of two models (relationships) runs once both are built, as a task of its own
            should_detach_multiple_parents_tests=True,
            # an Asset per model built (outlets through an AssetAlias), found by OpenLineage's
            # dbt processor (openlineage-integration-common) from the run's artifacts
            emit_datasets=True,
        ),
        # our OpenLineage runs per model (docs/operations.md, "Lineage"), to the same file or
        # OPENLINEAGE_URL as the loads', from the artifacts each task leaves; and what the
        # run's plan says each model task's tests read (:func:`scope_model_task`)
        "operator_args": {"callback": emit_lineage, "interceptors": [scope_model_task]},
    }


PLAN_TASK = "dbt_plan"
"""The Cosmos layout's first task (:func:`plan_models_build`), whose XCom the model tasks read."""

INCREMENT_EXCLUDE = ("resource_type:unit_test", "tag:whole_table")
"""What an incremental build leaves to full builds and ``all_tests`` runs, as ``transform``."""


def plan_models_build(*, all_tests: bool = False, target: str | None = None) -> dict[str, Any]:
    """The Cosmos layout's first task, a short-circuit: the plan of this run's whole build, as
    ``transform`` decides it (:func:`~retail_pipeline.transform.runner.whole_build_env`), or
    ``{}`` (falsy: every model task is skipped) when nothing is new since the last successful
    build, unless ``all_tests``. The plan: the environment the model tasks' tests read
    (``increment`` scope on an incremental build, ``all`` on a first build or with
    ``all_tests``), what they exclude, and the input signature :func:`record_models_build`
    writes once every model task has succeeded (a model task never writes it: each is a
    partial build)."""
    from retail_pipeline.transform.runner import whole_build_env

    env = whole_build_env(target=target, tests="all" if all_tests else "increment")
    if env is None:
        log.info("nothing new since the last build (same project, settings and Bronze): skipped")
        return {}
    signature = env.pop("RETAIL_DBT_INPUT_SIGNATURE")
    # one stamp for every model task of the run (each is its own dbt invocation): a model's
    # rows carry it, and its tests read the rows stamped with it (dbt/macros/incremental.sql)
    env["RETAIL_DBT_LOAD_STAMP"] = datetime.now(UTC).isoformat()
    increment = env["RETAIL_DBT_TESTS_SCOPE"] == "increment"
    log.info("build planned: tests read %s", "the increment" if increment else "every row")
    return {
        "signature": signature,
        "env": env,
        "exclude": list(INCREMENT_EXCLUDE) if increment else [],
    }


def scope_model_task(context: Any, operator: Any) -> None:
    """Cosmos's interceptor, before each model (or detached test) task runs dbt: the run's plan
    (:data:`PLAN_TASK`'s XCom) decides what its tests read and exclude. Without a plan (the
    plan task marked successful by hand) the task tests every row, as a plain ``dbt build``.

    Every task gets the run's one ``RETAIL_DBT_LOAD_STAMP``: staging stamps the rows it writes
    with it and the models downstream carry it, so a test of an incremental model reads the
    rows this run wrote, in whichever task (with its own invocation's start as the stamp, a
    model downstream of staging would carry the staging task's earlier stamp and its tests
    would read nothing)."""
    ti = (context or {}).get("ti")
    plan = ti.xcom_pull(task_ids=PLAN_TASK) if ti is not None else None
    if not plan:
        return
    operator.env = {**(operator.env or {}), **plan["env"]}
    if plan["exclude"]:
        current = operator.exclude or []
        items = current.split() if isinstance(current, str) else list(current)
        operator.exclude = " ".join([*items, *plan["exclude"]])


def record_models_build(plan: dict[str, Any], *, target: str | None = None) -> dict[str, Any]:
    """The Cosmos layout's last task, run only when every model task of the run succeeded:
    ``gold.build_info`` built again with the plan's input signature (and ``gold.build_log``
    gets its ``run`` row), so that the next run with nothing new is skipped, as ``transform``
    skips. A run with a failed model task never gets here and records no signature."""
    from retail_pipeline.transform import run_dbt

    with environment(RETAIL_DBT_INPUT_SIGNATURE=plan["signature"]):
        outcome = run_dbt(["run", "--select", "build_info"], target=target)
    if not outcome.success:
        results = getattr(outcome.result, "results", None) or []
        why = "; ".join(str(r.message) for r in results if str(r.status) in {"error", "fail"})
        raise PipelineError(one_line(f"gold.build_info not recorded: {why or 'dbt run failed'}"))
    return {"signature": plan["signature"]}


def dag_layout(target: str | None = None) -> Layout:
    """The dbt DAG's task layout on ``target``: ``RETAIL_DBT_DAG_TASKS``, where ``auto`` is one
    ``build`` task on DuckDB (one file serialises the models: a task per model only adds a
    process, a copy of the project and a dbt start to each, 21x the build under the scheduler)
    and Cosmos's ``models`` on Snowflake (whose warehouse runs independent models in
    parallel)."""
    chosen = settings().dbt_dag_tasks
    if chosen != "auto":
        return chosen
    return "build" if resolve_target(target) == "duckdb" else "models"


def _namespace(target: str, snowflake_conn_id: str | None) -> str:
    """The OpenLineage namespace of the warehouse, as Cosmos's dbt processor names it."""
    if target == "duckdb":
        return f"duckdb://{settings().warehouse.resolve()}"
    resolved = resolve("snowflake", snowflake_conn_id or CONNECTION_IDS["snowflake"])
    with environment(**(resolved.variables if resolved else {})):
        account = settings().snowflake.account
    try:
        from openlineage.common.provider.snowflake import (  # type: ignore[import-untyped]
            fix_account_name,
        )

        account = str(fix_account_name(account))
    except ImportError:  # pragma: no cover - comes with Cosmos
        pass
    return f"snowflake://{account}"


def model_asset_uris(
    target: str | None = None, *, snowflake_conn_id: str | None = None
) -> list[str]:
    """The URIs of the Assets of every Silver and Gold relation the project builds, named as
    Cosmos's ``emit_datasets`` names them (OpenLineage's namespace, then database, schema and
    table as path segments), so an Asset-scheduled DAG waits on the same URI whichever layout
    built it. From the manifest; on DuckDB the database is the file's (dbt-duckdb names it
    after the file, which the manifest's digest does not cover)."""
    chosen = resolve_target(target)
    manifest = json.loads(ensure_manifest(chosen).read_bytes())
    namespace = _namespace(chosen, snowflake_conn_id)
    uris = []
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") != "model":
            continue
        if (node.get("config") or {}).get("materialized") == "ephemeral":
            continue  # no relation: nothing to announce
        database = settings().warehouse.stem if chosen == "duckdb" else node.get("database")
        name = f"{database}.{node['schema']}.{node.get('alias') or node['name']}"
        uris.append(f"{namespace}/" + urllib.parse.quote(name).replace(".", "/"))
    return sorted(uris)


def model_assets(target: str | None = None, *, snowflake_conn_id: str | None = None) -> list[Any]:
    """The ``dbt_build`` task's outlets: an Airflow ``Asset`` per :func:`model_asset_uris`."""
    from airflow.sdk import Asset

    return [Asset(uri) for uri in model_asset_uris(target, snowflake_conn_id=snowflake_conn_id)]


class DbtBuildFailed(PipelineError):
    """The build ran and dbt nodes failed: one line naming each (``<type> <name> (<status>):
    <dbt's message>``, a failing test with its ``select`` of the failing rows), the first
    failing node and test kept for the alert (:func:`~.alerts.alert_payload`)."""

    def __init__(
        self, message: str, failing_node: str | None = None, failing_test: str | None = None
    ):
        super().__init__(message)
        self.failing_node = failing_node
        self.failing_test = failing_test


def node_name(unique_id: str) -> tuple[str, str]:
    """A dbt node's type and name from its unique id (``test.retail.<name>.<hash>``,
    ``unit_test.retail.<model>.<name>``, ``model.retail.<name>``)."""
    parts = unique_id.split(".")
    kind = parts[0]
    if kind == "unit_test" and len(parts) > 3:
        return kind, parts[3]
    return kind, parts[2] if len(parts) > 2 else unique_id


def build_failure(where: str, failures: Sequence[NodeFailure]) -> DbtBuildFailed:
    """The one-line error of a build whose ``failures`` failed, in dbt's order."""
    named = [(*node_name(f.unique_id), f) for f in failures]
    parts = [f"{kind} {name} ({f.status}): {f.message}" for kind, name, f in named]
    first_test = next(
        (name for kind, name, f in named if kind in {"test", "unit_test"} and f.status == "fail"),
        None,
    )
    message = f"dbt build failed on {where}: {len(named)} failing: " + " | ".join(parts)
    return DbtBuildFailed(one_line(message), named[0][1] if named else None, first_test)


def _log_node(node: NodeProgress) -> None:
    log.info(
        "dbt %d/%d %s %s: %s in %.2fs",
        node.index,
        node.total,
        node.resource_type,
        one_line(node.name, 256),
        node.status,
        node.seconds,
    )


def dag_params() -> dict[str, Any]:
    """The dbt DAG's params: ``all_tests`` (default false) makes a run test every row, with
    unit tests and whole-table reconciliations (trigger one daily); an asset-triggered run
    tests the rows its build wrote (docs/transform.md, "What an incremental build tests")."""
    from airflow.sdk import Param

    return {
        "all_tests": Param(
            False,
            type="boolean",
            description="test every row, with unit tests and reconciliations (run it daily);"
            " an asset-triggered build tests the rows it wrote",
        )
    }


def build_project(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    all_tests: bool = False,
    ti: Any = None,
) -> dict[str, Any]:
    """The ``dbt_build`` task: ``dbt build`` of the whole project in this process, as
    ``retail-pipeline transform`` runs it (incremental models take what is new; OpenLineage
    runs per model; ``gold.build_log`` gets its row), one task log line per dbt node (type,
    name, status, seconds). Returns the summary's counts (the task's XCom); failing nodes raise
    one :class:`DbtBuildFailed` naming them all, so the task fails and its alert names the
    first failing test. Its data tests read the rows the build wrote, unless ``all_tests`` (the
    DAG param ``all_tests``, for a daily run): ``transform --all-tests``. With the task
    instance ``ti``, the models' OpenLineage runs name the task's run as their parent."""
    from retail_pipeline.transform import run_transform

    tests = "all" if all_tests else "increment"
    summary = run_transform(
        warehouse, progress=_log_node, target=target, tests=tests, lineage_parent=task_run(ti)
    )
    log.info("%s", one_line(summary.line()))
    for failure in summary.failures:
        kind, name = node_name(failure.unique_id)
        log.error("dbt %s %s %s: %s", kind, name, failure.status, one_line(failure.message))
    if not summary.success:
        raise build_failure(summary.warehouse, summary.failures)
    return {"seconds": round(summary.seconds, 3), "counts": summary.counts}
