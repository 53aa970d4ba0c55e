"""`.ci/run`'s SLURM step (`bash .ci/slurm.sh ci-start`): under CI=true a SLURM that cannot start fails the run with
the reason; elsewhere it does not, and the SLURM tests skip. Exercised where SLURM cannot start: SLURM's daemons
are hidden from PATH and `id -u` says "not root", so the script must refuse to install them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ci_start(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "id").write_text('#!/bin/sh\nif [ "$1" = -u ]; then echo 1000; else /usr/bin/id "$@"; fi\n')
    (stub / "id").chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": f"{stub}:/usr/bin:/bin", "RBNAS_SLURM_DIR": str(tmp_path / "slurm")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(["bash", str(ROOT / ".ci" / "slurm.sh"), "ci-start"], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.fixture(autouse=True)
def _needs_bash():
    if not Path("/usr/bin/id").exists() or not Path("/bin/bash").exists():
        pytest.skip("needs /bin/bash and /usr/bin/id")
    if any(Path(d, "slurmctld").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("slurmctld is in /usr/bin here: it cannot be hidden from the script")


def test_ci_true_fails_with_the_reason(tmp_path: Path) -> None:
    out = _ci_start(tmp_path, "true")
    assert out.returncode == 1, out.stderr
    assert "CI=true: SLURM could not be started" in out.stderr and "needs root" in out.stderr, out.stderr
    assert (tmp_path / "slurm" / "status").read_text().startswith("failed: ")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_local_run_keeps_the_skip(tmp_path: Path, ci: str | None) -> None:
    out = _ci_start(tmp_path, ci)
    assert out.returncode == 0, out.stderr
    assert "the SLURM tests will skip" in out.stderr and "needs root" in out.stderr, out.stderr


def test_ci_run_uses_ci_start() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/slurm.sh ci-start" in text and "|| true" not in text.split("ci-start")[0].splitlines()[-1]
