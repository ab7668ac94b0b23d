"""A local PostgreSQL cluster as the reference-data batch source, and the helpers that fill it.

:class:`LocalPostgres` runs a throwaway cluster of the installed PostgreSQL (15 or newer: the
Debian package ``postgresql``) on 127.0.0.1 only: a source for development and tests.
``start`` initialises it on first use, starts it with ``pg_ctl``, creates the database and applies
the schema (``postgres_schema.sql``); ``stop``, ``restart`` and ``kill`` are ``pg_ctl``'s, so
tests can break connections or crash it mid-read. As root, ``initdb`` and the server run as the
``postgres`` user (PostgreSQL refuses root), which then owns the data directory and the log.

Safe by default: every connection, TCP or socket, authenticates with scram-sha-256. ``initdb``
gets the superuser ``postgres`` a generated password, and ``start`` makes the role the pipeline
uses, ``retail`` (not a superuser: it owns the source databases and their tables, and may read
``pg_stat_activity`` of every session, ``pg_read_all_stats``, which the reader's window needs;
it cannot run programs nor read server files, as ``COPY ... TO PROGRAM`` would). Each password
is generated, kept in a libpq password file readable by its owner only (mode 0600 from its
creation, in a 0700 folder) and handed to the server only as a SCRAM verifier, never as text.
The DSNs this module gives name that file (``?passfile=``), so they hold no secret and can be
printed. A cluster made by an older version (trusting loopback) gets both at its next start.

A home directory holds one cluster::

    secrets/         postgres.pgpass and retail.pgpass, the passwords (0700, files 0600)
    data/            PGDATA (postgresql.conf includes retail_pipeline.conf, rewritten per start)
    postgres.log     initdb's and the server's output
    sockets/         the Unix socket (0700; TCP on 127.0.0.1 is what the DSN uses)
    cluster ->       only as root, when the postgres user cannot reach ``home`` (a private
                     temporary directory such as pytest's): a link to
                     ``~postgres/retail-pipeline/<digest>/``, which then holds the last three
                     entries above; :meth:`LocalPostgres.destroy` removes it

:func:`apply_schema`, :func:`upsert` and :func:`seed` work on any database given by its DSN.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import glob
import hashlib
import hmac
import importlib.resources
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from retail_pipeline.errors import InputError, PipelineError, redact
from retail_pipeline.local.services import (
    home_lock,
    live_command_line,
    local_home,
    log_excerpt,
    port_free,
)

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as missing:  # the [postgres] extra
    raise PipelineError(
        "psycopg is not installed: pip install 'retail-pipeline[postgres]'"
    ) from missing
from retail_pipeline.events.contract import REFERENCE_FIELDS, REFERENCE_KEYS

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_PORT",
    "MIN_MAJOR",
    "ROLE",
    "SUPERUSER",
    "LocalPostgres",
    "PostgresError",
    "PostgresStatus",
    "apply_schema",
    "default_home",
    "find_bindir",
    "row_counts",
    "schema_sql",
    "seed",
    "seed_simulated",
    "upsert",
]

DEFAULT_PORT = 5433  # beside, not on, a system cluster's 5432
DEFAULT_DATABASE = "retail"
MIN_MAJOR = 15
SUPERUSER = "postgres"
ROLE = "retail"
"""The role the pipeline reads and writes the source with: it owns the source databases."""

_HOST = "127.0.0.1"
_OWNER = "postgres"  # the OS user that runs the server when we are root
_SCHEMA_LOCK = 0x7265_7461_696C  # pg_advisory_xact_lock key serialising apply_schema
_CONNECT_TIMEOUT = 10
_PG_CTL_TIMEOUT = 60
_CONF_NAME = "retail_pipeline.conf"
_SOCKET_PATH_MAX = 107  # sun_path, less the terminating NUL
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\] ")  # log_line_prefix '%m [%p] '

_HBA = """\
# Written by retail_pipeline.local.postgres: a local cluster on loopback, passwords required.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
"""
_SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


class PostgresError(PipelineError):
    """The local cluster or a source database could not be set up, reached or written."""


@dataclass(frozen=True)
class PostgresStatus:
    """What :meth:`LocalPostgres.status` knows about a running cluster."""

    pid: int
    port: int
    dsn: str
    data_dir: Path
    log_file: Path
    accepting: bool
    """Whether it accepted a connection just now."""


# --------------------------------------------------------------------------- locations


def default_home() -> Path:
    """The CLI's cluster home: ``<checkout>/.postgres``, else a user cache directory."""
    return local_home("postgres", "src/retail_pipeline")


