"""The Bronze tables as Airflow Assets: what the ingestion DAGs write, what the dbt DAG waits on.

An asset is named ``bronze.<table>`` with the URI ``retail://bronze/<table>``, on either target:
it names the table of the pipeline, not a connection to one warehouse.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAny

from retail_pipeline.events.contract import TOPICS
from retail_pipeline.warehouse.base import EVENT_TABLES


def bronze_asset(table: str) -> Asset:
    """The Asset of one Bronze table."""
    return Asset(name=f"bronze.{table}", uri=f"retail://bronze/{table}", group="bronze")


DEAD_LETTER_ASSET = bronze_asset("dead_letter")
EVENT_ASSETS = [*(bronze_asset(EVENT_TABLES[topic]) for topic in TOPICS), DEAD_LETTER_ASSET]
"""What the event loaders (Kafka, event files) write: the event tables and the dead letters."""
REFERENCE_ASSETS = [bronze_asset("customers"), bronze_asset("products"), DEAD_LETTER_ASSET]
"""What the snapshot loader writes: the reference tables and the dead letters."""
BRONZE_ASSETS = [*EVENT_ASSETS, *REFERENCE_ASSETS[:2]]
"""Every Bronze table, once."""

ANY_BRONZE_UPDATE = AssetAny(*BRONZE_ASSETS)
"""The dbt DAG's schedule: a run once any Bronze table got new rows."""
