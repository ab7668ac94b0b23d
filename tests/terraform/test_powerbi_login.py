"""Power BI can log in: the reporting role (REPORTER) holds exactly what a report needs, people
get it through ``reporter_grantees``, and the Entra ID SSO integration exists only with a tenant
and never lets a session take an administrator role (docs/powerbi.md#logging-in-from-power-bi).

The mock-plan runs of ``environments/*/tests/plan.tftest.hcl`` check the integration's values and
the variables' validation (``make tf-validate``); the tests here plant a mistake in each and
require the run to fail, so a passing run means something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.terraform.config import TERRAFORM, plant, validate
from tests.terraform.policy import load, role_grants, violations

ROLES_TF = "modules/roles_and_grants/main.tf"
SSO_TF = "modules/powerbi_sso/main.tf"

REPORT_NEEDS = {
    ("USAGE", "DATABASE", "${var.database}"),
    ("USAGE", "WAREHOUSE", "${var.warehouses.reporting}"),
    ("USAGE", "schema", "gold"),
    ("SELECT", "all TABLES", "gold"),
    ("SELECT", "future TABLES", "gold"),
    ("SELECT", "all VIEWS", "gold"),
    ("SELECT", "future VIEWS", "gold"),
}
"""The reporting role's grants, all of them: it reads Gold's tables and views (current and future:
dbt recreates them) on its own warehouse, and nothing in Bronze or Silver."""


def test_reporting_role_holds_exactly_what_a_report_needs() -> None:
    assert role_grants(TERRAFORM, "reporting") == REPORT_NEEDS


def blocks(path: str, kind: str) -> dict[str, dict[str, Any]]:
    """The ``kind`` blocks (``resource``, ``variable``, ``module``) of a file, by name; for
    resources ``kind`` is ``resource.<type>``."""
    top, _, resource_type = kind.partition(".")
    found: dict[str, dict[str, Any]] = {}
    for block in load(TERRAFORM / path).get(top, []):
        found.update(block.get(resource_type, {}) if resource_type else block)
    return found


def test_reporting_role_goes_to_the_sysadmin_hierarchy_and_to_no_one_by_default() -> None:
    """Like every pipeline role it is granted to SYSADMIN (parent_role's default, which
    retail_platform leaves alone); reporter_grantees, empty by default, adds people."""
    parent = blocks(ROLES_TF, "resource.snowflake_grant_account_role")["parent"]
    assert (parent["for_each"], parent["parent_role_name"]) == (
        "${local.roles}",
        "${var.parent_role}",
    )
    variables = blocks("modules/roles_and_grants/variables.tf", "variable")
    assert variables["parent_role"]["default"] == "SYSADMIN"
    assert variables["reporter_grantees"]["default"] == {}
    call = blocks("modules/retail_platform/main.tf", "module")["roles_and_grants"]
    assert "parent_role" not in call
    for env in ("dev", "prod"):
        default = blocks(f"environments/{env}/variables.tf", "variable")["reporter_grantees"]
        assert default["default"] == {}


def test_the_sso_integration_holds_sessions_to_its_roles() -> None:
    """Created only with a tenant (count), for the Power BI audience, the upn claim mapped to
    LOGIN_NAME, sessions held to the allowed roles."""
    sso = blocks(SSO_TF, "resource.snowflake_external_oauth_integration")["this"]
    assert sso["count"] == "${var.entra_tenant_id == null ? 0 : 1}"
    assert sso["external_oauth_type"] == "AZURE"
    assert sso["external_oauth_issuer"] == "https://sts.windows.net/${var.entra_tenant_id}/"
    assert sso["external_oauth_token_user_mapping_claim"] == ["upn"]
    assert sso["external_oauth_snowflake_user_mapping_attribute"] == "LOGIN_NAME"
    assert sso["external_oauth_allowed_roles_list"] == "${var.allowed_roles}"
    assert sso["external_oauth_any_role_mode"] == "DISABLE"


def entry(name: str, privileges: str, scope: str = "schema = var.gold_schema") -> str:
    """A line of roles_and_grants' grants maps for the reporting role."""
    return f'    {name:<25} = {{ role = "reporting", {scope}, {privileges} }}\n'


OBJECT_ENTRY = '    reporting_gold_views      = { role = "reporting"'
SCHEMA_ENTRY = '    reporting_gold            = { role = "reporting"'
# name: (file, text, text planted before it, what the policy says)
OVER_GRANTS = {
    "reporting writes gold": (
        ROLES_TF,
        OBJECT_ENTRY,
        entry("reporting_gold_writes", 'objects = "TABLES", privileges = ["INSERT", "UPDATE"]'),
        "reporting gets ['INSERT', 'UPDATE'] on gold (objects)",
    ),
    "reporting builds in gold": (
        ROLES_TF,
        SCHEMA_ENTRY,
        entry("reporting_gold_build", 'privileges = ["USAGE", "CREATE TABLE"]'),
        "reporting gets ['CREATE TABLE'] on gold (schema)",
    ),
    "reporting reads silver": (
        ROLES_TF,
        OBJECT_ENTRY,
        entry(
            "reporting_silver_views",
            'objects = "VIEWS", privileges = ["SELECT"]',
            "schema = var.silver_schema",
        ),
        "reporting gets ['SELECT'] on silver (objects)",
    ),
    "reporting uses bronze": (
        ROLES_TF,
        SCHEMA_ENTRY,
        entry("reporting_bronze", 'privileges = ["USAGE"]', "schema = var.bronze_schema"),
        "reporting gets ['USAGE'] on bronze (schema)",
    ),
    "reporting owns gold": (
        ROLES_TF,
        OBJECT_ENTRY,
        entry("reporting_gold_owner", 'objects = "TABLES", privileges = ["OWNERSHIP"]'),
        "reporting gets ['OWNERSHIP']",
    ),
}