def _major(bindir: Path) -> int | None:
    try:
        done = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", done.stdout)
    return int(match.group(1)) if match else None


@functools.cache
def _installed() -> dict[int, Path]:
    """Each installed server's major version and bin directory (the first found per major)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
            )
            if done.returncode == 0 and done.stdout.strip():
                candidates.append(Path(done.stdout.strip()))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(path) for path in debian),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    found: dict[int, Path] = {}
    for bindir in candidates:
        if not all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            continue
        major = _major(bindir)
        if major is not None and major not in found:
            found[major] = bindir
    return found


def find_bindir(major: int | None = None) -> Path:
    """The bin directory of PostgreSQL ``major``, else of the newest installed 15 or newer.

    Looks at ``pg_config --bindir``, Debian's ``/usr/lib/postgresql/*/bin`` and the ``initdb`` on
    ``PATH``; a directory counts when it holds ``initdb``, ``pg_ctl`` and ``postgres``.
    """
    installed = _installed()
    if major is not None:
        if major in installed:
            return installed[major]
        raise PostgresError(
            f"PostgreSQL {major} not found (the cluster was made by it): "
            f"apt-get install postgresql-{major}"
        )
    usable = [found for found in installed if found >= MIN_MAJOR]
    if not usable:
        raise PostgresError(
            f"PostgreSQL {MIN_MAJOR} not found: apt-get install postgresql"
            " (or put the bin directory holding initdb on PATH)"
        )
    return installed[max(usable)]


# --------------------------------------------------------------------------- helpers


def _owner() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: ``postgres`` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_OWNER)
    except KeyError:
        raise PostgresError(
            f"running as root, PostgreSQL must run as the {_OWNER!r} user, which does not exist:"
            " apt-get install postgresql creates it"
        ) from None


def _as_owner(owner: pwd.struct_passwd | None) -> list[str]:
    """The command prefix that runs a program as ``owner`` (nothing when we are not root)."""
    if owner is None:
        return []
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", owner.pw_name, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"]
    raise PostgresError(
        "running as root, PostgreSQL must run as the postgres user, but neither runuser nor"
        " setpriv is installed: apt-get install util-linux"
    )


def _environment() -> dict[str, str]:
    """The tools' environment: ours, less libpq's PG* variables, in the C locale."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _port_free(port: int) -> bool:
    return port_free(_HOST, port)


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _log_excerpt(log_file: Path, offset: int = 0) -> str:
    """The most telling line written to ``log_file`` after ``offset``."""
    patterns = ("FATAL:", "PANIC:", "ERROR:", "could not", "initdb: error")
    return log_excerpt(log_file, offset, patterns, _LOG_PREFIX)


