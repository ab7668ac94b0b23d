"""The vendored Vega files are exactly the ones recorded in static/vendor/SHA256SUMS."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

import pytest

VENDOR = Path(str(resources.files("retail_pipeline.dashboard").joinpath("static", "vendor")))
NOT_CHECKED = {"SHA256SUMS", "LICENSES.txt"}
LINE = re.compile(r"(?P<digest>[0-9a-f]{64})  (?P<name>[A-Za-z0-9._-]+)")


def recorded(text: str) -> dict[str, str]:
    """``sha256sum`` lines (comments and blank lines skipped); a malformed line is an error."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = LINE.fullmatch(line)
        assert match, f"SHA256SUMS line {number} is not '<sha256>  <file>': {line!r}"
        assert match["name"] not in sums, f"{match['name']} is listed twice"
        sums[match["name"]] = match["digest"]
    return sums


SUMS = recorded((VENDOR / "SHA256SUMS").read_text())


def test_every_vendored_file_is_listed() -> None:
    shipped = {path.name for path in VENDOR.iterdir() if path.is_file()} - NOT_CHECKED
    assert shipped == set(SUMS)
    assert {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"} <= shipped


@pytest.mark.parametrize("name", sorted(SUMS))
def test_vendored_file_matches_its_recorded_sha256(name: str) -> None:
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == SUMS[name]


def test_a_changed_byte_or_a_stray_line_is_caught() -> None:
    name, digest = next(iter(SUMS.items()))
    changed = bytearray((VENDOR / name).read_bytes())
    changed[len(changed) // 2] ^= 1
    assert hashlib.sha256(bytes(changed)).hexdigest() != digest
    with pytest.raises(AssertionError, match="line 1 is not"):
        recorded(f"{digest} {name}\n")
    with pytest.raises(AssertionError, match="listed twice"):
        recorded(f"{digest}  {name}\n{digest}  {name}\n")
