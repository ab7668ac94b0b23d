"""Shared by the crash tests: how long a loader may run before the next random kill."""

from __future__ import annotations

import duckdb


def adapt_window(window: float, progress: int, most: int) -> float:
    """The next kill window: longer after a run that committed nothing, shorter after one that
    committed more than ``most``, so that kills keep landing mid-load at any loader speed."""
    if progress <= 0:
        return min(window * 1.25, 10.0)
    if progress > most:
        return max(window * 0.6, 0.1)
    return window


def unaccounted_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int, int, int]]:
    """Loader runs whose ``bronze._loads`` record differs from the Bronze rows under their
    load id: (load_id, recorded loaded, stored, recorded dead letters, stored), empty when every
    run, a killed one too, is recorded with exactly what it wrote."""
    tables = ["order_events", "payment_events", "shipment_events"]
    stored = " union all ".join(
        f"select _load_id, 1 as event, 0 as dead from bronze.{t}" for t in tables
    )
    return con.execute(
        f"""
        with stored as (
            select _load_id as load_id, sum(event) as loaded, sum(dead) as dead
            from ({stored} union all select _load_id, 0, 1 from bronze.dead_letter)
            group by _load_id
        )
        select coalesce(r.load_id, s.load_id), r.rows_loaded, s.loaded,
            r.rows_dead_lettered, s.dead
        from (select * from bronze._loads where kind = 'events') as r
        full outer join stored as s on r.load_id = s.load_id
        where r.rows_loaded is distinct from s.loaded
            or r.rows_dead_lettered is distinct from s.dead
            or r.rows_read is distinct from s.loaded + s.dead
        """
    ).fetchall()
