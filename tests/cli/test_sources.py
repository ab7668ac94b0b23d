"""``load-batch`` (``cli/sources.py``): bad snapshot files and unreachable sources are one
``error:`` line, load nothing, and never print a password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from retail_pipeline.simulation import GenerationSummary
from tests.cli.run import bronze_state, cli, one_error_line


def test_load_batch_with_no_files(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    one_error_line(cli("load-batch", warehouse=warehouse, cwd=tmp_path), "nothing to load")
    assert not warehouse.exists()


def test_load_batch_non_json_customers(tmp_path: Path, sim: GenerationSummary) -> None:
    warehouse = tmp_path / "wh.duckdb"
    bad = tmp_path / "customers.csv"
    bad.write_text("customer_id,name,email\ncus_1,Liam,liam@example.com\n")
    result = cli(
        "load-batch",
        "--customers",
        bad,
        "--products",
        sim.products_path,
        warehouse=warehouse,
        cwd=tmp_path,
    )
    one_error_line(result, str(bad), "not a JSON")
    assert not warehouse.exists(), "input is checked before the warehouse is opened"


def test_load_batch_missing_products_loads_no_customers_either(
    tmp_path: Path, loaded: Path
) -> None:
    before = bronze_state(loaded)
    customers = tmp_path / "customers.ndjson"
    customers.write_text(
        '{"customer_id":"cus_9","name":"New","email":"n@example.com","country":"SE",'
        '"created_at":"2026-01-01T00:00:00Z"}\n'
    )
    missing = tmp_path / "products-typo.json"
    result = cli(
        "load-batch",
        "--customers",
        customers,
        "--products",
        missing,
        warehouse=loaded,
        cwd=tmp_path,
    )
    one_error_line(result, str(missing), "no such file")
    assert bronze_state(loaded) == before


def test_load_batch_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    bad = tmp_path / "products.json"
    bad.write_text('[\n{"product_id": "p1"},\n{"product_id": "p2",}\n]\n')
    result = cli("load-batch", "--products", bad, warehouse=warehouse, cwd=tmp_path)
    one_error_line(result, f"{bad}:3:", "not valid JSON")
    assert not warehouse.exists()


def _closed_port() -> int:

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: a connection is refused at once


PASSWORD = "Pa%2 @:w rd%"


@pytest.mark.slow  # load-batch retries a refused connection for about 15 s
@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 port={port} user=retail dbname=retail"
        f" password='{PASSWORD}' connect_timeout=2",
        f"postgresql://retail:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{{port}}/retail",
    ],
    ids=["key-value", "uri"],
)
def test_a_dsn_password_never_prints(dsn: str, tmp_path: Path) -> None:
    dsn = dsn.format(port=_closed_port())
    runs = [
        cli("load-batch", "--postgres", dsn, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path),
        cli("postgres", "seed", "--dsn", dsn, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path),
        cli("load-batch", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, RETAIL_POSTGRES_DSN=dsn),
    ]
    for result in runs:
        line = one_error_line(result)
        assert result.returncode == 1
        text = result.stdout + result.stderr
        for part in ("Pa%2", "w rd", "w%20rd", "rd%"):
            assert part not in text, line
