"""The Kafka paths that matter through a SASL_SSL broker with SCRAM-SHA-512 users (issue 24):
``kafka up --security sasl_ssl`` and its properties file, produce, exactly-once ingest,
``status``, a consumer SIGKILLed mid-ingest and resumed; and a client without credentials or
with a wrong password gets one ``error:`` line, at once rather than after the connect timeout.

One broker for the session (``sasl_ssl_kafka_broker``); each test works on topics of its own.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_pipeline import kafka_config
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.ingestion.kafka.producer import Delivered, produce_files
from retail_pipeline.ingestion.kafka.status import partition_lags
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse import open_warehouse
from tests.accounting import unaccounted_rows
from tests.cli.run import COMMAND, cli, ok, one_error_line
from tests.ingestion.kafka.test_chaos import loaded
from tests.ingestion.kafka.test_ingest import (
    assert_exactly_once,
    assert_valid_lines_landed,
    consume,
)
from tests.local.kafka_fixtures import SecuredBroker

pytestmark = pytest.mark.kafka
ALL_TOPICS = (*TOPICS, "dead_letter")
PATIENCE = "45"
"""The connect timeout the failure tests set: a refusal reported before it proves the client
did not wait for it (the command runs under a 60 s limit)."""


@pytest.fixture(autouse=True)
def _no_operator_properties(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RETAIL_KAFKA_CONFIG_* of the developer's leaks in."""
    for name in [n for n in os.environ if n.startswith(kafka_config.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    kafka_config.read_properties_file.cache_clear()
    yield
    kafka_config.read_properties_file.cache_clear()


def fresh_prefix(secured: SecuredBroker) -> str:
    """A topic prefix of this test's own, its topics created through SASL_SSL."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    broker.ensure_topics(
        secured.bootstrap_servers,
        [prefix + t for t in ALL_TOPICS],
        partitions=2,
        client_properties=secured.properties(),
    )
    return prefix


def produce(sim: Path, secured: SecuredBroker, prefix: str) -> list[Delivered]:
    delivered: list[Delivered] = []
    files = sorted((sim / "events").glob("*.ndjson"))
    produce_files(
        files,
        bootstrap=secured.bootstrap_servers,
        topic_prefix=prefix,
        on_delivered=delivered.append,
    )
    return delivered


def secured_env(secured: SecuredBroker, **extra: str) -> dict[str, str]:
    return {
        "RETAIL_KAFKA_BOOTSTRAP": secured.bootstrap_servers,
        "RETAIL_KAFKA_CONFIG_FILE": str(secured.client_properties),
        **extra,
    }


def password(secured: SecuredBroker) -> str:
    return secured.properties()["sasl.password"]


def test_kafka_up_writes_the_client_properties_and_prints_where(
    sasl_ssl_kafka_broker: SecuredBroker, tmp_path: Path
) -> None:
    secured = sasl_ssl_kafka_broker
    env = {"RETAIL_KAFKA_HOME": str(secured.home)}
    up = cli(
        "kafka", "up", "--security", "sasl_ssl", "--port", str(secured.port),
        warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **env,
    )  # fmt: skip
    lines = ok(up)
    assert f"export RETAIL_KAFKA_CONFIG_FILE={secured.client_properties}" in lines
    assert password(secured) not in up.stdout + up.stderr
    properties = secured.properties()
    assert properties["security.protocol"] == "SASL_SSL"
    assert properties["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert Path(properties["ssl.ca.location"]).read_text().startswith("-----BEGIN CERTIFICATE")
    security = secured.home / "security"
    assert stat.S_IMODE(security.stat().st_mode) == 0o700
    for name in ("ca.key", "broker.key", "broker.p12", "secrets.json", "client.properties"):
        assert stat.S_IMODE((security / name).stat().st_mode) == 0o600, name
    config = secured.home / "config" / "server.properties"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    status = ok(cli("kafka", "status", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **env))
    assert "(sasl_ssl): answering" in status[0]
    plaintext = cli(
        "kafka", "up", "--port", str(secured.port),
        warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **env,
    )  # fmt: skip
    one_error_line(plaintext, "already runs with sasl_ssl, not plaintext", "kafka down")


def test_a_home_keeps_the_mode_its_data_was_formatted_for(tmp_path: Path) -> None:
    """The SCRAM users live in the data: starting it in the other mode is refused before any
    broker runs."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.properties").write_text("node.id=1\n")
    (data / "retail-pipeline.security").write_text("sasl_ssl\n")
    with pytest.raises(broker.BrokerError, match="formatted for sasl_ssl, not plaintext"):
        broker.start(tmp_path / "home", data_dir=data, libs=tmp_path, port=1)


def test_produce_ingest_and_status_through_sasl_ssl_exactly_once(
    sasl_ssl_kafka_broker: SecuredBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secured = sasl_ssl_kafka_broker
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(secured.client_properties))
    sim = tmp_path / "sim"
    summary = generate(sim, days=2, orders_per_day=80, seed=24, faults=FaultRates())
    prefix = fresh_prefix(secured)
    delivered = produce(sim, secured, prefix)
    assert len(delivered) == summary.lines
    warehouse = tmp_path / "wh.duckdb"
    consume(warehouse, secured.bootstrap_servers, prefix, validation_workers=0)
    assert_exactly_once(warehouse, delivered, prefix)
    assert_valid_lines_landed(warehouse, sim, summary.malformed)

    with open_warehouse(warehouse, target="duckdb", read_only=True) as wh:
        positions = wh.all_positions()
    lags, error = partition_lags(
        positions, secured.bootstrap_servers, tuple(prefix + t for t in TOPICS)
    )
    assert error is None
    assert sum(lag.end_offset or 0 for lag in lags) == len(delivered)
    assert [lag.lag for lag in lags] == [0] * len(lags) and len(lags) == 2 * len(TOPICS)
    status = cli(
        "status", warehouse=warehouse, cwd=tmp_path,
        **secured_env(secured, RETAIL_TOPIC_PREFIX=prefix),
    )  # fmt: skip
    lines = ok(status)
    assert not any("?" in line for line in lines), status.stdout


def test_a_consumer_killed_mid_ingest_resumes_with_nothing_lost_or_doubled(
    sasl_ssl_kafka_broker: SecuredBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secured = sasl_ssl_kafka_broker
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(secured.client_properties))
    generate(tmp_path / "sim", days=2, orders_per_day=300, seed=7, faults=FaultRates())
    prefix = fresh_prefix(secured)
    delivered = produce(tmp_path / "sim", secured, prefix)
    warehouse = tmp_path / "wh.duckdb"
    env = {
        **os.environ,
        **secured_env(secured, RETAIL_TOPIC_PREFIX=prefix),
        "RETAIL_WAREHOUSE": str(warehouse),
    }
    # Static membership: the rerun takes the killed member's partitions back at once.
    ingest = [*COMMAND, "ingest", "--kafka", "--group", f"g-{prefix}", "--instance-id", "one"]
    errors = tmp_path / "killed.err"  # a file: the killed run's validator may hold a pipe open
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(
            [*ingest, "--batch-size", "100", "--linger-ms", "20", "--shared"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while loaded(warehouse) <= 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, errors.read_text()[-2000:]
    done = loaded(warehouse)
    assert 0 < done < len(delivered), f"the kill landed after {done} of {len(delivered)}"

    final = subprocess.run(
        [*ingest, "--until-caught-up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert_exactly_once(warehouse, delivered, prefix)
    assert unaccounted_rows(warehouse) == []


COMMANDS = {
    "status": ("status",),
    "produce": ("produce", "orders.ndjson"),
    "ingest --kafka": ("ingest", "--kafka", "--until-caught-up"),
}


def wrong_password_file(secured: SecuredBroker, folder: Path) -> Path:
    path = folder / "wrong.properties"
    text = secured.client_properties.read_text()
    path.write_text(text.replace(password(secured), "not-the-password"))
    path.chmod(0o600)
    return path


def test_a_client_the_broker_refuses_gets_one_error_line_at_once(
    sasl_ssl_kafka_broker: SecuredBroker, kafka_broker: str, tmp_path: Path
) -> None:
    """status, produce and ingest --kafka, each without credentials (plaintext to the SASL_SSL
    port), with a wrong password, and speaking TLS to a plaintext listener (the session's
    plaintext broker): nine runs side by side (they mostly wait)."""
    secured = sasl_ssl_kafka_broker
    (tmp_path / "orders.ndjson").write_text('{"not": "an event"}\n')
    wrong = wrong_password_file(secured, tmp_path)
    tls = {"RETAIL_KAFKA_CONFIG_SECURITY_PROTOCOL": "SSL", "RETAIL_KAFKA_BOOTSTRAP": kafka_broker}
    cases = {
        "none": ({}, "closes every connection before answering"),
        "wrong password": ({"RETAIL_KAFKA_CONFIG_FILE": str(wrong)}, "SASL authentication error"),
        "tls to plaintext": (tls, "SSL handshake failed"),
    }
    base = {
        **os.environ,
        "RETAIL_KAFKA_BOOTSTRAP": secured.bootstrap_servers,
        "RETAIL_KAFKA_CONNECT_TIMEOUT": PATIENCE,
    }
    warehouses = {}
    for number, command in enumerate(COMMANDS):  # ingest takes its warehouse's lock
        for credentials in cases:
            warehouses[command, credentials] = tmp_path / f"wh{number}{len(credentials)}.duckdb"
            open_warehouse(warehouses[command, credentials], target="duckdb").close()
    started = time.monotonic()
    runs = {
        (command, credentials): subprocess.Popen(
            [*COMMAND, *args],
            env={**base, **extra, "RETAIL_WAREHOUSE": str(warehouses[command, credentials])},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command, args in COMMANDS.items()
        for credentials, (extra, _) in cases.items()
    }
    for (command, credentials), proc in runs.items():
        stdout, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - started
        result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        extra, reason = cases[credentials]
        bootstrap = extra.get("RETAIL_KAFKA_BOOTSTRAP", secured.bootstrap_servers)
        line = one_error_line(result, f"Kafka broker at {bootstrap} refused this client", reason)
        assert "unreachable after" not in line, (command, credentials)  # no timeout waited out
        assert password(secured) not in stdout + stderr
        print(f"{command} with {credentials}: done within {seconds:.1f} s")
