"""Stand-ins for the stack's upstream base images, built with podman on a machine with no registry.

Where no container registry can be reached, the images that ``Dockerfile`` and the compose files
name (``python:3.11.14-slim-bookworm``, ``postgres:15.14-bookworm``, ``apache/kafka:4.1.1``)
cannot be pulled. This module builds look-alikes from Debian's packages (docker/bases/, one
folder each) on a Debian bookworm root made by debootstrap, and tells which local tag stands in
for which upstream reference, so that an override file can swap them in (docker/stack.py).

These images exist only on this machine: their Debian root trusts the extra CAs of this
machine's TLS-inspecting proxy (``/usr/local/share/ca-certificates``). Never push them.

Each tag is a hash of everything that goes into its image (its folder's files, its parent's tag,
the Debian suite and mirror; for bookworm the CAs; for Kafka ``kafka/jars.sha256``), so an image
is built only when one of those changed, and an older tag of the same image is then removed.

    python docker/bases.py      # builds what is missing; one line per image
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from retail_pipeline.local.services import log_excerpt

REPO = Path(__file__).resolve().parents[1]
BASES = Path(__file__).resolve().with_name("bases")
HOST_CAS = Path("/usr/local/share/ca-certificates")
JARS_CHECKSUMS = REPO / "kafka" / "jars.sha256"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_OPTIONS = ("--variant=minbase", "--include=ca-certificates")
NPROC_LIMIT = 32768
"""podman's default nproc limit; a higher one fails to start containers on this machine."""

ORDER = ("bookworm", "python", "postgres", "kafka")
"""Every image, each after its parent: bookworm is the parent of the other three."""

_BUILD_TIMEOUT = 1800


class BasesError(RuntimeError):
    """A base image could not be planned or built; the message says which and why."""


@dataclass(frozen=True)
class Sources:
    """Where the inputs of the images are read from: the repository's, or a test's copies."""

    bases: Path = BASES
    cas: Path = HOST_CAS
    jars_checksums: Path = JARS_CHECKSUMS


# --------------------------------------------------------------------------- podman settings


def containers_conf(directory: Path) -> Path:
    """Write the containers.conf podman needs on this machine into ``directory``; return its path.

    The runtime is runc (crun fails on this machine's cgroup layout), and the default ulimits are
    what the calling process may have: nofile at its hard limit (podman's default asks for more
    than the sandbox allows) and nproc at 32768.
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile == resource.RLIM_INFINITY:
        nofile = 1048576
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "containers.conf"
    path.write_text(
        "# Written by docker/bases.py: podman's settings for this machine.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", '
        f'"nproc={NPROC_LIMIT}:{NPROC_LIMIT}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
    )
    return path


def podman_env(conf: Path) -> dict[str, str]:
    """This process's environment with ``CONTAINERS_CONF`` naming ``conf``."""
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


# --------------------------------------------------------------------------- upstream references


def upstream_references(repo: Path = REPO) -> dict[str, str]:
    """``image name -> upstream reference`` as written in the Dockerfile and the compose files."""
    dockerfile = (repo / "Dockerfile").read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    if python is None:
        raise BasesError(f"no 'ARG PYTHON_IMAGE=<image>' line in {repo / 'Dockerfile'}")
    return {
        "python": python[1],
        "postgres": _service_image(repo / "docker" / "compose.yml", "postgres"),
        "kafka": _service_image(repo / "docker" / "kafka" / "docker-compose.kafka.yml", "kafka"),
    }


def _service_image(compose: Path, service: str) -> str:
    document = yaml.safe_load(compose.read_text())
    try:
        image = document["services"][service]["image"]
    except (KeyError, TypeError) as exc:
        raise BasesError(f"no image for service {service!r} in {compose}") from exc
    if not isinstance(image, str) or not image:
        raise BasesError(f"the image of service {service!r} in {compose} is not a reference")
    return image


# --------------------------------------------------------------------------- tags


