"""One run through the real scheduler and API server: ``airflow standalone``, as
``retail-pipeline airflow up`` starts it, with a batch DAG run triggered over the REST API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_pipeline.local import airflow as local
from retail_pipeline.simulation import generate
from tests.local.kafka_fixtures import free_port
from tests.orchestration.conftest import airflow_unavailable
from tests.orchestration.receiver import Receiver, receiver
from tests.orchestration.test_dags import BRONZE

DAG_ID = "retail_batch_ingestion_dag"


@pytest.fixture
def sim(tmp_path: Path) -> Path:
    out = tmp_path / "sim"
    generate(out, days=2, orders_per_day=60, seed=31)
    return out


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that the local Airflow's tasks post their alerts to."""
    with receiver() as got:
        monkeypatch.setenv("RETAIL_ALERT_WEBHOOK", got.url)
        yield got


@pytest.fixture
def standalone(
    airflow_env: dict[str, str],
    tmp_path: Path,
    sim: Path,
    alerts: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[local.LocalAirflow]:
    """A local Airflow of the test's own (home, port, warehouse, alert receiver), stopped
    afterwards."""
    home = tmp_path / "airflow"
    monkeypatch.setenv("RETAIL_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    # Unpausing also starts a scheduled run: it finds an empty landing folder and skips, so the
    # rows are loaded by the triggered run (source_dir), whichever of the two goes first.
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("RETAIL_LANDING_DIR", str(tmp_path / "empty"))
    try:
        airflow = local.start(home, port=free_port(), timeout=240)
    except local.AirflowError as exc:
        airflow_unavailable(str(exc))
    try:
        yield airflow
    finally:
        local.stop(home, timeout=5)


def _wait(url: str, token: str, path: str) -> str:
    """The run's state once it ends (or after 420 s: retries of a failing task take minutes)."""
    deadline = time.monotonic() + 420
    state = ""
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(1)
        state = local.api(url, token, "GET", path)["state"]
    return state


def test_triggered_run_succeeds_through_the_scheduler(
    standalone: local.LocalAirflow, sim: Path, alerts: Receiver, tmp_path: Path
) -> None:
    url, token = standalone.url, local.login(standalone)
    assert local.api(url, token, "GET", "/api/v2/importErrors")["total_entries"] == 0
    run = local.api(
        url,
        token,
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"source_dir": str(sim)}},
    )
    local.api(url, token, "PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"
    state = _wait(url, token, path)
    tis = local.api(url, token, "GET", f"{path}/taskInstances")["task_instances"]
    summary = {ti["task_id"]: (ti["state"], ti["duration"]) for ti in tis}
    print(f"{DAG_ID} through the scheduler: {state}; tasks {summary}")
    assert state == "success", (summary, local.api(url, token, "GET", path))
    # no API or Postgres source is configured here: that task skips itself, the others load
    assert {task: state for task, (state, _) in summary.items()} == {
        "load_snapshots": "success",
        "load_api_and_postgres": "skipped",
        "load_event_files": "success",
    }
    events = local.api(url, token, "GET", "/api/v2/assets/events?limit=100")["asset_events"]
    assert {event["uri"] for event in events} == BRONZE
    assert alerts.posts == [], "a run that succeeds alerts nobody"

    # A run whose landing folder is gone: the snapshots task fails for good (after its retries;
    # the event files task after it is upstream_failed) and the real task runner posts exactly
    # one alert, naming DAG, task, run and the error.
    gone = tmp_path / "gone"
    failing = local.api(
        url,
        token,
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"source_dir": str(gone)}},
    )
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{failing['dag_run_id']}"
    assert _wait(url, token, path) == "failed"
    tis = local.api(url, token, "GET", f"{path}/taskInstances")["task_instances"]
    failed = sorted(ti["task_id"] for ti in tis if ti["state"] == "failed")
    assert failed == ["load_snapshots"], tis
    deadline = time.monotonic() + 30
    while len(alerts.posts) < len(failed) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # and no second alert for the same task
    bodies = sorted((post["json"] for post in alerts.posts), key=lambda body: body["task_id"])
    assert [body["task_id"] for body in bodies] == failed, bodies
    for body in bodies:
        assert body["alert"] == "failure" and body["dag_id"] == DAG_ID
        assert body["run_id"] == failing["dag_run_id"]
        assert f"landing folder {gone} does not exist" in body["error"], body
        assert DAG_ID in body["text"] and body["task_id"] in body["text"]
