"""Alerts: the webhook payload and post (no Airflow), Gold's deadline on a real dbt build, and
the deadline firing through the dbt DAG (``dag.test()``) to a local receiver.

The planted failing dbt test that alerts once is in test_dags.py, on runs of the dbt DAG in
both layouts (``dbt_build`` and Cosmos's task per model).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import urllib.error
import urllib.request
from datetime import UTC, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.orchestration import alerts
from retail_pipeline.orchestration.checks import GOLD_SOURCES, gold_deadline
from retail_pipeline.settings import settings
from retail_pipeline.simulation import generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.orchestration.conftest import run_dags
from tests.orchestration.receiver import receiver
from tests.transform.conftest import load, transform

COSMOS_ERROR = (
    "dbt invocation completed with errors: stg_bronze__order_events: PASS\n"
    "not_null_stg_bronze__order_events_order_id: Got 3 results, configured to fail if != 0\n"
    "planted_failure: Got 1 result, configured to fail if != 0"
)


def test_first_failing_test_is_read_from_the_cosmos_error() -> None:
    assert alerts.dbt_failure(COSMOS_ERROR) == (
        "stg_bronze__order_events",
        "not_null_stg_bronze__order_events_order_id",
    )
    model = "dbt invocation completed with errors: daily_orders: Database Error in model x\n  y"
    assert alerts.dbt_failure(model) == ("daily_orders", None)
    assert alerts.dbt_failure("landing folder /x does not exist") == (None, None)
    unhandled = "dbt invocation did not complete with unhandled error: boom"
    assert alerts.dbt_failure(unhandled) == (None, None)
    # bounded: a name past the scan limit is not read
    far = "x" * alerts.SCAN_MAX + COSMOS_ERROR
    assert alerts.dbt_failure(far) == (None, None)


def test_payload_names_dag_task_run_try_and_test() -> None:
    ti = SimpleNamespace(
        dag_id="retail_dbt_dag",
        task_id="dbt.stg_bronze__order_events_model_build",
        run_id="manual__2026-01-01",
        try_number=2,
    )
    payload = alerts.payload_from_context({"ti": ti, "exception": RuntimeError(COSMOS_ERROR)})
    assert payload == {
        "alert": "failure",
        "dag_id": "retail_dbt_dag",
        "task_id": "dbt.stg_bronze__order_events_model_build",
        "run_id": "manual__2026-01-01",
        "try": 2,
        "error": alerts.one_line(COSMOS_ERROR, alerts.ERROR_MAX),
        "failing_test": "not_null_stg_bronze__order_events_order_id",
        "failing_node": "stg_bronze__order_events",
        "text": "[retail] retail_dbt_dag.dbt.stg_bronze__order_events_model_build failed"
        " (run manual__2026-01-01, try 2): dbt test not_null_stg_bronze__order_events_order_id"
        " failed | " + alerts.one_line(COSMOS_ERROR, alerts.ERROR_MAX),
    }
    deadline = alerts.payload_from_context({"ti": ti, "exception": alerts.DeadlineMissed("late")})
    assert deadline["alert"] == "deadline" and deadline["failing_test"] is None


def test_outside_text_cannot_mention_or_link_in_slack() -> None:
    hostile = "bad <!channel> & <https://evil.example|click> \x1b[31mred"
    payload = alerts.alert_payload(dag_id="d", task_id="t", run_id="r", error=hostile)
    assert "<" not in payload["text"] and ">" not in payload["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in payload["text"]
    assert "\x1b" not in payload["text"] and "\x1b" not in payload["error"]
    long = alerts.alert_payload(dag_id="d", task_id="t", run_id="r", error="e" * 10_000)
    assert len(long["error"]) <= alerts.ERROR_MAX


def test_post_reaches_the_receiver_and_keeps_the_secret_out_of_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = alerts.alert_payload(dag_id="d", task_id="t", run_id="r", try_number=1)
    caplog.set_level(logging.INFO)
    with receiver() as got:
        assert alerts.post_alert(payload, url=got.url, timeout=10)
    assert got.posts == [
        {"path": "/hooks/T0/B0/s3cr3t", "content_type": "application/json", "json": payload}
    ]
    assert "alert sent to http://127.0.0.1:" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_a_failed_post_is_a_log_line_never_an_exception(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = alerts.alert_payload(dag_id="d", task_id="t", run_id="r")
    with receiver() as got:
        got.status = 500
        assert not alerts.post_alert(payload, url=got.url, timeout=10)
    assert "alert not delivered" in caplog.text and "HTTP 500" in caplog.text
    with receiver() as stuck:
        stuck.stall = threading.Event()
        assert not alerts.post_alert(payload, url=stuck.url, timeout=0.5)
    assert "no answer within 0.5 s" in caplog.text
    with receiver() as gone:
        url = gone.url
    assert not alerts.post_alert(payload, url=url, timeout=5)  # nobody listens any more
    assert "URLError" in caplog.text
    monkeypatch.delenv("RETAIL_ALERT_WEBHOOK", raising=False)
    assert not alerts.post_alert(payload)
    assert "RETAIL_ALERT_WEBHOOK unset, not sent" in caplog.text
    monkeypatch.setenv("RETAIL_ALERT_WEBHOOK", "https://user:pw@hooks.example/x")
    assert not alerts.post_alert(payload)  # a bad setting: logged, not raised
    assert "RETAIL_ALERT_WEBHOOK=<hidden>" in caplog.text and "pw@" not in caplog.text


def test_alert_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_ALERT_WEBHOOK", "https://hooks.example/services/T/B/xyz?k=1")
    config = settings()
    assert config.alert_webhook is not None
    assert config.alert_webhook.get_secret_value() == "https://hooks.example/services/T/B/xyz?k=1"
    assert (config.alert_timeout, config.gold_deadline_minutes) == (10.0, 60)
    for bad in ("ftp://hooks.example/x", "https://h.example/x#f", "hooks.example/x"):
        monkeypatch.setenv("RETAIL_ALERT_WEBHOOK", bad)
        with pytest.raises(PipelineError, match=r"^RETAIL_ALERT_WEBHOOK=<hidden>: "):
            settings()
    monkeypatch.delenv("RETAIL_ALERT_WEBHOOK")
    for name, bad in (("RETAIL_GOLD_DEADLINE_MINUTES", "0"), ("RETAIL_ALERT_TIMEOUT", "nan")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(PipelineError, match=f"^{name}="):
            settings()
        monkeypatch.delenv(name)


SILVER_TASK = "dbt.stg_bronze__order_events_model_build"
GOLD_TASK = "dbt.daily_orders_model_build"


@pytest.fixture(scope="module")
def late_gold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse whose Gold was built two hours ago from the orders and snapshots, and whose
    payments arrived in Bronze after that build: all its load and build times moved back two
    hours, so the payments have waited for Gold for two hours."""
    root = tmp_path_factory.mktemp("deadline")
    sim = root / "sim"
    generate(sim, days=1, orders_per_day=20, seed=41)
    warehouse = root / "wh.duckdb"
    load(
        warehouse,
        snapshots=sorted((sim / "snapshots").iterdir()),
        events=[sim / "events" / "orders.ndjson"],
    )
    transform(warehouse)
    with DuckDBWarehouse(warehouse) as wh:  # built just now: nothing waits
        fresh = gold_deadline(wh, limit_minutes=1)
    assert fresh.waiting_since is None and not fresh.missed, fresh.line()
    load(warehouse, events=[sim / "events" / "payments.ndjson"])
    with duckdb.connect(str(warehouse)) as con:
        for table in GOLD_SOURCES:
            con.execute(f"update bronze.{table} set _ingested_at = _ingested_at - interval 2 hour")
        con.execute("update gold.build_info set built_at = built_at - interval 2 hour")
    return warehouse


