"""Run a real single-node Apache Kafka broker (KRaft mode) on 127.0.0.1.

The jars come from Maven Central: ``kafka/pom.xml`` names ``org.apache.kafka:kafka_2.13`` and a
log4j2 binding, and :func:`ensure_jars` lays them and their runtime dependencies into
``<home>/libs`` with ``mvn -C dependency:copy-dependencies`` once (again only when the pom or
``kafka/jars.sha256`` changes), and refuses any jar whose SHA-256 that committed file does not list.
:func:`start` writes ``server.properties`` for a combined broker+controller node, formats the
storage on first use, launches ``java -cp '<home>/libs/*' kafka.Kafka`` as a detached process,
waits until the broker answers and creates the pipeline's topics. :func:`stop` and :func:`status`
work from the pid file, so a broker started by one process can be stopped by another.

``start(security="sasl_ssl")`` gives the broker a SASL_SSL client listener instead of a
PLAINTEXT one (see :func:`ensure_security`): TLS with a certificate for ``localhost`` and
``127.0.0.1`` signed by a CA of the home's own, made with ``openssl``, and SCRAM-SHA-512 users
created when the storage is formatted; the inter-broker listener is the same one, only the
controller listener stays PLAINTEXT on 127.0.0.1. It writes the librdkafka client properties
file (:data:`CLIENT_PROPERTIES`) for ``RETAIL_KAFKA_CONFIG_FILE``.

A home directory holds one broker::

    libs/                      the jars (another home's may be passed as ``start(libs=...)``)
    config/server.properties   written by every start (0600: it holds the keystore password)
    data/                      log.dirs, unless ``start(data_dir=...)`` names another
    logs/server.log            the broker's output
    broker.pid, broker.json    the running broker's pid, ports and paths
    security/                  sasl_ssl only, 0700, made once and kept: ca.pem (the CA clients
                               trust), ca.key, broker.key, broker.pem, broker.p12 (the broker's
                               keystore), secrets.json (SCRAM and keystore passwords) and
                               client.properties; every key and secret 0600
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from retail_pipeline.local.services import (
    checkout_root,
    home_lock,
    live_command_line,
    local_home,
    log_excerpt,
    port_free,
)
from retail_pipeline.settings import settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TOPICS",
    "KAFKA_MAIN_CLASS",
    "SECURITY_MODES",
    "STORAGE_TOOL_CLASS",
    "BrokerError",
    "BrokerInfo",
    "BrokerStatus",
    "client_properties",
    "default_home",
    "ensure_jars",
    "ensure_security",
    "ensure_topics",
    "find_pom",
    "mvn_command",
    "start",
    "status",
    "stop",
    "verify_jars",
]

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
DEFAULT_PORT = 9092
DEFAULT_TOPICS: tuple[str, ...] = ("orders", "payments", "shipments", "dead_letter")
MIN_JAVA_MAJOR = 17

HOME_ENV = "RETAIL_KAFKA_HOME"
SECURITY_MODES: tuple[str, ...] = ("plaintext", "sasl_ssl")
"""How clients reach the broker: no authentication, or SCRAM-SHA-512 over TLS."""
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN_USER = "retail-admin"
"""The inter-broker user (SASL_SSL)."""
CLIENT_USER = "retail-client"
"""The user the pipeline's clients log in as (SASL_SSL)."""
CLIENT_PROPERTIES = "client.properties"
"""The librdkafka client properties file in ``<home>/security`` (SASL_SSL)."""
CERT_DAYS = 825
"""How long the CA and the broker certificate are valid (the limit browsers keep)."""
POM_ENV = "RETAIL_KAFKA_POM"

_HOST = "127.0.0.1"
_NODE_ID = 1
_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_MARKER = ".pom-sha256"
_CHECKSUMS = "jars.sha256"
_CHECKSUM_LINE = re.compile(r"([0-9a-f]{64}) [ *]([\w.+-]+\.jar)")
_KAFKA_JAR_GLOB = "kafka_2.13-*.jar"
_POLL_SECONDS = 0.2

