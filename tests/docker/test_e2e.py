"""The Docker stack for real: ``make docker-e2e`` (docker/stack.py e2e) builds the images, starts
every service of docker/compose.yml in containers and runs the story inside them, here with
podman (no Docker daemon; docs/docker.md).

- A whole run passes: the answers a container reads from Gold equal the simulation's truth and
  the dashboard serves the same totals (the run checks both; here its report is checked).
- Whether it passes or is interrupted (Ctrl-C to its whole process group while services are
  starting), nothing of its project is left: no container, pod, volume or network. That is
  checked here with podman directly, apart from the run's own check.

With ``CI=true`` the tests fail when podman cannot run containers; elsewhere they are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "docker" / "stack.py"
RUN_TIMEOUT = 40 * 60
"""A cold run builds four base images and two project images (about 5 minutes here) first."""
_PROJECT = re.compile(r"docker-e2e: project (retail-e2e-[0-9a-f]+) on podman")


def _stack_module() -> object:
    sys.path.insert(0, str(STACK.parent))
    try:
        import stack
    finally:
        sys.path.remove(str(STACK.parent))
    return stack


@pytest.fixture(scope="module")
def container_engine() -> dict[str, str]:
    """podman's environment (docker/stack.py's settings), once podman has run a container."""
    tests = "the Docker stack's end-to-end tests"
    if shutil.which("podman") is None:
        unavailable(
            "podman", tests, "not installed (apt-get install podman buildah runc debootstrap)"
        )
    env: dict[str, str] = _stack_module().podman_env()  # type: ignore[attr-defined]
    info = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if info.returncode != 0:
        unavailable("podman", tests, info.stderr.strip()[-300:] or "podman info failed")
    return env


def remains(project: str, env: dict[str, str]) -> list[str]:
    """Everything podman still holds of ``project``, by label and by name."""
    label = f"label=com.docker.compose.project={project}"
    listings = {
        "container": ["ps", "-a", "--format", "{{.Names}}"],
        "labelled container": ["ps", "-a", "--filter", label, "--format", "{{.Names}}"],
        "pod": ["pod", "ps", "--format", "{{.Name}}"],
        "volume": ["volume", "ls", "--format", "{{.Name}}"],
        "network": ["network", "ls", "--format", "{{.Name}}"],
    }
    found = []
    for kind, args in listings.items():
        result = subprocess.run(
            ["podman", *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        names = result.stdout.split()
        found += [
            f"{kind} {name}" for name in names if kind == "labelled container" or project in name
        ]
    return found


def run_e2e(
    settings: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """One ``docker/stack.py e2e`` to its end, with ``settings`` added to its environment; the
    result and its whole output."""
    result = subprocess.run(
        [sys.executable, str(STACK), "e2e"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(settings or {})},
    )
    return result, result.stdout + result.stderr


def test_the_whole_story_runs_in_containers_and_leaves_nothing(
    container_engine: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    result, output = run_e2e()
    with capsys.disabled():  # the run's phases and timings belong in the CI log
        print(f"\n--- docker-e2e ({time.monotonic() - started:.0f} s) ---\n{output}", flush=True)
    assert result.returncode == 0, output[-3000:]
    found = _PROJECT.search(output)
    assert found, output[:500]
    for step in (
        "load-batch: customers: read ",
        "produce: sent ",
        "retail_kafka_ingestion_dag succeeded",
        "retail_dbt_dag (",
        "answers --json equals truth.json",
        "dashboard /api/data: the same",
        "docker-e2e: passed, nothing left behind",
    ):
        assert step in output, step
    assert re.search(r"timings: build [\d.]+ s, up [\d.]+ s, story [\d.]+ s, down [\d.]+ s", output)
    assert remains(found.group(1), container_engine) == []


def test_an_interrupted_run_tears_everything_down(
    container_engine: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C reaches the run and every engine process it started (one process group) while
    the services start: the run tears the half-started stack down and exits 130."""
    log = tmp_path / "e2e.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(STACK), "e2e"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while "postgres: healthy" not in log.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert process.poll() is None, log.read_text()[-3000:]
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert process.returncode == 130, output[-3000:]
    assert "docker-e2e: interrupted; tearing down" in output
    assert "docker-e2e: failed (130)" in output
    assert "left after teardown" not in output and "firewall" not in output
    found = _PROJECT.search(output)
    assert found, output[:500]
    assert remains(found.group(1), container_engine) == []


def test_a_failed_run_tears_everything_down(container_engine: dict[str, str]) -> None:
    """A setting the stack refuses (a topic prefix Kafka cannot name a topic with) fails the
    run at the service that refuses it: exit 1, that service named, and nothing left."""
    result, output = run_e2e({"RETAIL_TOPIC_PREFIX": "no spaces allowed!"})
    assert result.returncode == 1, output[-3000:]
    assert re.search(r"docker-e2e: error: (service|job) [\w-]+ ", output), output[-3000:]
    assert "docker-e2e: failed (1)" in output
    assert "left after teardown" not in output and "firewall" not in output
    found = _PROJECT.search(output)
    assert found, output[:500]
    assert remains(found.group(1), container_engine) == []
