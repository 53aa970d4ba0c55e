"""Runner: ``python -m benchmarks [--quick] [--list] [names...]``.

Discovers every ``benchmarks/bench_<name>.py``, runs ``run(quick=...)`` of each selected one (all by default; a name
is ``<name>`` or ``bench_<name>``), saves every returned record to ``benchmarks/results/`` and prints one table of
ratios. A benchmark that raises is reported as FAILED in the table (with its error) and the others still run; the exit
status is 1 when any failed, so CI notices.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import common

log = logging.getLogger("benchmarks")


def discover() -> list[str]:
    """Names (without ``bench_``) of every benchmark module in this package, sorted."""
    pkg_dir = Path(__file__).resolve().parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(pkg_dir)]) if m.name.startswith("bench_"))


def _fmt_s(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _fmt_ratio(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _fmt_agree(v: Any) -> str:
    return {True: "yes", False: "NO", None: "-"}[v]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (name, ours_s, baseline_s, ratio, agree, note) of result records and failures."""
    head = ("benchmark", "record", "ours_s", "baseline_s", "ratio", "agree", "note")
    lines = [head]
    for r in rows:
        lines.append((
            r.get("benchmark", ""),
            r.get("name", ""),
            _fmt_s(r.get("ours_s")),
            _fmt_s(r.get("baseline_s")),
            _fmt_ratio(r.get("ratio")),
            _fmt_agree(r.get("results_agree")),
            str(r.get("note", "") or r.get("unit", ""))[:60],
        ))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    out = []
    for k, row in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of saved records (for ``benchmarks/README.md``): record, ours, baseline, ratio, agree, note."""
    lines = ["| record | ours_s | baseline_s | ratio | agree | kind | note |", "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["name"]):
        lines.append("| " + " | ".join([
            f"`{r['name']}`", _fmt_s(r.get("ours_s")), _fmt_s(r.get("baseline_s")), _fmt_ratio(r.get("ratio")),
            _fmt_agree(r.get("results_agree")), str(r.get("kind", "")), str(r.get("note", "")).replace("|", "/"),
        ]) + " |")
    return "\n".join(lines)


def run_benchmarks(names: list[str], quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the named benchmarks; returns (table rows, names that failed)."""
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        t0 = time.perf_counter()
        log.info("running bench_%s (quick=%s)", name, quick)
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
            records = mod.run(quick=quick)
            if not isinstance(records, list):
                raise TypeError(f"bench_{name}.run() must return a list of dicts, got {type(records).__name__}")
            # a quick run never writes a full-size record, whatever the module did: the name gets ``_quick``
            # (benchmarks/README.md quotes the full-size files; a smoke run must not overwrite them)
            common.mark_quick(records, quick)
            for rec in records:
                common.save_result(rec)
                rows.append({"benchmark": name, **rec})
            if not records:
                rows.append({"benchmark": name, "name": "(no records)", "ours_s": None, "results_agree": None,
                             "note": "skipped: nothing to measure here"})
        except Exception as e:  # keep going: one broken benchmark must not hide the others' figures
            failed.append(name)
            traceback.print_exc(file=sys.stderr)
            rows.append({"benchmark": name, "name": "FAILED", "results_agree": None, "note": f"{type(e).__name__}: {e}"})
        log.info("bench_%s took %.1f s", name, time.perf_counter() - t0)
    return rows, failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all); e.g. training store")
    p.add_argument("--quick", action="store_true", help="small sizes (each benchmark under about a minute on a CPU)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--markdown", action="store_true",
                   help="print a Markdown table of the saved full-size results (no run; quick records left out)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    if args.markdown:
        recs = [r for r in common.load_results() if not r.get("quick") and not r["name"].endswith("_quick")]
        if args.names:
            recs = [r for r in recs if any(r["name"].startswith(n) for n in args.names)]
        print(markdown_table(recs))
        return 0
    names = [n[len("bench_"):] if n.startswith("bench_") else n for n in args.names] or available
    unknown = [n for n in names if n not in available]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; available: {available}")
    print(f"machine: {common.machine_description()}", flush=True)
    rows, failed = run_benchmarks(names, args.quick)
    print(format_table(rows))
    print(f"results in {common.RESULTS_DIR}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