_LOG4J2_PROPERTIES = """\
# Written by retail_pipeline.local.kafka_broker; rewritten on every start.
status = warn
shutdownHook = disable
name = retail-pipeline-kafka
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""

# Brokers started by this process, so that their exit status is reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerInfo:
    """A running broker, as returned by :func:`start`."""

    bootstrap_servers: str
    pid: int
    port: int
    controller_port: int
    home: Path
    data_dir: Path
    log_file: Path
    reused: bool = False
    """True when :func:`start` found this broker already running and did not launch one."""
    security: str = "plaintext"
    client_properties: Path | None = None
    """sasl_ssl: the librdkafka properties file clients need (``RETAIL_KAFKA_CONFIG_FILE``)."""


@dataclass(frozen=True)
class BrokerStatus:
    """What :func:`status` knows about the broker of a home directory."""

    pid: int
    bootstrap_servers: str
    port: int
    controller_port: int
    data_dir: Path
    log_file: Path
    answering: bool
    """Whether the broker answered a metadata request just now."""
    security: str = "plaintext"
    client_properties: Path | None = None


# --------------------------------------------------------------------------- locations


def default_home() -> Path:
    """The broker home: ``RETAIL_KAFKA_HOME``, else ``<repo>/.kafka``, else a user cache dir."""
    configured = settings().kafka_home
    if configured:
        return configured.expanduser().resolve()
    return local_home("kafka", "kafka/pom.xml")


def find_pom(pom: Path | None = None) -> Path:
    """The pom naming the broker's jars: ``pom``, else ``$RETAIL_KAFKA_POM``, else the repo's."""
    configured = settings().kafka_pom
    if pom is None and configured:
        pom = configured.expanduser()
    if pom is None:
        root = checkout_root("kafka/pom.xml")
        if root is None:
            raise BrokerError(
                f"cannot find kafka/pom.xml next to the package; set {POM_ENV} to its path"
            )
        pom = root / "kafka" / "pom.xml"
    if not pom.is_file():
        raise BrokerError(f"Kafka pom not found: {pom}")
    return pom.resolve()


# --------------------------------------------------------------------------- java and jars


def _java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin/java`` first), checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate is not None and candidate.is_file() else shutil.which("java")
    if java is None:
        raise BrokerError(
            "java not found: install a JDK/JRE 17 or newer "
            "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"could not run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise BrokerError(f"could not read the Java version from {java} -version")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA_MAJOR:
        raise BrokerError(
            f"Kafka needs Java {MIN_JAVA_MAJOR} or newer, {java} is Java {major}; "
            "install a newer JDK or point JAVA_HOME at one"
        )
    return java


def _jars_cached(libs: Path, digest: str) -> bool:
    marker = libs / _MARKER
    return (
        marker.is_file()
        and marker.read_text().strip() == digest
        and any(libs.glob(_KAFKA_JAR_GLOB))
    )


def mvn_command(mvn: str, pom: Path, output: Path) -> list[str]:
    """The Maven command that lays the pom's runtime jars into ``output``.

    ``-C`` (``--strict-checksums``): a download whose checksum does not match the repository's
    fails the build instead of being used with a warning.
    """
    return [
        mvn,
        "-q",
        "-B",
        "-C",
        "-Dstyle.color=never",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output}",
        "-DincludeScope=runtime",
        "-f",
        str(pom),
    ]


def _read_checksums(checksums: Path) -> dict[str, str]:
    """``jar name -> SHA-256`` from a ``sha256sum``-format file (``<hex>  <name>.jar`` lines)."""
    expected: dict[str, str] = {}
    try:
        lines = checksums.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerError(f"cannot read {checksums}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.fullmatch(line.strip())
        if match is None:
            raise BrokerError(f"{checksums}:{number}: not a '<sha256>  <name>.jar' line")
        expected[match[2]] = match[1]
    if not expected:
        raise BrokerError(f"{checksums} lists no jar")
    return expected


def verify_jars(libs: Path, checksums: Path) -> None:
    """Refuse the jars in ``libs`` unless they are exactly those ``checksums`` lists, byte for byte.

    ``checksums`` is ``kafka/jars.sha256`` (``sha256sum`` format, committed beside the pom): a jar
    that differs, is missing or is not listed raises :class:`BrokerError` naming it.
    """
    expected = _read_checksums(checksums)
    found = sorted(path.name for path in libs.glob("*.jar"))
    for name in found:
        if name not in expected:
            raise BrokerError(f"{name} from mvn is not listed in {checksums}; refused")
    for name, digest in expected.items():
        jar = libs / name
        if not jar.is_file():
            raise BrokerError(f"{name}, listed in {checksums}, did not come from mvn")
        with jar.open("rb") as stream:
            actual = hashlib.file_digest(stream, "sha256").hexdigest()
        if actual != digest:
            raise BrokerError(
                f"{name} from mvn has SHA-256 {actual}, not the {digest} "
                f"recorded in {checksums}; refused"
            )


def ensure_jars(home: Path, *, pom: Path | None = None) -> Path:
    """Fetch the broker's jars into ``<home>/libs`` unless already there; return that directory.

    Runs ``mvn -C dependency:copy-dependencies`` (:func:`mvn_command`) on the pom (see
    :func:`find_pom`) into a staging directory, checks every jar against ``jars.sha256`` beside
    the pom (:func:`verify_jars`), and only then replaces ``libs``. A marker file holds the SHA-256
    of the pom and the checksums, so editing either (say, the Kafka version) fetches again.
    """
    pom_path = find_pom(pom)
    checksums = pom_path.with_name(_CHECKSUMS)
    recorded = checksums.read_bytes() if checksums.is_file() else b""
    digest = hashlib.sha256(pom_path.read_bytes() + recorded).hexdigest()
    home = home.expanduser().resolve()
    libs = home / "libs"
    if _jars_cached(libs, digest):
        return libs
    with home_lock(home / ".fetch.lock"):
        if _jars_cached(libs, digest):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "mvn not found: install Maven 3.6+ (Debian: apt-get install maven) to fetch Kafka"
            )
        _java()
        if not checksums.is_file():
            raise BrokerError(
                f"no {_CHECKSUMS} beside {pom_path}: the fetched jars are checked against it "
                "(docs/kafka.md says how to record it)"
            )
        staging = Path(tempfile.mkdtemp(prefix="libs-fetch-", dir=home))
        command = mvn_command(mvn, pom_path, staging)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=1800, check=False
            )
            if done.returncode != 0:
                output = (done.stdout + done.stderr).splitlines()
                errors = [line for line in output if "ERROR" in line] or output or ["no output"]
                raise BrokerError(
                    f"mvn could not fetch the Kafka jars from {pom_path} "
                    f"(exit {done.returncode}): {errors[0].strip()}"
                )
            if not any(staging.glob(_KAFKA_JAR_GLOB)):
                raise BrokerError(f"mvn ran but no {_KAFKA_JAR_GLOB} came from {pom_path}")
            verify_jars(staging, checksums)
            (staging / _MARKER).write_text(digest + "\n")
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"mvn took longer than {exc.timeout:.0f}s fetching Kafka") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


# --------------------------------------------------------------------------- processes


def _pid_file(home: Path) -> Path:
    return home / "broker.pid"


def _state_file(home: Path) -> Path:
    return home / "broker.json"


def _properties_file(home: Path) -> Path:
    return home / "config" / "server.properties"


def _is_broker(pid: int, properties: Path) -> bool:
    """Whether ``pid`` is alive and is the Kafka broker started with ``properties``."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    cmdline = live_command_line(pid) or []
    return KAFKA_MAIN_CLASS in cmdline and str(properties) in cmdline


