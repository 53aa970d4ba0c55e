"""Where a Dask dashboard listens: the default (loopback, any free port) and the check of a ``--dashboard-address``.

Shared by the local cluster (:mod:`.runner`) and the SLURM cluster (:mod:`.slurm_cluster`); it sits below both so
that neither imports the other for it.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("robustbench_nas.pipelines.runner")  # the runner's logger, where this warning always was

#: Where a local cluster's dashboard listens by default: loopback, a free port (several runs may share a node).
DEFAULT_DASHBOARD = "127.0.0.1:0"
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_dashboard_address(address: str | None, warn: bool = False) -> str | None:
    """Validate a ``--dashboard-address`` (``HOST:PORT``, ``:PORT`` means loopback here); ``None``: no dashboard.

    Returns the address to bind. A host that is not loopback is allowed (e.g. ``0.0.0.0:8787`` behind a
    firewall) with a warning: the dashboard has no password, and everyone who can reach it sees the run.
    """
    if address is None:
        return None
    text = str(address).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--dashboard-address {address!r} is not HOST:PORT (e.g. 127.0.0.1:8787, or :0 for any port)")
    if host == "":
        host = "127.0.0.1"  # distributed would bind ':PORT' to every interface; here it means loopback
    if warn and host not in _LOOPBACK:
        logger.warning("the Dask dashboard will listen on %s, reachable from other machines; it has no password "
                    "(use an SSH tunnel to 127.0.0.1 instead)", host)
    return f"{host}:{int(port)}"


__all__ = ["DEFAULT_DASHBOARD", "check_dashboard_address"]
