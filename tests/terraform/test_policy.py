"""The roles get no more than the role model allows (policy.py), in the committed configuration,
and a planted over-grant, each kind of it, is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from retail_pipeline.warehouse.snowflake import SCHEMA, bookkeeping_tables
from tests.terraform.config import REPO, TERRAFORM, plant, validate
from tests.terraform.policy import APPEND_ONLY_EXEMPT, load, violations, wiring

ENVIRONMENTS = ("dev", "prod")
ROLES_TF = "modules/roles_and_grants/main.tf"


def test_configuration_keeps_the_role_model() -> None:
    assert violations(TERRAFORM) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_feeds_each_layer_its_own_schema(env: str) -> None:
    assert wiring(TERRAFORM / "environments" / env) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_schema_names_are_the_ones_the_code_uses(env: str) -> None:
    """BRONZE is where the loader writes; dbt's custom schemas land under their own names."""
    project = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())
    models = project["models"]["retail"]
    expected = {
        "bronze": SCHEMA,
        "silver": models["silver"]["+schema"].upper(),
        "gold": models["gold"]["+schema"].upper(),
        "test_failures": project["data_tests"]["retail"]["+schema"].upper(),
    }
    [locals_] = load(TERRAFORM / "environments" / env / "main.tf")["locals"]
    assert {layer: schema["name"] for layer, schema in locals_["schemas"].items()} == expected


def test_loader_changes_only_bookkeeping_tables() -> None:
    assert {table.upper() for table in bookkeeping_tables()} >= APPEND_ONLY_EXEMPT
    assert "DEAD_LETTER" not in APPEND_ONLY_EXEMPT


def grant(role: str, privileges: str, scope: str) -> str:
    return f"""
resource "snowflake_grant_privileges_to_account_role" "planted" {{
  account_role_name = snowflake_account_role.this["{role}"].name
  privileges        = [{privileges}]
{scope}
}}
"""


def objects(kind: str, where: str, plural: str = "TABLES") -> str:
    """An ``on_schema_object`` block, ``terraform fmt`` clean; ``where`` is ``in_schema = ...``."""
    key, value = where.split(" = ")
    return f"""
  on_schema_object {{
    {kind} {{
      object_type_plural = "{plural}"
      {key:<18} = {value}
    }}
  }}"""


ON_BRONZE_SCHEMA = """
  on_schema {
    schema_name = var.bronze_schema
  }"""

