"""dbt Silver and Gold: run the transformation and read the six answers.

- :func:`run_transform` builds the dbt project (``dbt/``) on a DuckDB warehouse, in-process,
  incrementally by default, and returns a :class:`TransformSummary`.
- :func:`read_answers` reads the answers from Gold in docs/metrics.md's JSON shape;
  :func:`format_answers` renders them as tables; :func:`gold_status` says when Gold was built
  and whether Bronze has grown since (a :class:`GoldStatus`, with a one-line warning).
"""

from retail_pipeline.transform.answers import GoldStatus, format_answers, gold_status, read_answers
from retail_pipeline.transform.runner import (
    NodeFailure,
    NodeProgress,
    TransformError,
    TransformSummary,
    project_dir,
    run_dbt,
    run_transform,
    target_dir,
)

__all__ = [
    "GoldStatus",
    "NodeFailure",
    "NodeProgress",
    "TransformError",
    "TransformSummary",
    "format_answers",
    "gold_status",
    "project_dir",
    "read_answers",
    "run_dbt",
    "run_transform",
    "target_dir",
]
