"""docker/bases.py and docker/bases/, checked without podman: the tags, the podman settings, the
upstream references and the Kafka stand-in's mapping of its environment to server.properties."""

from __future__ import annotations

import importlib.util
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_TO_PROPERTIES = REPO / "docker" / "bases" / "kafka" / "bin" / "env-to-properties.sh"


def load_bases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_bases", REPO / "docker" / "bases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bases = load_bases()


@pytest.fixture
def sources(tmp_path: Path) -> object:
    """A copy of docker/bases/ with made-up CAs and jar checksums."""
    shutil.copytree(REPO / "docker" / "bases", tmp_path / "bases")
    (tmp_path / "cas").mkdir()
    (tmp_path / "cas" / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n")
    (tmp_path / "jars.sha256").write_text(f"{'0' * 64}  kafka_2.13-4.1.1.jar\n")
    return bases.Sources(
        bases=tmp_path / "bases", cas=tmp_path / "cas", jars_checksums=tmp_path / "jars.sha256"
    )


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_tags_are_named_after_the_image_and_stable(sources: object) -> None:
    tags = bases.plan(sources)
    assert list(tags) == list(bases.ORDER)
    for name, tag in tags.items():
        assert re.fullmatch(rf"localhost/retail-base-{name}:[0-9a-f]{{12}}", tag), tag
    assert bases.plan(sources) == tags
    assert len(set(tags.values())) == len(tags)


def test_a_tag_changes_with_its_inputs_and_its_parents_only(sources: object) -> None:
    tags = bases.plan(sources)
    folder = sources.bases  # type: ignore[attr-defined]

    entrypoint = folder / "postgres" / "docker-entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + "\n")
    after = bases.plan(sources)
    assert changed(tags, after) == {"postgres"}

    (folder / "kafka" / "config" / "extra.properties").write_text("a=b\n")
    assert changed(after, bases.plan(sources)) == {"kafka"}
    after = bases.plan(sources)

    sources.jars_checksums.write_text(f"{'1' * 64}  kafka_2.13-4.1.1.jar\n")  # type: ignore[attr-defined]
    assert changed(after, bases.plan(sources)) == {"kafka"}
    after = bases.plan(sources)

    (sources.cas / "second.crt").write_text("another CA\n")  # type: ignore[attr-defined]
    assert changed(after, bases.plan(sources)) == set(bases.ORDER)  # bookworm is every parent
    after = bases.plan(sources)

    containerfile = folder / "python" / "Containerfile"
    containerfile.write_text(containerfile.read_text() + "# a comment is an input too\n")
    assert changed(after, bases.plan(sources)) == {"python"}


def test_a_tag_ignores_what_is_not_an_input(sources: object) -> None:
    tags = bases.plan(sources)
    folder = sources.bases  # type: ignore[attr-defined]
    (folder / "python" / "Containerfile").touch()  # a new modification time, same contents
    (sources.cas / "notes.txt").write_text("not a CA\n")  # type: ignore[attr-defined]
    assert bases.plan(sources) == tags


def test_content_tag_keeps_names_and_contents_apart() -> None:
    one = bases.content_tag("x", files={"a": b"bc"}, settings={})
    assert bases.content_tag("x", files={"ab": b"c"}, settings={}) != one
    assert bases.content_tag("x", files={"a": b"bc"}, settings={"a": "bc"}) != one
    assert bases.content_tag("y", files={"a": b"bc"}, settings={}).endswith(one[-13:])
    assert bases.content_tag("x", files={"p": b"1", "q": b"2"}, settings={}) == bases.content_tag(
        "x", files={"q": b"2", "p": b"1"}, settings={}
    )


def test_containers_conf_names_runc_and_the_hard_nofile_limit(tmp_path: Path) -> None:
    conf = bases.containers_conf(tmp_path / "podman")
    text = conf.read_text()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert f'"nofile={hard}:{hard}"' in text
    assert '"nproc=32768:32768"' in text
    assert re.search(r'^\[engine\]\nruntime = "runc"$', text, re.MULTILINE)
    assert text.index("[containers]") < text.index("default_ulimits") < text.index("[engine]")
    assert bases.podman_env(conf)["CONTAINERS_CONF"] == str(conf)


def test_upstream_references_are_read_from_the_stack_files() -> None:
    references = bases.upstream_references()
    assert set(references) == {"python", "postgres", "kafka"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={references['python']}\n" in dockerfile
    assert references["python"].startswith("python:3.11")
    assert f"image: {references['postgres']}\n" in (REPO / "docker" / "compose.yml").read_text()
    kafka = (REPO / "docker" / "kafka" / "docker-compose.kafka.yml").read_text()
    assert kafka.count(f"image: {references['kafka']}\n") == 2  # the broker and kafka-topics


def env_to_properties(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENV_TO_PROPERTIES)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_kafka_settings_become_properties_like_the_official_image() -> None:
    done = env_to_properties(
        {
            "CLUSTER_ID": "eMhrAkwcQFeTNLTLwzn9dA",
            "KAFKA_NODE_ID": "1",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://localhost:9093",
            "KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs",
            "KAFKA_LOG_RETENTION_MS": "-1",
            "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
            "KAFKA_OPTS": "-Dx=y",
            "KAFKA_CONFLUENT___SUPPORT__METRICS_ENABLE": "false",
            "RETAIL_TOPIC_PREFIX": "dev_",
        }
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "confluent-support_metrics.enable=false",
        "listeners=PLAINTEXT://:9092,CONTROLLER://localhost:9093",
        "log.dirs=/tmp/kraft-combined-logs",
        "log.retention.ms=-1",
        "node.id=1",
    ]


def test_kafka_values_are_data_never_shell() -> None:
    done = env_to_properties(
        {
            "KAFKA_SASL_JAAS_CONFIG": "$(touch /tmp/pwned) `id` \\u0041 ${HOME} * ; #",
            "KAFKA_LISTENERS": "  padded",
        }
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "listeners=\\  padded",
        "sasl.jaas.config=$(touch /tmp/pwned) `id` \\\\u0041 ${HOME} * ; #",
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAFKA_LISTENERS", "a\nzookeeper.connect=x", "KAFKA_LISTENERS holds a control"),
        ("KAFKA_LISTENERS", "caf\u00e9", "KAFKA_LISTENERS holds a control or non-ASCII"),
        ("KAFKA_node_id", "1", "KAFKA_node_id is not a setting's name"),
        ("KAFKA_", "1", "KAFKA_ is not a setting's name"),
    ],
)
def test_kafka_refuses_what_would_not_be_one_property(name: str, value: str, message: str) -> None:
    done = env_to_properties({name: value})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert message in done.stderr
