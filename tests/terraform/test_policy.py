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
PLATFORM_TF = "modules/retail_platform/main.tf"


def test_configuration_keeps_the_role_model() -> None:
    assert violations(TERRAFORM) == []


def test_each_layer_gets_its_own_schema_in_every_environment() -> None:
    assert wiring(TERRAFORM) == []


def test_schema_names_are_the_ones_the_code_uses() -> None:
    """BRONZE is where the loader writes; dbt's custom schemas land under their own names. The
    composition module names them for every environment."""
    project = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())
    models = project["models"]["retail"]
    expected = {
        "bronze": SCHEMA,
        "silver": models["silver"]["+schema"].upper(),
        "gold": models["gold"]["+schema"].upper(),
        "test_failures": project["data_tests"]["retail"]["+schema"].upper(),
    }
    [locals_] = load(TERRAFORM / PLATFORM_TF)["locals"]
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


def entry(name: str) -> str:
    """The start of the line of entry ``name`` of a grants map in roles_and_grants."""
    return f"    {name:<25} = {{ role = "


# The grants as they are written now: an entry of a local map, edited or added (planted text:
# name, file, text, its replacement, what the policy says).
EDITS = {
    "transformer builds in bronze": (
        ROLES_TF,
        entry("transformer_bronze") + '"transformer", schema = var.bronze_schema, '
        'privileges = ["USAGE"] }',
        entry("transformer_bronze") + '"transformer", schema = var.bronze_schema, '
        'privileges = ["USAGE", "CREATE TABLE", "CREATE VIEW"] }',
        "transformer gets ['CREATE TABLE', 'CREATE VIEW'] on bronze (schema)",
    ),
    "reporting on the wrong layer": (
        ROLES_TF,
        entry("reporting_gold") + '"reporting", schema = var.gold_schema,',
        entry("reporting_gold") + '"reporting", schema = var.silver_schema,',
        "reporting gets ['USAGE'] on silver (schema)",
    ),
    "reporting reads bronze": (
        ROLES_TF,
        entry("reporting_gold_tables"),
        entry("reporting_bronze_tables")
        + '"reporting", schema = var.bronze_schema, objects = "TABLES", privileges = ["SELECT"] }\n'
        + entry("reporting_gold_tables"),
        "reporting gets ['SELECT'] on bronze (objects)",
    ),
    "loader reads gold": (
        ROLES_TF,
        entry("reporting_gold_views") + '"reporting"',
        entry("reporting_gold_views") + '"loader"',
        "loader gets ['SELECT'] on gold (objects)",
    ),
    "loader rewrites bronze": (
        ROLES_TF,
        'objects = "TABLES", privileges = ["SELECT", "INSERT"] }',
        'objects = "TABLES", privileges = ["SELECT", "INSERT", "UPDATE"] }',
        "loader gets ['UPDATE'] on bronze (objects)",
    ),
    "ownership in an entry": (
        ROLES_TF,
        'schema = var.gold_schema, privileges = ["USAGE"] }',
        'schema = var.gold_schema, privileges = ["OWNERSHIP"] }',
        "reporting gets ['OWNERSHIP']",
    ),
    "loader deletes events": (
        ROLES_TF,
        '    _POSITIONS = ["DELETE"]',
        '    _POSITIONS = ["DELETE"]\n    ORDER_EVENTS = ["DELETE"]',
        "loader gets ['DELETE'] on append-only ORDER_EVENTS",
    ),
    # fails closed
    "role the checker cannot resolve": (
        ROLES_TF,
        entry("reporting_gold") + '"reporting"',
        entry("reporting_gold") + "var.roles.reporting",
        "cannot be checked",
    ),
    "computed for_each": (
        ROLES_TF,
        "  for_each = local.object_grants\n",
        "  for_each = { for key, grant in local.object_grants : key => grant }\n",
        "cannot be checked",
    ),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_edited_grant_is_caught(config_copy: Path, edit: tuple[str, str, str, str]) -> None:
    path, old, new, message = edit
    plant(config_copy / path, old, new)
    found = violations(config_copy)
    assert any(message in problem for problem in found), found


def test_object_grant_entry_is_caught_on_all_and_future_objects(config_copy: Path) -> None:
    """One entry of ``object_grants`` makes two grants; the policy checks both."""
    _, old, new, message = EDITS["reporting reads bronze"]
    plant(config_copy / ROLES_TF, old, new)
    found = [problem for problem in violations(config_copy) if message in problem]
    assert len(found) == 2, found
    assert any("all_objects[reporting_bronze_tables]" in problem for problem in found), found
    assert any("future_objects[reporting_bronze_tables]" in problem for problem in found), found


def test_swapped_layers_are_caught(config_copy: Path) -> None:
    """Reporting reads whatever the composition module passes as Gold: passing Bronze is
    caught."""
    plant(
        config_copy / PLATFORM_TF,
        'gold_schema          = module.schema["gold"]',
        'gold_schema          = module.schema["bronze"]',
    )
    assert any("gold_schema" in problem for problem in wiring(config_copy))


# env: (its reporting role's line, the loader's role name)
REPORTING_ROLES = {
    "dev": ('    reporting   = "REPORTER_DEV"', "LOADER_DEV"),
    "prod": ('    reporting   = "REPORTER"', "LOADER"),
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_roles_sharing_a_name_are_caught(config_copy: Path, env: str) -> None:
    """Reporting named like the loader would be one role holding the loader's grants."""
    line, loader = REPORTING_ROLES[env]
    plant(config_copy / "environments" / env / "main.tf", line, line.split('"')[0] + f'"{loader}"')
    assert any("two roles share a name" in problem for problem in wiring(config_copy))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_system_role_as_a_pipeline_role_is_caught(config_copy: Path, env: str) -> None:
    line, _ = REPORTING_ROLES[env]
    plant(config_copy / "environments" / env / "main.tf", line, line.split('"')[0] + '"SYSADMIN"')
    assert any("is a system role" in problem for problem in wiring(config_copy))


def test_over_grant_that_terraform_accepts(provider_mirror: Path, config_copy: Path) -> None:
    """The policy catches what validate cannot: a valid configuration that over-grants."""
    path, old, new, message = EDITS["reporting reads bronze"]
    plant(config_copy / path, old, new)
    result = validate(config_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(message in problem for problem in violations(config_copy))
