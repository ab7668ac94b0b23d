"""The supply chain (README, "Supply chain"): what the project installs is what it recorded.

- Python: every ``requirements/*.lock`` pins each package with ``==`` and SHA-256 hashes; the
  dev lock covers every dependency pyproject.toml names (runtime and the extras ``dev`` pulls
  in), the image locks cover the Dockerfile's extras at the dev lock's versions, and
  ``make install``, ``.ci/run`` and the Dockerfile install from them with ``--require-hashes``.
- Images: every image the Dockerfile and the compose files pull is pinned by digest
  (``name:tag@sha256:...``), or allowlisted below with the reason it is not.
- Maven: the broker's jars are fetched with strict checksums (``mvn -C``) and refused unless
  each matches ``kafka/jars.sha256``.

Each checker is also run on a planted mistake, so the checks can fail.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shlex
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from retail_pipeline.local import kafka_broker as broker

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

IMAGE_ALLOWLIST: dict[str, str] = {
    "retail-pipeline:local": "built here from the Dockerfile (docker/compose.yml), never pulled",
    "retail-pipeline-airflow:local": "built here from the Dockerfile, never pulled",
    "postgres:15.14-bookworm": (
        "no registry is reachable from here and no digest of this tag was confirmed by more "
        "than one published source; pin it with `docker buildx imagetools inspect` "
        "(docs/docker.md)"
    ),
}
"""Image references allowed without a digest, each with the reason."""

DIGEST_PINNED = re.compile(r"[a-z0-9./_-]+:[\w.-]+@sha256:[0-9a-f]{64}")
"""``name:tag@sha256:<64 hex>``: the tag for the reader, the digest for the pull."""


# --- Python lock files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str, source: str = "lock") -> dict[str, Pin]:
    """The pins of a hashed requirements file; raises ``ValueError`` naming the first bad entry.

    Every entry must be ``name==version`` followed by at least one ``--hash=sha256:<64 hex>``,
    nothing else (no ranges, URLs, editables, options or index settings).
    """
    entries: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line and not pending:
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        entries.append((start, pending + line))
        pending = ""
    if pending:
        entries.append((start, pending))
    pins: dict[str, Pin] = {}
    for number, entry in entries:
        words = entry.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", words[0])
        if match is None:
            raise ValueError(f"{source}:{number}: {words[0]!r} is not pinned with ==")
        hashes = []
        for word in words[1:]:
            digest = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})", word)
            if digest is None:
                raise ValueError(f"{source}:{number}: {word!r} is not a --hash=sha256: option")
            hashes.append(digest[1])
        if not hashes:
            raise ValueError(f"{source}:{number}: {words[0]} has no --hash=sha256:")
        name = canonicalize_name(match[1])
        if name in pins:
            raise ValueError(f"{source}:{number}: {name} is pinned twice")
        pins[name] = Pin(name, match[2], tuple(hashes))
    if not pins:
        raise ValueError(f"{source}: pins nothing")
    return pins


def lock(name: str) -> dict[str, Pin]:
    path = LOCKS / name
    return parse_lock(path.read_text(), str(path.relative_to(REPO)))


def requirements_of(extras: set[str]) -> list[Requirement]:
    """pyproject's runtime dependencies plus those of ``extras`` (self-references followed)."""
    project = PYPROJECT["project"]
    own = canonicalize_name(project["name"])
    found = [Requirement(text) for text in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == own:
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def coverage_problems(pins: dict[str, Pin], requirements: list[Requirement]) -> list[str]:
    """Requirements the lock does not pin, or pins at a version outside their specifier."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
        ):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} is pinned at {pin.version}")
    return problems


def dockerfile_extras() -> set[str]:
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"^ARG EXTRAS=(\S+)$", text, re.MULTILINE)
    assert match is not None, "Dockerfile: no ARG EXTRAS="
    return set(match[1].split(","))


def header_extras(name: str) -> set[str]:
    """The ``--extra`` flags of the command recorded in a lock's header."""
    command = next(
        line.lstrip("# ").strip()
        for line in (LOCKS / name).read_text().splitlines()
        if "pip compile" in line
    )
    words = shlex.split(command)
    return {words[i + 1] for i, word in enumerate(words) if word == "--extra"}


@pytest.mark.parametrize(
    "name", ["build.lock", "dev.lock", "image.lock", "image-airflow.lock", "tools.lock"]
)
def test_every_lock_entry_is_pinned_and_hashed(name: str) -> None:
    pins = lock(name)
    assert all(pin.hashes for pin in pins.values())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rich>=13 \\\n    --hash=sha256:" + "a" * 64 + "\n", "not pinned with =="),
        ("rich==15.0.0\n", "has no --hash=sha256:"),
        ("rich==15.0.0 \\\n    --hash=md5:" + "a" * 32 + "\n", "not a --hash=sha256: option"),
        ("-e .\n", "not pinned with =="),
        ("--index-url https://example.invalid/simple\n", "not pinned with =="),
        ("# only comments\n", "pins nothing"),
    ],
)
def test_the_lock_check_refuses_a_planted_mistake(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_lock(text)


def test_dev_lock_covers_pyproject_and_the_dev_extras() -> None:
    pins = lock("dev.lock")
    assert coverage_problems(pins, requirements_of({"dev"})) == [], "run `make lock`"
    every_extra = set(PYPROJECT["project"]["optional-dependencies"])
    assert coverage_problems(pins, requirements_of(every_extra)) == [], "run `make lock`"
    # the check itself: a requirement the lock misses, and one it pins outside the range
    planted = [Requirement("left-pad==1.0"), Requirement("rich<13")]
    assert coverage_problems(pins, planted) == [
        "left-pad==1.0 is not in the lock",
        f"rich<13 is pinned at {pins['rich'].version}",
    ]


def test_build_lock_holds_the_installer_and_the_build_backend() -> None:
    pins = lock("build.lock")
    build = [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    assert coverage_problems(pins, [*build, Requirement("pip")]) == []


def test_image_locks_are_the_dockerfiles_extras_at_the_dev_locks_versions() -> None:
    extras = dockerfile_extras()
    assert header_extras("image.lock") == extras
    assert header_extras("image-airflow.lock") == extras | {"airflow"}
    dev = lock("dev.lock")
    for name, wanted in (("image.lock", extras), ("image-airflow.lock", extras | {"airflow"})):
        pins = lock(name)
        assert coverage_problems(pins, requirements_of(wanted)) == [], name
        assert not set(pins) & {"pytest", "mypy", "ruff", "fakesnow", "playwright"}, name
        differ = {n: (p.version, dev[n].version) for n, p in pins.items() if dev[n] != p}
        assert differ == {}, f"{name} and dev.lock disagree"
    build = lock("build.lock")
    assert {n: p for n, p in build.items() if n in dev and dev[n] != p} == {}


def test_the_environment_is_the_dev_lock() -> None:
    """The virtual environment running these tests holds the dev lock's versions: what CI and
    `make install` build is what the lock says."""
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
    }
    wrong = {
        name: (pin.version, installed.get(name))
        for name, pin in lock("dev.lock").items()
        if installed.get(name) != pin.version
    }
    assert wrong == {}


def recipe(makefile: str, target: str) -> list[str]:
    """The recipe lines of a Makefile target (variables left as written)."""
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)*)", makefile, re.MULTILINE)
    assert match is not None, f"Makefile: no target {target}"
    return [line.strip() for line in match[1].splitlines()]


def pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"\bpip install\b", line)]


def unhashed_installs(lines: list[str]) -> list[str]:
    """``pip install`` commands that could fetch a file no lock lists."""
    return [
        line
        for line in pip_installs(lines)
        if not re.search(r"--require-hashes -r requirements/[\w.-]+\.lock\b", line)
        and "--no-index" not in line
    ]


def test_make_install_ci_and_the_dockerfile_install_from_the_locks() -> None:
    makefile = (REPO / "Makefile").read_text()
    stamp = recipe(makefile, "$(STAMP)")
    assert "$(STAMP): pyproject.toml $(LOCKS)" in makefile
    assert "LOCKS := requirements/build.lock requirements/dev.lock" in makefile
    installs = pip_installs(stamp)
    assert "--require-hashes -r requirements/build.lock" in installs[0]
    assert "--require-hashes -r requirements/dev.lock" in installs[1]
    assert "--no-deps --no-build-isolation --no-index -e ." in installs[2]
    assert unhashed_installs(stamp) == []
    assert "uv pip compile" in makefile and "--generate-hashes" in makefile
    assert recipe(makefile, "lock")
    # .ci/run runs `make test`, which lints first, which installs through the stamp above
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    assert re.search(r"^test: lint\b", makefile, re.MULTILINE)
    assert re.search(r"^lint: \$\(STAMP\)", makefile, re.MULTILINE)
    dockerfile = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN")]
    commands = [c.strip() for run in runs for c in run.split("&&")]
    assert unhashed_installs(commands) == []
    locked = re.findall(r"--require-hashes -r (requirements/[\w.-]+\.lock)", dockerfile)
    assert set(locked) == {
        "requirements/build.lock",
        "requirements/image.lock",
        "requirements/image-airflow.lock",
    }
    # the check itself
    assert unhashed_installs(["$(BIN)/pip install -e '.[dev]'"]) == [
        "$(BIN)/pip install -e '.[dev]'"
    ]


