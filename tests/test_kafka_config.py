"""The operator's librdkafka properties: a properties file and ``RETAIL_KAFKA_CONFIG_<NAME>``
variables, checked line by line, merged under each client's own keys, secrets never shown."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_pipeline import kafka_config
from retail_pipeline.errors import PipelineError
from retail_pipeline.kafka_config import (
    MAX_FILE_BYTES,
    OWNED_KEYS,
    KafkaConfig,
    client_config,
    operator_properties,
    parse_properties,
    property_name,
    scrub,
)

SECRET = "tops3cret-value"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RETAIL_KAFKA_CONFIG_* of this machine, and every file read afresh."""
    for name in [n for n in os.environ if n.startswith("RETAIL_KAFKA_CONFIG_")]:
        monkeypatch.delenv(name)
    kafka_config.read_properties_file.cache_clear()
    yield
    kafka_config.read_properties_file.cache_clear()


def properties_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "client.properties"
    path.write_text(text)
    path.chmod(mode)
    return path


def refusal(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PipelineError) as caught:
        operator_properties()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_file_with_comments_and_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = properties_file(
        tmp_path,
        "# Confluent Cloud\n! also a comment\n\nsecurity.protocol = SASL_SSL\n"
        "sasl.mechanism=PLAIN\r\n  sasl.username=KEY123  \nsasl.password=a=b==\n",
    )
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    assert operator_properties() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "KEY123",
        "sasl.password": "a=b==",
    }


def test_variables_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = properties_file(tmp_path, "sasl.mechanism=PLAIN\nclient.id=from-file\n")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_SOCKET_KEEPALIVE_ENABLE", "true")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_SSL_CA_LOCATION", "")  # empty: unset
    assert operator_properties() == {
        "sasl.mechanism": "SCRAM-SHA-512",
        "client.id": "from-file",
        "socket.keepalive.enable": "true",
    }


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("RETAIL_KAFKA_CONFIG_SASL_MECHANISM", "sasl.mechanism"),
        ("RETAIL_KAFKA_CONFIG_SASL_OAUTHBEARER_CLIENT_ID", "sasl.oauthbearer.client.id"),
        ("RETAIL_KAFKA_CONFIG_SSL__KEY__PASSWORD", "ssl_key_password"),
        ("RETAIL_KAFKA_CONFIG_BROKER_ADDRESS__FAMILY", "broker.address_family"),
    ],
)
def test_a_variable_names_its_property(variable: str, key: str) -> None:
    assert property_name(variable) == key


def test_nothing_is_read_when_nothing_is_set() -> None:
    assert operator_properties() == {}


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("client.id=x\nsasl.password hunter2\n", 2, "expected key=value"),
        ("=value\n", 1, "expected key=value"),
        ("Client.Id=x\n", 1, "is not a librdkafka property name"),
        ("client id=x\n", 1, "is not a librdkafka property name"),
        ("client.id=\n", 1, "client.id has no value"),
        ("client.id=a\n\nclient.id=b\n", 3, "client.id is set again (first at line 1)"),
        ("ssl.key.pem=-----BEGIN \\\n", 1, "line continuations are not supported"),
        ("client.id=a\x1b[2Jb\n", 1, "holds control characters"),
    ],
)
def test_a_bad_line_is_refused_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, needle: str
) -> None:
    path = properties_file(tmp_path, text)
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(path))
    assert f"RETAIL_KAFKA_CONFIG_FILE {path}:{line}: " in message
    assert needle in message
    assert "hunter2" not in message and "\x1b" not in message


@pytest.mark.parametrize("key", [*sorted(OWNED_KEYS), "error_cb", "stats_cb", "oauth_cb"])
def test_an_owned_key_is_refused_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    path = properties_file(tmp_path, f"client.id=x\n{key}=1\n")
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(path))
    assert f"{path}:2: {key} cannot be set here" in message


def test_an_owned_key_is_refused_in_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_BOOTSTRAP_SERVERS="evil:9092")
    assert message == (
        "RETAIL_KAFKA_CONFIG_BOOTSTRAP_SERVERS: bootstrap.servers cannot be set here:"
        " set by RETAIL_KAFKA_BOOTSTRAP"
    )
    monkeypatch.delenv("RETAIL_KAFKA_CONFIG_BOOTSTRAP_SERVERS")
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_GROUP_ID="other")
    assert "RETAIL_KAFKA_CONFIG_GROUP_ID: group.id cannot be set here" in message