def _read_state(home: Path) -> dict[str, Any] | None:
    """The running broker's recorded state, or None when there is no (readable) pid file."""
    try:
        pid = int(_pid_file(home).read_text().strip())
        state: dict[str, Any] = json.loads(_state_file(home).read_text())
    except (OSError, ValueError):
        return None
    state["pid"] = pid
    return state


def _clear_state(home: Path) -> None:
    _pid_file(home).unlink(missing_ok=True)
    _state_file(home).unlink(missing_ok=True)


def _running_state(home: Path) -> dict[str, Any] | None:
    state = _read_state(home)
    if state is None or not _is_broker(int(state["pid"]), _properties_file(home)):
        return None
    return state


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True when it has."""
    child = _CHILDREN.get(pid)
    try:
        if child is not None:
            child.wait(timeout=timeout)
            del _CHILDREN[pid]
        else:
            process = psutil.Process(pid)
            deadline = time.monotonic() + timeout
            while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL_SECONDS)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- network


def _port_free(port: int) -> bool:
    return port_free(_HOST, port)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _accepts(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _admin(
    bootstrap_servers: str, client_properties: Mapping[str, str] | None = None
) -> AdminClient:
    """An admin client of the local broker; ``client_properties`` are the librdkafka properties
    its listener needs (:func:`client_properties`), not the operator's: the local broker knows
    its own security whatever ``RETAIL_KAFKA_CONFIG_FILE`` says."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError as exc:
        raise BrokerError(
            "confluent-kafka is not installed: pip install 'retail-pipeline[kafka]'"
        ) from exc
    from retail_pipeline.ingestion.kafka.client import ClientLog

    config: dict[str, Any] = {
        **(client_properties or {}),
        "bootstrap.servers": bootstrap_servers,
        "log.connection.close": False,
        "logger": ClientLog(),  # librdkafka's log one level down, off stderr
    }
    return AdminClient(config)


