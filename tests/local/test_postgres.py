"""The local PostgreSQL source: its life cycle, the schema, upserts and the updated_at trigger,
seeding from a simulation, exact money, and the ``retail-pipeline postgres`` commands."""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from retail_pipeline.cli import app
from retail_pipeline.errors import InputError
from retail_pipeline.events.contract import REFERENCE_KEYS
from retail_pipeline.local import postgres
from retail_pipeline.local.postgres import (
    LocalPostgres,
    PostgresError,
    apply_schema,
    row_counts,
    seed,
    upsert,
)
from retail_pipeline.simulation import generate
from tests.cli.run import COMMAND
from tests.local.kafka_fixtures import free_port
from tests.local.postgres_fixtures import postgres_unavailable

T0 = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)  # explicit stamps, all before any now()


def customer(customer_id: str, **changes: Any) -> dict[str, Any]:
    record = {
        "customer_id": customer_id,
        "name": "Ada Lovelace",
        "email": f"{customer_id}@example.com",
        "country": "GB",
        "created_at": "2025-12-01T08:00:00Z",
    }
    return record | changes


def product(product_id: str, price: Any = "19.99", **changes: Any) -> dict[str, Any]:
    record = {
        "product_id": product_id,
        "product_name": "Teapot",
        "category": "kitchen",
        "price": price,
        "active": True,
    }
    return record | changes


def query(dsn: str, text: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        cursor = connection.execute(text, params)
        return cursor.fetchall() if cursor.description else []


def stamps(dsn: str, table: str) -> dict[str, datetime]:
    key = REFERENCE_KEYS[table]
    rows = query(dsn, f"select {key}, updated_at from {table}")
    return {row_key: stamp for row_key, stamp in rows}


# --------------------------------------------------------------------------- the cluster


def test_life_cycle_keeps_committed_rows_through_restart_and_crash(
    private_postgres: LocalPostgres,
) -> None:
    server = private_postgres
    dsn = server.dsn
    passfile = server.home / "secrets" / "retail.pgpass"
    assert dsn == f"postgresql://retail@127.0.0.1:{server.port}/retail?passfile={passfile}"
    assert server.running()
    assert server.start() == dsn  # already running: kept as it is
    if os.geteuid() == 0:  # PostgreSQL refuses root: the postgres user runs and owns it
        assert server.data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert server.log_file.stat().st_uid == server.data_dir.stat().st_uid
    assert upsert(dsn, "customers", [customer("cus_1")]) == 1

    with psycopg.connect(dsn) as connection:
        connection.execute("select 1")
        server.restart()  # breaks every connection
        with pytest.raises(psycopg.OperationalError):
            connection.execute("select 1")
    assert server.running()
    assert row_counts(dsn) == {"customers": 1, "products": 0}

    assert upsert(dsn, "customers", [customer("cus_2")]) == 1
    server.kill()  # no shutdown checkpoint: recovery at the next start
    assert not server.running()
    assert server.status() is None
    assert server.start() == dsn
    assert row_counts(dsn) == {"customers": 2, "products": 0}

    status = server.status()
    assert status is not None and status.accepting and status.port == server.port
    server.stop()
    assert not server.running()
    server.stop()  # stopping a stopped cluster is a no-op


def test_start_names_a_port_in_use(postgres_server: LocalPostgres, tmp_path: Path) -> None:
    other = LocalPostgres(tmp_path / "other", port=postgres_server.port)
    with pytest.raises(PostgresError, match=rf"^port {postgres_server.port} on 127.0.0.1 is"):
        other.start()
    other.destroy()


def test_a_cluster_running_on_another_port_is_not_restarted_silently(
    postgres_server: LocalPostgres,
) -> None:
    elsewhere = LocalPostgres(postgres_server.home, port=free_port(avoid=postgres_server.port))
    with pytest.raises(PostgresError, match=rf"already runs on 127.0.0.1:{postgres_server.port}"):
        elsewhere.start()
    assert postgres_server.running()


def test_missing_postgresql_is_one_line_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "_installed", dict)
    with pytest.raises(
        PostgresError, match=r"^PostgreSQL 15 not found: apt-get install postgresql"
    ):
        postgres.find_bindir()


def test_unreachable_database_is_one_line_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(PostgresError) as raised:
            upsert(f"postgresql://u:secret@127.0.0.1:{port}/db", "customers", [customer("c")])
    message = str(raised.value)
    assert message.startswith(f"cannot connect to postgres at 127.0.0.1:{port}/db: ")
    assert "secret" not in message and "\n" not in message


# --------------------------------------------------------------------------- schema and upserts


