"""The DAGs' failure notifier: an Airflow 3 notifier that posts to ``RETAIL_ALERT_WEBHOOK``.

Every task of the three DAGs has it as ``on_failure_callback`` (:data:`ALERTING_ARGS`), so a task
that fails for good (its retries spent) posts one alert naming the DAG, the task, the run, the
try and, for a dbt task, the first failing test; a task that will be retried, or that ends
``upstream_failed``, posts nothing. Task callbacks run in the worker right after the task, with
the exception in hand (a DAG's callback runs in the DAG processor without it). What is posted
and how is :mod:`.alerts`; the notifier never raises into Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseNotifier

from retail_pipeline.orchestration import DEFAULT_ARGS
from retail_pipeline.orchestration.alerts import log, payload_from_context, post_alert


class WebhookNotifier(BaseNotifier):
    """Posts the alert of a failed task (or DAG run) as JSON to ``RETAIL_ALERT_WEBHOOK``
    (read when it fires, so a changed setting needs no DAG change); without one it logs."""

    def notify(self, context: Any) -> None:
        try:
            post_alert(payload_from_context(context))
        except Exception:  # a bug here must not fail the callback's task either
            log.exception("alert not sent")


ALERTING_ARGS: dict[str, Any] = {**DEFAULT_ARGS, "on_failure_callback": [WebhookNotifier()]}
""":data:`~retail_pipeline.orchestration.DEFAULT_ARGS` plus the failure notifier."""
