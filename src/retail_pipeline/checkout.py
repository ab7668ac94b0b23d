"""The source checkout an editable install lives in: where the local services keep their homes
(``.kafka/``, ``.postgres/``) and where the broker's pom is."""

from __future__ import annotations

from pathlib import Path


def checkout_root(*markers: str) -> Path | None:
    """The nearest parent of this package holding ``pyproject.toml`` and every one of
    ``markers`` (paths relative to it); None for a package installed from a wheel."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and all(
            (parent / marker).exists() for marker in markers
        ):
            return parent
    return None


def local_home(name: str, *markers: str) -> Path:
    """A local service's home: ``<checkout>/.<name>``, else ``~/.cache/retail-pipeline/<name>``."""
    root = checkout_root(*markers)
    if root is not None:
        return root / f".{name}"
    return Path.home() / ".cache" / "retail-pipeline" / name