def _stamps(warehouse: Path) -> tuple[object, object]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        arrived = con.execute("select min(_ingested_at) from bronze.payment_events").fetchone()
        built = con.execute("select max(built_at) from gold.build_info").fetchone()
    assert arrived is not None and built is not None
    return arrived[0], built[0]


def test_deadline_counts_from_the_oldest_bronze_row_gold_lacks(late_gold: Path) -> None:
    arrived, built = _stamps(late_gold)
    assert arrived > built  # the payments came after the build
    with DuckDBWarehouse(late_gold, read_only=True) as wh:
        within = gold_deadline(wh, limit_minutes=60, now=arrived + timedelta(minutes=59))
        past = gold_deadline(wh, limit_minutes=60, now=arrived + timedelta(minutes=61))
    assert within.waiting_since == past.waiting_since == arrived
    assert within.built_at == built
    assert (within.missed, past.missed) == (False, True)
    assert round(past.waiting_minutes) == 61
    assert "past the deadline of 60 minutes" in past.line()


def test_deadline_and_health_alert_through_the_dbt_dag(
    airflow_env: dict[str, str], late_gold: Path, tmp_path: Path
) -> None:
    """Gold two hours behind Bronze: with a deadline of 60 minutes ``gold_deadline`` fails, and
    with Gold's lag an error past an hour ``health`` fails; each posts one alert. In the Cosmos
    layout (``RETAIL_DBT_DAG_TASKS=models``), which lets two models be rebuilt alone and checks
    Cosmos's Asset per model task (``emit_datasets``)."""
    warehouse = tmp_path / "wh.duckdb"
    shutil.copy(late_gold, warehouse)
    arrived, _ = _stamps(warehouse)
    with receiver() as got:
        env = {
            **airflow_env,
            "RETAIL_WAREHOUSE": str(warehouse),
            "RETAIL_ALERT_WEBHOOK": got.url,
            "RETAIL_GOLD_DEADLINE_MINUTES": "60",
            "RETAIL_HEALTH_GOLD_LAG_WARN": "600",
            "RETAIL_HEALTH_GOLD_LAG_ERROR": "3600",
            "RETAIL_DBT_DAG_TASKS": "models",
        }
        # the build is not run here (marked successful) but for one Silver and one Gold model,
        # rebuilt on the built warehouse; the two checks run on the warehouse
        others = rf"(?!(?:gold_deadline|health|{SILVER_TASK}|{GOLD_TASK})$).*"
        step = {"dag_id": "retail_dbt_dag", "retries": 0, "mark_success": others}
        (run,) = run_dags(env, [step])["runs"]
    assert run["state"] == "failed"
    failed = {t for t, task in run["tasks"].items() if task["state"] == "failed"}
    assert failed == {"gold_deadline", "health"}, got.posts
    assert run["tasks"][SILVER_TASK]["state"] == run["tasks"][GOLD_TASK]["state"] == "success"
    # Cosmos's emit_datasets: each model task emits its model's Asset (found by OpenLineage)
    events = run["asset_events"]
    # OpenLineage's DuckDB dataset: namespace duckdb://<file>, name <database>.<schema>.<table>
    model = f"duckdb:{warehouse}/{warehouse.stem}/{{}}"
    assert {(event["task_id"], event["uri"]) for event in events} == {
        (SILVER_TASK, model.format("silver/stg_bronze__order_events")),
        (GOLD_TASK, model.format("gold/daily_orders")),
    }
    by_task = {post["json"]["task_id"]: post["json"] for post in got.posts}
    assert len(got.posts) == len(by_task) == 2, got.posts
    deadline, health = by_task["gold_deadline"], by_task["health"]
    assert (deadline["alert"], deadline["dag_id"], health["alert"], health["dag_id"]) == (
        "deadline",
        "retail_dbt_dag",
        "health",
        "retail_dbt_dag",
    )
    assert deadline["run_id"] == health["run_id"] and deadline["try"] == health["try"] == 1
    assert deadline["failing_test"] is None
    since = arrived.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"ingested since {since}" in deadline["error"]
    waited = r": 1[12]\d minutes waiting, past the deadline of 60 minutes"
    assert re.search(waited, deadline["text"]), deadline["text"]
    assert health["error"].startswith("pipeline health is error: "), health
    assert "gold" in health["error"], health


@pytest.mark.parametrize(
    "raised",
    [TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out"))],
)
def test_a_socket_timeout_is_the_same_no_answer_as_the_deadline(
    raised: Exception, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which timer fires first (the socket's or the join's, both ``timeout``) depends on load:
    the log says the same either way (a CI run once saw 'TimeoutError: timed out')."""

    def times_out(*_args: object, **_kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", times_out)
    payload = alerts.alert_payload(dag_id="d", task_id="t", run_id="r")
    assert not alerts.post_alert(payload, url="http://127.0.0.1:9/hook", timeout=5)
    assert "no answer within 5 s" in caplog.text and "TimeoutError" not in caplog.text
