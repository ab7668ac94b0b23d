"""What every test that needs a real service does when the service cannot run here: skip with
the reason, except under ``CI=true``, where it fails (CI must never skip them silently)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI (``CI=true``), where an unavailable service is a failure."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(service: str, tests: str, reason: str) -> NoReturn:
    """Skip the test because ``service`` cannot run here, or fail it under CI."""
    message = f"{service} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: {tests} must not be skipped)", pytrace=False)
    pytest.skip(message)
