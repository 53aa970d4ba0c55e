"""Shared helpers for the benchmarks: timing, machine description, result records and where they are written.

Every benchmark module ``benchmarks/bench_<name>.py`` exposes ``run(quick: bool = False) -> list[dict]``. Each dict
is one *result record* comparing our code with the baseline a user would otherwise pick, on the same model and data,
in the same process:

======================  =====================================================================================
field                   meaning
======================  =====================================================================================
``name``                unique record name, also the file name ``benchmarks/results/<name>.json``
                        (letters, digits, ``_``, ``-``, ``.``)
``ours_s``              seconds of our code for the measured work (> 0): wall seconds, or this process's
                        CPU seconds where the record says ``"clock": "process_cpu"`` (single-threaded CPU
                        benchmarks on a shared machine, where other jobs inflate wall time)
``baseline_s``          wall seconds of the baseline for the *same* work (> 0), or ``None`` when there is no
                        baseline (then ``ratio`` is ``None`` too, e.g. a pure cost-per-cell figure)
``ratio``               ``baseline_s / ours_s`` (> 1 means we are faster)
``results_agree``       ``True`` when ours and the baseline produced the same numbers (within the stated
                        tolerance); ``None`` when nothing could be compared
``machine``             :func:`machine_description` of the machine that ran it
======================  =====================================================================================

plus any detail fields (``unit``, ``n_images``, ``tolerance``, ``projection`` ...). Build records with
:func:`make_result`, which computes ``ratio`` and ``machine`` and validates the record; write them with
:func:`save_result`.

Example::

    from benchmarks.common import Timer, make_result, save_result, time_call

    t_ours = time_call(lambda: ours(x), repeat=3)
    t_base = time_call(lambda: baseline(x), repeat=3)
    rec = make_result("attacks_fgsm", t_ours.best, t_base.best, results_agree=True, n_images=256)
    save_result(rec)
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from robustbench_nas.cli.common import json_default
from robustbench_nas.utils.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("RBNAS_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
SHARED_DATA = Path(os.environ.get("RBNAS_SHARED_DATA", ROOT.parent / "shared" / "data"))

REQUIRED_FIELDS = ("name", "ours_s", "baseline_s", "ratio", "results_agree", "machine")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


# --------------------------------------------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """One line naming the hardware and software a figure was measured on.

    CPU model and the cores this process may use, torch threads, the GPU (name, memory) when CUDA is available,
    and the torch / Python versions, e.g.
    ``"AMD EPYC, 2 cores (torch threads 1); no GPU; torch 2.14.1, python 3.12.3, Linux"``.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    parts = [f"{_cpu_model()}, {cores} cores"]
    try:
        import torch

        parts[0] += f" (torch threads {torch.get_num_threads()})"
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            parts.append(f"GPU {p.name} {p.total_memory / 2**30:.0f} GiB x{torch.cuda.device_count()}")
        else:
            parts.append("no GPU")
        parts.append(f"torch {torch.__version__}")
    except ImportError:  # pragma: no cover
        parts.append("no torch")
    parts.append(f"python {platform.python_version()}, {platform.system()}")
    try:
        parts.append(f"load avg {os.getloadavg()[0]:.1f}")  # a busy shared machine inflates wall times
    except OSError:  # pragma: no cover
        pass
    return "; ".join(parts)