@pytest.mark.parametrize("planted", OVER_GRANTS.values(), ids=OVER_GRANTS.keys())
def test_planted_reporting_over_grant_is_caught(
    config_copy: Path, planted: tuple[str, str, str, str]
) -> None:
    path, before, new, message = planted
    plant(config_copy / path, before, new + before)
    assert role_grants(config_copy, "reporting") != REPORT_NEEDS
    found = violations(config_copy)
    assert any(message in problem for problem in found), found


REPORTER_USER = """  role_name = snowflake_account_role.this["reporting"].name
  user_name = each.key"""
REPORTER_ROLE = """  role_name        = snowflake_account_role.this["reporting"].name
  parent_role_name = each.key"""
# name: (file, text, planted text, what the policy says)
PEOPLE_AND_SSO = {
    "people get the loader role": (
        ROLES_TF,
        REPORTER_USER,
        REPORTER_USER.replace('"reporting"', '"loader"'),
        "loader is granted to var.reporter_grantees (only reporting is)",
    ),
    "people roles get the transformer role": (
        ROLES_TF,
        REPORTER_ROLE,
        REPORTER_ROLE.replace('"reporting"', '"transformer"'),
        "transformer is granted to var.reporter_grantees (only reporting is)",
    ),
    "a fixed user instead of each listed one": (
        ROLES_TF,
        REPORTER_USER,
        REPORTER_USER.replace("each.key", '"ADMIN"'),
        "only to each of var.reporter_grantees",
    ),
    "sso lets the token pick a role": (
        SSO_TF,
        'external_oauth_any_role_mode      = "DISABLE"',
        'external_oauth_any_role_mode      = "ENABLE"',
        "external_oauth_any_role_mode is ENABLE, not DISABLE",
    ),
    "sso without allowed roles": (
        SSO_TF,
        "  external_oauth_allowed_roles_list = var.allowed_roles\n",
        "",
        "external OAuth sessions may use any role",
    ),
}


@pytest.mark.parametrize("planted", PEOPLE_AND_SSO.values(), ids=PEOPLE_AND_SSO.keys())
def test_planted_people_or_sso_grant_is_caught(
    config_copy: Path, planted: tuple[str, str, str, str]
) -> None:
    path, old, new, message = planted
    plant(config_copy / path, old, new)
    found = violations(config_copy)
    assert any(message in problem for problem in found), found


A_TENANT = "00000000-0000-4000-8000-00000000000a"
GUID_CHECK = "    condition     = var.entra_tenant_id == null || can(regex("
ADMIN_CHECK = "    condition     = var.entra_allowed_roles == null || length(setintersection("
# name: (file, text, planted text, what the failing `terraform test` run says)
VALIDATION_MISTAKES = {
    "tenant check removed (dev)": (
        "environments/dev/variables.tf",
        GUID_CHECK,
        "    condition     = true || can(regex(",
        'run "tenant_not_a_guid"... fail',
    ),
    "admin role check removed (prod)": (
        "environments/prod/variables.tf",
        ADMIN_CHECK,
        "    condition     = true || length(setintersection(",
        'run "admin_role_over_sso"... fail',
    ),
    "the module refuses an admin role whatever the environment lets through": (
        "environments/dev/main.tf",
        "    allowed_roles    = var.entra_allowed_roles",
        '    allowed_roles    = ["REPORTER_DEV", "ACCOUNTADMIN"]',
        "allowed_roles may not hold an administrator role",
    ),
    "the module refuses a tenant that is not a GUID": (
        "environments/prod/main.tf",
        "    entra_tenant_id  = var.entra_tenant_id",
        '    entra_tenant_id  = "contoso.onmicrosoft.com"',
        "entra_tenant_id is the tenant's GUID",
    ),
    "an integration without a tenant set": (
        "environments/dev/main.tf",
        "    entra_tenant_id  = var.entra_tenant_id",
        f'    entra_tenant_id  = coalesce(var.entra_tenant_id, "{A_TENANT}")',
        "Without entra_tenant_id there is no SSO integration.",
    ),
    "a pipeline role as a reporter grantee": (
        "environments/dev/tests/plan.tftest.hcl",
        'roles = ["ANALYSTS"] }',
        'roles = ["LOADER_DEV"] }',
        "may not name a pipeline role, the parent role or PUBLIC (LOADER_DEV)",
    ),
    "PUBLIC as a reporter grantee": (
        "environments/dev/tests/plan.tftest.hcl",
        'roles = ["ANALYSTS"] }',
        'roles = ["public"] }',
        "may not name a pipeline role, the parent role or PUBLIC (public)",
    ),
}


@pytest.mark.parametrize("mistake", VALIDATION_MISTAKES.values(), ids=VALIDATION_MISTAKES.keys())
def test_planted_sso_mistake_fails_the_mock_plan(
    provider_mirror: Path, config_copy: Path, mistake: tuple[str, str, str, str]
) -> None:
    path, old, new, message = mistake
    plant(config_copy / path, old, new)
    result = validate(config_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tf-validate: test " in result.stderr, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
