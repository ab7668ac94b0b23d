"""A container's health check (docker/compose.yml): the image has Python but no curl.

    python /app/docker/healthcheck.py URL [COMPONENT ...]

Exit 0 when ``URL`` answers 200 within five seconds and, when components are named, the answer
is a JSON health report (Airflow's ``/api/v2/monitor/health``) in which each of them is
``healthy``; exit 1 with one line saying why otherwise.
"""

from __future__ import annotations

import json
import sys
import urllib.request


def check(url: str, components: list[str]) -> str | None:
    """Why ``url`` is not healthy, or None when it is."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status != 200:
                return f"{url} answered {response.status}"
            body = response.read()
    except OSError as exc:
        return f"{url}: {exc}"
    if not components:
        return None
    try:
        report = json.loads(body)
    except ValueError:
        return f"{url} answered no JSON"
    states = {name: (report.get(name) or {}).get("status") for name in components}
    unhealthy = [f"{name} {state}" for name, state in states.items() if state != "healthy"]
    return ", ".join(unhealthy) or None


def main(argv: list[str]) -> int:
    """The command: ``healthcheck.py URL [COMPONENT ...]``."""
    if not argv:
        print("usage: healthcheck.py URL [COMPONENT ...]", file=sys.stderr)
        return 2
    problem = check(argv[0], argv[1:])
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
