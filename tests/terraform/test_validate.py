"""``terraform fmt -check``, ``init``, ``validate`` and ``test`` (a plan against a mock provider)
of dev and prod, offline, and each failing on a planted mistake (so a passing run means
something)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform.config import TERRAFORM, plant, validate


def test_dev_and_prod_validate(provider_mirror: Path) -> None:
    result = validate(TERRAFORM)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("fmt -check", "validate dev", "test dev", "validate prod", "test prod"):
        assert f"{step} " in result.stdout


# name: (file, text, planted text, the step that fails, what it says)
MISTAKES = {
    "misspelt argument": (
        "modules/snowflake_warehouse/main.tf",
        "  warehouse_size ",
        "  warehouse_sise ",
        "validate dev",
        'An argument named "warehouse_sise" is not expected here',
    ),
    "misspelt nested argument": (
        "modules/roles_and_grants/main.tf",
        "object_type_plural = each.value.objects",
        "object_type_plurel = each.value.objects",
        "validate dev",
        'An argument named "object_type_plurel" is not expected here',
    ),
    "removed resource type": (
        "modules/roles_and_grants/main.tf",
        'resource "snowflake_account_role" "this"',
        'resource "snowflake_role" "this"',
        "validate dev",
        'does not support resource type "snowflake_role"',
    ),
    "wrong variable type": (
        "environments/prod/main.tf",
        '{ name = "RETAIL", retention_days = 7 }',
        '{ name = "RETAIL", retention_days = "seven" }',
        "validate prod",
        "Invalid value for input variable",
    ),
    "unformatted file": (
        "modules/snowflake_database/main.tf",
        "  name                           = var.name",
        "  name = var.name",
        "fmt -check",
        "modules/snowflake_database/main.tf",
    ),
    "role without a warehouse": (
        "environments/dev/main.tf",
        '    reporting   = { name = "REPORTING_DEV"',
        '    reports     = { name = "REPORTING_DEV"',
        "validate dev",
        "One warehouse for each role: loader, transformer and reporting.",
    ),
    # validate passes these; only evaluating the plan (mock provider) finds them
    "bronze schema the loader does not write": (
        "modules/retail_platform/main.tf",
        '{ name = "BRONZE",',
        '{ name = "RAW",',
        "test dev",
        "The loader writes to BRONZE",
    ),
    "column type Snowflake lacks": (
        "modules/bronze_tables/tables.json",
        '"type": "VARCHAR"',
        '"type": "VARCHR"',
        "test dev",
        "invalid data type: VARCHR",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_planted_mistake_fails(
    provider_mirror: Path, config_copy: Path, mistake: tuple[str, str, str, str, str]
) -> None:
    path, old, new, step, message = mistake
    plant(config_copy / path, old, new)
    result = validate(config_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"tf-validate: {step} failed" in result.stderr, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