def test_schema_is_applied_and_idempotent(postgres_db: str) -> None:
    apply_schema(postgres_db)  # again: nothing changes, nothing fails
    columns = query(
        postgres_db,
        "select table_name, column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = 'public' order by table_name, ordinal_position",
    )
    assert columns == [
        ("customers", "customer_id", "text", "NO"),
        ("customers", "name", "text", "YES"),
        ("customers", "email", "text", "YES"),
        ("customers", "country", "text", "YES"),
        ("customers", "created_at", "timestamp with time zone", "YES"),
        ("customers", "updated_at", "timestamp with time zone", "NO"),
        ("products", "product_id", "text", "NO"),
        ("products", "product_name", "text", "YES"),
        ("products", "category", "text", "YES"),
        ("products", "price", "numeric", "YES"),
        ("products", "active", "boolean", "YES"),
        ("products", "updated_at", "timestamp with time zone", "NO"),
    ]
    triggers = query(postgres_db, "select tgname from pg_trigger where not tgisinternal")
    assert sorted(name for (name,) in triggers) == [
        "customers_touch_updated_at",
        "products_touch_updated_at",
    ]


def test_upsert_inserts_updates_and_skips_unchanged_rows(postgres_db: str) -> None:
    assert upsert(postgres_db, "customers", [customer("c1"), customer("c2")]) == 2
    first = stamps(postgres_db, "customers")
    assert upsert(postgres_db, "customers", [customer("c1"), customer("c2")]) == 0
    assert stamps(postgres_db, "customers") == first  # nothing changed, nothing stamped

    assert upsert(postgres_db, "customers", [customer("c1", email="new@example.com")]) == 1
    second = stamps(postgres_db, "customers")
    assert second["c1"] > first["c1"]  # the trigger moved it
    assert second["c2"] == first["c2"]
    rows = query(postgres_db, "select email, created_at from customers where customer_id = 'c1'")
    assert rows == [("new@example.com", datetime(2025, 12, 1, 8, tzinfo=UTC))]

    # Another application's plain update is stamped too.
    query(postgres_db, "update customers set country = 'FR' where customer_id = 'c2'")
    assert stamps(postgres_db, "customers")["c2"] > second["c2"]


def test_explicit_updated_at_is_kept_and_makes_ties(postgres_db: str) -> None:
    records = [product("p1"), product("p2"), product("p3")]
    assert upsert(postgres_db, "products", records, updated_at=T0) == 3
    assert set(stamps(postgres_db, "products").values()) == {T0}  # a three-way tie

    later = T0 + timedelta(minutes=5)
    assert upsert(postgres_db, "products", [product("p1", "21.00")], updated_at=later) == 1
    assert stamps(postgres_db, "products") == {"p1": later, "p2": T0, "p3": T0}

    # A new stamp alone is a change; the same stamp again on a changed row is "left as it was",
    # which the trigger replaces with now() (postgres_schema.sql).
    assert upsert(postgres_db, "products", [product("p2")], updated_at=later) == 1
    assert upsert(postgres_db, "products", [product("p3", active=False)], updated_at=T0) == 1
    after = stamps(postgres_db, "products")
    assert after["p2"] == later and after["p3"] > later

    # An application's update that sets updated_at to a new value keeps it.
    query(
        postgres_db,
        "update products set category = 'garden', updated_at = %s where product_id = 'p1'",
        T0,
    )
    assert stamps(postgres_db, "products")["p1"] == T0

    with pytest.raises(ValueError, match="timezone-aware"):
        upsert(postgres_db, "products", records, updated_at=datetime(2026, 1, 1))