def _where(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never its password)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unreadable DSN"
    return f"{parts.get('host', '?')}:{parts.get('port', 5432)}/{parts.get('dbname', '?')}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_dsn(dsn: str) -> None:
    """Refuse a DSN libpq cannot parse, or parses into parts that hold a password's pieces (a
    URI whose password holds ``@`` or ``/`` unencoded: its tail becomes the host, port or
    database, which libpq's messages and ours would quote), in words that quote none of it."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        parts = None
    misread = parts is None or any(
        "@" in str(parts.get(name) or "") for name in ("host", "hostaddr", "port", "dbname")
    )
    ports = str((parts or {}).get("port") or "0").split(",")
    if misread or not all(port.strip().isdigit() for port in ports):
        raise PostgresError(
            "the DSN is not a PostgreSQL connection string that libpq reads as meant (in a"
            " postgresql:// URI, a password holding %, @, /, ? or a space must be"
            " percent-encoded, e.g. % as %25 and @ as %40; in key=value form, a value holding"
            " a space or a quote is put in single quotes)"
        ) from None


@contextlib.contextmanager
def _connect(dsn: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection to ``dsn``; failing to connect is one line naming where (never quoting the
    DSN's text, whose password may be anywhere in a malformed one)."""
    _check_dsn(dsn)
    try:
        connection = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=_CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise PostgresError(
            f"cannot connect to postgres at {_where(dsn)}: {redact(_first_line(exc))}"
        ) from None
    with connection:
        yield connection


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (what ``ALTER ROLE ...
    PASSWORD`` may be given instead of the text, so the server never sees the password)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _private_dir(path: Path) -> None:
    """Create directory ``path`` readable by its owner only (0700; an existing one made so)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Create file ``path`` holding ``text``, mode 0600 from its creation (never readable by
    others, not even for an instant); an existing file is an error."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)


def _pgpass_password(path: Path) -> str | None:
    """The password of a libpq password file this module wrote (``*:*:*:user:password``)."""
    try:
        line = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    password = line.split(":")[-1] if line.count(":") == 4 else ""
    return password or None


# --------------------------------------------------------------------------- the local cluster


class LocalPostgres:
    """A local PostgreSQL cluster of ``home`` on 127.0.0.1:``port``, holding ``database``.

    Connections need a password (scram-sha-256); :attr:`dsn` and :meth:`dsn_for` connect as
    :data:`ROLE` through the password file :attr:`passfile`. Methods raise
    :class:`PostgresError` (a :class:`PipelineError`) with a one-line reason.
    """

    def __init__(
        self, home: Path, port: int = DEFAULT_PORT, database: str = DEFAULT_DATABASE
    ) -> None:
        if not 1 <= port <= 65535:
            raise PostgresError(f"port must be in 1..65535, got {port}")
        self.home = Path(home).expanduser().resolve()
        self.port = port
        self.database = database

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.home)!r}, port={self.port}, database={self.database!r})"

    # ---- where things are

    @property
    def dsn(self) -> str:
        """The database's DSN, which holds no secret:
        ``postgresql://retail@127.0.0.1:PORT/DATABASE?passfile=HOME/secrets/retail.pgpass``."""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str, *, port: int | None = None) -> str:
        """The DSN of another database of this cluster, as :data:`ROLE`."""
        return self._uri(ROLE, database, port)

    def url_for(self, database: str, *, port: int | None = None) -> str:
        """``postgresql://retail@127.0.0.1:PORT/DATABASE``: where, for messages (no passfile)."""
        return f"postgresql://{ROLE}@{_HOST}:{port or self.port}/{database}"

    def _uri(self, user: str, database: str, port: int | None) -> str:
        passfile = quote(str(self.password_file(user)), safe="/")
        return f"postgresql://{user}@{_HOST}:{port or self.port}/{database}?passfile={passfile}"

    def _admin(self, database: str = "postgres", port: int | None = None) -> str:
        """The superuser's DSN (creating roles and databases)."""
        return self._uri(SUPERUSER, database, port)

    @property
    def secrets_dir(self) -> Path:
        """The folder of the password files (0700): always in ``home``, the caller's."""
        return self.home / "secrets"

    def password_file(self, user: str = ROLE) -> Path:
        """The libpq password file of ``user`` (``retail`` or ``postgres``), mode 0600."""
        return self.secrets_dir / f"{user}.pgpass"

    @property
    def passfile(self) -> Path:
        """The password file of :data:`ROLE`, which :attr:`dsn` names."""
        return self.password_file(ROLE)

    @property
    def cluster_dir(self) -> Path:
        """Where the data directory, log and socket are: ``home``, or what ``home/cluster``
        links to (see the module's docstring)."""
        link = self.home / "cluster"
        return link.resolve() if link.is_symlink() else self.home

    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        return self.cluster_dir / "data"

    @property
    def log_file(self) -> Path:
        """initdb's and the server's output."""
        return self.cluster_dir / "postgres.log"

    # ---- state

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of this cluster's live postmaster, from ``postmaster.pid``."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        cmdline = live_command_line(pid)
        if not cmdline or not Path(cmdline[0]).name.startswith("postgres"):
            return None  # a stale pid file whose pid now belongs to another program
        return pid, port

    def running(self) -> bool:
        """Whether this cluster's server process is alive."""
        return self._postmaster() is not None

    def status(self) -> PostgresStatus | None:
        """The running server (its real port, whatever ``port`` says), or None."""
        found = self._postmaster()
        if found is None:
            return None
        pid, port = found
        dsn = self.dsn_for(self.database, port=port)
        try:
            with psycopg.connect(self._admin(port=port), connect_timeout=3):
                accepting = True
        except psycopg.Error:
            accepting = False
        return PostgresStatus(pid, port, dsn, self.data_dir, self.log_file, accepting)

    # ---- running the tools

    def _bindir(self) -> Path:
        version = self.data_dir / "PG_VERSION"
        if version.is_file():
            return find_bindir(int(version.read_text().strip().split(".")[0]))
        return find_bindir()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*_as_owner(_owner()), str(self._bindir() / tool), *args]
        try:
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=self.cluster_dir,
                env=_environment(),
                timeout=_PG_CTL_TIMEOUT + 30,
                check=False,
            )
        except OSError as exc:
            raise PostgresError(f"could not run {tool}: {exc}") from None
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"{tool} {args[0] if args else ''} did not finish; log: {self.log_file}"
            ) from None

    def _pg_ctl(self, action: str, *args: str, failure: str) -> None:
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        done = self._run(
            "pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", str(_PG_CTL_TIMEOUT), *args
        )
        if done.returncode != 0:
            reason = _log_excerpt(self.log_file, offset)
            if reason == "no output":  # pg_ctl's own complaint, e.g. a data directory it rejects
                reason = (done.stderr or done.stdout).strip().partition("\n")[0] or reason
            raise PostgresError(f"{failure}: {reason}; log: {self.log_file}")

    # ---- preparing the cluster

    def _reachable(self, path: Path, owner: pwd.struct_passwd) -> bool:
        """Whether ``owner`` can enter ``path`` (every directory above it included)."""
        test = shutil.which("test") or "/usr/bin/test"
        done = subprocess.run(
            [*_as_owner(owner), test, "-x", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def _place(self, owner: pwd.struct_passwd | None) -> None:
        """Decide where the cluster of ``home`` lives (see :attr:`cluster_dir`)."""
        link = self.home / "cluster"
        if owner is None or link.is_symlink() or (self.data_dir / "PG_VERSION").is_file():
            return
        if self._reachable(self.home, owner):
            return
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
        outside = Path(owner.pw_dir) / "retail-pipeline" / digest
        if not self._reachable(Path(owner.pw_dir), owner):
            raise PostgresError(
                f"the {owner.pw_name} user cannot enter {self.home} nor its home {owner.pw_dir}:"
                " use a home under directories others may enter"
            )
        for directory in (outside.parent, outside):
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        link.symlink_to(outside, target_is_directory=True)

    def _owned(
        self, path: Path, owner: pwd.struct_passwd | None, *, directory: bool, text: str = ""
    ) -> None:
        """Create directory or file ``path`` (a file with ``text``), owned by ``owner``; a
        directory is private (0700)."""
        if directory:
            path.mkdir(mode=0o700, exist_ok=True)
            if path.stat().st_mode & 0o077:
                path.chmod(0o700)
        elif text:
            path.write_text(text)
        else:
            path.touch(mode=0o640, exist_ok=True)
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _initdb(self, owner: pwd.struct_passwd | None, password: str) -> None:
        data = self.data_dir
        pwfile = self.cluster_dir / ".initdb-password"  # initdb (maybe as postgres) reads it
        pwfile.unlink(missing_ok=True)
        _write_private(pwfile, password + "\n")
        try:
            if owner is not None:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            done = self._run(
                "initdb",
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
                "--auth=scram-sha-256",
                "--no-sync",  # a throwaway cluster: not worth waiting for the disk
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with self.log_file.open("a") as log:
            log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise PostgresError(
                f"initdb failed for {data}: {_log_excerpt(self.log_file)}; log: {self.log_file}"
            )
        self._owned(data / "pg_hba.conf", owner, directory=False, text=_HBA)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# The settings of retail_pipeline.local.postgres\ninclude '{_CONF_NAME}'\n"
            )

    def _passwords(self) -> dict[str, str]:
        """Each role's password, from its file; a file missing is created with a new one."""
        _private_dir(self.secrets_dir)
        passwords: dict[str, str] = {}
        for user in (SUPERUSER, ROLE):
            path = self.password_file(user)
            if path.exists() and path.stat().st_mode & 0o077:
                path.chmod(0o600)  # libpq ignores a password file others may read
            password = _pgpass_password(path)
            if password is None:
                path.unlink(missing_ok=True)
                password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: nothing to escape
                _write_private(path, f"*:*:*:{user}:{password}\n")
            passwords[user] = password
        return passwords

    def _secure(self, passwords: Mapping[str, str]) -> None:
        """Give the roles their passwords (as SCRAM verifiers) and :data:`ROLE` its rights, then
        require passwords everywhere: a cluster an older version made trusting loopback is
        changed over here, while its server still trusts the superuser."""
        with contextlib.ExitStack() as stack:
            try:
                connection = stack.enter_context(_connect(self._admin(), autocommit=True))
            except PostgresError as exc:
                raise PostgresError(
                    f"{exc} (the superuser's password is in {self.password_file(SUPERUSER)};"
                    f" if that file was lost, the cluster cannot be entered: stop it and delete"
                    f" {self.home})"
                ) from None
            try:
                exists = connection.execute(
                    "select 1 from pg_roles where rolname = %s", (ROLE,)
                ).fetchone()
                create = "alter" if exists else "create"
                connection.execute(
                    sql.SQL(
                        create + " role {} with login nosuperuser nocreatedb nocreaterole"
                        " noreplication nobypassrls password {}"
                    ).format(sql.Identifier(ROLE), sql.Literal(scram_verifier(passwords[ROLE])))
                )
                connection.execute(
                    sql.SQL("alter role {} with password {}").format(
                        sql.Identifier(SUPERUSER), sql.Literal(scram_verifier(passwords[SUPERUSER]))
                    )
                )
                connection.execute(
                    sql.SQL("grant pg_read_all_stats to {}").format(sql.Identifier(ROLE))
                )
                hba = self.data_dir / "pg_hba.conf"
                if hba.read_text() != _HBA:
                    self._owned(hba, _owner(), directory=False, text=_HBA)
                    connection.execute("select pg_reload_conf()")
            except (OSError, psycopg.Error) as exc:
                raise PostgresError(
                    f"could not set the roles up on {_HOST}:{self.port}: {redact(_first_line(exc))}"
                ) from None

    def _write_conf(self, owner: pwd.struct_passwd | None) -> None:
        sockets = self.cluster_dir / "sockets"
        self._owned(sockets, owner, directory=True)
        socket_dir = str(sockets)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # too deep for a Unix socket: TCP only
        self._owned(
            self.data_dir / _CONF_NAME,
            owner,
            directory=False,
            text="# Written by retail_pipeline.local.postgres on every start.\n"
            f"listen_addresses = {_quote_conf(_HOST)}\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {_quote_conf(socket_dir)}\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
            "# A server crash (pg_ctl stop -m immediate) loses no committed row; only an OS\n"
            "# crash could damage the cluster, which is throwaway.\n"
            "fsync = off\n",
        )

    # ---- the public life cycle

    def start(self) -> str:
        """Start the cluster (initialising it on first use), create the database if missing and
        apply the schema; return the database's DSN.

        A cluster of this home already running on ``port`` is kept as it is.
        """
        owner = _owner()
        self.home.mkdir(parents=True, exist_ok=True)
        with home_lock(self.home / ".lock"):
            self._place(owner)
            passwords = self._passwords()
            found = self._postmaster()
            if found is not None and found[1] != self.port:
                raise PostgresError(
                    f"postgres of {self.data_dir} already runs on {_HOST}:{found[1]}, not"
                    f" port {self.port}: stop it first"
                )
            if found is None:
                if not _port_free(self.port):
                    raise PostgresError(f"port {self.port} on {_HOST} is already in use")
                self._owned(self.log_file, owner, directory=False)
                if not (self.data_dir / "PG_VERSION").is_file():
                    self._owned(self.data_dir, owner, directory=True)
                    self._initdb(owner, passwords[SUPERUSER])
                self._write_conf(owner)
                self._pg_ctl(
                    "start",
                    "-l",
                    str(self.log_file),
                    failure=f"postgres did not start on {_HOST}:{self.port}",
                )
            self._secure(passwords)
            return self.create_database(self.database)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``: smart, fast or immediate); a no-op when it
        does not run. The data stays."""
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"mode must be smart, fast or immediate, got {mode!r}")
        if not self.home.is_dir():
            return
        with home_lock(self.home / ".lock"):
            if self.running():
                self._pg_ctl(
                    "stop", "-m", mode, failure=f"postgres of {self.data_dir} did not stop"
                )

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is broken, the data stays."""
        if not (self.data_dir / "PG_VERSION").is_file():
            raise PostgresError(f"no cluster in {self.data_dir} to restart: start it first")
        with home_lock(self.home / ".lock"):
            self._write_conf(_owner())
            self._pg_ctl(
                "restart",
                "-m",
                "fast",
                "-l",
                str(self.log_file),
                failure=f"postgres did not restart on {_HOST}:{self.port}",
            )

    def kill(self) -> None:
        """Stop at once, as a crash would (``-m immediate``: no checkpoint, recovery at the next
        start); committed rows survive."""
        self.stop(mode="immediate")

    def destroy(self) -> None:
        """Kill the server if it runs and delete the cluster (data, log, socket directory)."""
        if not self.home.is_dir():
            return
        if self.running():
            self.kill()
        cluster, link = self.cluster_dir, self.home / "cluster"
        shutil.rmtree(self.secrets_dir, ignore_errors=True)
        for entry in ("data", "postgres.log", "sockets"):
            path = cluster / entry
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if link.is_symlink():
            link.unlink()
            with contextlib.suppress(OSError):
                cluster.rmdir()  # empty now, unless someone put more there

    # ---- databases

    def create_database(self, name: str) -> str:
        """Create database ``name`` (owned by :data:`ROLE`) unless it exists, apply the schema
        to it, return its DSN."""
        with _connect(self._admin(), autocommit=True) as connection:
            try:
                exists = connection.execute(
                    "select 1 from pg_database where datname = %s", (name,)
                ).fetchone()
                if exists is None:
                    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                        connection.execute(
                            sql.SQL("create database {} owner {}").format(
                                sql.Identifier(name), sql.Identifier(ROLE)
                            )
                        )
                else:
                    connection.execute(
                        sql.SQL("alter database {} owner to {}").format(
                            sql.Identifier(name), sql.Identifier(ROLE)
                        )
                    )
            except psycopg.Error as exc:
                raise PostgresError(
                    f"could not create database {name!r} on {_HOST}:{self.port}: {_first_line(exc)}"
                ) from None
        if exists is not None:
            self._hand_over(name)
        dsn = self.dsn_for(name)
        apply_schema(dsn)
        return dsn

    def _hand_over(self, name: str) -> None:
        """Give :data:`ROLE` the source objects an older version created as the superuser."""
        with _connect(self._admin(name), autocommit=True) as connection:
            try:
                for table in REFERENCE_FIELDS:
                    connection.execute(
                        sql.SQL("alter table if exists {} owner to {}").format(
                            sql.Identifier(table), sql.Identifier(ROLE)
                        )
                    )
                if connection.execute(
                    "select 1 from pg_proc where proname = 'retail_touch_updated_at'"
                ).fetchone():
                    connection.execute(
                        sql.SQL("alter function retail_touch_updated_at() owner to {}").format(
                            sql.Identifier(ROLE)
                        )
                    )
            except psycopg.Error as exc:
                raise PostgresError(
                    f"could not give {ROLE} the tables of {name!r}: {_first_line(exc)}"
                ) from None

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing its connections."""
        with _connect(self._admin(), autocommit=True) as connection:
            try:
                connection.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
            except psycopg.Error as exc:
                raise PostgresError(
                    f"could not drop database {name!r} on {_HOST}:{self.port}: {_first_line(exc)}"
                ) from None


# --------------------------------------------------------------------------- schema and rows


def schema_sql() -> str:
    """The text of ``postgres_schema.sql`` (the tables, indexes and updated_at trigger)."""
    return (
        importlib.resources.files("retail_pipeline.local")
        .joinpath("postgres_schema.sql")
        .read_text(encoding="utf-8")
    )


def apply_schema(dsn: str) -> None:
    """Create the source tables of ``postgres_schema.sql`` in ``dsn``'s database (idempotent)."""
    with _connect(dsn) as connection:
        try:
            with connection.transaction():
                connection.execute("select pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                connection.execute(schema_sql().encode())
        except psycopg.Error as exc:
            raise PostgresError(
                f"could not apply the schema to {_where(dsn)}: {_first_line(exc)}"
            ) from None


def _value(value: Any) -> Any:
    """A record's value as a query parameter: money never through a binary float."""
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text that reads back as this float
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _upsert_query(entity: str, *, explicit: bool) -> sql.Composed:
    table = sql.Identifier(entity)
    names = [spec.name for spec in REFERENCE_FIELDS[entity]]
    key = REFERENCE_KEYS[entity]
    columns = names + (["updated_at"] if explicit else [])
    changed = [name for name in columns if name != key]
    return sql.SQL(
        "insert into {table} ({columns}) values ({values})"
        " on conflict ({key}) do update set {sets}"
        " where ({current}) is distinct from ({incoming})"
    ).format(
        table=table,
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        key=sql.Identifier(key),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name)) for name in changed
        ),
        current=sql.SQL(", ").join(sql.Identifier(entity, name) for name in changed),
        incoming=sql.SQL(", ").join(sql.Identifier("excluded", name) for name in changed),
    )