def cuda_available() -> bool:
    """True when a CUDA device can be used (benchmarks of the GPU path skip cleanly otherwise)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def synchronize() -> None:
    """Wait for queued CUDA work so that wall-clock timings include it (no-op without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    except ImportError:  # pragma: no cover
        pass


# --------------------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls of one function.

    Arguments:
        times: seconds of each timed call (warm-up calls excluded).
        value: what the last timed call returned (so results can be compared without running again).
    """

    times: tuple[float, ...]
    value: Any = field(default=None, repr=False, compare=False)
    cpu_times: tuple[float, ...] = ()

    @property
    def best(self) -> float:
        """Smallest time: the least noisy estimate on a shared machine."""
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def best_cpu(self) -> float:
        """Smallest process CPU time (see :class:`Timer`)."""
        return min(self.cpu_times) if self.cpu_times else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"best_s": self.best, "median_s": self.median, "times_s": list(self.times),
                "cpu_times_s": list(self.cpu_times)}


class Timer:
    """Context manager measuring wall seconds and this process's CPU seconds (CUDA synchronised on entry and exit).

    ``cpu_seconds`` (all threads of this process, ``time.process_time``) is the robust figure for single-threaded
    CPU work on a machine shared with other jobs: their load inflates wall time but not our CPU time.

    Example::

        with Timer() as t:
            work()
        print(t.seconds, t.cpu_seconds)
    """

    def __init__(self) -> None:
        self.seconds: float = float("nan")
        self.cpu_seconds: float = float("nan")
        self._t0 = 0.0
        self._c0 = 0.0

    def __enter__(self) -> "Timer":
        synchronize()
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize()
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0


def time_call(fn: Callable[[], Any], *, repeat: int = 3, warmup: int = 1, max_seconds: float | None = None) -> Timing:
    """Time ``fn()`` ``repeat`` times after ``warmup`` untimed calls.

    Arguments:
        fn: the work, without arguments (wrap with ``lambda``). CUDA is synchronised around every call.
        repeat: number of timed calls (>= 1).
        warmup: untimed calls first (compilation, caches, cuDNN autotuning).
        max_seconds: stop repeating early once the timed calls so far took this long (at least one is timed).

    Returns:
        :class:`Timing` with every time and the value of the last call. Report ``.best`` for throughput on a
        shared machine (other processes only ever add time).
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    cpu: list[float] = []
    value: Any = None
    for _ in range(repeat):
        with Timer() as t:
            value = fn()
        times.append(t.seconds)
        cpu.append(t.cpu_seconds)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return Timing(tuple(times), value, tuple(cpu))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)`` (restored afterwards)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------------------------------------------