def test_records_the_contract_rejects_are_stored_as_they_are(postgres_db: str) -> None:
    odd = [
        customer("c1", email=None, country="usa"),
        {"customer_id": "c2"},  # every other field missing
        customer("c3", name=42, ignored="extra field"),
    ]
    assert upsert(postgres_db, "customers", odd) == 3
    rows = query(postgres_db, "select customer_id, name, email, country from customers order by 1")
    assert rows == [
        ("c1", "Ada Lovelace", None, "usa"),
        ("c2", None, None, None),
        ("c3", "42", "c3@example.com", "GB"),
    ]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [product("p1"), product("p2", price="abc")],
            r"^products record 2 \(product_id 'p2'\) cannot be stored in 127\.0\.0\.1:\d+/test_\d+:"
            r" invalid input syntax for type numeric: \"abc\"$",
        ),
        (
            [product("p1"), product(None)],  # type: ignore[arg-type]
            r"^products record 2 \(product_id None\) cannot be stored in .*: null value in column"
            r" \"product_id\"",
        ),
        (
            [product("p1", created="x", active="maybe")],
            r"^products record 1 .* invalid input syntax for type boolean: \"maybe\"$",
        ),
    ],
)
def test_a_record_the_columns_cannot_hold_is_one_line_and_writes_nothing(
    postgres_db: str, records: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(PostgresError, match=message):
        upsert(postgres_db, "products", records)
    assert row_counts(postgres_db)["products"] == 0


def test_money_is_exact(postgres_db: str) -> None:
    prices = {
        "text": "0.10",
        "decimal": Decimal("9999999999999999.99"),  # the most numeric(18, 2) holds
        "float": 0.1,  # by its shortest text, 0.1, not 0.1000000000000000055511151231257827
        "int": 3,
        "json": orjson.loads(b"19.99"),
    }
    records = [product(name, price) for name, price in prices.items()]
    assert upsert(postgres_db, "products", records) == len(prices)
    stored = {
        pid: price for pid, price in query(postgres_db, "select product_id, price from products")
    }
    assert stored == {
        "text": Decimal("0.10"),
        "decimal": Decimal("9999999999999999.99"),
        "float": Decimal("0.10"),
        "int": Decimal("3.00"),
        "json": Decimal("19.99"),
    }
    [(total,)] = query(postgres_db, "select sum(price) from products where product_id <> 'decimal'")
    assert total == Decimal("23.19")


# --------------------------------------------------------------------------- seeding


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("postgres-sim")
    generate(out, days=2, orders_per_day=60, seed=5, faults=None)
    return out


def test_seed_loads_a_simulated_snapshot_exactly(postgres_db: str, small_sim: Path) -> None:
    customers = orjson.loads((small_sim / "customers.json").read_bytes())
    products_text = (small_sim / "products.json").read_bytes()
    written = seed(postgres_db, small_sim / "customers.json", small_sim / "products.json")
    assert written == (len(customers), len(orjson.loads(products_text)))
    assert row_counts(postgres_db) == {"customers": written[0], "products": written[1]}

    # Every price as the file writes it, digit for digit.
    expected = dict(re.findall(rb'"product_id":"([^"]+)".*?"price":([0-9.]+)', products_text))
    stored = query(postgres_db, "select product_id, price from products")
    assert {pid: price for pid, price in stored} == {
        pid.decode(): Decimal(text.decode()) for pid, text in expected.items()
    }
    first = customers[0]
    [row] = query(
        postgres_db,
        "select name, email, country, created_at from customers where customer_id = %s",
        first["customer_id"],
    )
    assert row == (
        first["name"],
        first["email"],
        first["country"],
        datetime.fromisoformat(first["created_at"]),
    )

    assert seed(postgres_db, small_sim / "customers.json", small_sim / "products.json") == (0, 0)


def test_seed_reads_ndjson_and_refuses_a_bad_file_before_writing(
    postgres_db: str, small_sim: Path, tmp_path: Path
) -> None:
    ndjson = tmp_path / "products.ndjson"
    items = orjson.loads((small_sim / "products.json").read_bytes())
    ndjson.write_bytes(b"\n".join(orjson.dumps(item) for item in items[:5]) + b"\n")
    bad = tmp_path / "customers.ndjson"
    bad.write_bytes(b'{"customer_id": "c1"}\n{"customer_id": \n')
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}:2: not valid JSON"):
        seed(postgres_db, bad, ndjson)
    assert row_counts(postgres_db) == {"customers": 0, "products": 0}

    bad.write_bytes(b'{"customer_id": "c1"}\n')
    assert seed(postgres_db, bad, ndjson) == (1, 5)


# --------------------------------------------------------------------------- the CLI


