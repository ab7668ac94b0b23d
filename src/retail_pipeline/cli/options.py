"""Options several commands share, and the checks that make a bad value one line naming the flag.

An option with a setting behind it names the environment variable and its default in its help
(``[env var: ...; default: ...]``) and is checked as the setting is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import check_topic_prefix, parse_bootstrap, utf8_path


def flag_check(flag: str, check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """A typer callback checking an option's value as its setting's is checked: a bad value
    is one line naming the flag."""

    def callback(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:76] + "...'"
            raise PipelineError(f"{flag} {shown}: {exc}") from None

    return callback


def at_most(flag: str, high: float) -> Callable[[Any], Any]:
    """A typer callback bounding a number from above (typer's ``min`` bounds it from below):
    a value over ``high``, or not finite, is one line naming the flag, before the command
    starts. No option's number decides unbounded memory or time, and none overflows a C
    integer deeper down."""

    def callback(value: Any) -> Any:
        if value is None:
            return None
        if (isinstance(value, float) and not math.isfinite(value)) or value > high:
            raise PipelineError(f"{flag} {value}: at most {high:,}")
        return value

    return callback


def _warehouse_option(value: Path | None) -> Path | None:
    return None if value is None else utf8_path(value, "--warehouse")


WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        metavar="FILE",
        help="The DuckDB warehouse file (--target snowflake has none: the SNOWFLAKE_* settings"
        " name the warehouse, and --warehouse is refused)"
        "  [env var: RETAIL_WAREHOUSE; default: data/warehouse.duckdb]",
        show_default=False,
        callback=_warehouse_option,
    ),
]

TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="duckdb|snowflake",
        help="The warehouse to work on (snowflake: the SNOWFLAKE_* settings)"
        "  [env var: RETAIL_TARGET; default: duckdb]",
        show_default=False,
    ),
]

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        metavar="HOST:PORT,...",
        help="Kafka bootstrap servers  [env var: RETAIL_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]",
        show_default=False,
        callback=flag_check("--bootstrap", parse_bootstrap),
    ),
]

TopicPrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix",
        metavar="PREFIX",
        help="Put before every Kafka topic name, e.g. 'prod.'  [env var: RETAIL_TOPIC_PREFIX]",
        show_default=False,
        callback=flag_check("--topic-prefix", check_topic_prefix),
    ),
]


def resolve_topic_prefix(value: str | None) -> str:
    """``--topic-prefix`` if given, else ``RETAIL_TOPIC_PREFIX``."""
    from retail_pipeline.settings import settings

    return settings().topic_prefix if value is None else value


# The reference data of a shop, as `generate` writes it (api-server serves it, postgres seed
# writes it); without them each command uses its own simulated shop, which its help names.
CustomersFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--customers",
        metavar="FILE",
        help="Customers (JSON array or NDJSON, as 'generate' writes)",
        show_default=False,
    ),
]
ProductsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--products",
        metavar="FILE",
        help="Products (JSON array or NDJSON, as 'generate' writes)",
        show_default=False,
    ),
]

MAX_DAYS = 3650
"""Days a simulation may cover: ten years from 2026 stay well inside the contract's timestamps
(before 2100-01-01), later events included."""
DaysOpt = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="N",
        help=f"Days to simulate (at most {MAX_DAYS:,})",
        callback=at_most("--days", MAX_DAYS),
    ),
]
OrdersPerDayOpt = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="N",
        help="Mean orders per day (at most 1,000,000)",
        callback=at_most("--orders-per-day", 1_000_000),
    ),
]
PORT_MAX = 65535
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Random seed (same seed, same simulation)")]