def content_tag(name: str, *, files: Mapping[str, bytes], settings: Mapping[str, str]) -> str:
    """``localhost/retail-base-<name>:<hash>``: 12 hex digits of SHA-256 over the inputs.

    Each input is written with its name and length first, so that no two different sets of
    inputs hash the same text; the order of the mappings does not matter.
    """
    digest = hashlib.sha256()
    for key, value in sorted(settings.items()):
        text = value.encode()
        digest.update(f"setting {key} {len(text)}\n".encode() + text)
    for path, content in sorted(files.items()):
        digest.update(f"file {path} {len(content)}\n".encode() + content)
    return f"localhost/retail-base-{name}:{digest.hexdigest()[:12]}"


def _folder_files(folder: Path, prefix: str) -> dict[str, bytes]:
    if not folder.is_dir():
        raise BasesError(f"{folder} is not a folder")
    return {
        f"{prefix}/{path.relative_to(folder).as_posix()}": path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _cas(cas: Path) -> dict[str, bytes]:
    return {f"cas/{path.name}": path.read_bytes() for path in sorted(cas.glob("*.crt"))}


def plan(sources: Sources = Sources()) -> dict[str, str]:
    """``image name -> tag`` for every image in :data:`ORDER`, from the inputs' contents alone."""
    tags: dict[str, str] = {}
    for name in ORDER:
        files = _folder_files(sources.bases / name, name)
        settings = {"suite": SUITE, "mirror": MIRROR}
        if name == "bookworm":
            settings["debootstrap"] = " ".join(DEBOOTSTRAP_OPTIONS)
            files.update(_cas(sources.cas))
        else:
            settings["parent"] = tags["bookworm"]
        if name == "kafka":
            files["kafka/jars.sha256"] = sources.jars_checksums.read_bytes()
        tags[name] = content_tag(name, files=files, settings=settings)
    return tags


# --------------------------------------------------------------------------- building


def ensure_bases(*, env: dict[str, str], log: Callable[[str], None]) -> dict[str, str]:
    """Build the images that are missing; return ``upstream reference -> local tag``.

    ``env`` is podman's environment (:func:`podman_env`). ``log`` gets one line per image: its
    tag, whether it was built or found, and the seconds that took. The references are those of
    the Dockerfile and compose files as written (tag and digest), e.g.
    ``{"postgres:15.14-bookworm": "localhost/retail-base-postgres:0123456789ab", ...}``.
    """
    tags = plan()
    references = upstream_references()
    for name in ORDER:
        tag = tags[name]
        started = time.monotonic()
        if _podman(env, "image", "exists", tag).returncode == 0:
            outcome = "cached"
        elif name == "bookworm":
            _build_bookworm(tag, env)
            outcome = "built"
        elif name == "kafka":
            _build_kafka(tag, tags["bookworm"], env)
            outcome = "built"
        else:
            _build(tag, BASES / name, env, build_args={"BASE": tags["bookworm"]})
            outcome = "built"
        log(f"{tag} {outcome} {time.monotonic() - started:.1f} s")
        _remove_older(tag, env, log)
    return {references[name]: tags[name] for name in references}


def _podman(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=dict(env), capture_output=True, text=True, check=False
    )


def _build_log(tag: str) -> Path:
    folder = Path(tempfile.gettempdir()) / "retail-bases"
    folder.mkdir(exist_ok=True)
    return folder / (tag.rpartition("/")[2].replace(":", "-") + ".log")


def _run_logged(command: list[str], *, env: Mapping[str, str], what: str, log_file: Path) -> None:
    """Run ``command`` with its output appended to ``log_file``; one-line error on failure."""
    with log_file.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        offset = out.tell()
        try:
            done = subprocess.run(
                command,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=_BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BasesError(f"{what} took over {exc.timeout:.0f} s; see {log_file}") from exc
    if done.returncode != 0:  # the log grows across runs: only this run's tail is read
        last = log_excerpt(log_file, offset, ())
        raise BasesError(f"{what} failed (exit {done.returncode}): {last}; see {log_file}")


def _build(tag: str, context: Path, env: Mapping[str, str], *, build_args: dict[str, str]) -> None:
    # --network=host: a RUN step on podman's default bridge makes netavark add its chains to the
    # host's firewall for good (the end-to-end run checks the rules are unchanged); the host
    # network adds none
    command = ["podman", "build", "--network=host", "--pull=never", "--force-rm", "--tag", tag]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    command += ["--file", str(context / "Containerfile"), str(context)]
    log_file = _build_log(tag)
    log_file.write_text("")
    _run_logged(command, env=env, what=f"podman build of {tag}", log_file=log_file)


def _build_bookworm(tag: str, env: Mapping[str, str]) -> None:
    """debootstrap a minbase root into a scratch folder, import it, then add this machine's CAs."""
    log_file = _build_log(tag)
    log_file.write_text("")
    scratch = Path(tempfile.mkdtemp(prefix="retail-bases-bookworm-", dir="/var/tmp"))
    rootfs_tag = tag.replace("retail-base-bookworm:", "retail-base-bookworm-rootfs:")
    try:
        root = scratch / "root"
        _run_logged(
            ["debootstrap", *DEBOOTSTRAP_OPTIONS, SUITE, str(root), MIRROR],
            env=env,
            what=f"debootstrap of {SUITE}",
            log_file=log_file,
        )
        _unmount_under(root)
        # the packages' cache and the index files: apt-get update fetches them again when needed
        for leftovers in (root / "var/cache/apt/archives", root / "var/lib/apt/lists"):
            for path in leftovers.glob("*"):
                if path.is_file():
                    path.unlink()
        archive = scratch / "rootfs.tar"
        _run_logged(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."],
            env=env,
            what="tar of the debootstrap root",
            log_file=log_file,
        )
        shutil.rmtree(root)
        _run_logged(
            ["podman", "import", str(archive), rootfs_tag],
            env=env,
            what=f"podman import of {rootfs_tag}",
            log_file=log_file,
        )
        archive.unlink()
        context = scratch / "context"
        (context / "cas").mkdir(parents=True)
        shutil.copy2(BASES / "bookworm" / "Containerfile", context / "Containerfile")
        for ca in sorted(HOST_CAS.glob("*.crt")):
            shutil.copy2(ca, context / "cas" / ca.name)
        _build(tag, context, env, build_args={"ROOTFS": rootfs_tag})
    finally:
        _unmount_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        _podman(env, "rmi", rootfs_tag)


def _unmount_under(folder: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted below ``folder`` (proc, sys, dev...),
    deepest first, so that removing the folder never reaches into the host's file systems."""
    prefix = str(folder.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _build_kafka(tag: str, parent: str, env: Mapping[str, str]) -> None:
    """Fetch and check the jars on the host (kafka/pom.xml, jars.sha256), then build with them."""
    from retail_pipeline.local.kafka_broker import BrokerError, ensure_jars

    with tempfile.TemporaryDirectory(prefix="retail-bases-kafka-") as scratch:
        context = Path(scratch) / "context"
        shutil.copytree(BASES / "kafka", context)
        try:
            libs = ensure_jars(Path(scratch) / "home")
        except BrokerError as exc:
            raise BasesError(f"the Kafka jars for {tag}: {exc}") from exc
        (context / "libs").mkdir()
        for jar in sorted(libs.glob("*.jar")):
            shutil.copy2(jar, context / "libs" / jar.name)
        _build(tag, context, env, build_args={"BASE": parent})


def _remove_older(tag: str, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    """Remove the other tags of ``tag``'s image, so that rebuilds do not pile up in the store;
    one still in use (by a container, or as the parent of another image) is kept."""
    repository = tag.rpartition(":")[0]
    listed = _podman(
        env, "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}"
    )
    for old in sorted(set(listed.stdout.split()) - {tag}):
        if old.rpartition(":")[0] != repository:
            continue
        removed = _podman(env, "rmi", old)
        if removed.returncode != 0:
            reason = (removed.stderr.strip().splitlines() or ["no reason given"])[-1]
            log(f"{old} kept: podman rmi failed: {reason}")


def main() -> int:
    """Build every missing image with a containers.conf of this machine's; one line per image."""
    with tempfile.TemporaryDirectory(prefix="retail-bases-conf-") as folder:
        env = podman_env(containers_conf(Path(folder)))
        try:
            ensure_bases(env=env, log=print)
        except BasesError as exc:
            print(f"bases: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
