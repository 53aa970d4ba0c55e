"""Per-run TLS credentials as files on the shared file system, for a scheduler that compute nodes must reach.

The worker jobs get the *paths* on their command line (``--tls-ca-file`` ...), never the key itself, so
``squeue``/``ps`` show no secret; the files are readable by the owner only and removed when the cluster closes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("robustbench_nas.pipelines.slurm")  # one logger for the whole SLURM back end

#: name prefix of every credentials folder: :func:`remove_credentials` deletes nothing else
_CREDENTIALS_PREFIX = ".rbnas-credentials-"


def write_credentials(base_dir: str | os.PathLike) -> tuple[Any, Path]:
    """Make TLS credentials for one run and write them where the worker jobs can read them.

    A fresh self-signed certificate and RSA key (``distributed.Security.temporary``) are written as ``ca.pem``,
    ``cert.pem`` and ``key.pem`` into a new folder ``<base_dir>/.rbnas-credentials-<random suffix>`` made with mode 0700
    (``tempfile.mkdtemp``); each file is created with mode 0600 (``O_EXCL``: never through an existing file or
    link). Only the owner (and root) can read the key; ``base_dir`` must be on the file system the compute nodes
    share.

    Returns:
        ``(security, folder)``: a ``distributed.Security`` that requires TLS and names the three files for every
        role (scheduler, worker, client), and the folder (remove it with :func:`remove_credentials`).
    """
    import tempfile

    from distributed.security import Security

    base = Path(base_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    mem = Security.temporary()
    folder = Path(tempfile.mkdtemp(prefix=_CREDENTIALS_PREFIX, dir=base))  # mode 0700, a name no one else has
    files = {"ca.pem": mem.tls_ca_file, "cert.pem": mem.tls_worker_cert, "key.pem": mem.tls_worker_key}
    try:
        for name, text in files.items():
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
    except BaseException:
        remove_credentials(folder)
        raise
    ca, cert, key = (str(folder / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    security = Security(require_encryption=True, tls_ca_file=ca,
                        tls_scheduler_cert=cert, tls_scheduler_key=key,
                        tls_worker_cert=cert, tls_worker_key=key,
                        tls_client_cert=cert, tls_client_key=key)
    return security, folder


def remove_credentials(folder: str | os.PathLike) -> None:
    """Delete a folder made by :func:`write_credentials` (and nothing else: the name and contents are checked)."""
    import shutil

    folder = Path(folder)
    if not folder.is_dir() or not folder.name.startswith(_CREDENTIALS_PREFIX):
        return
    if any(p.name not in ("ca.pem", "cert.pem", "key.pem") for p in folder.iterdir()):
        logger.warning("not removing %s: it holds files that rbnas did not write", folder)
        return
    shutil.rmtree(folder, ignore_errors=True)


__all__ = ["remove_credentials", "write_credentials"]
