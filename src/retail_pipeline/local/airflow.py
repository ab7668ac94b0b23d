"""A local Airflow 3 with the project's DAGs: ``retail-pipeline airflow up`` / ``down``.

:func:`start` runs ``airflow standalone`` (metadata in SQLite, LocalExecutor, API server and UI
on 127.0.0.1) in the background with its home in ``data/airflow`` (``AIRFLOW_HOME`` if set),
the DAGs of ``airflow/dags/``, the pipeline's settings made absolute, and a parallelism a laptop
can carry; the rest of the caller's environment passes through, so ``AIRFLOW_CONN_*`` variables
(the DAGs' connections, :mod:`retail_pipeline.orchestration.connections`) reach the tasks. It
waits until the API server reports every component healthy, creates the ``retail_warehouse``
pool, and returns the URL and the login. :func:`stop` ends it (the whole
process group) from the pid file, so another process can stop what one started.

The login's password is generated here (:func:`ensure_login`) into Airflow's simple auth manager
passwords file before Airflow starts, so Airflow neither generates it (it would write the file
with the umask's mode, 0644, and print the password into its log) nor prints it. The file is
0600 from its creation and the home 0700; the CLI prints where the password is, never what.

No Airflow import here: this module only starts processes and speaks HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.orchestration import WAREHOUSE_POOL, WAREHOUSE_POOL_SLOTS
from retail_pipeline.settings import environment, settings

DEFAULT_HOME = Path("data/airflow")
DEFAULT_PORT = 8080
PARALLELISM = 4
"""Task processes at once: each is about 135 MB, and the default (32) swamps two cores."""
USERNAME = "admin"
PID_FILE = "standalone.pid"
LOG_FILE = "standalone.log"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowError(PipelineError):
    """The local Airflow could not be started, reached or stopped."""


@dataclass(frozen=True)
class LocalAirflow:
    """A running local Airflow: where it answers and how to log in."""

    home: Path
    url: str
    pid: int
    username: str
    password: str
    log_file: Path
    reused: bool = False

    @property
    def password_file(self) -> Path:
        """Where the login's password is (mode 0600): print this, never the password."""
        return self.home / PASSWORDS_FILE


def default_home() -> Path:
    """``AIRFLOW_HOME`` if set, else ``data/airflow`` under the current directory."""
    configured = os.environ.get("AIRFLOW_HOME")
    return Path(configured).resolve() if configured else DEFAULT_HOME.resolve()


