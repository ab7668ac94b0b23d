"""The local dashboard of the six answers (``retail-pipeline dashboard``).

- :func:`serve_dashboard` serves it on 127.0.0.1 until Ctrl-C; :func:`create_dashboard` binds
  it for a caller that runs it itself (tests).
- :func:`take_snapshot` copies the Gold star schema it reads into memory; a :class:`Snapshot`
  computes the figures for a set of :class:`Filters`.
"""

from retail_pipeline.dashboard.data import Filters, Snapshot, take_snapshot
from retail_pipeline.dashboard.server import Dashboard, create_dashboard, serve_dashboard

__all__ = [
    "Dashboard",
    "Filters",
    "Snapshot",
    "create_dashboard",
    "serve_dashboard",
    "take_snapshot",
]
