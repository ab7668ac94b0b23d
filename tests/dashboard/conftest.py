"""One small warehouse, one dashboard server and one headless Chromium for the whole session.

The shop's events are loaded in two halves: the first half is built into Gold before the
server starts; ``stream_rest`` loads the second half (the streaming test). When Chromium or
Playwright cannot start, the browser tests are skipped with the reason, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.transform import run_transform
from retail_pipeline.warehouse import open_warehouse
from tests.services import unavailable

DAYS = 4
ORDERS_PER_DAY = 120
FAULTS = FaultRates(duplicate=0.02, out_of_order=0.05, late=0.02, malformed=0.01, orphan=0.01)
REFRESH_SECONDS = 1


def browser_unavailable(reason: str) -> NoReturn:
    """Skip the test because headless Chromium cannot run here, or fail it under CI."""
    unavailable("headless Chromium", "browser tests", reason)


@dataclass
class Shop:
    """A simulated shop whose events are loaded in two halves."""

    warehouse: Path
    first_half: list[Path]
    second_half: list[Path]


def _halves(events: list[Path], out: Path) -> tuple[list[Path], list[Path]]:
    first, second = [], []
    for path in events:
        lines = path.read_bytes().splitlines(keepends=True)
        middle = len(lines) // 2
        for part, chunk in ((first, lines[:middle]), (second, lines[middle:])):
            target = out / f"{'a' if part is first else 'b'}-{path.name}"
            target.write_bytes(b"".join(chunk))
            part.append(target)
    return first, second


def transform(warehouse: Path) -> None:
    summary = run_transform(warehouse)
    assert summary.success, "\n".join(f"{f.unique_id}: {f.message}" for f in summary.failures)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """Reference data and the first half of the events in Gold."""
    root = tmp_path_factory.mktemp("dashboard-shop")
    generate(root / "sim", days=DAYS, orders_per_day=ORDERS_PER_DAY, seed=23, faults=FAULTS)
    first, second = _halves(sorted((root / "sim" / "events").glob("*.ndjson")), root)
    warehouse = root / "shop.duckdb"
    with open_warehouse(warehouse) as wh:
        for folder in sorted((root / "sim" / "snapshots").iterdir()):
            for entity in ("customers", "products"):
                load_reference(wh, entity, folder / f"{entity}.json")
        ingest_files(wh, first)
    transform(warehouse)
    return Shop(warehouse, first, second)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]


@contextmanager
def serve(
    warehouse: Path,
    *,
    refresh_seconds: float = REFRESH_SECONDS,
    cwd: Path | None = None,
    stderr: Path | None = None,
) -> Iterator[Server]:
    """``retail-pipeline dashboard --port 0`` on ``warehouse``, in a process of its own (its
    stderr goes to ``stderr``, by default beside the warehouse)."""
    errors = (stderr or warehouse.parent / "dashboard.stderr").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retail_pipeline.cli",
            "dashboard",
            "--port",
            "0",
            "--refresh",
            str(refresh_seconds),
            "--warehouse",
            str(warehouse),
        ],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        assert process.stdout is not None
        while time.monotonic() < deadline and process.poll() is None:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline()
                break
        errors.seek(0)
        assert line.startswith("dashboard: http://127.0.0.1:"), (line, errors.read())
        yield Server(line.split()[1], process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        errors.close()


@pytest.fixture(scope="session")
def server(shop: Shop) -> Iterator[Server]:
    """The dashboard on the shop's warehouse (refreshing every second)."""
    with serve(shop.warehouse) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless system Chromium driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright

        from retail_pipeline.dashboard.browser import launch
    except ImportError as exc:
        browser_unavailable(f"Playwright is not installed ({exc})")
    manager = sync_playwright().start()
    try:
        try:
            chromium = launch(manager)
        except Exception as exc:
            browser_unavailable(str(exc).strip().splitlines()[0])
        yield chromium
        chromium.close()
    finally:
        manager.stop()


@dataclass
class Problems:
    """What went wrong in the page: console errors, uncaught exceptions, failed requests."""

    console: list[str]
    requests: list[str]


@pytest.fixture(scope="session")
def page_problems() -> Problems:
    return Problems([], [])


@pytest.fixture(scope="session")
def page(browser: Any, server: Server, page_problems: Problems) -> Iterator[Any]:
    """One page on the dashboard, loaded and drawn, for the session's browser tests."""
    from retail_pipeline.dashboard.browser import wait_until_drawn

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on(
        "console",
        lambda msg: page_problems.console.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: page_problems.console.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda req: page_problems.requests.append(f"failed: {req.url}"))
    page.on(
        "response",
        lambda resp: (
            page_problems.requests.append(f"{resp.status}: {resp.url}")
            if resp.status >= 400 or not resp.url.startswith(server.url)
            else None
        ),
    )
    page.goto(server.url)
    wait_until_drawn(page)
    yield page
    page.close()