def test_a_bad_variable_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, **{"RETAIL_KAFKA_CONFIG_CLIENT_ID$": "x"})
    assert message == (
        "RETAIL_KAFKA_CONFIG_CLIENT_ID$: 'client.id$' is not a librdkafka property name"
        " (lowercase letters, digits, '.', '_' and '-')"
    )


def test_an_error_after_a_secret_does_not_show_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = properties_file(
        tmp_path,
        f"sasl.password={SECRET}\nsasl.oauthbearer.config=principal={SECRET}\n"
        f"sasl.password.again {SECRET}\n",
    )
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(path))
    assert f"{path}:3: expected key=value" in message
    assert SECRET not in message
    monkeypatch.delenv("RETAIL_KAFKA_CONFIG_FILE")
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_SASL_PASSWORD=f"{SECRET}\nX")
    assert "RETAIL_KAFKA_CONFIG_SASL_PASSWORD" in message and SECRET not in message


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.keystore.location",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
    ],
)
def test_a_secret_is_masked_in_every_rendering(key: str) -> None:
    config = KafkaConfig({"client.id": "visible", key: SECRET})
    for text in (repr(config), str(config), f"{config}", f"{config!r}", str([config])):
        assert SECRET not in text and "visible" in text
    assert config[key] == SECRET  # librdkafka gets the value itself
    assert scrub(f"Failed: {SECRET} refused", config.secrets()) == "Failed: *** refused"


def test_a_merged_client_config_masks_and_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = properties_file(tmp_path, f"linger.ms=50\nsasl.password={SECRET}\n")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    config = client_config({"bootstrap.servers": "b:9092"}, {"linger.ms": 20, "acks": "all"})
    assert config == {
        "acks": "all",
        "linger.ms": "50",
        "sasl.password": SECRET,
        "bootstrap.servers": "b:9092",
    }
    assert isinstance(config, KafkaConfig) and SECRET not in repr(config)
    assert scrub(f"x {SECRET} y") == "x *** y"  # remembered for librdkafka's log lines


def test_a_required_key_is_never_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_COMPRESSION_TYPE", "zstd")
    with pytest.raises(PipelineError, match=r"compression\.type cannot be set in"):
        client_config({"compression.type": "lz4"})


def test_a_file_over_the_size_bound_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = properties_file(tmp_path, "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(path))
    assert message == f"RETAIL_KAFKA_CONFIG_FILE {path}: larger than 1,048,576 bytes"


def test_a_missing_or_non_utf8_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(tmp_path / "nope.properties"))
    assert message.startswith(f"RETAIL_KAFKA_CONFIG_FILE {tmp_path / 'nope.properties'}: cannot")
    path = tmp_path / "latin1.properties"
    path.write_bytes(b"client.id=a\nclient.rack=caf\xe9\n")
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(path))
    assert message == f"RETAIL_KAFKA_CONFIG_FILE {path}:2: not UTF-8"
    message = refusal(monkeypatch, RETAIL_KAFKA_CONFIG_FILE=str(tmp_path))
    assert "not a regular file" in message or "cannot be read" in message


def test_the_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = properties_file(tmp_path, "client.id=first\n")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    assert operator_properties() == {"client.id": "first"}
    path.write_text("client.id=second\n")
    assert operator_properties() == {"client.id": "first"}


def test_a_readable_secret_file_is_warned_about_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = properties_file(tmp_path, f"sasl.password={SECRET}\n", mode=0o644)
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    operator_properties()
    operator_properties()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: RETAIL_KAFKA_CONFIG_FILE")
    assert "chmod 600" in err and "0644" in err and SECRET not in err


def test_a_readable_file_without_secrets_is_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = properties_file(tmp_path, "client.id=x\n", mode=0o644)
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    operator_properties()
    assert capsys.readouterr().err == ""


def test_parse_properties_alone() -> None:
    assert parse_properties("a.b=1\n#c=2\n", "test") == {"a.b": "1"}
