"""Dask worker preload for ``rbnas run`` on a local cluster: the workers ignore SIGINT.

A terminal's Ctrl-C goes to the whole process group; without this, every local worker process prints its own
KeyboardInterrupt traceback (dozens of lines) while the command itself stops. The client process handles Ctrl-C
(one line and a resume hint) and closes the cluster, which stops the workers.
"""

from __future__ import annotations

import signal
import threading

if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import logging  # noqa: E402


def _not_heartbeat_after_shutdown(record: logging.LogRecord) -> bool:
    # after Ctrl-C the scheduler goes first; the worker's next heartbeat then fails with a traceback that says
    # nothing the client did not already say (a lost scheduler during a run surfaces in the client as well)
    return not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat")


logging.getLogger("distributed.worker").addFilter(_not_heartbeat_after_shutdown)
