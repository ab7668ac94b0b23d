"""The roles get no more than the role model allows (policy.py), in the committed configuration,
and a planted over-grant, each kind of it, is caught; so is a database, schema or Bronze table
that Terraform could destroy (no ``prevent_destroy``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from retail_pipeline.warehouse.snowflake import SCHEMA, bookkeeping_tables
from tests.terraform import policy
from tests.terraform.config import REPO, TERRAFORM, plant, validate
from tests.terraform.policy import (
    APPEND_ONLY_EXEMPT,
    load,
    personal_data_in_reporting,
    violations,
    wiring,
)

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


def test_loader_reads_back_only_what_it_may_read() -> None:
    """The tables the Snowflake warehouse selects from or updates (its loader paths) are the
    bookkeeping tables, and the loader is granted SELECT on exactly those."""
    source = (REPO / "src" / "retail_pipeline" / "warehouse" / "snowflake.py").read_text()
    read = set(re.findall(r"(?:from|update) \{self\.bronze\}\.(\w+)", source))
    assert read == {"_meta", "_loads", "_positions"}
    [locals_] = load(TERRAFORM / ROLES_TF)["locals"]
    bookkeeping = locals_["loader_bookkeeping"]
    assert {table.lower() for table in bookkeeping} == read
    assert all("SELECT" in privileges for privileges in bookkeeping.values())
    assert locals_["object_grants"]["loader_bronze_tables"]["privileges"] == ["INSERT"]


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
    "loader reads one bronze data table": (
        grant(
            "loader",
            '"SELECT"',
            '  on_schema_object {\n    object_type = "TABLE"\n'
            '    object_name = "${var.bronze_schema}.\\"PRODUCTS\\""\n  }',
        ),
        "loader reads PRODUCTS, a Bronze data table",
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
    "create schemas as another role": (
        grant(
            "reporting",
            '"CREATE SCHEMA"',
            '  on_account_object {\n    object_type = "DATABASE"\n'
            "    object_name = var.database\n  }",
        ),
        "reporting gets ['CREATE SCHEMA'] on a DATABASE",
    ),
    "transformer creates databases": (
        grant(
            "transformer",
            '"CREATE SCHEMA", "CREATE DATABASE ROLE"',
            '  on_account_object {\n    object_type = "DATABASE"\n'
            "    object_name = var.database\n  }",
        ),
        "transformer gets ['CREATE DATABASE ROLE'] on a DATABASE",
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
        'objects = "TABLES", privileges = ["INSERT"] }',
        'objects = "TABLES", privileges = ["INSERT", "UPDATE"] }',
        "loader gets ['UPDATE'] on bronze (objects)",
    ),
    "loader reads every bronze table": (
        ROLES_TF,
        'objects = "TABLES", privileges = ["INSERT"] }',
        'objects = "TABLES", privileges = ["SELECT", "INSERT"] }',
        "loader gets ['SELECT'] on bronze (objects)",
    ),
    "loader reads customers": (
        ROLES_TF,
        '    _POSITIONS = ["SELECT", "DELETE"]',
        '    _POSITIONS = ["SELECT", "DELETE"]\n    CUSTOMERS  = ["SELECT"]',
        "loader reads CUSTOMERS, a Bronze data table",
    ),
    "loader reads dead letters": (
        ROLES_TF,
        '    _POSITIONS = ["SELECT", "DELETE"]',
        '    _POSITIONS = ["SELECT", "DELETE"]\n    DEAD_LETTER = ["SELECT"]',
        "loader reads DEAD_LETTER, a Bronze data table",
    ),
    "service user without the network policy": (
        ROLES_TF,
        "  network_policy                 = one(snowflake_network_policy.this[*].name)\n",
        "",
        "service user without the network policy",
    ),
    "service user with another network policy": (
        ROLES_TF,
        "  network_policy                 = one(snowflake_network_policy.this[*].name)\n",
        '  network_policy                 = "OPEN"\n',
        "service user without the network policy",
    ),
    "ownership in an entry": (
        ROLES_TF,
        'schema = var.gold_schema, privileges = ["USAGE"] }',
        'schema = var.gold_schema, privileges = ["OWNERSHIP"] }',
        "reporting gets ['OWNERSHIP']",
    ),
    "loader deletes events": (
        ROLES_TF,
        '    _POSITIONS = ["SELECT", "DELETE"]',
        '    _POSITIONS = ["SELECT", "DELETE"]\n    ORDER_EVENTS = ["DELETE"]',
        "loader gets ['DELETE'] on append-only ORDER_EVENTS",
    ),
    "loader deletes and reads events": (
        ROLES_TF,
        '    _POSITIONS = ["SELECT", "DELETE"]',
        '    _POSITIONS = ["SELECT", "DELETE"]\n    ORDER_EVENTS = ["SELECT", "DELETE"]',
        "loader reads ORDER_EVENTS, a Bronze data table",
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


KEEPS_DATA = {
    "database": ("modules/snowflake_database/main.tf", "snowflake_database.this"),
    "schema": ("modules/snowflake_schema/main.tf", "snowflake_schema.this"),
    "bronze table": ("modules/bronze_tables/main.tf", "snowflake_table.this"),
}
LIFECYCLE = "lifecycle {\n    prevent_destroy = true\n  }"


@pytest.mark.parametrize("where", KEEPS_DATA.values(), ids=KEEPS_DATA.keys())
@pytest.mark.parametrize("setting", ["", "lifecycle {\n    prevent_destroy = false\n  }"])
def test_data_without_prevent_destroy_is_caught(
    config_copy: Path, where: tuple[str, str], setting: str
) -> None:
    """Dropping the guard from the database, a schema or a Bronze table, or turning it off."""
    path, address = where
    plant(config_copy / path, LIFECYCLE, setting)
    found = violations(config_copy)
    assert [problem for problem in found if "prevent_destroy" in problem] == [
        f"{config_copy / path}: {address}: holds data but lacks lifecycle prevent_destroy = true"
    ]


def test_a_new_table_without_prevent_destroy_is_caught(config_copy: Path) -> None:
    path = config_copy / "modules/bronze_tables/main.tf"
    path.write_text(
        path.read_text()
        + '\nresource "snowflake_table" "extra" {\n  database = var.database\n'
        + '  schema   = var.schema\n  name     = "EXTRA"\n}\n'
    )
    found = violations(config_copy)
    assert any("snowflake_table.extra: holds data" in problem for problem in found), found


def test_over_grant_that_terraform_accepts(provider_mirror: Path, config_copy: Path) -> None:
    """The policy catches what validate cannot: a valid configuration that over-grants."""
    path, old, new, message = EDITS["reporting reads bronze"]
    plant(config_copy / path, old, new)
    result = validate(config_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(message in problem for problem in violations(config_copy))


def test_reporting_sees_no_personal_data() -> None:
    """Gold (the reporting role's only schema) and the Power BI model on it carry no customer
    name or e-mail."""
    assert personal_data_in_reporting(REPO) == []


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """What personal_data_in_reporting reads, copied: the dbt models and the Power BI model."""
    shutil.copytree(REPO / "dbt" / "models", tmp_path / "dbt" / "models")
    shutil.copytree(REPO / "powerbi", tmp_path / "powerbi")
    return tmp_path


DIM_CUSTOMERS = "dbt/models/gold/dimensions/dim_customers"
STAGING_CUSTOMERS = "dbt/models/silver/staging/stg_bronze__customers.sql"
# name: (file, text, planted text, what the check says)
PERSONAL_DATA = {
    "a Gold model selects the name": (
        f"{DIM_CUSTOMERS}.sql",
        "    customer_id,\n    country_code,",
        "    customer_id,\n    customer_name,\n    country_code,",
        "Gold model reads personal column customer_name",
    ),
    "a Gold model renames the e-mail": (
        f"{DIM_CUSTOMERS}.sql",
        "    customer_id,\n    country_code,",
        "    customer_id,\n    email as contact,\n    country_code,",
        "Gold model reads personal column email",
    ),
    "Silver renames it first": (
        STAGING_CUSTOMERS,
        "    email,\n",
        "    email as contact_address,\n",
        "",  # planted with the next edit, below
    ),
    "a Gold contract lists the e-mail": (
        "dbt/models/gold/dimensions/_dimensions__models.yml",
        "      - name: country_code\n",
        "      - name: email\n        data_type: varchar\n      - name: country_code\n",
        "Gold documents personal column email",
    ),
    "the Power BI model has the name": (
        "powerbi/RetailPipeline.SemanticModel/definition/tables/dim_customers.tmdl",
        "\tcolumn customer_id\n",
        "\tcolumn customer_name\n\t\tdataType: string\n\n\tcolumn customer_id\n",
        "Power BI model has personal column customer_name",
    ),
}


@pytest.mark.parametrize(
    "planted",
    [value for key, value in PERSONAL_DATA.items() if value[3]],
    ids=[key for key, value in PERSONAL_DATA.items() if value[3]],
)
def test_planted_personal_data_is_caught(repo_copy: Path, planted: tuple[str, ...]) -> None:
    path, old, new, message = planted
    assert personal_data_in_reporting(repo_copy) == []
    plant(repo_copy / path, old, new)
    found = personal_data_in_reporting(repo_copy)
    assert any(message in problem for problem in found), found


def test_personal_data_renamed_in_silver_is_caught(repo_copy: Path) -> None:
    """The column keeps being personal under the name Silver gives it."""
    path, old, new, _ = PERSONAL_DATA["Silver renames it first"]
    plant(repo_copy / path, old, new)
    plant(
        repo_copy / f"{DIM_CUSTOMERS}.sql",
        "    customer_id,\n    country_code,",
        "    customer_id,\n    contact_address,\n    country_code,",
    )
    found = personal_data_in_reporting(repo_copy)
    assert any("personal column contact_address" in problem for problem in found), found


def test_an_unclassified_customer_field_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer field nobody has said is not personal (here: country) stops the check."""
    fields = policy.NOT_PERSONAL_FIELDS["customers"] - {"country"}
    monkeypatch.setitem(policy.NOT_PERSONAL_FIELDS, "customers", fields)
    found = personal_data_in_reporting(REPO)
    assert found and "customers.country is not classified" in found[0], found
