"""The optional database drivers, imported on first use (each is an extra of the package).

Apart from the implementations so that what stands in for a warehouse (the local Snowflake
emulator) can use the same driver, imported the same quiet way, without naming an
implementation.
"""

from __future__ import annotations

import logging
import warnings
from types import ModuleType

from retail_pipeline.errors import WarehouseError


def snowflake_connector() -> ModuleType:
    """``snowflake.connector``, imported on first use (it is an optional extra)."""
    try:
        with warnings.catch_warnings():
            # Its vendored requests warns about the urllib3/chardet versions on import.
            warnings.filterwarnings("ignore", message=r".*doesn't match a supported version")
            import snowflake.connector
    except ImportError:
        raise WarehouseError(
            "the snowflake target needs the Snowflake connector: pip install"
            " 'retail-pipeline[snowflake]'"
        ) from None
    # Its errors reach the caller as one-line WarehouseErrors; its own log of them (tracebacks
    # included) would otherwise be printed to stderr by logging's last-resort handler.
    log = logging.getLogger("snowflake.connector")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return snowflake.connector
