"""``terraform fmt -check``, ``init``, ``validate`` and ``test`` (a plan against a mock provider)
of dev and prod, offline, and each failing on a planted mistake (so a passing run means
something)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.terraform.config import TERRAFORM, VALIDATE, plant, validate


def validate_command(root: Path) -> list[str]:
    return [sys.executable, str(VALIDATE), "--root", str(root)]


def test_dev_and_prod_validate(provider_mirror: Path) -> None:
    result = validate(TERRAFORM)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in (
        "fmt -check",
        "lock dev",
        "validate dev",
        "test dev",
        "lock prod",
        "validate prod",
        "test prod",
    ):
        assert f"{step} " in result.stdout


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_provider_lock_files_are_committed(env: str) -> None:
    """Each environment locks the provider version validate runs (docs/terraform.md); git
    does not ignore the file."""
    lock = TERRAFORM / "environments" / env / ".terraform.lock.hcl"
    text = lock.read_text()
    assert 'provider "registry.terraform.io/snowflakedb/snowflake"' in text
    assert 'version     = "1.2.0"' in text
    assert '"h1:' in text
    ignored = subprocess.run(["git", "check-ignore", "-q", str(lock)], cwd=TERRAFORM, check=False)
    assert ignored.returncode == 1  # not ignored


LOCK = ".terraform.lock.hcl"
# name: (environment, planted lock text or None to remove it, what validate says)
LOCK_MISTAKES = {
    "missing": ("dev", None, "no provider lock file"),
    "another version": (
        "prod",
        ('version     = "1.2.0"', 'version     = "1.1.0"'),
        "locks registry.terraform.io/snowflakedb/snowflake 1.1.0",
    ),
    "other constraints": (
        "dev",
        ('constraints = ">= 1.2.0, < 3.0.0"', 'constraints = ">= 1.0.0"'),
        "but init selects 1.2.0",
    ),
    "no hashes": ("prod", (r'"h1:', '"x1:'), "has no hashes"),
}


@pytest.mark.parametrize("mistake", LOCK_MISTAKES.values(), ids=LOCK_MISTAKES.keys())
def test_a_stale_lock_file_fails(
    provider_mirror: Path,
    config_copy: Path,
    mistake: tuple[str, tuple[str, str] | None, str],
) -> None:
    env, edit, message = mistake
    lock = config_copy / "environments" / env / LOCK
    if edit is None:
        lock.unlink()
    else:
        plant(lock, *edit)
    result = validate(config_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "--write-locks" in result.stderr


def test_write_locks_keeps_the_hashes_recorded(provider_mirror: Path, config_copy: Path) -> None:
    """--write-locks rewrites the lock from init and keeps hashes already recorded for the
    same version (the registry's, added by `terraform providers lock`)."""
    lock = config_copy / "environments" / "dev" / LOCK
    registry = "zh:0000000000000000000000000000000000000000000000000000000000000000"
    plant(lock, "  hashes = [\n", f'  hashes = [\n    "{registry}",\n')
    original = (TERRAFORM / "environments" / "dev" / LOCK).read_text()
    result = subprocess.run(
        [*validate_command(config_copy), "--env", "dev", "--write-locks"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert lock.read_text() == original.replace("  hashes = [\n", "  hashes = [\n", 1).replace(
        '",\n  ]', f'",\n    "{registry}",\n  ]', 1
    )


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
    "open network policy": (
        "environments/dev/tests/plan.tftest.hcl",
        '["203.0.113.0/24", "198.51.100.7"]',
        '["0.0.0.0/0"]',
        "test dev",
        "not 0.0.0.0/n (an empty list is how to allow every address)",
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
