"""The Bronze freshness thresholds, read from dbt's source config (the one place they are set).

``dbt/models/silver/staging/_bronze__sources.yml`` declares ``warn_after``/``error_after`` and
the ``loaded_at_field`` of each Bronze table; ``dbt source freshness`` (run by ``transform``)
and ``retail-pipeline health`` both judge Bronze by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError, one_line

SOURCES_FILE = Path("models/silver/staging/_bronze__sources.yml")
"""Where, in the dbt project, the Bronze sources are declared."""
PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Freshness:
    """One Bronze table's freshness rule: its loaded-at column and its limits in seconds."""

    table: str
    loaded_at_field: str
    warn_after: float | None
    error_after: float | None


def _seconds(rule: Any, where: str) -> float | None:
    if rule is None:
        return None
    if not isinstance(rule, dict):
        raise PipelineError(f"{where}: expected {{count: N, period: hour}}")
    count, period = rule.get("count"), rule.get("period")
    if count is None and period is None:
        return None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise PipelineError(f"{where}: count must be a whole number >= 0")
    if period not in PERIOD_SECONDS:
        raise PipelineError(f"{where}: period must be minute, hour or day")
    return float(count * PERIOD_SECONDS[period])


def _freshness_of(node: dict[str, Any]) -> tuple[bool, Any]:
    """(declared here?, the freshness block) of a source or table: ``config.freshness`` (dbt
    1.10+) or the older top-level ``freshness``."""
    config = node.get("config") or {}
    if isinstance(config, dict) and "freshness" in config:
        return True, config["freshness"]
    if "freshness" in node:
        return True, node["freshness"]
    return False, None


def _loaded_at(node: dict[str, Any]) -> str | None:
    config = node.get("config") or {}
    if isinstance(config, dict) and config.get("loaded_at_field"):
        return str(config["loaded_at_field"])
    value = node.get("loaded_at_field")
    return str(value) if value else None


def parse_freshness(text: str, where: str = "sources") -> dict[str, Freshness]:
    """The freshness rule of every table of the ``bronze`` source in a sources YAML, as dbt
    resolves it (a table's own block wins; ``null`` switches it off). Tables without a rule or
    a loaded-at column are left out."""
    import yaml

    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{where} is not valid YAML: {one_line(str(exc), 200)}") from None
    sources = [s for s in document.get("sources") or [] if isinstance(s, dict)]
    bronze = next((s for s in sources if s.get("name") == "bronze"), None)
    if bronze is None:
        raise PipelineError(f"{where} declares no 'bronze' source")
    _, default = _freshness_of(bronze)
    default_field = _loaded_at(bronze)
    rules: dict[str, Freshness] = {}
    for table in bronze.get("tables") or []:
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            continue
        name = table["name"]
        declared, own = _freshness_of(table)
        block = own if declared else default
        field = _loaded_at(table) or default_field
        if not isinstance(block, dict) or not field:
            continue
        here = f"{where}: bronze.{name} freshness"
        warn = _seconds(block.get("warn_after"), f"{here} warn_after")
        error = _seconds(block.get("error_after"), f"{here} error_after")
        if warn is None and error is None:
            continue
        rules[name] = Freshness(name, field, warn, error)
    return rules


def bronze_freshness(project: Path | None = None) -> dict[str, Freshness]:
    """The rules of the dbt project ``project`` (default: the one ``transform`` builds)."""
    if project is None:
        from retail_pipeline.transform.runner import project_dir

        project = project_dir()
    path = project / SOURCES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {one_line(str(exc), 200)}") from None
    return parse_freshness(text, str(path))
