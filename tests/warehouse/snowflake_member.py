"""One consumer process for the concurrency tests: ``retail-pipeline <argv>`` run in this process,
with the Snowflake warehouse's batch timings (its DEBUG records: when each batch's COPYs started
and finished, when it held its fences and committed) appended as JSON lines to the file named by
``RETAIL_TEST_TIMINGS``.

``RETAIL_TEST_COPY_SECONDS`` makes each ``COPY INTO`` take that much longer (inside the batch's
transaction, before its fences): the emulator copies a few hundred rows in tens of
milliseconds, where a real warehouse's COPY takes a second or more (``bench/snowflake_load.py``),
so the batches of two members meet in time the way real ones do.

    python -m tests.warehouse.snowflake_member ingest --kafka --target snowflake ...
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

FIELDS = (
    "batch_load_id",
    "batch_rows",
    "staging",
    "copy_started",
    "copy_finished",
    "fenced",
    "committed",
)


class Timings(logging.Handler):
    """Writes each batch record's timings, with this process's id, as one JSON line."""

    def __init__(self, path: Path):
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if not hasattr(record, "copy_started"):
            return
        line = {"pid": os.getpid(), **{name: getattr(record, name) for name in FIELDS}}
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")


def main() -> None:
    logger = logging.getLogger("retail_pipeline.warehouse.snowflake")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Timings(Path(os.environ["RETAIL_TEST_TIMINGS"])))
    logger.propagate = False
    stretch = float(os.environ.get("RETAIL_TEST_COPY_SECONDS", "0"))
    if stretch:
        from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse

        copy = SnowflakeWarehouse._copy

        def slow_copy(self: SnowflakeWarehouse, *args: Any) -> None:
            copy(self, *args)
            time.sleep(stretch)

        SnowflakeWarehouse._copy = slow_copy  # type: ignore[method-assign,assignment]
    from retail_pipeline.cli import main as cli

    sys.argv = ["retail-pipeline", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
