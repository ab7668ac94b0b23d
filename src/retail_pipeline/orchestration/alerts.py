"""Alerts of the DAGs: what a failed task or a missed deadline posts to ``RETAIL_ALERT_WEBHOOK``.

One JSON object per alert, Slack-compatible (an incoming webhook shows its ``text``) and with
the fields a machine reads: ``alert`` (``failure``, ``deadline`` or ``health``), ``dag_id``,
``task_id``, ``run_id``, ``try``, ``error`` and, when a dbt build or test failed,
``failing_test`` (the first dbt test that failed) and ``failing_node`` (the first dbt node that
failed, a test or a model): the ones the ``dbt_build`` task's error carries
(:class:`~.dbt.DbtBuildFailed`), or read from a Cosmos task's exception.

Posting never raises: an alert that cannot be delivered (no webhook set, an unreachable or slow
receiver, an error answer) is a log line, so a broken receiver never fails or retries a task.
Everything outside (an error message, a test name) is made one line with
:func:`~retail_pipeline.errors.one_line` (secrets masked, control characters gone), cut to a
bound, and escaped for Slack's markup (``&``, ``<``, ``>``), so it cannot mention ``@channel`` or
forge a link. This module needs no Airflow; :mod:`.notifier` is the Airflow side.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.settings import settings

log = logging.getLogger(__name__)

ERROR_MAX = 1000
"""The most characters of an error message an alert carries."""
NAME_MAX = 256
"""The most characters of a DAG, task, run or dbt node name an alert carries."""
SCAN_MAX = 100_000
"""The most characters of an exception message searched for the failing dbt test."""
RESPONSE_MAX = 1024
"""The most bytes of the receiver's answer read (and quoted when it refuses the alert)."""

_COSMOS_ERRORS = "dbt invocation completed with errors:"
_NODE_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): (.*)")
_TEST_FAILED = re.compile(r"Got \d+ results?, configured to (?:fail|warn)")


class AlertError(PipelineError):
    """A condition the DAGs alert on that is not an exception of the pipeline's own code: a
    missed deadline, an unhealthy pipeline. ``kind`` becomes the alert's ``alert`` field."""

    kind = "failure"


class DeadlineMissed(AlertError):
    """Gold was not rebuilt within the deadline of new Bronze rows."""

    kind = "deadline"


class Unhealthy(AlertError):
    """``retail-pipeline health`` says error."""

    kind = "health"


def dbt_failure(message: str) -> tuple[str | None, str | None]:
    """The first failing dbt node and the first failing dbt test named in a Cosmos task's error
    (``dbt invocation completed with errors: <node>: <result>`` one node a line), or Nones.

    A node is a test when its result is dbt's test verdict (``Got N results, configured to fail
    if != 0``); a model's error names the model as the failing node only.
    """
    text = message[:SCAN_MAX]
    start = text.find(_COSMOS_ERRORS)
    if start < 0:
        return None, None
    node = test = None
    for line in text[start + len(_COSMOS_ERRORS) :].strip().splitlines():
        match = _NODE_LINE.fullmatch(line.strip())
        if match is None:
            continue
        node = node or match[1][:NAME_MAX]
        if _TEST_FAILED.match(match[2]):
            test = match[1][:NAME_MAX]
            break
    return node, test