def test_readme_installs_with_make_install() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make install" in readme
    assert "pip install -e" not in readme


# --- container images ----------------------------------------------------------------------------


def image_references() -> dict[str, str]:
    """Every image the Dockerfile's stages and the compose files name: reference -> where."""
    found: dict[str, str] = {}
    dockerfile = (REPO / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    stages = set(re.findall(r"^FROM \S+ AS (\w[\w-]*)$", dockerfile, re.MULTILINE | re.IGNORECASE))
    for base in re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE):
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), base)
        if image not in stages:
            found[image] = "Dockerfile"
    for compose in sorted((REPO / "docker").rglob("*.yml")):
        for image in re.findall(r"^\s*image:\s*[\"']?([^\s\"']+)", compose.read_text(), re.M):
            found[image] = str(compose.relative_to(REPO))
    return found


def image_problems(references: dict[str, str], allowlist: dict[str, str]) -> list[str]:
    problems = [
        f"{where}: {image} is neither pinned by digest nor allowlisted"
        for image, where in references.items()
        if not DIGEST_PINNED.fullmatch(image) and image not in allowlist
    ]
    problems += [
        f"allowlisted {image} is no longer used" for image in allowlist if image not in references
    ]
    return problems


def test_every_image_is_pinned_by_digest_or_allowlisted() -> None:
    references = image_references()
    assert {where for where in references.values()} >= {"Dockerfile", "docker/compose.yml"}
    assert image_problems(references, IMAGE_ALLOWLIST) == []
    assert all(reason.strip() for reason in IMAGE_ALLOWLIST.values())
    pinned = [image for image in references if "@" in image]
    assert any(image.startswith("python:") for image in pinned)
    assert any(image.startswith("apache/kafka:") for image in pinned)


def test_the_image_check_refuses_a_planted_mistake() -> None:
    digest = "@sha256:" + "0" * 64
    references = {
        "python:3.11.14-slim-bookworm": "Dockerfile",
        "apache/kafka" + digest: "compose",  # a digest without a readable tag
        "apache/kafka:4.1.1@sha256:abc": "compose",  # not a digest
        "postgres:15.14-bookworm" + digest: "compose",
    }
    assert image_problems(references, {"redis:7": "gone"}) == [
        "Dockerfile: python:3.11.14-slim-bookworm is neither pinned by digest nor allowlisted",
        f"compose: apache/kafka{digest} is neither pinned by digest nor allowlisted",
        "compose: apache/kafka:4.1.1@sha256:abc is neither pinned by digest nor allowlisted",
        "allowlisted redis:7 is no longer used",
    ]


# --- Maven: strict checksums and the recorded jars ----------------------------------------------


def test_mvn_runs_with_strict_checksums(tmp_path: Path) -> None:
    command = broker.mvn_command("mvn", tmp_path / "pom.xml", tmp_path / "libs")
    assert command[0] == "mvn"
    assert "-C" in command or "--strict-checksums" in command
    assert "dependency:copy-dependencies" in command


def mvn_invocations() -> list[tuple[str, str]]:
    """Every line of the repository's scripts and docs that runs ``mvn`` on a goal."""
    roots = ["scripts", "src", "bench", "tests", "docs", "docker", "kafka", ".ci"]
    files = [REPO / "Makefile", REPO / "README.md", REPO / "Dockerfile"]
    files += [p for root in roots for p in (REPO / root).rglob("*") if p.is_file()]
    found = []
    for path in files:
        if path.suffix in {".pyc", ".jar", ".duckdb"} or path == Path(__file__):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for line in text.replace("\\\n", " ").splitlines():
            if re.search(r"(^|[\s`(])mvn\s.*\bdependency:", line):
                found.append((str(path.relative_to(REPO)), line.strip()))
    return found


def test_every_mvn_invocation_checks_checksums_strictly() -> None:
    invocations = mvn_invocations()
    assert any(path == "scripts/fetch-kafka.sh" for path, _ in invocations)
    lax = [
        f"{path}: {line}"
        for path, line in invocations
        if not re.search(r"\s(-C|--strict-checksums)\b", line)
    ]
    assert lax == []


def test_recorded_jars_match_the_pom() -> None:
    expected = broker._read_checksums(REPO / "kafka" / "jars.sha256")
    pom = (REPO / "kafka" / "pom.xml").read_text()
    versions = dict(re.findall(r"<([\w.]+)\.version>([^<]+)</", pom))
    for jar in (
        f"kafka_2.13-{versions['kafka']}.jar",
        f"slf4j-api-{versions['slf4j']}.jar",
        f"log4j-core-{versions['log4j2']}.jar",
        f"log4j-slf4j-impl-{versions['log4j2']}.jar",
    ):
        assert jar in expected, jar


