"""Where the Terraform configuration and its scripts are, and helpers to run and edit copies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
VALIDATE = REPO / "scripts" / "tf_validate.py"
PROVIDER = REPO / "scripts" / "terraform-provider.sh"


def plant(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in ``path`` with ``new`` (which must be there)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def validate(root: Path) -> subprocess.CompletedProcess[str]:
    """scripts/tf_validate.py on ``root`` (fmt -check, init and validate of every environment)."""
    return subprocess.run(
        [sys.executable, str(VALIDATE), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