def test_cli_up_status_down(tmp_path: Path) -> None:
    try:
        postgres.find_bindir()
    except PostgresError as exc:
        postgres_unavailable(str(exc))
    home, port = tmp_path / "pg", free_port()
    options = ["--home", str(home)]
    runner = CliRunner()
    where = f"postgresql://retail@127.0.0.1:{port}/retail"
    secrets = home.resolve() / "secrets"
    dsn = f"{where}?passfile={secrets}/retail.pgpass"
    try:
        up = runner.invoke(app, ["postgres", "up", "--port", str(port), *options])
        assert up.exit_code == 0, up.output
        lines = up.output.splitlines()
        log_file = LocalPostgres(home).log_file  # in home, or where home/cluster links (root)
        assert lines[0] == f"PostgreSQL started at {where} (log {log_file})"
        assert lines[1] == (
            f"passwords (mode 0600): retail in {secrets}/retail.pgpass,"
            f" the superuser postgres in {secrets}/postgres.pgpass"
        )
        assert re.fullmatch(
            r"seeded [\d,]+ customers and [\d,]+ products \(the demo's shop\)", lines[2]
        )
        assert lines[3] == f"export RETAIL_POSTGRES_DSN='{dsn}'"  # '?' is a shell wildcard
        for user in ("retail", "postgres"):
            password = (secrets / f"{user}.pgpass").read_text().strip().split(":")[-1]
            assert len(password) >= 24 and password not in up.output
        with psycopg.connect(dsn) as connection:  # usable as printed
            assert connection.execute("select current_user").fetchone() == ("retail",)

        status = runner.invoke(app, ["postgres", "status", *options])
        assert status.exit_code == 0, status.output
        assert re.fullmatch(
            rf"PostgreSQL pid \d+ at {re.escape(where)}: accepting \([\d,]+ customers,"
            r" [\d,]+ products\)\n",
            status.output,
        )

        again = runner.invoke(app, ["postgres", "up", "--port", str(port), *options])
        assert again.exit_code == 0, again.output
        assert again.output.startswith(f"PostgreSQL already running at {where} (log")
        assert "seeded" not in again.output  # the tables are not empty: left alone

        down = runner.invoke(app, ["postgres", "down", *options])
        assert (down.exit_code, down.output) == (0, "PostgreSQL stopped\n")
        stopped = runner.invoke(app, ["postgres", "status", *options])
        assert (stopped.exit_code, stopped.output) == (1, "PostgreSQL is not running\n")
        down = runner.invoke(app, ["postgres", "down", *options])
        assert (down.exit_code, down.output) == (0, "PostgreSQL was not running\n")
    finally:
        LocalPostgres(home).destroy()


def test_cli_seed_fills_any_database_once(postgres_db: str) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app
    from retail_pipeline.local.postgres import row_counts

    runner = CliRunner()
    first = runner.invoke(app, ["postgres", "seed", "--dsn", postgres_db])
    assert first.exit_code == 0, first.output
    counts = row_counts(postgres_db)
    assert counts["customers"] > 0 and counts["products"] > 0
    assert f"seeded {counts['customers']:,} customers" in first.output
    again = runner.invoke(app, ["postgres", "seed"], env={"RETAIL_POSTGRES_DSN": postgres_db})
    assert again.exit_code == 0 and "left alone" in again.output
    assert row_counts(postgres_db) == counts
    missing = runner.invoke(app, ["postgres", "seed"], env={"RETAIL_POSTGRES_DSN": ""})
    assert missing.exit_code == 1 and "RETAIL_POSTGRES_DSN" in str(missing.exception)


def test_cli_seed_from_files_writes_exactly_those_records(
    postgres_db: str, small_sim: Path
) -> None:
    """``--customers``/``--products`` seed a simulation's own reference data (the Docker stack's
    end-to-end run does this, so the events it produces find their customers and products)."""
    from retail_pipeline.local.postgres import row_counts

    runner = CliRunner()
    files = ["--customers", str(small_sim / "customers.json")]
    half = runner.invoke(app, ["postgres", "seed", "--dsn", postgres_db, *files])
    assert half.exit_code == 1 and "both --customers FILE and --products FILE" in str(
        half.exception
    )
    files += ["--products", str(small_sim / "products.json")]
    first = runner.invoke(app, ["postgres", "seed", "--dsn", postgres_db, "--force", *files])
    assert first.exit_code == 0, first.output
    expected = {
        name: len(orjson.loads((small_sim / f"{name}.json").read_text()))
        for name in ("customers", "products")
    }
    counts = row_counts(postgres_db)
    assert counts == expected  # the files' records, not the demo's shop (another size)
    assert first.output.endswith(
        f"seeded {expected['customers']:,} customers and {expected['products']:,} products"
        " (from customers.json and products.json)\n"
    )


# --------------------------------------------------------------------------- safe by default


def _password(path: Path) -> str:
    return path.read_text().strip().split(":")[-1]