# result records
# --------------------------------------------------------------------------------------------------------------
def _finite_positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def validate_result(result: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the problem when ``result`` is not a valid benchmark record."""
    if not isinstance(result, dict):
        raise ValueError(f"a benchmark result must be a dict, got {type(result).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in result]
    if missing:
        raise ValueError(f"benchmark result {result.get('name', '?')!r} lacks field(s) {missing}")
    name = result["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"benchmark result name {name!r} must be non-empty letters, digits, '_', '-', '.'")
    if not _finite_positive(result["ours_s"]):
        raise ValueError(f"{name}: ours_s must be a positive finite number of seconds, got {result['ours_s']!r}")
    base, ratio = result["baseline_s"], result["ratio"]
    if base is None:
        if ratio is not None:
            raise ValueError(f"{name}: ratio must be None when baseline_s is None")
    else:
        if not _finite_positive(base):
            raise ValueError(f"{name}: baseline_s must be a positive finite number or None, got {base!r}")
        if not _finite_positive(ratio) or not math.isclose(ratio, base / result["ours_s"], rel_tol=1e-6):
            raise ValueError(f"{name}: ratio must equal baseline_s / ours_s = {base / result['ours_s']:.6g}, "
                             f"got {ratio!r}")
    if result["results_agree"] not in (True, False, None):
        raise ValueError(f"{name}: results_agree must be True, False or None, got {result['results_agree']!r}")
    if not isinstance(result["machine"], str) or not result["machine"]:
        raise ValueError(f"{name}: machine must be a non-empty description")


def make_result(
    name: str,
    ours_s: float,
    baseline_s: float | None,
    results_agree: bool | None,
    **details: Any,
) -> dict[str, Any]:
    """Build and validate one result record (``ratio`` and ``machine`` filled in, a UTC timestamp added).

    Arguments:
        name: record name (file name of the JSON).
        ours_s: seconds of our code.
        baseline_s: seconds of the baseline on the same work, or ``None`` when there is none.
        results_agree: whether the two produced the same numbers (``None``: not compared).
        **details: extra fields (must be JSON-serialisable; numpy scalars/arrays are converted on save).
    """
    rec: dict[str, Any] = {
        "name": name,
        "ours_s": float(ours_s),
        "baseline_s": None if baseline_s is None else float(baseline_s),
        "ratio": None if baseline_s is None else float(baseline_s) / float(ours_s),
        "results_agree": None if results_agree is None else bool(results_agree),
        "machine": details.pop("machine", None) or machine_description(),
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    rec.update(details)
    validate_result(rec)
    return rec


def mark_quick(records: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """Tag records with ``quick`` and, for quick runs, the name suffix ``_quick`` (the team's convention), so a
    smoke run never overwrites the full-size figures that ``benchmarks/README.md`` quotes. Returns ``records``."""
    for r in records:
        r["quick"] = bool(quick)
        if quick and not r["name"].endswith("_quick"):
            r["name"] += "_quick"
    return records


def save_records(records: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """:func:`mark_quick` then :func:`save_result` each record: the end of every benchmark's ``run``. Returns
    ``records``."""
    for r in mark_quick(records, quick):
        save_result(r)
    return records


def save_result(result: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Validate ``result`` and write it to ``<results_dir>/<name>.json`` (default ``benchmarks/results/``).

    The file is written to a temporary name first and renamed, so a failing benchmark never leaves a half-written
    record over the previous figures. Returns the path written.
    """
    if result.get("quick") and not str(result.get("name", "")).endswith("_quick"):
        # a quick record never takes a full-size record's file, whichever path saves it (runner or module main)
        result = {**result, "name": f"{result['name']}_quick"}
    validate_result(result)
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['name']}.json"
    text = json.dumps(result, default=json_default, indent=2, sort_keys=False, allow_nan=True)
    write_text_atomic(path, text + "\n")
    return path


def load_results(results_dir: Path | None = None) -> list[dict[str, Any]]:
    """All records in ``benchmarks/results/`` (sorted by name)."""
    d = Path(results_dir) if results_dir is not None else RESULTS_DIR
    if not d.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(d.glob("*.json"))]


def shared_cifar10(n: int | None = None, offset: int = 0, stratified: bool = True):
    """Images and labels from ``../shared/data/cifar10_test.npz`` as torch tensors ``x`` float ``(n, 3, 32, 32)``
    in [0, 1] and ``y`` int64 ``(n,)``; ``None`` when the file is absent (benchmarks then fall back or skip).

    Arguments:
        n: number of images (all when ``None``).
        offset: first image per class (stratified) or overall.
        stratified: the file is sorted by class, so take ``n // 10`` images of each class (round-robin order).
    """
    p = SHARED_DATA / "cifar10_test.npz"
    if not p.is_file():
        return None
    import numpy as np
    import torch

    with np.load(p) as z:
        x, y = z["x"], z["y"]
    if n is None:
        idx = np.arange(len(y))
    elif stratified:
        per = -(-n // 10)
        idx = np.stack([np.arange(1000 * c + offset, 1000 * c + offset + per) for c in range(10)], 1).reshape(-1)[:n]
    else:
        idx = np.arange(offset, offset + n)
    xt = torch.from_numpy(np.ascontiguousarray(x[idx].transpose(0, 3, 1, 2))).float().div_(255.0)
    return xt, torch.from_numpy(y[idx].astype(np.int64))


def bench_main(run: Callable[..., list[dict]], doc: str | None, argv: list[str] | None = None) -> None:
    """Command line of one benchmark module: ``python -m benchmarks.bench_<name> [--quick]`` prints its table."""
    import argparse
    import logging

    from benchmarks.__main__ import format_table

    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(format_table(run(quick=args.quick)))