def _answers(
    bootstrap_servers: str,
    port: int,
    timeout: float,
    client_properties: Mapping[str, str] | None = None,
) -> bool:
    """Whether the broker on ``port`` accepts connections and answers a metadata request.

    The TCP probe comes first: a Kafka client made while nothing listens logs a connection error
    every second until it is dropped.
    """
    if not _accepts(port, timeout=min(timeout, 1.0)):
        return False
    try:
        _admin(bootstrap_servers, client_properties).list_topics(timeout=timeout)
    except BrokerError:
        raise
    except Exception:  # KafkaException and friends: not answering (yet)
        return False
    return True


def ensure_topics(
    bootstrap_servers: str,
    topics: Sequence[str] = DEFAULT_TOPICS,
    *,
    partitions: int = 3,
    timeout: float = 60.0,
    client_properties: Mapping[str, str] | None = None,
) -> None:
    """Create the missing ``topics`` (``partitions`` each, replication 1) and wait for leaders.

    Topics that already exist are left as they are, whatever their partition count.
    ``client_properties``: what the listener needs (a SASL_SSL broker's :func:`client_properties`).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    from confluent_kafka import KafkaError, KafkaException

    # confluent_kafka.admin re-exports NewTopic without declaring it; this is where it lives.
    from confluent_kafka.cimpl import NewTopic

    admin = _admin(bootstrap_servers, client_properties)
    deadline = time.monotonic() + timeout
    last_problem = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"topics {list(topics)} not ready on {bootstrap_servers} "
                f"after {timeout:.0f}s: {last_problem}"
            )
        try:
            metadata = admin.list_topics(timeout=min(remaining, 10.0))
        except KafkaException as exc:
            last_problem = str(exc)
            time.sleep(_POLL_SECONDS)
            continue
        missing = [name for name in topics if name not in metadata.topics]
        not_ready = [
            name
            for name in topics
            if name in metadata.topics
            and (
                metadata.topics[name].error is not None
                or not metadata.topics[name].partitions
                or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
            )
        ]
        if not missing and not not_ready:
            return
        if missing:
            futures = admin.create_topics(
                [
                    NewTopic(name, num_partitions=partitions, replication_factor=1)
                    for name in missing
                ],
                operation_timeout=min(remaining, 30.0),
                request_timeout=min(remaining, 30.0),
            )
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        continue
                    if not error.retriable():
                        raise BrokerError(
                            f"could not create topic {name!r} on {bootstrap_servers}: {error.str()}"
                        ) from exc
                    last_problem = f"{name}: {error.str()}"
        else:
            last_problem = f"no partition leaders yet for {not_ready}"
        time.sleep(_POLL_SECONDS)


# --------------------------------------------------------------------------- security


@dataclass(frozen=True)
class Security:
    """A SASL_SSL home's material: where its certificates are and its generated passwords."""

    directory: Path
    admin_password: str
    client_password: str
    keystore_password: str

    @property
    def ca(self) -> Path:
        """The CA certificate (PEM) clients trust: librdkafka's ``ssl.ca.location``."""
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate chain (PKCS#12)."""
        return self.directory / "broker.p12"

    @property
    def client_properties(self) -> Path:
        """The librdkafka client properties file (``RETAIL_KAFKA_CONFIG_FILE``)."""
        return self.directory / CLIENT_PROPERTIES


_SECRETS = "secrets.json"
_SECURITY_MARKER = "retail-pipeline.security"
"""A file in the data directory naming the security mode it was formatted for (the SCRAM
users live in its metadata log); a data directory without one is plaintext."""
_OPENSSL_CONFIG = """\
# Written by retail_pipeline.local.kafka_broker: the local broker's CA and certificate.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = retail-pipeline
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[broker]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _check_security(security: str) -> None:
    if security not in SECURITY_MODES:
        raise BrokerError(
            f"unknown Kafka security mode {security!r}: choose {' or '.join(SECURITY_MODES)}"
        )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only from the first byte."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _openssl(directory: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``openssl args`` in ``directory`` with umask 077 (its keys are born 0600)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError(
            "openssl not found: install it (Debian: apt-get install openssl) to make the"
            " local broker's TLS certificate"
        )
    try:
        done = subprocess.run(
            [openssl, *args],
            cwd=directory,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            umask=0o077,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"openssl {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).strip().splitlines() or ["no output"]
        raise BrokerError(f"openssl {args[0]} failed (exit {done.returncode}): {lines[0]}")


def _make_certificates(directory: Path, keystore_password: str) -> None:
    """A CA of this home's own, a broker certificate for localhost and 127.0.0.1 signed by it,
    and the broker's PKCS#12 keystore, all made by ``openssl`` (EC P-256 keys, 0600)."""
    config = directory / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc")
    common = ("-config", config.name, "-days", str(CERT_DAYS), "-sha256")
    _openssl(
        directory,
        "req", "-x509", *new_key, *common,
        "-extensions", "ca",
        "-subj", "/CN=retail-pipeline local Kafka CA",
        "-keyout", "ca.key",
        "-out", "ca.pem",
    )  # fmt: skip
    _openssl(
        directory,
        "req", "-x509", *new_key, *common,
        "-extensions", "broker",
        "-subj", "/CN=localhost",
        "-CA", "ca.pem",
        "-CAkey", "ca.key",
        "-keyout", "broker.key",
        "-out", "broker.pem",
    )  # fmt: skip
    _openssl(
        directory,
        "pkcs12", "-export",
        "-in", "broker.pem",
        "-inkey", "broker.key",
        "-certfile", "ca.pem",
        "-name", "broker",
        "-out", "broker.p12",
        "-passout", "env:RETAIL_KAFKA_KEYSTORE_PASSWORD",
        env={"RETAIL_KAFKA_KEYSTORE_PASSWORD": keystore_password},
    )  # fmt: skip


def _client_properties_text(security: Security) -> str:
    return (
        "# librdkafka client properties of the local SASL_SSL broker, written by"
        " `retail-pipeline kafka up --security sasl_ssl`.\n"
        "# export RETAIL_KAFKA_CONFIG_FILE=<this file>; it holds a password: keep it 0600.\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanisms={SCRAM_MECHANISM}\n"
        f"sasl.username={CLIENT_USER}\n"
        f"sasl.password={security.client_password}\n"
        f"ssl.ca.location={security.ca}\n"
    )


def ensure_security(home: Path) -> Security:
    """The SASL_SSL material of ``home``, made on first use and reused after.

    ``<home>/security`` (0700) gets random SCRAM and keystore passwords (``secrets.json``), a
    CA and a broker certificate valid :data:`CERT_DAYS` days for ``localhost`` and
    ``127.0.0.1`` (made again if a file of them is missing, with the same passwords: the
    users stay valid), and the client properties file, rewritten every time. Keys and
    secrets are 0600.
    """
    directory = home.expanduser().resolve() / "security"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    secrets_file = directory / _SECRETS
    try:
        stored = json.loads(secrets_file.read_text()) if secrets_file.is_file() else None
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot read {secrets_file}: {exc}") from None
    if stored is None:
        stored = {
            name: secrets.token_urlsafe(24)
            for name in ("admin_password", "client_password", "keystore_password")
        }
        _write_private(secrets_file, json.dumps(stored, indent=2) + "\n")
    try:
        security = Security(
            directory,
            str(stored["admin_password"]),
            str(stored["client_password"]),
            str(stored["keystore_password"]),
        )
    except (KeyError, TypeError):
        raise BrokerError(
            f"{secrets_file} lacks a password; delete the home to start over"
        ) from None
    made = ("ca.pem", "ca.key", "broker.key", "broker.pem", "broker.p12")
    if not all((directory / name).is_file() for name in made):
        _make_certificates(directory, security.keystore_password)
    _write_private(security.client_properties, _client_properties_text(security))
    return security


def client_properties_file(home: Path) -> Path | None:
    """The client properties file of the broker running in ``home`` when it runs with
    sasl_ssl (what ``RETAIL_KAFKA_CONFIG_FILE`` should name), else None (plaintext, or not
    running)."""
    home = home.expanduser().resolve()
    state = _read_state(home)
    path = home / "security" / CLIENT_PROPERTIES
    if state is None or state.get("security", "plaintext") == "plaintext" or not path.is_file():
        return None
    return path


def client_properties(home: Path) -> dict[str, str] | None:
    """The librdkafka properties a client of the broker running in ``home`` needs: the client
    properties file's when it runs with sasl_ssl, else None (plaintext, or not running)."""
    from retail_pipeline.kafka_config import parse_properties

    path = client_properties_file(home)
    if path is None:
        return None
    return dict(parse_properties(path.read_text(encoding="utf-8"), str(path)))


def _client_config(security: Security | None) -> dict[str, str] | None:
    """The librdkafka properties for the broker's own admin client (None: plaintext)."""
    if security is None:
        return None
    from retail_pipeline.kafka_config import parse_properties

    text = _client_properties_text(security)
    return dict(parse_properties(text, str(security.client_properties)))


def _data_security(data: Path) -> str | None:
    """The security mode ``data`` was formatted for; None when it is not formatted yet."""
    if not (data / "meta.properties").is_file():
        return None
    marker = data / _SECURITY_MARKER
    return marker.read_text().strip() if marker.is_file() else "plaintext"


# --------------------------------------------------------------------------- start / stop


def _listener_properties(port: int, controller_port: int, security: Security | None) -> str:
    """The listeners: PLAINTEXT, or SASL_SSL (SCRAM over TLS) for clients and brokers alike;
    the controller's stays PLAINTEXT on 127.0.0.1."""
    if security is None:
        return f"""\
listeners=PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}
advertised.listeners=PLAINTEXT://{_HOST}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="{ADMIN_USER}" password="{security.admin_password}";'
    )
    return f"""\
listeners=SASL_SSL://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}
advertised.listeners=SASL_SSL://{_HOST}:{port}
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}
ssl.keystore.type=PKCS12
ssl.keystore.location={security.keystore}
ssl.keystore.password={security.keystore_password}
ssl.key.password={security.keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location={security.ca}
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
"""


def _server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    partitions: int,
    security: Security | None = None,
) -> str:
    return f"""\
# Written by retail_pipeline.local.kafka_broker; rewritten on every start.
# One node in KRaft mode, broker and controller in one process, on {_HOST} only.
process.roles=broker,controller
node.id={_NODE_ID}
controller.quorum.voters={_NODE_ID}@{_HOST}:{controller_port}
{_listener_properties(port, controller_port, security)}\
log.dirs={data_dir}
num.partitions={partitions}
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash the restarted node waits for its previous registration to expire
# (DUPLICATE_BROKER_REGISTRATION) before it serves: 9 s by default, about 4 s with these.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
# Keep every event: Bronze resumes from stored offsets, and simulated or backfilled events may
# carry old timestamps that time-based retention would otherwise delete at once.
log.retention.ms=-1
"""


def _new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _log_excerpt(log_file: Path, offset: int) -> str:
    """The most telling line the broker wrote to ``log_file`` after ``offset``."""
    return log_excerpt(log_file, offset, ("Exception: ", "Error: ", "ERROR"))


def _format_storage(
    java: str,
    libs: Path,
    properties: Path,
    log_file: Path,
    timeout: float,
    security: Security | None = None,
) -> None:
    """Format the storage (a new cluster id); with ``security``, create its SCRAM users in the
    first metadata (``--add-scram``), so the broker never runs without them. Their passwords
    are on the tool's command line for the second it runs: the storage tool reads them from
    nowhere else."""
    users = (
        [(ADMIN_USER, security.admin_password), (CLIENT_USER, security.client_password)]
        if security is not None
        else []
    )
    command = [
        java,
        "-Xmx256m",
        "-cp",
        f"{libs}/*",
        STORAGE_TOOL_CLASS,
        "format",
        "--ignore-formatted",
        "--cluster-id",
        _new_cluster_id(),
        "--config",
        str(properties),
    ]
    for user, password in users:
        command += ["--add-scram", f'{SCRAM_MECHANISM}=[name={user},password="{password}"]']
    with log_file.open("ab") as out:
        offset = out.tell()
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"formatting the Kafka storage took over {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise BrokerError(
            f"formatting the Kafka storage failed (exit {done.returncode}): "
            f"{_log_excerpt(log_file, offset)}; see {log_file}"
        )


def _info(home: Path, state: dict[str, Any], *, reused: bool) -> BrokerInfo:
    client_file = state.get("client_properties")
    return BrokerInfo(
        bootstrap_servers=str(state["bootstrap_servers"]),
        pid=int(state["pid"]),
        port=int(state["port"]),
        controller_port=int(state["controller_port"]),
        home=home,
        data_dir=Path(state["data_dir"]),
        log_file=Path(state["log_file"]),
        reused=reused,
        security=str(state.get("security", "plaintext")),
        client_properties=Path(client_file) if client_file else None,
    )


def _wait_until_answering(
    pid: int,
    port: int,
    properties: Path,
    log_file: Path,
    log_offset: int,
    timeout: float,
    client_properties: Mapping[str, str] | None = None,
) -> None:
    bootstrap = f"{_HOST}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if not _is_broker(pid, properties):
            raise BrokerError(
                f"Kafka exited during start-up: {_log_excerpt(log_file, log_offset)}; "
                f"see {log_file}"
            )
        remaining = deadline - time.monotonic()
        if _answers(bootstrap, port, max(0.5, min(remaining, 5.0)), client_properties):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka (pid {pid}) did not answer on {bootstrap} within {timeout:.0f}s; "
                f"see {log_file}"
            )
        time.sleep(_POLL_SECONDS)


def start(
    home: Path,
    *,
    port: int = DEFAULT_PORT,
    controller_port: int | None = None,
    partitions: int = 3,
    topics: Sequence[str] = DEFAULT_TOPICS,
    data_dir: Path | None = None,
    libs: Path | None = None,
    timeout: float = 180.0,
    die_with_parent: bool = False,
    security: str = "plaintext",
) -> BrokerInfo:
    """Start the broker of ``home`` (or find it running), create ``topics``, return where it is.

    ``controller_port`` defaults to ``port + 1`` when that is free, else any free port.
    ``data_dir`` defaults to ``<home>/data``; it is formatted (KRaft, new cluster id) only when it
    holds no ``meta.properties``, so a stop and a start on the same directory keep every message.
    ``libs`` defaults to the jars of ``home`` (fetched by :func:`ensure_jars` if needed); pass
    another home's to share one download between several brokers. When the pid file names a live
    broker, that broker is returned as it is (``reused=True``), whatever ``port`` says.
    ``timeout`` bounds the wait for the broker and its topics. ``die_with_parent`` (for test
    fixtures) has the kernel send the broker SIGTERM when the thread that called ``start`` ends,
    so even a killed test run leaves no broker behind (Linux, through util-linux ``setpriv``; a
    no-op without it); by default the broker outlives the caller.
    ``security`` is ``plaintext`` or ``sasl_ssl`` (:func:`ensure_security`; the data directory
    is formatted with the SCRAM users). A data directory formatted for the other mode, or a
    broker running in it, is refused: the users live in the data.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    _check_security(security)
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    properties = _properties_file(home)
    with home_lock(home / ".broker.lock"):
        state = _running_state(home)
        if state is not None:
            running = str(state.get("security", "plaintext"))
            if running != security:
                raise BrokerError(
                    f"Kafka at {state['bootstrap_servers']} already runs with {running}, not"
                    f" {security}: stop it first (retail-pipeline kafka down)"
                )
            sec = ensure_security(home) if security == "sasl_ssl" else None
            client = _client_config(sec)
            log_file = Path(state["log_file"])
            _wait_until_answering(
                int(state["pid"]), int(state["port"]), properties, log_file, 0, timeout, client
            )
            ensure_topics(
                str(state["bootstrap_servers"]),
                topics,
                partitions=partitions,
                timeout=timeout,
                client_properties=client,
            )
            return _info(home, state, reused=True)
        _clear_state(home)

        data = (data_dir.expanduser() if data_dir is not None else home / "data").resolve()
        formatted_for = _data_security(data)
        if formatted_for is not None and formatted_for != security:
            raise BrokerError(
                f"the Kafka data in {data} was formatted for {formatted_for}, not {security}:"
                f" start it with --security {formatted_for}, or delete {data} (and its"
                " messages) to start over"
            )
        libs = ensure_jars(home) if libs is None else libs.expanduser().resolve()
        if not any(libs.glob(_KAFKA_JAR_GLOB)):
            raise BrokerError(f"no {_KAFKA_JAR_GLOB} in {libs}; run ensure_jars first")
        java = _java()
        if not _port_free(port):
            raise BrokerError(f"port {port} on {_HOST} is already in use")
        if controller_port is None:
            controller_port = port + 1 if port < 65535 and _port_free(port + 1) else _free_port()
        elif controller_port == port or not _port_free(controller_port):
            raise BrokerError(f"controller port {controller_port} on {_HOST} is not free")

        sec = ensure_security(home) if security == "sasl_ssl" else None
        client = _client_config(sec)
        data.mkdir(parents=True, exist_ok=True)
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / "server.log"
        properties.parent.mkdir(parents=True, exist_ok=True)
        _write_private(  # it may hold the keystore and inter-broker passwords
            properties,
            _server_properties(
                port=port,
                controller_port=controller_port,
                data_dir=data,
                partitions=partitions,
                security=sec,
            ),
        )
        log4j = properties.parent / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES)

        if formatted_for is None:
            _format_storage(java, libs, properties, log_file, timeout, sec)
            (data / _SECURITY_MARKER).write_text(security + "\n")

        setpriv = shutil.which("setpriv") if die_with_parent else None
        command = [
            *([setpriv, "--pdeathsig", "TERM"] if setpriv else []),
            java,
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={logs}",
            "-cp",
            f"{libs}/*",
            KAFKA_MAIN_CLASS,
            str(properties),
        ]
        with log_file.open("ab") as out:
            log_offset = out.tell()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
                start_new_session=True,
            )
        _CHILDREN[process.pid] = process
        state = {
            "pid": process.pid,
            "port": port,
            "controller_port": controller_port,
            "bootstrap_servers": f"{_HOST}:{port}",
            "data_dir": str(data),
            "log_file": str(log_file),
            "started_at": time.time(),
            "security": security,
            "client_properties": str(sec.client_properties) if sec is not None else None,
        }
        _state_file(home).write_text(json.dumps(state, indent=2) + "\n")
        _pid_file(home).write_text(f"{process.pid}\n")
        try:
            _wait_until_answering(
                process.pid, port, properties, log_file, log_offset, timeout, client
            )
            ensure_topics(
                str(state["bootstrap_servers"]),
                topics,
                partitions=partitions,
                timeout=timeout,
                client_properties=client,
            )
        except BaseException:
            _stop_locked(home, timeout=30.0, graceful=False)
            raise
        return _info(home, state, reused=False)


