"""Fill docs/results/darts_nb301_proxies_all16.csv: all 16 proxies of the 40 sampled NB301-size DARTS genotypes.

One ``rbnas proxies`` call per genotype (the committed command of docs/search_spaces.md: C=32, 8 cells, the 64 images of
``darts_nb301_proxy_images.txt``, seed 0, CPU, one thread), its row appended to the CSV as soon as it is done, so an
interrupted run loses at most one genotype and the same command resumes (genotypes already in the CSV are skipped,
whatever engine computed them). Each row records its ``engine`` (``shared``: the reference's values bit for bit;
``fast``: each proxy within the tolerance stated in robustbench_nas/proxies/README.md). After the 40 sampled
genotypes, the published ones named in ``--named`` are appended (``name`` column; empty for sampled rows).

Usage (from the repository root, venv active)::

    nice -n 5 python docs/results/darts_nb301_proxies_all16.py --engine fast [--workers 2] [--commit]

``--workers N`` runs N genotypes at once (each its own one-thread process; rows are still written and committed one at a
time by this process, so the table never holds half a row).

``--commit`` commits the CSV after every row (``git commit -- <csv>``: only that file), retrying while another git
command holds the index lock.
"""
from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CSV_PATH = HERE / "darts_nb301_proxies_all16.csv"
IMAGES = HERE / "darts_nb301_proxy_images.txt"
#: The columns of the table: the genotype, how and where it was computed, then ``rbnas proxies``'s columns after
#: ``arch_str``. ``device`` is ``device_label("cpu")`` of the machine (e.g. ``cpu AVX512 (Intel AMX BF16 VNNI)``: float32 kernels
#: of other CPU classes round sums otherwise); ``unrecorded`` for the rows made before the column existed.
KEY_COLUMNS = ("index", "name", "engine", "device", "arch_str")
UNRECORDED = "unrecorded"


def sampled_genotypes(n: int = 40, seed: int = 0) -> list[int]:
    """The exact indices of the ``n`` genotypes ``get_search_space("darts").sample(n, seed)`` draws."""
    from robustbench_nas.search_spaces import get_search_space

    return [int(i) for i in get_search_space("darts").sample(n, seed=seed)]


def proxies_command(arch: str, engine: str) -> list[str]:
    """The ``rbnas proxies`` command line of one genotype (index or name) at NB301's size (C=32, 8 cells)."""
    return ["rbnas", "proxies", arch, "--space", "darts", "--C", "32", "--layers", "8",
            "--dataset", "npz", "--data-root", str(REPO.parent / "shared" / "data" / "cifar10_test.npz"),
            "--indices", f"@{IMAGES}", "--seed", "0", "--device", "cpu", "--threads", "1",
            "--engine", engine, "--format", "csv"]


def read_rows() -> list[dict[str, str]]:
    """The table's rows; a table written before the ``name`` / ``engine`` columns existed was computed by the
    shared engine (commit a39d91c) and gets ``engine=shared`` and an empty name; rows made before the ``device``
    column get ``device=unrecorded``."""
    if not CSV_PATH.exists():
        return []
    with CSV_PATH.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.setdefault("name", "")
        row.setdefault("engine", "shared")
        row.setdefault("device", UNRECORDED)
    return rows


def write_rows(rows: list[dict[str, str]], proxy_columns: list[str]) -> None:
    """Rewrite the table atomically (temporary file, then rename) so that a kill never leaves half a row."""
    tmp = CSV_PATH.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*KEY_COLUMNS, *proxy_columns], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(CSV_PATH)


def compute_row(arch: str, engine: str) -> dict[str, str]:
    """Run the command for one genotype and return its single CSV row (``arch_str`` and the 16 proxies)."""
    out = subprocess.run(proxies_command(arch, engine), cwd=REPO, check=True, capture_output=True, text=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if len(rows) != 1:
        raise RuntimeError(f"rbnas proxies {arch}: expected one CSV row, got {len(rows)}:\n{out}")
    return rows[0]


def commit(message: str) -> None:
    """Commit only the CSV; retry while another git process holds the index lock (at most ~2 minutes)."""
    for _ in range(24):
        done = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(CSV_PATH)], cwd=REPO,
                              capture_output=True, text=True)
        if done.returncode == 0 or "nothing to commit" in done.stdout + done.stderr:
            return
        time.sleep(5)
    print(f"warning: could not commit: {done.stderr.strip()}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("fast", "shared", "separate"), default="fast")
    parser.add_argument("--named", default="DARTS_V2,PC_DARTS,PDARTS,DARTS_V1",
                        help="published genotypes appended after the sampled ones (comma-separated; '' for none)")
    parser.add_argument("--commit", action="store_true", help="commit the CSV after each row")
    parser.add_argument("--workers", type=int, default=1, help="genotypes computed at once (one thread each)")
    args = parser.parse_args()

    from robustbench_nas.search_spaces import get_search_space
    from robustbench_nas.utils import device_label

    space = get_search_space("darts")
    device = device_label("cpu")  # the command computes on the CPU (--device cpu)
    todo: list[tuple[str, str]] = [(str(i), "") for i in sampled_genotypes()]
    todo += [(name, name) for name in filter(None, args.named.split(","))]
    rows = read_rows()
    proxy_columns = [c for c in rows[0] if c not in KEY_COLUMNS] if rows else []
    done = {row["index"] for row in rows}
    pending = [(arch, name, str(space.index_of(arch if name else int(arch)))) for arch, name in todo]
    pending = [job for job in pending if job[2] not in done]
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")

    def timed_row(arch: str) -> tuple[dict[str, str], float]:
        start = time.time()
        return compute_row(arch, args.engine), time.time() - start

    # Threads only wait on the subprocesses; every write of the CSV happens here, one row at a time.
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(timed_row, arch): (arch, name, index) for arch, name, index in pending}
        for future in as_completed(futures):
            arch, name, index = futures[future]
            result, seconds = future.result()
            if not proxy_columns:
                proxy_columns = [c for c in result if c != "arch_str"]
            if set(result) - {"arch_str"} != set(proxy_columns):
                raise RuntimeError(f"{arch}: columns {sorted(result)} differ from the table's {proxy_columns}")
            rows.append({"index": index, "name": name, "engine": args.engine, "device": device, **result})
            rows.sort(key=lambda r: (r["name"] != "", r["name"], int(r["index"])))  # sampled by index, then named
            write_rows(rows, proxy_columns)
            print(f"{time.strftime('%H:%M:%S')} {name or index}: {seconds:.0f} s", flush=True)
            if args.commit:
                commit(f"DARTS: all 16 proxies of {name or 'sampled genotype ' + index} (NB301 size, engine "
                       f"{args.engine}, 1 thread, CPU); {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