def write_jars(folder: Path, jars: dict[str, bytes]) -> str:
    """Write ``jars`` into ``folder``; return their ``sha256sum``-format listing."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in jars.items():
        (folder / name).write_bytes(content)
    return "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in jars.items())


JARS = {"kafka_2.13-9.9.9.jar": b"PK broker", "slf4j-api-1.7.36.jar": b"PK logging"}


def test_verify_jars_accepts_the_recorded_jars_and_refuses_any_other(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    checksums = tmp_path / "jars.sha256"
    checksums.write_text(write_jars(libs, JARS))
    broker.verify_jars(libs, checksums)

    (libs / "slf4j-api-1.7.36.jar").write_bytes(b"PK logging, patched")
    patched = hashlib.sha256(b"PK logging, patched").hexdigest()
    with pytest.raises(broker.BrokerError) as refused:
        broker.verify_jars(libs, checksums)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"slf4j-api-1.7.36.jar from mvn has SHA-256 {patched}, not the ")
    assert message.endswith(f"recorded in {checksums}; refused")

    (libs / "slf4j-api-1.7.36.jar").write_bytes(b"PK logging")
    (libs / "extra-1.0.jar").write_bytes(b"PK smuggled")
    with pytest.raises(broker.BrokerError, match=r"^extra-1\.0\.jar from mvn is not listed"):
        broker.verify_jars(libs, checksums)

    (libs / "extra-1.0.jar").unlink()
    (libs / "kafka_2.13-9.9.9.jar").unlink()
    with pytest.raises(
        broker.BrokerError, match=r"^kafka_2\.13-9\.9\.9\.jar, listed in .* did not"
    ):
        broker.verify_jars(libs, checksums)

    checksums.write_text("not a checksum line\n")
    with pytest.raises(broker.BrokerError, match=r"jars\.sha256:1: not a '<sha256>  <name>\.jar'"):
        broker.verify_jars(libs, checksums)


FAKE_MVN = """#!{python}
import shutil, sys
from pathlib import Path
Path({log!r}).write_text("\\n".join(sys.argv[1:]))
out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-DoutputDirectory="))
for jar in Path({source!r}).glob("*.jar"):
    shutil.copy(jar, out)
"""


@pytest.fixture
def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A ``mvn`` on PATH that records its arguments and "fetches" the jars of a source folder;
    returns (source folder, pom, argument log)."""
    source, bin_dir, log = tmp_path / "central", tmp_path / "bin", tmp_path / "mvn-args"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN.format(python=sys.executable, log=str(log), source=str(source)))
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(broker, "_java", lambda: "java")
    project = tmp_path / "kafka"
    project.mkdir()
    (project / "pom.xml").write_text("<project/>")
    (project / "jars.sha256").write_text(write_jars(source, JARS))
    return source, project / "pom.xml", log


def test_ensure_jars_fetches_with_strict_checksums_and_keeps_recorded_jars(
    tmp_path: Path, fake_maven: tuple[Path, Path, Path]
) -> None:
    _, pom, log = fake_maven
    libs = broker.ensure_jars(tmp_path / "home", pom=pom)
    assert "-C" in log.read_text().splitlines()
    assert sorted(p.name for p in libs.glob("*.jar")) == sorted(JARS)


def test_ensure_jars_refuses_a_tampered_jar_and_keeps_nothing(
    tmp_path: Path, fake_maven: tuple[Path, Path, Path]
) -> None:
    source, pom, _ = fake_maven
    (source / "kafka_2.13-9.9.9.jar").write_bytes(b"PK broker, with a backdoor")
    home = tmp_path / "home"
    with pytest.raises(broker.BrokerError, match=r"^kafka_2\.13-9\.9\.9\.jar from mvn has SHA-256"):
        broker.ensure_jars(home, pom=pom)
    assert not (home / "libs").exists()
    assert [p.name for p in home.iterdir() if p.name.startswith("libs")] == []


def test_ensure_jars_needs_the_checksums_beside_the_pom(
    tmp_path: Path, fake_maven: tuple[Path, Path, Path]
) -> None:
    _, pom, log = fake_maven
    (pom.parent / "jars.sha256").unlink()
    with pytest.raises(broker.BrokerError, match=r"^no jars\.sha256 beside "):
        broker.ensure_jars(tmp_path / "home", pom=pom)
    assert not log.exists()  # mvn never ran