def _stop_locked(home: Path, *, timeout: float, graceful: bool) -> bool:
    state = _read_state(home)
    if state is None:
        _clear_state(home)
        return False
    pid = int(state["pid"])
    if not _is_broker(pid, _properties_file(home)):
        _clear_state(home)
        return False
    _signal(pid, signal.SIGTERM if graceful else signal.SIGKILL)
    if not _wait_for_exit(pid, timeout):
        _signal(pid, signal.SIGKILL)
        if not _wait_for_exit(pid, 30.0):
            raise BrokerError(f"Kafka (pid {pid}) did not exit even after SIGKILL")
    _clear_state(home)
    return True


def stop(home: Path, *, timeout: float = 60.0, graceful: bool = True) -> bool:
    """Stop the broker of ``home``; True if one was running.

    Sends SIGTERM (a clean, controlled shutdown) and waits up to ``timeout`` seconds, then
    SIGKILL. ``graceful=False`` sends SIGKILL at once, as a crash would. The pid file goes either
    way; the data directory stays.
    """
    home = home.expanduser().resolve()
    if not home.is_dir():
        return False
    with home_lock(home / ".broker.lock"):
        return _stop_locked(home, timeout=timeout, graceful=graceful)


def status(home: Path) -> BrokerStatus | None:
    """The broker of ``home`` if its process is alive, else None (a stale pid file is ignored)."""
    home = home.expanduser().resolve()
    state = _running_state(home)
    if state is None:
        return None
    port = int(state["port"])
    client_file = state.get("client_properties")
    return BrokerStatus(
        pid=int(state["pid"]),
        bootstrap_servers=str(state["bootstrap_servers"]),
        port=port,
        controller_port=int(state["controller_port"]),
        data_dir=Path(state["data_dir"]),
        log_file=Path(state["log_file"]),
        answering=_answers(str(state["bootstrap_servers"]), port, 3.0, client_properties(home)),
        security=str(state.get("security", "plaintext")),
        client_properties=Path(client_file) if client_file else None,
    )