def slack_text(text: str) -> str:
    """``text`` for Slack's markup: ``&``, ``<`` and ``>`` escaped, so outside text cannot
    mention ``@channel`` (``<!channel>``) or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name(value: object) -> str | None:
    return None if value is None else one_line(str(value), NAME_MAX)


def alert_payload(
    *,
    dag_id: object,
    task_id: object,
    run_id: object,
    try_number: object = None,
    error: object = None,
    kind: str = "failure",
) -> dict[str, Any]:
    """The JSON an alert posts: a Slack ``text`` line and the structured fields."""
    message = None if error is None else str(error)
    node, test = dbt_failure(message) if message is not None else (None, None)
    if getattr(error, "failing_node", None) is not None:  # the dbt_build task's own error
        node = _name(getattr(error, "failing_node", None))
        test = _name(getattr(error, "failing_test", None))
    payload: dict[str, Any] = {
        "alert": kind,
        "dag_id": _name(dag_id),
        "task_id": _name(task_id),
        "run_id": _name(run_id),
        "try": try_number if isinstance(try_number, int) else None,
        "error": None if message is None else one_line(message, ERROR_MAX),
        "failing_test": test,
        "failing_node": node,
    }
    what = {"failure": "failed", "deadline": "missed its deadline", "health": "is unhealthy"}
    where = ".".join(part for part in (payload["dag_id"], payload["task_id"]) if part)
    line = f"[retail] {where or 'a DAG'} {what.get(kind, kind)}"
    if payload["run_id"]:
        line += f" (run {payload['run_id']}"
        line += f", try {payload['try']})" if payload["try"] is not None else ")"
    if test:
        line += f": dbt test {test} failed"
    elif node:
        line += f": dbt node {node} failed"
    if payload["error"]:
        line += f" | {payload['error']}"
    payload["text"] = slack_text(line)
    return payload


def payload_from_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`alert_payload` from an Airflow callback's context (a task's ``ti`` and
    ``exception``; a DAG's ``dag_run`` and ``reason``)."""
    ti = context.get("ti") or context.get("task_instance")
    run = context.get("dag_run")
    dag = context.get("dag")
    error = context.get("exception") or context.get("reason")
    dag_id = getattr(ti, "dag_id", None) or getattr(run, "dag_id", None)
    run_id = getattr(ti, "run_id", None) or getattr(run, "run_id", None)
    return alert_payload(
        dag_id=dag_id or getattr(dag, "dag_id", None),
        task_id=getattr(ti, "task_id", None),
        run_id=run_id or context.get("run_id"),
        try_number=getattr(ti, "try_number", None),
        error=error,
        kind=error.kind if isinstance(error, AlertError) else "failure",
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """An alert goes where the setting says, never where a redirect sends it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def post_alert(
    payload: Mapping[str, Any], *, url: str | None = None, timeout: float | None = None
) -> bool:
    """Post ``payload`` as JSON to ``url`` (default ``RETAIL_ALERT_WEBHOOK``) within ``timeout``
    seconds in all (default ``RETAIL_ALERT_TIMEOUT``). True when the receiver answered 2xx;
    anything else (no webhook, a refusal, no answer in time, a bad setting) is logged, never
    raised. The URL's path and query (where webhooks keep their secret) are never logged."""
    try:
        if url is None or timeout is None:
            config = settings()
            if url is None:
                url = config.alert_webhook.get_secret_value() if config.alert_webhook else None
            timeout = config.alert_timeout if timeout is None else timeout
    except PipelineError as exc:
        log.error("alert not sent (%s): %s", one_line(str(exc)), payload.get("text"))
        return False
    if not url:
        log.warning("alert (RETAIL_ALERT_WEBHOOK unset, not sent): %s", payload.get("text"))
        return False
    body = json.dumps(payload).encode()
    outcome: list[str] = []

    def send() -> None:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "retail-pipeline"},
        )
        try:
            opener = urllib.request.build_opener(_NoRedirect)
            with opener.open(request, timeout=timeout) as answer:
                answer.read(RESPONSE_MAX)
                outcome.append("ok" if 200 <= answer.status < 300 else f"HTTP {answer.status}")
        except urllib.error.HTTPError as exc:
            outcome.append(f"HTTP {exc.code}: {exc.read(RESPONSE_MAX).decode(errors='replace')}")
        except Exception as exc:  # an alert never fails the task
            if isinstance(exc, TimeoutError) or isinstance(
                getattr(exc, "reason", None), TimeoutError
            ):
                # the socket's own timeout won the race with the join below: the same verdict
                outcome.append(f"no answer within {timeout:g} s")
            else:
                outcome.append(f"{type(exc).__name__}: {exc}")

    sender = threading.Thread(target=send, name="retail-alert", daemon=True)
    sender.start()
    sender.join(timeout)
    if outcome == ["ok"]:
        log.info("alert sent to %s: %s", _host(url), payload.get("text"))
        return True
    why = outcome[0] if outcome else f"no answer within {timeout:g} s"
    log.error(
        "alert not delivered to %s (%s): %s", _host(url), one_line(why, 300), payload.get("text")
    )
    return False