def upsert(
    dsn: str,
    entity: str,
    records: Iterable[Mapping[str, Any]],
    *,
    updated_at: datetime | None = None,
) -> int:
    """Insert or update ``customers`` or ``products`` rows from contract-shaped records; return
    how many rows were inserted or changed.

    Each record's fields are those of the contract's ``REFERENCE_FIELDS[entity]`` (others are
    ignored, missing ones are null). Values may be JSON-ish: timestamps as ISO text, a price as
    text, ``Decimal``, int or float (a float by its shortest text, never its binary value).
    Records the contract rejects are stored as they are as long as the column types can hold
    them (a null email, country ``'usa'``); one they cannot (price ``'abc'``, no key) raises
    :class:`PostgresError` naming the record, and nothing is written.

    A record equal to its stored row is left alone (its updated_at stays). Otherwise the schema's
    trigger stamps updated_at with the transaction's time, unless ``updated_at`` is given: then
    every row written gets exactly that value (equal values for several rows are ties, as a real
    source has them).
    """
    if entity not in REFERENCE_FIELDS:
        raise ValueError(f"unknown reference entity {entity!r}; expected customers or products")
    if updated_at is not None and updated_at.utcoffset() is None:
        raise ValueError("updated_at must be timezone-aware")
    names = [spec.name for spec in REFERENCE_FIELDS[entity]]
    extra = [updated_at] if updated_at is not None else []
    rows = [[_value(record.get(name)) for name in names] + extra for record in records]
    if not rows:
        return 0
    query = _upsert_query(entity, explicit=updated_at is not None)
    with _connect(dsn) as connection:
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(query, rows)
                return max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            if connection.closed:
                raise PostgresError(
                    f"lost the connection to {_where(dsn)} writing {entity}: {_first_line(exc)}"
                ) from None
            number, reason = _first_failing(connection, query, rows, exc)
            key = rows[number - 1][names.index(REFERENCE_KEYS[entity])]
            raise PostgresError(
                f"{entity} record {number} ({REFERENCE_KEYS[entity]} {key!r}) cannot be stored"
                f" in {_where(dsn)}: {reason}"
            ) from None


