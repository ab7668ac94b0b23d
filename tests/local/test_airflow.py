"""The local Airflow's helpers (``retail-pipeline airflow up``): its environment, its login
file, and what ``airflow up`` prints. The real scheduler runs in
tests/orchestration/test_scheduler.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.local import airflow as local
from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]


def test_local_airflow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("RETAIL_WAREHOUSE", raising=False)
    assert local.default_home() == tmp_path / "data" / "airflow"
    env = local.airflow_env(tmp_path / "home", 18080)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "airflow" / "dags")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 4
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
    assert env["RETAIL_WAREHOUSE"] == str(tmp_path / "data" / "warehouse.duckdb")
    assert env["PATH"].split(":")[0].endswith("bin")
    assert local.status(tmp_path / "home") is None
    assert local.stop(tmp_path / "home") is False


# --- the local Airflow's login: 0600 from creation, never printed ---------------------------------


def test_the_login_file_is_private_from_its_creation(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    previous = os.umask(0)  # a umask that would leave a file created plainly 0666
    try:
        path = local.ensure_login(home)
    finally:
        os.umask(previous)
    assert path == home / local.PASSWORDS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    password = json.loads(path.read_text())["admin"]
    assert len(password) >= 20
    assert local.ensure_login(home) == path
    assert json.loads(path.read_text()) == {"admin": password}, "kept across starts"

    path.chmod(0o644)  # as an older version (or Airflow itself) left it
    home.chmod(0o755)
    path.write_text(json.dumps({"admin": password, "viewer": "v"}))
    local.ensure_login(home, "chosen-one")
    assert json.loads(path.read_text()) == {"admin": "chosen-one", "viewer": "v"}
    assert path.stat().st_mode & 0o777 == 0o600 and home.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in home.iterdir()] == [local.PASSWORDS_FILE], "no temporary file left"

    path.write_text("not json")
    with pytest.raises(PipelineError, match=r"is not Airflow's passwords file"):
        local.ensure_login(home)


def test_airflow_up_prints_where_the_password_is_never_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`airflow up` up to Airflow itself: a stand-in process in its place (a real start takes
    minutes), the login written before it starts, the CLI's output checked."""
    from typer.testing import CliRunner

    from retail_pipeline.cli import app
    from retail_pipeline.orchestration import dbt as dbt_module

    home = tmp_path / "airflow"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setattr(dbt_module, "ensure_manifest", lambda: None)
    started: list[list[str]] = []
    real_popen = subprocess.Popen

    def stand_in(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        started.append(command)
        assert (home / local.PASSWORDS_FILE).stat().st_mode & 0o777 == 0o600, "before Airflow"
        return real_popen(["sleep", "60"], **options)

    monkeypatch.setattr(local.subprocess, "Popen", stand_in)
    monkeypatch.setattr(local, "_wait_healthy", lambda *args: None)
    monkeypatch.setattr(local, "token", lambda url, password: "token")
    monkeypatch.setattr(local, "_ensure_pool", lambda url, token: None)
    monkeypatch.setattr(local, "airflow_env", lambda home, port: {"AIRFLOW_HOME": str(home)})
    airflow = Path(sys.executable).parent / "airflow"
    if not airflow.is_file():
        unavailable("Airflow", "Airflow tests", f"no {airflow} (pip install -e '.[airflow]')")
    try:
        result = CliRunner().invoke(app, ["airflow", "up", "--port", "18081"])
        assert result.exit_code == 0, result.output
        password = json.loads((home / local.PASSWORDS_FILE).read_text())["admin"]
        assert password not in result.output
        assert started and started[0][-1] == "standalone"
        lines = result.output.splitlines()
        assert lines[1] == f"login: admin, password in {home / local.PASSWORDS_FILE} (mode 0600)"
        assert (home / local.LOG_FILE).stat().st_mode & 0o777 == 0o600
    finally:
        assert local.stop(home) is True


def test_a_get_the_server_fails_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite's write lock makes the local API server answer 500 now and then: a GET or a
    # PATCH tries again (up to GET_ATTEMPTS), a POST fails at once, a 4xx is never retried.
    import http.server
    import threading
    import time

    answers: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            code = answers.pop(0)
            body = json.dumps({"code": code}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the waits between attempts
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        answers[:] = [500, 503, 200]
        assert local.api(url, "t", "GET", "/x") == {"code": 200}
        assert answers == []
        answers[:] = [500] * local.GET_ATTEMPTS
        with pytest.raises(urllib.error.HTTPError, match="500"):
            local.api(url, "t", "GET", "/x")
        assert answers == []
        answers[:] = [500, 200]
        with pytest.raises(urllib.error.HTTPError, match="500"):
            local.api(url, "t", "POST", "/x", {})  # a trigger is never repeated
        answers[:] = [500, 502, 200]  # setting a state twice does no harm
        assert local.api(url, "t", "PATCH", "/x", {"new_state": "success"}) == {"code": 200}
        assert answers == []
        answers[:] = [404, 200]
        with pytest.raises(urllib.error.HTTPError, match="404"):
            local.api(url, "t", "GET", "/x")
        assert answers == [200]
    finally:
        server.shutdown()
        server.server_close()