def test_every_connection_needs_the_generated_password(private_postgres: LocalPostgres) -> None:
    server, port = private_postgres, private_postgres.port
    secrets, sockets = server.home / "secrets", server.cluster_dir / "sockets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert sockets.stat().st_mode & 0o777 == 0o700
    passwords = {}
    for user in ("retail", "postgres"):
        path = secrets / f"{user}.pgpass"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.stat().st_uid == os.geteuid()
        passwords[user] = _password(path)
    assert passwords["retail"] != passwords["postgres"]
    conf = (server.data_dir / "retail_pipeline.conf").read_text()
    assert "listen_addresses = '127.0.0.1'\n" in conf
    hba = (server.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba and hba.count("scram-sha-256") == 2

    for user, password in [("postgres", None), ("retail", None), ("postgres", "wrong")]:
        credentials = user if password is None else f"{user}:{password}"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                f"postgresql://{credentials}@127.0.0.1:{port}/retail", connect_timeout=5
            )
    if server.cluster_dir == server.home and len(str(sockets)) < 90:  # the Unix socket too
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"host={sockets} port={port} user=postgres dbname=retail")
    superuser = f"postgresql://postgres:{passwords['postgres']}@127.0.0.1:{port}/postgres"
    with psycopg.connect(superuser) as connection:
        [(verifier,)] = connection.execute(
            "select rolpassword from pg_authid where rolname = 'retail'"
        ).fetchall()
        assert verifier.startswith("SCRAM-SHA-256$4096:")  # the server never saw the text
        assert passwords["retail"] not in verifier


def test_the_pipelines_role_cannot_run_programs(postgres_db: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with psycopg.connect(postgres_db, autocommit=True) as connection:
        [(user, superuser)] = connection.execute(
            "select current_user, rolsuper from pg_roles where rolname = current_user"
        ).fetchall()
        assert (user, superuser) == ("retail", False)
        for statement in (
            f"copy (select 1) to program 'touch {marker}'",
            "copy customers from program 'id'",
            "select pg_read_file('postgresql.conf')",
            "create role intruder superuser",
            "alter role retail superuser",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
        # what the reader needs: its tables, and every session's open transaction
        connection.execute("select count(*) from customers")
        connection.execute("select xact_start from pg_stat_activity")
    assert not marker.exists()


def test_a_cluster_made_trusting_loopback_is_changed_over(private_postgres: LocalPostgres) -> None:
    """An older version's cluster (trust, objects owned by the superuser) gets passwords."""
    server = private_postgres
    superuser = server._admin()
    with psycopg.connect(superuser, autocommit=True) as connection:
        connection.execute("alter database retail owner to postgres")
    with psycopg.connect(server._admin("retail"), autocommit=True) as connection:
        connection.execute("alter table customers owner to postgres")
        connection.execute("alter function retail_touch_updated_at() owner to postgres")
    hba = server.data_dir / "pg_hba.conf"
    owner = hba.stat()
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    os.chown(hba, owner.st_uid, owner.st_gid)
    server.stop()
    dsn = server.start()
    assert "trust" not in hba.read_text()
    assert upsert(dsn, "customers", [customer("cus_1")]) == 1  # the role owns the table again
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/retail", connect_timeout=5)


@pytest.mark.parametrize(
    ("dsn", "fragments"),
    [
        ("postgresql://retail:Sup3r%Secret@127.0.0.1:{port}/retail", ["Sup3r", "Secret"]),
        ("postgresql://retail:100%Qx@127.0.0.1:{port}/retail", ["100%", "Qx@"]),
        ("postgresql://retail:p@ss@w0rdQ@127.0.0.1:{port}/retail", ["p@ss", "w0rdQ"]),
        ("postgresql://retail:paQss/w0rdQ@127.0.0.1:{port}/retail", ["paQss", "w0rdQ"]),
        ("postgresql://retail:hasQ spaceQ@127.0.0.1:{port}/retail", ["hasQ", "spaceQ"]),
        ("host=127.0.0.1 port={port} user=retail password=hasQ spaceQ", ["hasQ", "spaceQ"]),
        ("host=127.0.0.1 port={port} user=retail password='unclosedQ", ["unclosedQ"]),
        ("host=127.0.0.1 port={port} user=retail password=Wr%ngQ", ["Wr%ngQ", "ngQ"]),
        ("postgresql://retail:Wr%25ngQ@127.0.0.1:{port}/retail", ["Wr%ngQ", "ngQ"]),
    ],
)
def test_seed_never_prints_a_password(
    postgres_server: LocalPostgres, dsn: str, fragments: list[str]
) -> None:
    """Malformed DSNs (libpq's message quotes the text around the fault) and well-formed ones
    with a wrong password: one error line, no part of the password in it."""
    target = dsn.format(port=postgres_server.port)
    by_option = (["postgres", "seed", "--dsn", target], {})
    by_variable = (["postgres", "seed"], {"RETAIL_POSTGRES_DSN": target})
    for args, env in [by_option] if "://" in dsn else [by_variable]:
        done = subprocess.run(
            [*COMMAND, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: ")
        for fragment in fragments:
            assert fragment not in done.stderr, done.stderr
