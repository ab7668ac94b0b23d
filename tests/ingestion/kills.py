"""Shared by the crash tests: how long a loader may run before the next random kill."""

from __future__ import annotations


def adapt_window(window: float, progress: int, most: int) -> float:
    """The next kill window: longer after a run that committed nothing, shorter after one that
    committed more than ``most``, so that kills keep landing mid-load at any loader speed."""
    if progress <= 0:
        return min(window * 1.25, 10.0)
    if progress > most:
        return max(window * 0.6, 0.1)
    return window
