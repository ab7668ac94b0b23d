"""Gold holds no personal data: the reporting role, the dashboard and Power BI read Gold, and no
customer's name or e-mail may reach them (tests/terraform/policy.py checks the models' text;
this looks for the values themselves in a built warehouse)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson

from .conftest import Simulation

SEED = 11  # the warehouse test_incremental builds: shared within a session


def test_no_name_or_email_reaches_gold(
    simulations: Callable[[int], Simulation], built: Callable[[int], Path]
) -> None:
    warehouse = built(SEED)
    personal: set[str] = set()
    for day in simulations(SEED).snapshot_days:
        for record in orjson.loads((day / "customers.json").read_bytes()):
            personal.update(str(record[field]).lower() for field in ("name", "email"))
    assert len(personal) > 100
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # Silver holds them (the check can fail: it finds them there) ...
        assert con.execute(
            "select count(*) from silver.customers_history where lower(email) in"
            " (select unnest(?::varchar[]))",
            [sorted(personal)],
        ).fetchone() == (con.execute("select count(*) from silver.customers_history").fetchone())
        text_columns = con.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'gold' and data_type = 'VARCHAR' order by 1, 2"
        ).fetchall()
        assert ("dim_customers", "country_code") in text_columns
        # ... Gold does not, in any text column of any table or view.
        for table, column in text_columns:
            found = con.execute(
                f'select count(*) from gold."{table}"'
                f' where lower("{column}") in (select unnest(?::varchar[]))',
                [sorted(personal)],
            ).fetchone()
            assert found == (0,), (table, column)
        columns = {name for _, name in text_columns}
        assert not columns & {"customer_name", "email", "name"}
