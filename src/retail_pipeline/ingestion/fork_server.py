"""The first module the validation workers' fork server imports (its preload; see workers.py).

From here on the fork server, and every worker it forks (they inherit the disposition), ignore
Ctrl-C: the loader handles it and stops the pool. Without this, a Ctrl-C landing while the
server imports the validator (pyarrow, pandas: about a second) printed a traceback of those
imports beside the loader's one-line "aborted".

It acts only in a process started as multiprocessing's fork server (``python -c`` running
``multiprocessing.forkserver``); imported anywhere else it changes nothing.
"""

from __future__ import annotations

import signal
import sys


def in_fork_server() -> bool:
    """Whether this process is a multiprocessing fork server starting up."""
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


if in_fork_server():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