def _private_file(path: Path, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, mode 0600 from its creation (the umask
    cannot widen it, and no reader ever sees it wider)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(temporary, flags, 0o600), "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def ensure_login(home: Path, password: str | None = None) -> Path:
    """Make sure Airflow's passwords file in ``home`` holds a password for the admin user, and
    return the file's path: ``password`` when given (replacing another), else the one there,
    else a generated one. The file is 0600 from its creation and ``home`` 0700 (both made so if
    they were wider); other users in the file are kept. The password is never printed."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_mode & 0o077:
        home.chmod(0o700)  # it holds the login, Airflow's secret keys and its database
    path = home / PASSWORDS_FILE
    passwords: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        try:
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError) as exc:
            raise AirflowError(f"{path} is not Airflow's passwords file (JSON): {exc}") from None
        if isinstance(loaded, dict):
            passwords = {str(user): str(value) for user, value in loaded.items()}
    if passwords.get(USERNAME) and password in (None, passwords[USERNAME]):
        return path
    passwords[USERNAME] = password or secrets.token_urlsafe(18)
    _private_file(path, json.dumps(passwords) + "\n")
    return path


def dags_folder() -> Path:
    """The checkout's ``airflow/dags`` folder."""
    folder = Path(__file__).resolve().parents[3] / "airflow" / "dags"
    if not folder.is_dir():
        raise AirflowError(f"no DAG folder at {folder}: run from a checkout of the repository")
    return folder


def airflow_env(home: Path, port: int) -> dict[str, str]:
    """The environment of the local Airflow's processes (on top of the caller's)."""
    config = settings()
    bin_dir = str(Path(sys.executable).parent)
    url = f"http://127.0.0.1:{port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(PARALLELISM),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # the tasks' own settings, made absolute: they run with another working directory
        "RETAIL_WAREHOUSE": str(config.warehouse.resolve()),
        "RETAIL_LANDING_DIR": str(config.landing_dir.resolve()),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    return env


def start(
    home: Path | None = None,
    *,
    port: int = DEFAULT_PORT,
    timeout: float = 240.0,
    extra_env: dict[str, str] | None = None,
) -> LocalAirflow:
    """Start ``airflow standalone`` in the background and wait until it is healthy.

    An Airflow already running from ``home`` is reused. ``extra_env`` adds variables for its
    processes (e.g. another ``RETAIL_WAREHOUSE``). Raises :class:`AirflowError` with the end of
    its log when it does not come up within ``timeout`` seconds.
    """
    home = (home or default_home()).resolve()
    running = status(home)
    if running is not None:
        return running
    from retail_pipeline.orchestration.dbt import ensure_manifest

    ours = {**airflow_env(home, port), **(extra_env or {})}
    with environment(**ours):
        ensure_manifest()  # before the scheduler parses the dbt DAG (dbt parse, a few seconds)
    ensure_login(home)  # before Airflow starts: it then neither generates nor prints one
    log_file = home / LOG_FILE
    airflow = Path(sys.executable).parent / "airflow"
    if not airflow.is_file():
        raise AirflowError(f"{airflow} not found: pip install -e '.[airflow]'")
    private = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(private, "ab") as log:
        process = subprocess.Popen(
            [str(airflow), "standalone"],
            env={**os.environ, **ours},
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (home / PID_FILE).write_text(f"{process.pid}\n{port}\n")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_file, timeout)
        password = _password(home)
        _ensure_pool(url, token(url, password))
    except BaseException:
        stop(home)
        raise
    return LocalAirflow(home, url, process.pid, USERNAME, password, log_file)


def status(home: Path | None = None) -> LocalAirflow | None:
    """The local Airflow running from ``home``, or None."""
    home = (home or default_home()).resolve()
    recorded = _recorded(home)
    if recorded is None:
        return None
    pid, port = recorded
    url = f"http://127.0.0.1:{port}"
    try:
        password = _password(home)
    except AirflowError:
        password = "?"
    return LocalAirflow(home, url, pid, USERNAME, password, home / LOG_FILE, reused=True)


def stop(home: Path | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the local Airflow of ``home`` and its children; False when none was running."""
    home = (home or default_home()).resolve()
    recorded = _recorded(home)
    (home / PID_FILE).unlink(missing_ok=True)
    if recorded is None:
        return False
    pid = recorded[0]
    _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        _kill_group(pid, signal.SIGKILL)
    _reap(pid)
    return True


def health(url: str) -> dict[str, Any]:
    """The API server's health report (``/api/v2/monitor/health``)."""
    with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
        report: dict[str, Any] = json.load(response)
    return report


GET_ATTEMPTS = 5
"""How often :func:`api` makes a call the server failed (5xx), when it is idempotent."""
IDEMPOTENT = frozenset({"GET", "PATCH", "PUT", "DELETE"})
"""The methods :func:`api` may repeat: this client's PATCHes set a state or a flag."""


def api(url: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call of the REST API (``/api/v2/...``) with a bearer token; the JSON answer.

    A call the server fails (5xx) is made again, up to :data:`GET_ATTEMPTS` times a second
    apart, when doing it twice does no harm (:data:`IDEMPOTENT`: a read, or a PATCH that sets
    a state or a flag): on the SQLite metadata DB of the local stand-in, a request that meets
    the scheduler's write lock answers 500 ("database is locked") now and then. A POST (a
    trigger) is never repeated."""
    request = urllib.request.Request(
        f"{url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    for _ in range(GET_ATTEMPTS - 1 if method in IDEMPOTENT else 0):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500:
                raise
        time.sleep(1)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def login(airflow: LocalAirflow) -> str:
    """A bearer token for the REST API."""
    return token(airflow.url, airflow.password)


def token(url: str, password: str) -> str:
    """A bearer token of the simple auth manager's ``admin`` at ``url`` (any Airflow 3 API
    server, e.g. the Docker stack's)."""
    request = urllib.request.Request(
        f"{url}/auth/token",
        method="POST",
        data=json.dumps({"username": USERNAME, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        access: str = json.load(response)["access_token"]
    return access


def _ensure_pool(url: str, token: str) -> None:
    body = {
        "name": WAREHOUSE_POOL,
        "slots": WAREHOUSE_POOL_SLOTS,
        "description": "writers of the warehouse: one at a time for a DuckDB file",
    }
    try:
        api(url, token, "GET", f"/api/v2/pools/{WAREHOUSE_POOL}")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        api(url, token, "POST", "/api/v2/pools", body)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AirflowError(f"airflow standalone exited ({process.returncode}): {_tail(log)}")
        try:
            report = health(url)
        except (OSError, ValueError) as exc:
            last = str(exc)
        else:
            states = {name: (report.get(name) or {}).get("status") for name in components}
            if all(state == "healthy" for state in states.values()):
                return
            last = ", ".join(f"{name} {state}" for name, state in states.items())
        time.sleep(1)
    raise AirflowError(f"Airflow at {url} not healthy within {timeout:.0f}s ({last}): {_tail(log)}")


def _password(home: Path) -> str:
    try:
        passwords: dict[str, str] = json.loads((home / PASSWORDS_FILE).read_text())
        return passwords[USERNAME]
    except (OSError, ValueError, KeyError):
        raise AirflowError(f"no password for {USERNAME} in {home / PASSWORDS_FILE}") from None


def _recorded(home: Path) -> tuple[int, int] | None:
    try:
        pid_text, port_text = (home / PID_FILE).read_text().split()[:2]
        pid, port = int(pid_text), int(port_text)
    except (OSError, ValueError):
        return None
    return (pid, port) if _group_alive(pid) else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of a child this process started (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {log})"
    return f"last lines of {log}:\n" + "\n".join(text)
