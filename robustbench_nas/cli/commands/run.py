"""``rbnas run``: build (or resume) a robustness dataset store with the Dask pipeline."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..common import device_option, echo_json, fail, parse_overrides, space_option, threads_option


def print_summary(store: Any, out: Any = None) -> None:
    """The closing table: per-stage done / failed / pending and mean seconds, then headline results."""
    from robustbench_nas.pipelines.runner import headline, summary_rows

    out = out or sys.stdout
    rows = summary_rows(store)
    out.write(f"{'stage':<12} {'done':>6} {'failed':>6} {'pending':>7} {'mean s':>8}\n")
    for r in rows:
        out.write(f"{r['stage']:<12} {r['done']:>6} {r['failed']:>6} {r['pending']:>7} {r['mean_s']:>8.2f}\n")
    heads = dict(headline(store))
    if not heads:
        return
    # each robust figure beside the clean accuracy of the same images (attacks and corruptions use subsets)
    out.write("mean over cells:\n")
    if "clean_accuracy" in heads:
        out.write(f"  clean accuracy {heads.pop('clean_accuracy'):.3f} (the whole evaluation split)\n")
    adv_clean = heads.pop("adv_clean_accuracy", None)
    cor_clean = heads.pop("corruption_clean_accuracy", None)
    cor = heads.pop("corruption_accuracy", None)
    if heads:
        same = f" (clean on the same images {adv_clean:.3f})" if adv_clean is not None else ""
        out.write(f"  attacks{same}: " + ", ".join(f"{k} {v:.3f}" for k, v in heads.items()) + "\n")
    if cor is not None:
        same = f" (clean on the same images {cor_clean:.3f})" if cor_clean is not None else ""
        out.write(f"  corruptions{same}: mean accuracy {cor:.3f}\n")


def _quiet_distributed(record: logging.LogRecord) -> bool:
    return not record.name.startswith("distributed") or record.levelno >= logging.ERROR


@click.command(name="run")
@click.option("--protocol", "protocol_name", default=None,
              help="Named protocol (tiny, jung2023, robbench2024, nats-sss-jung2023, darts-jung2023, nb201-proxies, "
                   "nb201-proxies-seeds). Omit to continue an existing store's own protocol.")
@click.argument("store_arg", metavar="[STORE]", required=False, type=click.Path())
@click.option("--store", "store_path", default=None, type=click.Path(),
              help="The Zarr store (created if missing); the same as the STORE argument, kept as an alias.")
@space_option(default=None)
@click.option("--archs", default=None, help="all | N (seeded sample) | comma list of indices/strings | @FILE.")
@click.option("--arch-seed", default=None, type=int, help="Seed of the --archs N sample.")
@click.option("--seeds", default=None, help="Comma list of training seeds (overrides the protocol's).")
@click.option("--dataset", default=None, help="Dataset name (overrides the protocol's).")
@click.option("--data-root", default=None, type=click.Path(), help="Dataset root folder (not part of the protocol).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a protocol field or a training-profile field, JSON values (e.g. --set epochs=2, "
                   "--set attacks='{\"pgd@Linf\": [0.0039]}'); checked before anything runs.")
@click.option("--stages", default=None, help="Comma list of stages to run (default: all of the protocol's).")
@click.option("--force-stage", "force_stages", multiple=True, help="Recompute this stage for every cell (repeatable); the stages computed from its results (train: every "
                   "evaluation) are reset too.")
@click.option("--reuse", default=None, type=click.Path(),
              help="Copy finished results from this store where its protocol agrees (e.g. keep the trained "
                   "networks and add an attack).")
@click.option("--task", "--shard", "task", default=None,
              help="i/n: run only array task i (0-based) of n: a fixed share of whole storage blocks (shard files), "
                   "so array tasks never write the same file (--shard: old name).")
@click.option("--shard-cells", default=None, type=click.IntRange(min=1),
              help="Cells per storage block (shard file) of a NEW store (default 256); smaller blocks give more "
                   "array tasks work. An existing store keeps its own (asking another is an error).")
@click.option("--wait", is_flag=True,
              help="Wait for cells another live run holds (leases) instead of skipping them.")
@click.option("--dry-run", is_flag=True,
              help="Print the units the command would run (cell, seed, stage) and their storage blocks; computes "
                   "and creates nothing (with --json: every unit).")
@click.option("--cluster", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:port).")
@click.option("--workers", "n_workers", default=None, type=int,
              help="Local cluster worker processes (default: --workers-per-gpu per GPU, else half the CPUs).")
@click.option("--workers-per-gpu", default=1, show_default=True, type=click.IntRange(1, 8),
              help="Local workers sharing each GPU (2-4 let small cells share a device; SLURM: workers-per-gpu "
                   "in --slurm-config).")
@click.option("--slurm-config", default=None, help="SLURM cluster config (see pipelines/slurm.py).")
@click.option("--jobs", default=1, show_default=True, type=int, help="SLURM jobs to start.")
@click.option("--dashboard-address", default="127.0.0.1:0", show_default=True,
              help="HOST:PORT of the Dask dashboard (loopback by default: reach it through an SSH tunnel).")
@click.option("--no-dashboard", is_flag=True, help="No Dask dashboard.")
@click.option("--insecure", is_flag=True,
              help="Plain TCP between scheduler and workers, without TLS and per-run credentials (not advised).")
@device_option(help='Torch device on the workers.')
@threads_option(per_task=True)
@click.option("--no-progress", is_flag=True, help="No progress bar (it is on stderr, also with --json).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run report as JSON (stdout; progress stays on stderr).")
def command(store_arg, protocol_name, store_path, space_name, archs, arch_seed, seeds, dataset, data_root, overrides,
            stages, force_stages, reuse, task, shard_cells, wait, dry_run, cluster, scheduler, n_workers, workers_per_gpu, slurm_config,
            jobs, dashboard_address, no_dashboard, insecure, device, threads, no_progress, as_json) -> None:
    """Run the pipeline into STORE: every stage of every cell that is not done yet.

    Re-running the same command resumes; a store made with another protocol is refused. Examples:
    `rbnas run runs/tiny.zarr --protocol tiny` (or `--store runs/tiny.zarr`); `rbnas run --space nats-sss --protocol tiny --store
    runs/tiny-sss.zarr` (the same run on NATS-Bench SSS). `--set epochs=3` changes a training-profile field.

    Exit status: 0 when every unit run is done, 1 when any ended failed (the summary lists them), 2 for bad input,
    130 when interrupted (Ctrl-C; finished units are kept, the same command resumes).
    """
    from robustbench_nas.pipelines import get_protocol, parse_archs, parse_task, run_pipeline
    from robustbench_nas.storage import StoreError

    # the store is the first argument, as in every command that reads one; --store stays as an alias
    if store_arg and store_path and store_arg != store_path:
        fail(f"two stores given: STORE {store_arg} and --store {store_path}; give one")
    store_path = store_arg or store_path
    if not store_path:
        fail("missing STORE: rbnas run STORE --protocol NAME (or --store STORE)")

    root_level = logging.getLogger().level
    # distributed sets its own INFO level; without -v keep only its errors (shutdown chatter is not news)
    for handler in logging.getLogger().handlers:
        # the console keeps the verbosity asked for (-v), though the file log below records INFO
        handler.addFilter(lambda r, lvl=root_level: r.levelno >= lvl)
        if root_level >= logging.WARNING:
            handler.addFilter(_quiet_distributed)
    # the run's log next to the store (appended by every run of it): what ran, what failed, and why
    from pathlib import Path

    log_path = Path(f"{store_path.rstrip('/')}.log")
    if not dry_run:  # a dry run creates nothing, not even the log
        log_path.parent.mkdir(parents=True, exist_ok=True)
        file_log = logging.FileHandler(log_path, delay=True)  # created at the first record: not for a refused input
        file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_log.setLevel(logging.INFO)
        file_log.addFilter(_quiet_distributed)
        logging.getLogger("robustbench_nas.pipelines").addHandler(file_log)
        logging.getLogger("robustbench_nas.pipelines").setLevel(logging.INFO)
    try:
        changes = parse_overrides(overrides)
        if space_name is not None:
            changes["search_space"] = space_name
        if archs is not None:
            changes["archs"] = parse_archs(archs)
        if arch_seed is not None:
            changes["arch_seed"] = arch_seed
        if seeds is not None:
            changes["seeds"] = [int(s) for s in seeds.split(",") if s]
        if dataset is not None:
            changes["dataset"] = dataset
        if data_root is not None:
            changes["data_root"] = data_root
        protocol = None
        if protocol_name is not None:
            protocol = get_protocol(protocol_name, **changes)
        elif changes and set(changes) - {"data_root"}:
            fail("protocol changes (--space, --archs, --seeds, --set, ...) need --protocol; without it the store's own "
                 "protocol is continued unchanged")
        stage_list = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        task_t = parse_task(task)
        if dry_run:
            from robustbench_nas.pipelines.dryrun import dry_run as plan_run

            plan = plan_run(store_path, protocol, stages=stage_list, force_stages=list(force_stages), task=task_t,
                            shard_cells=shard_cells)
            _print_plan(plan, as_json)
            return
        if cluster == "slurm":
            # a bad SLURM config, or a job SLURM refuses, must fail before a store is created
            from robustbench_nas.pipelines.slurm import check_submission, load_slurm_config

            check_submission(load_slurm_config(slurm_config))
        if cluster == "local" and scheduler is None:
            import dask

            # local workers ignore Ctrl-C (this process handles it): no traceback per worker process
            preload = list(dask.config.get("distributed.worker.preload", []) or [])
            if "robustbench_nas.cli._worker_sigint" not in preload:
                dask.config.set({"distributed.worker.preload": preload + ["robustbench_nas.cli._worker_sigint"]})
            # after a Ctrl-C mid-start the tracker frees a semaphore the cluster had not released yet, and says so;
            # it is cleaned up either way (the tracker process takes its warning options from ours)
            if "ignore:resource_tracker:UserWarning" not in sys.warnoptions:
                sys.warnoptions.append("ignore:resource_tracker:UserWarning")
        report = run_pipeline(
            store_path, protocol, stages=stage_list, force_stages=list(force_stages), task=task_t,
            cluster=cluster, scheduler=scheduler, n_workers=n_workers, slurm_config=slurm_config, jobs=jobs,
            device=device, threads=threads, progress=not no_progress, reuse=reuse,
            dashboard_address=None if no_dashboard else dashboard_address, insecure=insecure,
            shard_cells=shard_cells, wait=wait,
            workers_per_gpu=workers_per_gpu,
        )
    except KeyboardInterrupt:
        _interrupted(store_path)
    except (StoreError, ValueError, KeyError, FileNotFoundError) as e:
        # a KeyError's str() is its repr (quoted); its message is args[0]
        fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
    except RuntimeError as e:  # e.g. no sbatch on PATH for --cluster slurm
        fail(f"cannot run: {e}")
    if as_json:
        from dataclasses import asdict

        echo_json(asdict(report))
        if report.failures:
            sys.exit(1)
        return
    from robustbench_nas.storage import open_store

    store = open_store(store_path)
    click.echo(f"ran {report.submitted} tasks on {report.cells} cells in {report.seconds:.1f} s "
               f"(protocol {report.protocol}, fingerprint {report.fingerprint})")
    print_summary(store)
    for f in report.failures[:10]:
        click.echo(f"FAILED cell {f['arch']} seed {f['seed']} stage {f['stage']}: {f['error'].splitlines()[0]}")
    if len(report.failures) > 10:
        click.echo(f"... {len(report.failures) - 10} more failures (rbnas status {store_path})")
    click.echo(f"store: {store.path.resolve()}  (open with robustbench_nas.storage.open_dataset or xarray.open_zarr)")
    click.echo(f"log: {log_path.resolve()}")
    if report.failures:
        # a green exit after failed stages costs hours on a cluster: say it, and exit non-zero
        click.echo(f"{len(report.failures)} unit(s) ended failed; see above and `rbnas status {store_path}`", err=True)
        sys.exit(1)


def _print_plan(plan: dict[str, Any], as_json: bool) -> None:
    """A dry run's plan: the JSON of :func:`~robustbench_nas.pipelines.dryrun.dry_run`, or a short summary."""
    if as_json:
        echo_json(plan)
        return
    per_stage: dict[str, int] = {}
    for u in plan["units"]:
        per_stage[u["stage"]] = per_stage.get(u["stage"], 0) + 1
    where = f"task {plan['task']}: " if plan["task"] else ""
    click.echo(f"dry run, nothing computed or created: {where}{plan['n_units']} units on {plan['cells']} cells in "
               f"storage blocks {plan['blocks']} ({plan['shard_cells']} cells per block, {plan['n_blocks']} blocks; "
               f"store {'exists' if plan['exists'] else 'would be created'})")
    if per_stage:
        click.echo("  " + ", ".join(f"{s} {n}" for s, n in per_stage.items()))
    if plan["leased_units"]:
        click.echo(f"  {plan['leased_units']} of them leased by other runs now (they would be skipped)")
    for name, t in (plan.get("task_blocks") or {}).items():
        click.echo(f"  task {name}: blocks {t['blocks']} ({t['cells']} cells)")
    click.echo("  (--json lists every unit with its block)")


def _interrupted(store_path: str) -> None:
    """Ctrl-C: one line and a resume hint instead of the scheduler's shutdown tracebacks (exit 130)."""
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    sys.stderr.write(f"\ninterrupted: finished units are saved in {store_path}; run the same command again to "
                     "resume\n")
    sys.stderr.flush()
    sys.exit(130)