OVER_GRANTS = {
    "reporting reads bronze": (
        grant("reporting", '"SELECT"', objects("all", "in_schema = var.bronze_schema")),
        "reporting gets ['SELECT'] on bronze",
    ),
    "reporting reads silver views": (
        grant("reporting", '"SELECT"', objects("future", "in_schema = var.silver_schema", "VIEWS")),
        "reporting gets ['SELECT'] on silver",
    ),
    "loader writes gold": (
        grant("loader", '"INSERT"', objects("future", "in_schema = var.gold_schema")),
        "loader gets ['INSERT'] on gold",
    ),
    "loader creates tables in bronze": (
        grant("loader", '"USAGE", "CREATE TABLE"', ON_BRONZE_SCHEMA),
        "loader gets ['CREATE TABLE'] on bronze (schema)",
    ),
    "loader rewrites bronze": (
        grant("loader", '"UPDATE"', objects("all", "in_schema = var.bronze_schema")),
        "loader gets ['UPDATE'] on bronze (objects)",
    ),
    "transformer writes bronze": (
        grant("transformer", '"INSERT"', objects("all", "in_schema = var.bronze_schema")),
        "transformer gets ['INSERT'] on bronze",
    ),
    "ownership": (
        grant("transformer", '"OWNERSHIP"', ON_BRONZE_SCHEMA),
        "transformer gets ['OWNERSHIP']",
    ),
    "all privileges": (
        grant("reporting", '"ALL PRIVILEGES"', ON_BRONZE_SCHEMA),
        "reporting gets ['ALL PRIVILEGES']",
    ),
    "all_privileges flag": (
        grant("reporting", "", ON_BRONZE_SCHEMA).replace(
            "privileges        = []", "all_privileges    = true"
        ),
        "reporting gets all_privileges",
    ),
    "with grant option": (
        grant(
            "reporting",
            '"USAGE"',
            "  with_grant_option = true\n  on_schema {\n    schema_name = var.gold_schema\n  }",
        ),
        "reporting gets with_grant_option",
    ),
    "database-wide": (
        grant("reporting", '"SELECT"', objects("future", "in_database = var.database")),
        "reporting gets ['SELECT'] on future objects of a database",
    ),
    "account privilege": (
        grant("loader", '"CREATE DATABASE"', "  on_account = true"),
        "loader gets on_account",
    ),
    "operate a warehouse": (
        grant(
            "reporting",
            '"USAGE", "MODIFY"',
            '  on_account_object {\n    object_type = "WAREHOUSE"\n'
            "    object_name = var.warehouses.reporting\n  }",
        ),
        "reporting gets ['MODIFY'] on a WAREHOUSE",
    ),
    "role outside the model": (
        grant("loader", '"SELECT"', objects("all", "in_schema = var.bronze_schema")).replace(
            'snowflake_account_role.this["loader"].name', '"PUBLIC"'
        ),
        "is not one of the pipeline roles",
    ),
    "role inherits another": (
        """
resource "snowflake_grant_account_role" "planted" {
  role_name        = snowflake_account_role.this["loader"].name
  parent_role_name = snowflake_account_role.this["reporting"].name
}
""",
        "loader is granted to role",
    ),
    "role granted to another user": (
        """
resource "snowflake_grant_account_role" "planted" {
  role_name = snowflake_account_role.this["loader"].name
  user_name = snowflake_service_user.this["reporting"].name
}
""",
        "loader is granted to user",
    ),
    "ownership transfer": (
        """
resource "snowflake_grant_ownership" "planted" {
  account_role_name = snowflake_account_role.this["reporting"].name
  on {
    object_type = "SCHEMA"
    object_name = var.bronze_schema
  }
}
""",
        "snowflake_grant_ownership is outside the role model",
    ),
    "grant in SQL": (
        """
resource "snowflake_execute" "planted" {
  execute = "GRANT SELECT ON ALL TABLES IN SCHEMA ${var.bronze_schema} TO ROLE REPORTER"
  revert  = "SELECT 1"
}
""",
        "runs GRANT in SQL",
    ),
}


@pytest.mark.parametrize("planted", OVER_GRANTS.values(), ids=OVER_GRANTS.keys())
def test_planted_over_grant_is_caught(config_copy: Path, planted: tuple[str, str]) -> None:
    resource, message = planted
    path = config_copy / ROLES_TF
    path.write_text(path.read_text() + resource)
    found = violations(config_copy)
    assert any(message in problem for problem in found), found


EDITS = {
    "transformer builds in bronze": (
        ROLES_TF,
        "    silver        = var.silver_schema",
        "    bronze        = var.bronze_schema\n    silver        = var.silver_schema",
        "transformer gets ['CREATE TABLE', 'CREATE VIEW'] on bronze (schema)",
    ),
    "loader deletes events": (
        ROLES_TF,
        '    _POSITIONS = ["DELETE"]',
        '    _POSITIONS = ["DELETE"]\n    ORDER_EVENTS = ["DELETE"]',
        "loader gets ['DELETE'] on append-only ORDER_EVENTS",
    ),
    "reporting on the wrong layer": (
        ROLES_TF,
        "    schema_name = var.gold_schema",
        "    schema_name = var.silver_schema",
        "reporting gets ['USAGE'] on silver (schema)",
    ),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_edited_grant_is_caught(config_copy: Path, edit: tuple[str, str, str, str]) -> None:
    path, old, new, message = edit
    plant(config_copy / path, old, new)
    found = violations(config_copy)
    assert any(message in problem for problem in found), found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_swapped_layers_in_an_environment_are_caught(config_copy: Path, env: str) -> None:
    """Reporting reads whatever the environment passes as Gold: passing Bronze is caught."""
    where = config_copy / "environments" / env
    plant(
        where / "main.tf",
        'gold_schema          = module.schema["gold"]',
        'gold_schema          = module.schema["bronze"]',
    )
    assert any("gold_schema" in problem for problem in wiring(where))


def test_over_grant_that_terraform_accepts(provider_mirror: Path, config_copy: Path) -> None:
    """The policy catches what validate cannot: a valid configuration that over-grants."""
    resource, message = OVER_GRANTS["reporting reads bronze"]
    path = config_copy / ROLES_TF
    path.write_text(path.read_text() + resource)
    result = validate(config_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(message in problem for problem in violations(config_copy))
