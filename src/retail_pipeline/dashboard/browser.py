"""Drive the system's Chromium headless (Playwright, no browser download): find it, screenshot.

Used by the browser tests and to refresh the README's picture::

    python -m retail_pipeline.dashboard.browser http://127.0.0.1:8050/ docs/images/dashboard.png

Playwright is a dev dependency; the system browser is Debian's ``chromium`` (or the one
``RETAIL_CHROMIUM`` names).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from retail_pipeline.settings import settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The browser to drive: ``RETAIL_CHROMIUM``, else the first Chromium on PATH."""
    chosen = settings().chromium
    if chosen:
        return chosen
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def launch(playwright: Playwright) -> Browser:
    """Headless Chromium from the system (raises RuntimeError when there is none)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(
            "no Chromium found (apt-get install chromium, or set RETAIL_CHROMIUM to a browser)"
        )
    return playwright.chromium.launch(executable_path=path, headless=True)


def wait_until_drawn(page: Page, timeout_ms: float = 30_000) -> None:
    """Wait until the dashboard has drawn its numbers and charts once."""
    page.wait_for_selector("body[data-state=ready]", timeout=timeout_ms)
    page.wait_for_selector("#chart-lead-times svg", timeout=timeout_ms)


def screenshot(url: str, out: Path) -> Path:
    """A full-page PNG of the dashboard at ``url``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            wait_until_drawn(page)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m retail_pipeline.dashboard.browser URL OUT.png``"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m retail_pipeline.dashboard.browser URL OUT.png")
    print(screenshot(args[0], Path(args[1])))


if __name__ == "__main__":
    main()