def _first_failing(
    connection: psycopg.Connection[Any],
    query: sql.Composed,
    rows: Sequence[Sequence[Any]],
    error: psycopg.Error,
) -> tuple[int, str]:
    """(1-based number, reason) of the first row the batch could not write; nothing is kept."""
    try:
        with connection.transaction(force_rollback=True), connection.cursor() as cursor:
            for number, row in enumerate(rows, start=1):
                try:
                    with connection.transaction():
                        cursor.execute(query, row)
                except psycopg.Error as exc:
                    return number, _first_line(exc)
    except psycopg.Error:
        pass
    return 1, _first_line(error)


def _json_records(entity: str, path: Path) -> list[dict[str, Any]]:
    from retail_pipeline.ingestion.batch import read_snapshot

    records: list[dict[str, Any]] = []
    for number, line, raw in read_snapshot(entity, path).records:
        where = f"{path}:{line}" if line is not None else f"{path} (record {number})"
        try:
            record = json.loads(raw, parse_float=Decimal)  # prices exact, as written
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: a {entity} record must be a JSON object")
        records.append(record)
    return records


def seed(dsn: str, customers: Path, products: Path) -> tuple[int, int]:
    """Upsert a reference snapshot, the ``customers.json`` and ``products.json`` (JSON arrays or
    NDJSON) that ``retail-pipeline generate`` writes; return the customers and products rows
    written. Both files are read before anything is written."""
    customer_records = _json_records("customers", Path(customers))
    product_records = _json_records("products", Path(products))
    return upsert(dsn, "customers", customer_records), upsert(dsn, "products", product_records)


def seed_simulated(
    dsn: str, *, days: int = 14, orders_per_day: int = 300, seed_value: int = 7
) -> tuple[int, int]:
    """Seed the reference data of a simulated shop, by default the one ``retail-pipeline demo``
    simulates (so its events find their customers and products); return the rows written."""
    from retail_pipeline.simulation import FaultRates, generate

    with tempfile.TemporaryDirectory(prefix="retail-postgres-seed-") as work:
        summary = generate(
            Path(work),
            days=days,
            orders_per_day=orders_per_day,
            seed=seed_value,
            faults=FaultRates(),  # as the demo: faults touch only events, yet shift the draws
        )
        return seed(dsn, summary.customers_path, summary.products_path)


def row_counts(dsn: str) -> dict[str, int]:
    """Rows per source table (``customers``, ``products``)."""
    counts: dict[str, int] = {}
    with _connect(dsn) as connection:
        for entity in REFERENCE_FIELDS:
            row = connection.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(entity))
            ).fetchone()
            counts[entity] = int(row[0]) if row else 0
    return counts
