"""The Dask pipeline: one unit per (cell, seed, stage), the adversarial stage one unit per attack
(:mod:`.attack_units`); workers compute, the client writes the store.

``run_pipeline(store, protocol)`` creates the store (or resumes it), submits every stage that is not done yet to a
Dask cluster (a ``LocalCluster`` of spawned single-threaded processes by default, any scheduler address, or SLURM
through ``robustbench_nas.pipelines.slurm``), shows a progress bar, and returns a :class:`RunReport`.

Write path: a worker returns its values; the client appends each result at once to the store's durable journal
(:mod:`robustbench_nas.storage.journal`) and rewrites a storage block whole (one commit, under the store's lock)
as soon as every unit of that block in this run has finished, every ``commit_seconds``, and at the end. Blocks are
never written in part nor by two processes at once (zarr-python issue 3682), whatever the number of clients (array
tasks, ``--task i/n``). A run killed at any moment is finished by running the same command again: journal records
left by the killed run are committed first, and whatever has no record is recomputed. A stage that raises is retried
``protocol.retries`` times on its worker and then marked failed with its error text, without stopping other cells.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from robustbench_nas.storage import (DONE, FAILED, PENDING, PER_ARCH_STAGES, WEIGHT_STAGES, RobustnessStore,
                                     StoreError, weights_hash_array)
from robustbench_nas.utils.atomic import rename_into_place

from .attack_units import (ADV_STAGE, AttackMerger, expand, split_unit, splits_attacks, store_attacks_done,
                           unit_stage)
from .dashboard import DEFAULT_DASHBOARD, check_dashboard_address
from .image_record import check_resume, difference_line, image_difference, image_record, recorded_images
from .leases import DEFAULT_TTL_S, LeaseBook, skipped_line
from .protocol import PURPOSE_STAGES, ProtocolConfig
from .tasks import task_cells
from .worker_env import THREAD_ENV, pre_spawn_config
from .stages import StageContext, adversarial_values, dependent_stages, get_stage, list_stages, with_dependencies

log = logging.getLogger(__name__)


# ---- store preparation -------------------------------------------------------------------------------------------
def saved_protocol(store: RobustnessStore) -> ProtocolConfig:
    """The protocol a store was made with (``attrs["protocol"]``)."""
    if "protocol" not in store.attrs:
        raise StoreError(f"{store.path} has no saved protocol (it was not made by `rbnas run`); cannot run on it")
    return ProtocolConfig.from_dict(store.attrs["protocol"])


def prepare_store(path: str | os.PathLike, protocol: ProtocolConfig | None,
                  shard_cells: int | None = None) -> tuple[RobustnessStore, ProtocolConfig]:
    """Open the store at ``path`` for ``protocol``, creating it if needed.

    An existing store made with another protocol is refused with the differing fields named; it is never
    overwritten. With ``protocol=None`` the store's saved protocol is used (e.g. to add a stage later).
    Creation is atomic (built in a temporary folder, then renamed), so array tasks started together create it once.
    ``shard_cells``: cells per storage block of a new store (default 256); an existing store of another block size
    is refused (its layout is fixed).
    """
    path = Path(path)
    if path.exists():
        store = RobustnessStore.open(path, mode="r+")
        if shard_cells is not None and shard_cells != store.spec.shard_cells:
            raise StoreError(f"{path} has {store.spec.shard_cells} cells per storage block, asked --shard-cells "
                             f"{shard_cells}; a store's layout is fixed (omit --shard-cells to keep it)")
        saved = saved_protocol(store)
        check_weights_hashes(store)
        if protocol is None:
            check_resume(store, saved, saved)  # the data (--data-root) may have changed since
            store.commit()  # results of a killed run still in the journal
            return store, saved
        check_same_protocol(store, protocol)
        protocol = protocol.replace(data_root=protocol.data_root or saved.data_root)
        check_resume(store, saved, protocol)  # same settings, but maybe another data file
        store.commit()  # results of a killed run still in the journal (checked protocol first: never touch another's)
        return store, protocol
    if protocol is None:
        raise StoreError(f"no store at {path}; pass a protocol (e.g. --protocol tiny) to create it")
    spec = protocol.store_spec()
    if shard_cells is not None:
        import dataclasses

        spec = dataclasses.replace(spec, shard_cells=int(shard_cells))  # checked like any spec (>= 1)
    tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    RobustnessStore.create(tmp, spec, attrs={"protocol": protocol.to_dict(),
                                             "protocol_fingerprint": protocol.fingerprint(),
                                             "random_streams": RANDOM_STREAMS,
                                             "images": image_record(protocol),
                                             "eval_precision": EVAL_PRECISION_NOTE})
    try:
        # atomic (fails if another process created the store meanwhile) and durable: files, then the folder
        rename_into_place(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists():
            raise
        return prepare_store(path, protocol, shard_cells)
    return RobustnessStore.open(path, mode="r+"), protocol


def stages_to_run(protocol: ProtocolConfig, stages: Sequence[str] | None,
                  force_stages: Sequence[str] = ()) -> list[str]:
    """The stages a run executes: ``stages`` (default: all of the protocol's) and ``force_stages``, with the stages
    they need, in pipeline order; ``ValueError`` naming any stage the protocol does not have."""
    available = [s for s in protocol.stages if s in list_stages()]
    wanted = list(stages) if stages else list(available)
    unknown = [s for s in [*wanted, *force_stages] if s not in available]
    if unknown:
        raise ValueError(f"stage(s) {unknown} are not in this store's protocol; it has {available}")
    return with_dependencies(list(dict.fromkeys([*wanted, *force_stages])), available)


def check_same_protocol(store: RobustnessStore, protocol: ProtocolConfig) -> None:
    """StoreError naming the differing fields when ``store`` was made with another protocol than ``protocol``."""
    if protocol.fingerprint() != store.attrs.get("protocol_fingerprint"):
        saved = saved_protocol(store)
        if "subset_seed" not in store.attrs["protocol"]:
            raise StoreError(
                f"{store.path} was made before evaluation images were recorded (its subsets were drawn by the "
                f"protocol's name, {saved.name!r}); this version draws them by subset_seed or explicit indices, "
                "so its results and new ones would be about other images. Use a new --store (--reuse it to copy "
                "what agrees, e.g. trained networks), or omit --protocol to continue it on its own images "
                "where they are still the same.")
        diff = saved.diff(protocol)
        details = "; ".join(f"{k}: store has {a!r}, asked {b!r}" for k, a, b in
                            ((k, *v) for k, v in list(diff.items())[:6]))
        raise StoreError(
            f"{store.path} was made with another protocol ({saved.name}, fingerprint "
            f"{store.attrs.get('protocol_fingerprint')}); refusing to mix results. Differences: {details or '?'}. "
            "Use a new --store path, or omit --protocol to continue the store's own protocol."
        )


def check_weights_hashes(store: RobustnessStore) -> None:
    """Refuse to run on a store that trains but cannot record weights hashes (made before checkpoints were
    content-addressed): its results could not be tied to the weights they came from."""
    if "train" in store.spec.stages and not store.spec.weights_hashes:
        raise StoreError(
            f"{store.path} was made before results recorded the weights hash of their checkpoint (no "
            "'weights_sha256' arrays); refusing to add results to it. Run into a new --store with --reuse "
            f"{store.path} (trained networks are hashed and copied, evaluations recomputed).")


def train_reset_entries(store: RobustnessStore, uid: int, seed: int) -> list[tuple[Any, ...]]:
    """Journal bookkeeping entries that set every stage depending on ``train`` back to pending for (uid, seed).

    Added to the record of a new train result, so that the new weights and the reset of the results computed
    from the old ones are one record, committed together (a later result of those stages, recorded after it,
    marks them done again).
    """
    i, j = store.arch_pos(uid), store.seed_pos(seed)
    return [(i, j, store.stage_pos(d), PENDING, None, None, None)
            for d in dependent_stages(["train"], list(store.spec.stages))]


# ---- reuse of another store's results -------------------------------------------------------------------------------
_TRAINED = ("search_space", "dataset", "train_profile", "profile_overrides", "eval_split")

#: protocol fields each stage's values depend on, besides the cell and the seed. ``batch_size`` is not one: attacks
#: and generated corruptions draw per image (robustbench_nas.utils.streams), so it is a performance setting. The
#: images are not compared by fields (``subset_seed``, ``image_indices``) but by content: the stores' ``images``
#: records (:mod:`.image_record`), so a store whose images were pinned to the same ones is reused whatever the rule.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "info": ("search_space", "dataset", "train_profile", "profile_overrides"),
    "proxies": ("search_space", "dataset", "train_profile", "profile_overrides", "proxies", "proxy_images",
                "proxy_engine"),
    "train": _TRAINED,
    "clean": (*_TRAINED, "eval_images"),
    "adversarial": (*_TRAINED, "attacks", "attack_params", "attack_mode", "attack_images"),
    "corruptions": (*_TRAINED, "corruptions", "severities", "corruption_source", "corruption_images"),
    "measures": (*_TRAINED, "measures", "measure_images"),
}

#: The random-number scheme of the attacks and generated corruptions, saved in a store's attributes: results of
#: another scheme (stores written before per-image streams have no such attribute) are never reused.
RANDOM_STREAMS = "per-image-cpu-v1"
#: Stages whose values depend on the random-number scheme.
_RANDOM_STAGES = ("adversarial", "corruptions")
#: Saved in a store's attributes: the precision every evaluation unit runs under (robustbench_nas.utils.precision).
EVAL_PRECISION_NOTE = "ieee fp32 (every torch fp32_precision flag 'ieee') in every stage but train"


def reuse_results(store: RobustnessStore, protocol: ProtocolConfig, source: str | os.PathLike,
                  cells: Sequence[int] | None = None) -> dict[str, int]:
    """Copy finished results from another store whose protocol agrees on what they depend on.

    This is how a new attack (or corruption, proxy, measure) is added to an existing dataset without retraining:
    run the new protocol into a new store with ``reuse=OLD``; stages whose fields (:data:`STAGE_FIELDS`) match
    are copied cell by cell (training keeps pointing at the old checkpoints), the rest is computed.
    Images: a stage that evaluates images is copied only when the source evaluated the same images (equal content
    hashes of the recorded subsets). When both protocols ask for the same images (split, size, subset seed,
    explicit indices) but the source's are others (another data file, or a store drawn by its protocol's name
    before image records), the reuse is refused (``StoreError``, one line naming the difference); when this run
    asks for other images on purpose, the stage is computed afresh.

    Weights: a copied ``train`` result keeps pointing at the source's checkpoint (content-addressed, so no later
    run of the source replaces the file) with its ``weights_sha256``. A source made before weights hashes has its
    checkpoint hashed and linked (or copied) under its content name into this store's checkpoint folder. A result
    computed from a checkpoint is copied only when it carries a weights hash equal to the one of the weights this
    store's cell points to (a source without hashes, or a stale source result, is recomputed instead).
    Returns ``{stage: slots copied}``.
    """
    src = RobustnessStore.open(source, mode="r")
    src_proto = saved_protocol(src)
    # a store from before image records: its images by the old rule, on its data file if still there, else this run's
    src_root = src_proto.data_root if src_proto.data_root and Path(src_proto.data_root).exists() else protocol.data_root
    src_images = recorded_images(src, src_proto.replace(data_root=src_root))
    my_images = store.attrs.get("images") or image_record(protocol)
    stage_purpose = {stage: purpose for purpose, stage in PURPOSE_STAGES.items()}
    mine, theirs = protocol.to_dict(), src_proto.to_dict()
    copied: dict[str, int] = {}
    # committed results only (a source still being written may have journal records; those are not copied yet)
    status = src.read_array("status")
    src_seconds = src.read_array("stage_seconds")
    src_ran = {k.removeprefix("unit_"): v for k, v in src.unit_settings().items()}  # copied with each result
    cache: dict[str, np.ndarray] = {}
    # the weights hash each of this store's (cell, seed) points to: committed ones, then the train results copied
    weights = store.read_array("weights_sha256") if "weights_sha256" in store.arrays else None
    touched: set[int] = set()

    def reusable(stage: str) -> bool:
        """Whether ``stage``'s results may be copied; raises on images that differ where the protocols agree."""
        if stage not in src.spec.stages or any(mine[f] != theirs[f] for f in STAGE_FIELDS[stage]):
            return False
        if stage in _RANDOM_STAGES and src.attrs.get("random_streams") != RANDOM_STREAMS:
            log.info("not reusing %s results from %s: other random streams (%s)", stage, src.path,
                     src.attrs.get("random_streams", "batch-dependent, before per-image streams"))
            return False
        names = _copied_names(store, src, stage)
        if any(n not in src.arrays for n in names):
            if stage in WEIGHT_STAGES and weights_hash_array(stage) not in src.arrays:
                log.info("not reusing %s results from %s: they record no weights hash", stage, src.path)
            return False
        purpose = stage_purpose.get(stage)
        if purpose is not None and purpose in image_difference(src_images, my_images):
            if not (status[:, :, src.stage_pos(stage)] == DONE).any():
                return False  # nothing of it to copy
            line = difference_line(purpose, src_images, my_images, str(src.path))
            if src_proto.image_request(purpose) == protocol.image_request(purpose):
                raise StoreError(f"--reuse {src.path}: {line}; refusing to mix subsets (use the source's data "
                                 "file, or a protocol asking for other images)")
            log.info("not reusing %s results: %s", stage, line)
            return False
        return True

    # decided for every stage before anything is copied: a refusal leaves the new store untouched
    for stage in [s for s in store.spec.stages if reusable(s)]:
        names = _copied_names(store, src, stage)
        mine_status = store.status()  # per stage: a copied train result resets the stages computed from weights
        n = 0
        for uid in (cells if cells is not None else store.spec.archs):
            if uid not in src.spec.archs:
                continue
            for seed in store.spec.seeds:
                if seed not in src.spec.seeds or mine_status[store.arch_pos(uid), store.seed_pos(seed),
                                                             store.stage_pos(stage)] == DONE:
                    continue
                if status[src.arch_pos(uid), src.seed_pos(seed), src.stage_pos(stage)] != DONE:
                    continue
                i, j = src.arch_pos(uid), src.seed_pos(seed)
                values = {}
                for name in names:
                    if name not in cache:
                        cache[name] = src.read_array(name)
                    values[name] = cache[name][(i, j) if "seed" in src.arrays[name].dims else i]
                pos = (store.arch_pos(uid), store.seed_pos(seed))
                if stage in WEIGHT_STAGES and weights is not None \
                        and str(values[weights_hash_array(stage)]) != str(weights[pos]):
                    continue  # computed from other weights than this cell's (or stale in the source): recompute
                if "checkpoint" in values:
                    pointer = _reused_checkpoint(src, store, uid, seed, values)
                    if pointer is None:
                        continue  # the source's network is gone or damaged: train it here
                    values.update(pointer)
                    if weights is not None:
                        weights[pos] = values["weights_sha256"]
                secs = float(src_seconds[src.arch_pos(uid), src.seed_pos(seed), src.stage_pos(stage)])
                ran = {k: v[i, j, src.stage_pos(stage)] for k, v in src_ran.items()}
                ran = {k: v.item() if isinstance(v, np.generic) else v for k, v in ran.items()}
                ran = {k: v for k, v in ran.items() if v not in (-1, "")}  # not recorded there: not here either
                block, rec = store.cell_record(uid, seed, values, stage=stage, status=DONE, seconds=secs, error="",
                                               **ran)
                if stage == "train":
                    rec.book += train_reset_entries(store, uid, seed)
                store.append([(block, rec)])
                touched.add(block)
                n += 1
        if n:
            copied[stage] = n
            log.info("reused %d %s results from %s", n, stage, src.path)
    store.commit(sorted(touched))
    return copied


def _copied_names(store: RobustnessStore, src: RobustnessStore, stage: str) -> list[str]:
    """The arrays of ``stage`` that :func:`reuse_results` copies from ``src``: all of them, but ``weights_sha256``
    from a source without weights hashes (hashed from its file instead) and the per-attack bookkeeping from a source
    made before attacks were split (a done stage needs no per-attack rows; they stay empty)."""
    from robustbench_nas.storage.schema import ATTACK_UNIT_ARRAYS

    names = [a.name for a in store.arrays.values() if a.stage == stage]
    if stage == "train" and not src.spec.weights_hashes:
        names = [n for n in names if n != "weights_sha256"]
    return [n for n in names if n not in ATTACK_UNIT_ARRAYS or n in src.arrays]


def _reused_checkpoint(src: RobustnessStore, store: RobustnessStore, uid: int, seed: int,
                       values: dict[str, Any]) -> dict[str, str] | None:
    """``checkpoint`` (relative to ``store``'s folder) and ``weights_sha256`` of a train result copied from ``src``
    (``None`` with a warning when a source without hashes has no readable checkpoint for it).

    A source with weights hashes: the same content-addressed file, pointed to from here. A source without: the file
    is hashed and hard-linked (copied where links are not possible) as ``<uid>_s<seed>_<sha256>.safetensors`` into
    this store's checkpoint folder, so a later rewrite of the source's file (renamed over it) cannot change it.
    """
    from robustbench_nas.training.checkpoint import CheckpointError, checkpoint_sha256, content_name
    from robustbench_nas.utils.atomic import atomic_output

    old = src.path.parent / str(values["checkpoint"])
    if src.spec.weights_hashes:
        return {"checkpoint": os.path.relpath(old, store.path.parent), "weights_sha256": str(values["weights_sha256"])}
    try:
        sha = checkpoint_sha256(old)
    except CheckpointError as e:
        log.warning("not reusing train of cell %d seed %d from %s: %s", uid, seed, src.path, e)
        return None
    target = store.path.parent / f"{store.path.name}.checkpoints" / content_name(f"{uid}_s{seed}", sha)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as tmp:
            try:
                os.link(old, tmp)
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(old, tmp)
    return {"checkpoint": os.path.relpath(target, store.path.parent), "weights_sha256": sha}


# ---- the task run on a worker -------------------------------------------------------------------------------------
def _worker_device(device: str, resolve: Any) -> Any:
    """The device of this worker for the requested ``device`` (:func:`.gpu_slots.local_worker_device`).

    A local cluster's worker ``k`` on a machine with ``n`` GPUs uses ``cuda:(k mod n)`` for ``auto`` and a bare
    ``cuda``, never all of them GPU 0, and makes it the current CUDA device (kernels and caches of code that uses
    the default device go there too). Anything else: ``resolve(device)``.
    """
    import torch

    from .gpu_slots import local_worker_device

    name = None
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not in a Dask worker
        pass
    if name is None or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return resolve(device)
    dev = torch.device(local_worker_device(device, name))
    if dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


def execute_unit(
    store_path: str,
    protocol: dict[str, Any] | str,
    uid: int,
    seed: int,
    stage: str,
    device: str = "auto",
    threads: int = 1,
    upstream: Sequence[dict[str, Any]] = (),
    arch_str: str = "",
    checkpoint_rel: str = "",
    weights_sha256: str = "",
    expected_s: float | None = None,
) -> dict[str, Any]:
    """Run one stage for one (cell, seed) and return its values. Runs on a worker; never raises for a stage error.

    The worker writes nothing into the store (the client does, see the module docstring); only the ``train`` stage
    writes its checkpoint file next to the store.

    Arguments:
        store_path: the store folder (checkpoints live next to it).
        protocol: ``ProtocolConfig.to_dict()``, or its JSON string ``ProtocolConfig.to_json()`` (what the runner
            submits: one string per task instead of a dict Dask would copy element by element).
        uid, seed: the cell and seed.
        stage: the unit: a stage name, or ``adversarial:<attack>`` for one attack of the adversarial stage
            (:mod:`.attack_units`; its values: the stage's with only that attack's row computed).
        device: torch device name (``auto``: CUDA when present).
        threads: torch intra-op threads.
        upstream: results of the stages this one needs (Dask passes them once they are done).
        arch_str: the cell's architecture string.
        checkpoint_rel: the trained checkpoint (relative to the store's parent) when ``train`` finished in an
            earlier run (this run's ``train`` result in ``upstream`` takes precedence).
        weights_sha256: the weights hash recorded with ``checkpoint_rel``: a checkpoint whose weights hash
            otherwise fails the unit. Stages of :data:`~robustbench_nas.storage.WEIGHT_STAGES` return the hash of
            the weights they used in their ``<stage>_weights_sha256`` value.
        expected_s: the unit's expected wall seconds (:class:`.lifetime.StageTimes`), ``None`` if unknown. A Dask
            worker that has less time left before it retires or its SLURM job ends hands the unit back
            (``distributed.Reschedule``) and retires (:func:`.lifetime.refuse_if_too_late`).

    GPU failures (:mod:`robustbench_nas.utils.device_failures`): a worker advertising a GPU it cannot use fails the
    unit at once (never runs it on the CPU); out-of-memory retries with half the batch (``batch_size`` in the
    result; not counted as a retry); any other CUDA error ends the Dask worker process (its nanny restarts it;
    outside a worker :class:`~robustbench_nas.utils.device_failures.FatalDeviceError` is raised). With the
    protocol's ``unit_timeout_s``, an attempt past that limit ends the worker likewise (outside a worker:
    :class:`~robustbench_nas.utils.device_failures.UnitTimeout`).

    Every stage but ``train`` runs under IEEE fp32 convolutions and matmuls (:func:`robustbench_nas.utils.precision.
    ieee_fp32`, restored afterwards, also on failure); the setting in force is returned as ``precision``, with the
    torch thread count (``threads``) and the device (``device``, :func:`robustbench_nas.utils.device_label`) of the
    last attempt: the store records all three with the unit's result (``unit_precision``, ``unit_threads``,
    ``unit_device``), since on other hardware or thread counts the same command may round differently.

    Returns:
        ``{"uid", "seed", "stage", "status": "done"|"failed", "seconds", "attempts", "error", "values",
        "precision", "threads", "device"}`` (the last three absent when the unit never started).
    """
    import torch

    from robustbench_nas.utils import device_label, resolve_device
    from robustbench_nas.utils.device_failures import (UnitTimeout, WorkerGPUError, call_with_timeout,
                                                       check_advertised_gpu, exit_worker, free_device_memory,
                                                       is_fatal_cuda_error, is_oom)
    from robustbench_nas.utils.precision import describe, ieee_fp32

    torch.set_num_threads(max(1, int(threads)))
    proto = ProtocolConfig.from_saved(protocol)
    out = {"uid": uid, "seed": seed, "stage": stage, "status": "done", "seconds": 0.0, "attempts": 0, "error": "",
           "values": None, "precision": ""}
    bad = [u for u in upstream if u.get("status") != "done"]
    if bad:
        msg = f"needs {', '.join(sorted({u['stage'] for u in bad}))}, which failed for this cell"
        return {**out, "status": "failed", "error": msg}
    _lifetime_rule(expected_s, stage, uid, seed)
    base, attack = split_unit(stage)
    definition = get_stage(base)
    compute = definition.fn if attack is None else (lambda c: adversarial_values(c, [attack]))
    ctx = StageContext(protocol=proto, uid=uid, arch_str=arch_str, seed=seed, store_path=Path(store_path),
                       device=_worker_device(device, resolve_device))
    if "train" in definition.needs:
        trained = [u for u in upstream if u.get("stage") == "train" and u.get("values")]
        ctx.checkpoint_rel = str(trained[0]["values"]["checkpoint"]) if trained else checkpoint_rel
        ctx.weights_sha256 = str(trained[0]["values"].get("weights_sha256", "")) if trained else weights_sha256
    try:
        check_advertised_gpu(ctx.device)
    except WorkerGPUError as e:
        log.error("%s", e)
        return {**out, "status": "failed", "error": f"WorkerGPUError: {e}"}
    error = ""
    attempt = 0
    while attempt <= proto.retries:
        out["attempts"] += 1
        out["threads"], out["device"] = torch.get_num_threads(), device_label(ctx.device)
        t0 = time.perf_counter()
        try:
            what = f"stage {stage}, cell {uid} seed {seed}"
            if base == "train":  # training: the profile's own precision (TF32 / AMP only where it says so)
                out["precision"] = describe()
                values = call_with_timeout(lambda: compute(ctx), proto.unit_timeout_s, what)
            else:
                with ieee_fp32() as setting:
                    out["precision"] = setting
                    values = call_with_timeout(lambda: compute(ctx), proto.unit_timeout_s, what)
            out["seconds"] = time.perf_counter() - t0
            out["values"] = _with_weights_hash(base, ctx, values)
            return out
        except UnitTimeout:
            raise  # outside a worker: the caller decides (a worker has ended itself instead)
        except Exception as e:  # noqa: BLE001  (any stage error is recorded, never propagated)
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
            out["seconds"] = time.perf_counter() - t0
            bs = ctx.protocol.batch_size
            if is_oom(e) and bs > 1:
                # a property of the batch, not of the unit: half the batch, same results (per-image draws); does
                # not use up a retry
                del e
                free_device_memory()
                ctx.protocol = ctx.protocol.replace(batch_size=max(1, bs // 2))
                out["batch_size"] = ctx.protocol.batch_size
                log.warning("stage %s, cell %d seed %d: out of memory at batch %d, retrying at %d", stage, uid,
                            seed, bs, ctx.protocol.batch_size)
                continue
            if is_fatal_cuda_error(e):
                # the CUDA context is unusable: retrying here (or running any later unit) would fail the same way
                out["error"] = error
                log.error("stage %s, cell %d seed %d: CUDA error: %s", stage, uid, seed, e)
                exit_worker(f"stage {stage}, cell {uid} seed {seed}: {e}")
            log.warning("stage %s failed for cell %d seed %d (attempt %d/%d): %s", stage, uid, seed, attempt + 1,
                        proto.retries + 1, e)
            attempt += 1
    return {**out, "status": "failed", "error": error}


def _with_weights_hash(stage: str, ctx: StageContext, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus, for a stage computed from the checkpoint, the hash of the weights it loaded (none when it
    loaded none: the client then records the unit failed, see :meth:`ResultWriter.record`)."""
    if stage not in WEIGHT_STAGES or not ctx.weights_sha256:
        return values
    return {**values, weights_hash_array(stage): ctx.weights_sha256}


def _lifetime_rule(expected_s: float | None, stage: str, uid: int, seed: int) -> None:
    """Raise ``distributed.Reschedule`` (and retire this worker) when the unit cannot finish in its time left."""
    from .lifetime import current_worker, refuse_if_too_late

    refuse_if_too_late(current_worker(), expected_s, f"stage {stage}, cell {uid} seed {seed}")


# ---- clusters -----------------------------------------------------------------------------------------------------
def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def dashboard_link(scheduler: Any) -> str | None:
    """``http://HOST:PORT/status`` of the socket the in-process ``scheduler``'s dashboard is really bound to."""
    server = getattr(scheduler, "http_server", None)
    services = getattr(scheduler, "services", {}) or {}
    if server is None or "dashboard" not in services or not _has_bokeh():
        return None
    host, port = getattr(server, "address", None), getattr(server, "port", None)
    if port is None:
        return None
    if host in (None, "", "0.0.0.0", "::"):
        import socket

        host = socket.gethostname()  # bound to every interface: the machine's name is what others would use
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}/status"


def make_security() -> Any:
    """Per-run TLS credentials (self-signed CA/cert/key, in memory; ``distributed.Security.temporary``)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as e:  # pragma: no cover - cryptography is a dependency
        raise RuntimeError(f"TLS needs the 'cryptography' package ({e}); install it or pass --insecure") from None


@contextlib.contextmanager
def make_client(
    cluster: str = "local",
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    slurm_config: str | None = None,
    jobs: int = 1,
    dashboard_address: str | None = DEFAULT_DASHBOARD,
    insecure: bool = False,
    credentials_dir: str | os.PathLike | None = None,
    workers_per_gpu: int = 1,
) -> Iterator[Any]:
    """A ``distributed.Client``: on a scheduler address, a SLURM cluster, or a local cluster of processes.

    The local cluster uses spawned processes with one thread each (``OMP_NUM_THREADS=1``; torch threads are set
    per task) and glibc malloc thresholds that keep tensors in the heap (:mod:`.worker_env`: Dask's default
    ``MALLOC_TRIM_THRESHOLD_`` alone made every large tensor a fresh mmap, 2x a proxies task's time); workers advertise ``GPU: 1`` when CUDA is present so GPU stages run one at a time per worker. With
    ``n`` visible GPUs it has ``n * workers_per_gpu`` workers by default, worker ``k`` on GPU ``k mod n`` (also
    with ``--device cuda``; see :func:`_worker_device`).

    What is exposed: a local cluster's scheduler, workers, nannies and dashboard listen on 127.0.0.1 only, and
    scheduler and workers talk TLS with credentials made for this run (held in memory, handed to the spawned
    workers through their start-up pipe), so other users of a shared login node cannot submit work to them
    either. On SLURM (:func:`robustbench_nas.pipelines.slurm.make_slurm_cluster`) the scheduler must be reachable from the
    compute nodes; it then requires TLS with per-run certificates written owner-only under ``credentials_dir``.
    ``insecure=True`` turns TLS off (plain TCP; a warning says so).

    Arguments:
        dashboard_address: ``HOST:PORT`` of the Dask dashboard (:func:`check_dashboard_address`); ``None``: none.
        insecure: no TLS.
        credentials_dir: shared folder under which the SLURM run's credentials folder is made (default: the
            SLURM config's ``credentials-directory``, else ``~/.rbnas/credentials``).
        workers_per_gpu: local workers sharing each GPU (1 .. 8); SLURM jobs take it from their config.
    """
    from distributed import Client, LocalCluster

    from .gpu_slots import check_workers_per_gpu

    check_workers_per_gpu(workers_per_gpu)

    dash = check_dashboard_address(dashboard_address, warn=True)
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if insecure:
        log.warning("--insecure: scheduler and workers talk plain TCP without authentication; anyone who can reach "
                    "the scheduler's port can run code as you on the workers")
    if cluster == "slurm":
        from .slurm_cluster import make_slurm_cluster

        with make_slurm_cluster(slurm_config, jobs, dashboard_address=dash, insecure=insecure,
                                credentials_dir=credentials_dir) as sc, \
                Client(sc, security=sc.security) as client:
            client.rbnas_dashboard = dashboard_link(sc.scheduler) if dash else None
            yield client
        return
    if cluster != "local":
        raise ValueError(f"cluster must be 'local' or 'slurm', got {cluster!r}")
    import dask
    import torch

    n = _local_workers(n_workers, workers_per_gpu)
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    security = None if insecure else make_security()
    # spawn (not fork): a forked worker would inherit the client's torch / CUDA state
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", **pre_spawn_config()}), LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",  # scheduler, workers and nannies: loopback only
        protocol="tcp://" if insecure else "tls://",
        security=security,
        dashboard_address=dash,
        worker_dashboard_address=None,
        # without a dashboard the scheduler still serves /health: keep that on loopback too
        scheduler_kwargs=None if dash else {"dashboard": False, "dashboard_address": DEFAULT_DASHBOARD},
        resources={"GPU": 1} if n_gpu else None,
        env=dict(THREAD_ENV),
        silence_logs=logging.ERROR,
    ) as lc, Client(lc, security=security) as client:
        client.rbnas_dashboard = dashboard_link(lc.scheduler) if dash else None
        yield client


def _local_workers(n_workers: int | None, workers_per_gpu: int) -> int:
    """Workers of a local cluster: ``n_workers`` if given, else ``workers_per_gpu`` per visible GPU, else half the
    CPUs (each worker is one process; its torch threads come from ``--threads``)."""
    from .gpu_slots import torch_device_count

    if n_workers is not None:
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        return n_workers
    n_gpu = torch_device_count()
    return n_gpu * workers_per_gpu if n_gpu else max(1, (os.cpu_count() or 2) // 2)


def _cluster_has_gpu(client: Any) -> bool:
    """Whether GPU stages should request the ``GPU`` resource (a task asking for it never runs without one)."""
    cfg = getattr(getattr(client, "cluster", None), "rbnas_config", None)
    if cfg is not None:  # a SLURM cluster from robustbench_nas.pipelines.slurm: its workers join later, with GPU: 1 if gpus > 0
        return int(getattr(cfg, "gpus", 0) or 0) > 0
    if not client.scheduler_info().get("workers"):
        client.wait_for_workers(1, timeout=600)  # a bare scheduler address: decide once a worker is there
    workers = client.scheduler_info().get("workers", {})
    return any("GPU" in (w.get("resources") or {}) for w in workers.values())


# ---- the client side ------------------------------------------------------------------------------------------------
@dataclass
class RunReport:
    """What a run did.

    Attributes:
        store: the store path; protocol / fingerprint: the protocol's name and hash.
        submitted: tasks submitted; counts: ``{stage: {"done", "failed", "total"}}`` of this run.
        extra: ``reused`` (slots copied per stage), ``skipped_leased`` (units skipped per ``holder@host``),
            ``blocks`` (the storage blocks this run wrote results into).
        progress: the store's ``{stage: {"done", "failed", "pending"}}`` after the run (all array tasks).
        failures: ``[{"arch", "seed", "stage", "error", ...}]`` recorded in the store.
        seconds: wall time; dashboard: the Dask dashboard address (or None).
    """

    store: str
    protocol: str
    fingerprint: str
    submitted: int
    counts: dict[str, dict[str, int]]
    progress: dict[str, dict[str, int]]
    failures: list[dict[str, Any]]
    seconds: float
    dashboard: str | None = None
    cells: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures


def plan_units(store: RobustnessStore, protocol: ProtocolConfig, stages: Sequence[str],
               task: tuple[int, int] | None, cells: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
    """The (uid, seed, stage) units to run: selected stages (+ their unfinished needs) not done yet, in order.

    ``cells``: only these (default: array task ``task``'s cells, :func:`~robustbench_nas.pipelines.tasks.task_cells`).
    """
    chosen = task_cells(store.spec.archs, task, store.spec.shard_cells) if cells is None else sorted(cells)
    return plan_from_status(store.spec.archs, store.spec.seeds, store.spec.stages, store.status(), stages, chosen,
                            list(store.spec.attacks), store_attacks_done(store))


def plan_from_status(archs: Sequence[int], seeds: Sequence[int], store_stages: Sequence[str], status: np.ndarray,
                     stages: Sequence[str], cells: Sequence[int], attacks: Sequence[str] = (),
                     attack_done: np.ndarray | None = None) -> list[tuple[int, int, str]]:
    """:func:`plan_units` on a status array ``(arch, seed, stage)`` laid out as ``archs`` x ``seeds`` x
    ``store_stages`` (also for a store not created yet: every status pending).

    ``attack_done``: ``(arch, seed, attack)`` attacks done (:func:`.attack_units.attacks_done`, ``attacks`` along
    the last axis): the adversarial stage is planned as one unit per attack not done (``None``: one unit, for
    stores made before attacks were split)."""
    arch_pos = {a: i for i, a in enumerate(archs)}
    stage_pos = {s: k for k, s in enumerate(store_stages)}
    units = []
    for uid in cells:
        i = arch_pos[uid]
        for j, seed in enumerate(seeds):
            for stage in stages:
                if not get_stage(stage).per_seed and j > 0:
                    continue
                if status[i, j, stage_pos[stage]] != DONE:
                    units.append((uid, seed, stage))
    return expand(units, attacks, attack_done, arch_pos, {s: j for j, s in enumerate(seeds)})


def run_pipeline(
    store_path: str | os.PathLike,
    protocol: ProtocolConfig | None = None,
    *,
    stages: Sequence[str] | None = None,
    force_stages: Sequence[str] = (),
    task: tuple[int, int] | None = None,
    client: Any = None,
    cluster: str = "local",
    scheduler: str | None = None,
    n_workers: int | None = None,
    slurm_config: str | None = None,
    jobs: int = 1,
    device: str = "auto",
    threads: int = 1,
    progress: bool = True,
    reuse: str | os.PathLike | None = None,
    dashboard_address: str | None = DEFAULT_DASHBOARD,
    insecure: bool = False,
    credentials_dir: str | os.PathLike | None = None,
    shard_cells: int | None = None,
    wait: bool = False,
    lease_ttl_s: float = DEFAULT_TTL_S,
    workers_per_gpu: int = 1,
) -> RunReport:
    """Create or resume the store and run every unfinished stage of every cell (of this array task).

    Each cell is computed by one run at a time (:mod:`~robustbench_nas.pipelines.leases`): the run leases the cells
    it computes and gives each back once its units are journalled; cells leased by another live run are skipped
    with one warning line (``skipping N units leased by HOLDER@HOST until T``), or waited for with ``wait=True``
    (then re-planned: usually the other run has finished them).

    Arguments:
        store_path: the store folder (created for ``protocol`` if missing).
        protocol: the :class:`ProtocolConfig`; ``None`` continues the store's saved protocol.
        stages: stages to run (default: all of the protocol's); their unfinished needs are added.
        force_stages: stages recomputed on purpose (reset to pending first, for this task's cells, together with
            the stages computed from their results: ``train`` resets every evaluation, see
            :func:`~pipelines.stages.dependent_stages`).
        task: ``(i, n)``: run only the cells of array task i of n (see :func:`~pipelines.protocol.task_cells`).
        client: an existing ``distributed.Client`` (otherwise one is made from ``cluster`` / ``scheduler``).
        cluster, scheduler, n_workers, slurm_config, jobs, dashboard_address, insecure, credentials_dir,
            workers_per_gpu: how to make the client (:func:`make_client`).
        device: torch device on the workers; threads: torch threads per task.
        progress: show a progress bar.
        reuse: another store whose finished results are copied where the protocols agree (see
            :func:`reuse_results`), e.g. the trained networks when only the attack grid changed.
        shard_cells: cells per storage block of a new store (default 256; array tasks get whole blocks).
        wait: wait for cells leased by other runs instead of skipping them.
        lease_ttl_s: seconds a lease outlives its last heartbeat (a killed run's cells are free after that on
            other hosts; at once on its own host).

    Example:
        >>> report = run_pipeline("runs/tiny.zarr", get_protocol("tiny"))   # doctest: +SKIP
        >>> report.progress["clean"]                                        # doctest: +SKIP
        {'done': 8, 'failed': 0, 'pending': 0}
    """
    t0 = time.perf_counter()
    check_dashboard_address(dashboard_address)  # a bad address fails before the store is made
    store, protocol = prepare_store(store_path, protocol, shard_cells)
    todo = stages_to_run(protocol, stages, force_stages)
    cells = task_cells(store.spec.archs, task, store.spec.shard_cells)
    reused = reuse_results(store, protocol, reuse, cells) if reuse is not None else {}
    # a forced stage's new results make those computed from its old ones stale (train: every evaluation)
    available = [s for s in protocol.stages if s in list_stages()]
    for stage in [*force_stages, *dependent_stages(list(force_stages), available)]:
        n = store.reset_stage(stage, cells)
        if stage == ADV_STAGE:
            _forget_attacks(store, cells)
        log.info("--force-stage %s: %d slots reset to pending", stage, n)
    times = _stage_times(store)  # the lifetime rule's estimates: read once per run, before any unit runs
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, int] = {}
    blocks: list[int] = []  # the storage blocks this run wrote results into (array tasks: never another task's)
    report_kwargs = dict(store=str(store_path), protocol=protocol.name, fingerprint=protocol.fingerprint(),
                         counts=counts, cells=len(cells),
                         extra={"reused": reused, "skipped_leased": skipped, "blocks": blocks})
    dashboard = None
    with LeaseBook(store.path, ttl_s=lease_ttl_s) as leases:
        units, held = _lease_round(store, protocol, todo, cells, leases, skipped)
        if not units and not (wait and held):
            if not held:
                log.info("nothing to do: every selected stage is done for the %d cells", len(cells))
            return RunReport(progress=store.progress(), failures=store.failures(), seconds=time.perf_counter() - t0,
                             submitted=0, **report_kwargs)
        ctx = contextlib.nullcontext(client) if client is not None else make_client(
            cluster, scheduler=scheduler, n_workers=n_workers, slurm_config=slurm_config, jobs=jobs,
            dashboard_address=dashboard_address, insecure=insecure, workers_per_gpu=workers_per_gpu,
            credentials_dir=credentials_dir if credentials_dir is not None else store.path.resolve().parent)
        submitted = 0
        with ctx as cl:
            if hasattr(cl, "rbnas_dashboard"):  # made here: the address the dashboard is really bound to
                dashboard = cl.rbnas_dashboard
            else:
                dashboard = getattr(cl, "dashboard_link", None) if (_has_bokeh() or scheduler) else None
            if dashboard and progress:
                log.warning("Dask dashboard: %s", dashboard)
            while True:
                if units:
                    for _uid, _seed, unit in units:  # attack units count under their stage
                        counts.setdefault(unit_stage(unit), {"done": 0, "failed": 0, "total": 0})["total"] += 1
                    counts_order = {s: counts[s] for s in todo if s in counts}  # pipeline order in the report
                    counts.clear()
                    counts.update(counts_order)
                    log.info("run %s: %d tasks on %d cells (protocol %s %s)", store.path, len(units),
                             len({u[0] for u in units}), protocol.name, protocol.fingerprint())
                    submitted += len(units)
                    blocks[:] = sorted(set(blocks) | {store.block_of(u[0]) for u in units})
                    futures = _submit(cl, store, protocol, units, device, threads, times)
                    _wait_for_slurm_workers(cl)
                    _collect(cl, store, futures, counts, progress, on_cell_done=leases.release)
                if not (wait and held):
                    break
                units, held = _wait_for_leases(store, protocol, todo, held, leases, skipped)
    return RunReport(progress=store.progress(), failures=store.failures(), seconds=time.perf_counter() - t0,
                     dashboard=dashboard, submitted=submitted, **report_kwargs)


def _forget_attacks(store: RobustnessStore, cells: Sequence[int]) -> None:
    """Clear the per-attack weights hashes of ``cells`` (``--force-stage adversarial``): every attack is recomputed,
    also those whose rows came from the cell's current weights."""
    if not splits_attacks(store):
        return
    empty = [""] * len(store.spec.attacks)
    recs = [store.cell_record(uid, seed, {"adv_attack_weights_sha256": empty}) for uid in cells
            for seed in store.spec.seeds]
    store.append(recs)
    store.commit(sorted({b for b, _ in recs}))


def _lease_round(store: RobustnessStore, protocol: ProtocolConfig, todo: Sequence[str], cells: Sequence[int],
                 leases: LeaseBook, skipped: dict[str, int]) -> tuple[list[tuple[int, int, str]], dict[int, Any]]:
    """Lease the cells of ``cells`` with work left; return (their units, ``{cell: holder}`` of those held by others).

    The units are planned again after leasing: a cell whose last holder finished it meanwhile (journalled, then
    gave it back) has nothing left, and its lease is given back at once. The skipped units are said in one line
    and counted per holder in ``skipped``.
    """
    planned = plan_units(store, protocol, todo, None, cells)
    mine, held = leases.acquire(sorted({u[0] for u in planned}))
    units = plan_units(store, protocol, todo, None, mine) if mine else []
    leases.release(set(mine) - {u[0] for u in units})
    n_held = [u for u in planned if u[0] in held]
    if n_held:
        log.warning("%s", skipped_line(len(n_held), held))
        for u in n_held:
            label = held[u[0]].label()
            skipped[label] = skipped.get(label, 0) + 1
    return units, held


def _wait_for_leases(store: RobustnessStore, protocol: ProtocolConfig, todo: Sequence[str], held: dict[int, Any],
                     leases: LeaseBook, skipped: dict[str, int]) -> tuple[list[tuple[int, int, str]], dict[int, Any]]:
    """``--wait``: poll until some of the ``held`` cells are free (given back or expired), then lease what is left.

    Returns the next round's units and the cells still held by others (the skip line is not repeated).
    """
    poll = min(5.0, leases.ttl_s / 5)
    log.warning("waiting for %d cells leased by other runs", len(held))
    while True:
        still = leases.held_by_others(held)
        if len(still) < len(held):
            break
        time.sleep(poll)
    planned = plan_units(store, protocol, todo, None, sorted(held))
    mine, held = leases.acquire(sorted({u[0] for u in planned}))
    units = plan_units(store, protocol, todo, None, mine) if mine else []
    leases.release(set(mine) - {u[0] for u in units})
    return units, held


def _run_order(protocol: ProtocolConfig, archs: list[int]) -> dict[int, int]:
    """Rank of each cell in the run: the protocol's listed order when ``archs`` is a list, uid order otherwise.

    A listed order lets a long run that stops part-way leave a chosen prefix done (e.g. the interleaved
    stratified sample of ``nb201-proxies``); the store itself stays sorted by uid.
    """
    order = {uid: k for k, uid in enumerate(archs)}
    if isinstance(protocol.archs, tuple):
        from robustbench_nas.search_spaces import get_search_space

        space = get_search_space(protocol.search_space)
        listed: dict[int, int] = {}
        for a in protocol.archs:
            listed.setdefault(space.uid(a), len(listed))
        order = {uid: listed.get(uid, len(listed) + k) for uid, k in order.items()}
    return order


def _wait_for_slurm_workers(client: Any) -> None:
    """On a SLURM cluster made here: block until a worker joined, or raise why none will (see squeue.py)."""
    cluster = getattr(client, "cluster", None)
    if getattr(cluster, "rbnas_config", None) is not None:
        from .squeue import wait_for_first_worker

        wait_for_first_worker(cluster)


def _submit(client: Any, store: RobustnessStore, protocol: ProtocolConfig, units: list[tuple[int, int, str]],
            device: str, threads: int, times: Any = None) -> dict[Any, tuple[int, int, str]]:
    """Submit ``units`` to ``client``; ``times``: the run's :class:`.lifetime.StageTimes` (read once per run), each
    unit's expected seconds handed to it for the lifetime rule."""
    gpu = _cluster_has_gpu(client)
    run_id = uuid.uuid4().hex[:6]
    protocol_json = protocol.to_json()  # one string shared by every task: Dask would copy a dict per task
    futures: dict[tuple[int, int, str], Any] = {}
    order = _run_order(protocol, list(store.spec.archs))
    checkpoints = hashes = None
    # submitted in run order too: the first tasks reach an idle worker before the later ones are even queued
    for uid, seed, stage in sorted(units, key=lambda u: order[u[0]]):  # stable: a cell's stages keep their order
        d = get_stage(unit_stage(stage))
        ups = [futures[(uid, seed, n)] for n in d.needs if (uid, seed, n) in futures]
        ckpt = sha = ""
        if "train" in d.needs and (uid, seed, "train") not in futures:  # trained in an earlier run
            if checkpoints is None:
                checkpoints = store.read_array("checkpoint")
                hashes = store.read_array("weights_sha256") if "weights_sha256" in store.arrays else None
            ckpt = str(checkpoints[store.arch_pos(uid), store.seed_pos(seed)])
            sha = str(hashes[store.arch_pos(uid), store.seed_pos(seed)]) if hashes is not None else ""
        # finish started cells before starting new ones: evaluations outrank training of later cells
        priority = (0 if d.name in ("info", "proxies", "train") else 1_000_000) - order[uid]
        futures[(uid, seed, stage)] = client.submit(
            execute_unit, str(store.path), protocol_json, uid, seed, stage, device, threads, ups,
            store.spec.arch_str[store.arch_pos(uid)], ckpt, sha, times.expected(uid, stage) if times else None,
            key=f"rbnas-{stage}-{uid}-s{seed}-{run_id}", pure=False, priority=priority,
            resources={"GPU": 1} if (gpu and d.gpu) else None,
        )
    return {f: u for u, f in futures.items()}


def _require_weights_hash(store: RobustnessStore, stage: str, values: dict[str, Any]) -> None:
    """ValueError when a result computed from a checkpoint comes without the weights hash it used (a stage that did
    not load the trained network cannot vouch for its weights; stored, it would read as stale)."""
    name = weights_hash_array(stage) if stage in WEIGHT_STAGES else ""
    if name in store.arrays and not str(values.get(name) or ""):
        raise ValueError(f"stage {stage} returned no {name}: it did not load the trained network through "
                         "StageContext.trained_model()")


def _stage_times(store: RobustnessStore) -> Any:
    """The store's recorded stage times for the lifetime rule (:mod:`.lifetime`); ``None`` if unreadable."""
    from .lifetime import StageTimes

    try:
        return StageTimes.from_store(store)
    except (KeyError, ValueError, OSError) as e:  # an estimate is an optimisation: never stop a run for it
        log.warning("no stage-time estimates for the lifetime rule: %s", e)
        return None


class ResultWriter:
    """The client's side of the write path: results into the journal at once, whole-block commits.

    A block is committed as soon as every unit of it submitted by this run has a result, every
    ``commit_seconds`` for the blocks with new records, and at :meth:`close` (the end of the run).

    Arguments:
        store: the store (open ``r+``).
        units: this run's units (to know when a block is complete).
        commit_seconds: longest time results wait in the journal before their blocks are committed.
    """

    def __init__(self, store: RobustnessStore, units: Sequence[tuple[int, int, str]],
                 commit_seconds: float = 120.0) -> None:
        self.store = store
        self.open_units: dict[int, int] = {}
        for uid, _seed, _stage in units:
            b = store.block_of(uid)
            self.open_units[b] = self.open_units.get(b, 0) + 1
        self.commit_seconds = commit_seconds
        self.dirty: set[int] = set()
        self.last_commit = time.monotonic()
        self.attempts = store.attempts()
        self.merger = AttackMerger(store) if splits_attacks(store) else None
        self.failed_attacks: set[tuple[int, int]] = set()  # (cell, seed) with an attack unit failed in this run

    def record(self, uid: int, seed: int, unit: str, res: dict[str, Any]) -> tuple[int, Any]:
        """The journal record of one task result (bad values from a stage become a failure, not a crash).

        An attack unit (``adversarial:<attack>``, :mod:`.attack_units`) records the cell's adversarial values with
        its attack's row merged in; the stage is done with the record of its last attack, pending before (failed
        once any attack of the cell failed).
        """
        st = self.store
        stage, attack = split_unit(unit)
        i, j, s = st.arch_pos(uid), st.seed_pos(seed), st.stage_pos(stage)
        n = int(self.attempts[i, j, s]) + int(res.get("attempts") or 0)
        for jj in st._seed_slots(stage, j):
            self.attempts[i, jj, s] = n
        # what the unit ran with, in the same record as its result (None: never started, left unchanged)
        ran = {"threads": res.get("threads"), "device": res.get("device"), "precision": res.get("precision") or None}
        if res["status"] == "done":
            try:
                _require_weights_hash(st, stage, res.get("values") or {})
                if attack is not None:
                    return self._attack_record(uid, seed, attack, res, n, ran)
                block, rec = st.cell_record(uid, seed, res.get("values") or {}, stage=stage, status=DONE,
                                            seconds=res.get("seconds"), error="", attempts=n, **ran)
                if stage == "train":  # new weights: what was computed from the old ones is pending, same record
                    rec.book += train_reset_entries(st, uid, seed)
                return block, rec
            except (KeyError, ValueError) as e:  # the stage returned something the schema does not hold
                res["status"], res["error"] = "failed", f"{type(e).__name__}: {e}"
        error = res.get("error") or "failed"
        if attack is not None:
            self.failed_attacks.add((uid, seed))
            error = f"attack {attack}: {error}"  # which unit of the stage failed
        return st.cell_record(uid, seed, stage=stage, status=FAILED, seconds=res.get("seconds"),
                              error=error, attempts=n, **ran)

    def _attack_record(self, uid: int, seed: int, attack: str, res: dict[str, Any], attempts: int,
                       ran: dict[str, Any]) -> tuple[int, Any]:
        """The record of a finished attack unit: merged values; the stage done (summed seconds, its weights hash)
        when it was the cell's last attack, else pending (failed if another attack of the cell failed in this
        run)."""
        if self.merger is None:
            raise ValueError(f"attack unit {attack!r} on a store that records the adversarial stage as one unit")
        values = dict(res.get("values") or {})
        weights = str(values.pop(weights_hash_array(ADV_STAGE), "") or "")
        merged, complete = self.merger.merge(uid, seed, attack, values, float(res.get("seconds") or 0.0), weights)
        if complete:
            merged[weights_hash_array(ADV_STAGE)] = weights
            secs = float(np.nansum(merged["adv_attack_seconds"]))
            return self.store.cell_record(uid, seed, merged, stage=ADV_STAGE, status=DONE, seconds=secs, error="",
                                          attempts=attempts, **ran)
        status = None if (uid, seed) in self.failed_attacks else PENDING
        return self.store.cell_record(uid, seed, merged, stage=ADV_STAGE, status=status, attempts=attempts, **ran)

    def add(self, results: Sequence[tuple[int, int, str, dict[str, Any]]]) -> None:
        """Journal a batch of results (one append, one fsync), then commit the blocks they completed.

        Records are made in pipeline stage order: a cell's train result (which resets its evaluations) goes before
        evaluations of the new weights that finished in the same batch.
        """
        order = {s: k for k, s in enumerate(self.store.spec.stages)}
        results = sorted(results, key=lambda r: order[unit_stage(r[2])])  # stable: otherwise in completion order
        recs = [self.record(uid, seed, stage, res) for uid, seed, stage, res in results]
        self.store.append(recs)
        complete = []
        for b, _ in recs:
            self.dirty.add(b)
            self.open_units[b] -= 1
            if self.open_units[b] == 0:
                complete.append(b)
        if complete:
            self.commit(complete)
        elif time.monotonic() - self.last_commit > self.commit_seconds:
            self.commit(sorted(self.dirty))

    def commit(self, blocks: Sequence[int]) -> None:
        self.store.commit(blocks)
        self.dirty -= set(blocks)
        self.last_commit = time.monotonic()

    def close(self) -> None:
        """Commit every block with records of this run."""
        if self.dirty:
            self.commit(sorted(self.dirty))


def _collect(client: Any, store: RobustnessStore, futures: dict[Any, tuple[int, int, str]],
             counts: dict[str, dict[str, int]], progress: bool, commit_seconds: float = 120.0,
             on_cell_done: Any = None) -> None:
    """Journal and commit results as they come; ``on_cell_done(cells)``: called with the cells whose last unit of
    this run has just been journalled (the runner gives their leases back). Each future is removed from
    ``futures`` once its result is read, so that the workers drop results already journalled."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    bar = tqdm(total=len(futures), desc="rbnas run", unit="task", disable=not progress, dynamic_ncols=True)
    open_units: dict[int, int] = {}
    for uid, _seed, _stage in futures.values():
        open_units[uid] = open_units.get(uid, 0) + 1
    cells = {"done": 0, "total": len(open_units)}
    writer = ResultWriter(store, list(futures.values()), commit_seconds)
    try:
        for batch in as_completed(list(futures)).batches():
            results = []
            finished = []
            for fut in batch:
                # popped: a future the client holds keeps its result in a worker's memory until the run ends
                # (results of a 6466-cell run would pile up there); dependents still get it from the scheduler
                uid, seed, stage = futures.pop(fut)
                open_units[uid] -= 1
                cells["done"] += open_units[uid] == 0
                if open_units[uid] == 0:
                    finished.append(uid)
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001  (e.g. KilledWorker: the task took down its worker repeatedly)
                    log.error("cell %d seed %d: stage %s lost: %s", uid, seed, stage, e)
                    res = {"status": "failed", "error": f"{type(e).__name__}: {e}", "seconds": None, "attempts": 1}
                results.append((uid, seed, stage, res))
            writer.add(results)  # journal first: a result counts once it is durable
            if on_cell_done is not None and finished:
                on_cell_done(finished)  # after the journal: a run that leases the cell next sees it done
            for uid, seed, stage, res in results:
                status = res["status"]
                if status == "failed":
                    log.warning("cell %d seed %d: stage %s failed: %s", uid, seed, stage,
                                (res.get("error") or "").splitlines()[0] if res.get("error") else "")
                counts[unit_stage(stage)][status] += 1
                log.info("cell %d seed %d: %s %s", uid, seed, stage, status)
                bar.update(1)
            bar.set_postfix_str(f"cells {cells['done']}/{cells['total']} | " + _postfix(counts), refresh=False)
    finally:
        bar.close()
        writer.close()


def _postfix(counts: dict[str, dict[str, int]]) -> str:
    """``train 3/8 clean 2/8 (1 failed)``: per stage, finished of submitted, and failures."""
    parts = []
    for stage, c in counts.items():
        parts.append(f"{stage} {c['done']}/{c['total']}" + (f" ({c['failed']} failed)" if c["failed"] else ""))
    return " ".join(parts)


def summary_rows(store: RobustnessStore) -> list[dict[str, Any]]:
    """Per-stage counts plus mean seconds per unit (for the run's closing table and ``rbnas status``)."""
    import numpy as np

    prog = store.progress()
    secs = store.stage_seconds()
    st = store.status()
    rows = []
    for s, stage in enumerate(store.spec.stages):
        done = st[:, :, s] == DONE
        timed = secs[:, :, s][done]
        timed = timed[np.isfinite(timed)]  # imported results have no wall time
        mean_s = float(timed.mean()) if timed.size else float("nan")
        rows.append({"stage": stage, **prog[stage], "mean_s": mean_s})
    return rows


def unit_mix(store: RobustnessStore) -> list[dict[str, Any]]:
    """What the store's done units ran with: ``[{"device", "threads", "precision", "units"}]``, most units first.

    ``precision`` is ``"ieee"`` / ``"tf32"`` when every fp32 flag has that value, else the recorded flags; units
    whose settings were not recorded (imported results, stores made before they were recorded) count under
    ``device`` ``"?"``.
    """
    settings = store.unit_settings()
    st = store.status()
    done = st == DONE
    for s, stage in enumerate(store.spec.stages):
        if stage in PER_ARCH_STAGES:  # one unit per cell, recorded at every seed
            done[:, 1:, s] = False
    counts: dict[tuple[str, int, str], int] = {}
    if not settings:
        return [{"device": "?", "threads": -1, "precision": "?", "units": int(done.sum())}] if done.any() else []
    dev, thr, prec = settings["unit_device"][done], settings["unit_threads"][done], settings["unit_precision"][done]
    for d, t, p in zip(dev.tolist(), thr.tolist(), prec.tolist()):
        flags = {v.split("=", 1)[-1] for v in str(p).split(",")} if p else {"?"}
        key = (str(d) or "?", int(t), flags.pop() if len(flags) == 1 else str(p))
        counts[key] = counts.get(key, 0) + 1
    rows = [{"device": d, "threads": t, "precision": p, "units": n} for (d, t, p), n in counts.items()]
    return sorted(rows, key=lambda r: (-r["units"], r["device"], r["threads"], r["precision"]))


def unit_mix_line(store: RobustnessStore) -> str:
    """:func:`unit_mix` in one line, e.g. ``ran on: 48 units cpu x1 thread (ieee), 8 units cpu x1 thread (tf32)``."""
    rows = unit_mix(store)
    if not rows:
        return "ran on: no unit done yet"
    parts = []
    for r in rows:
        where = "not recorded" if r["device"] == "?" else (
            f"{r['device']} x{r['threads']} thread{'s' if r['threads'] != 1 else ''} ({r['precision']})")
        parts.append(f"{r['units']} unit{'s' if r['units'] != 1 else ''} {where}")
    return "ran on: " + ", ".join(parts)


def headline(store: RobustnessStore) -> dict[str, float]:
    """A few mean results over done cells (clean accuracy, mean adversarial and corruption accuracy).

    Robust accuracies come with the clean accuracy of the *same* images (``adv_clean_accuracy``,
    ``corruption_clean_accuracy``): attacks and corruptions are evaluated on subsets, so only those are comparable
    (a robust accuracy above the whole-split clean accuracy is a subset effect, not an error).
    """
    import numpy as np

    out: dict[str, float] = {}
    ds = store.to_xarray(done_only=True)
    if "clean_accuracy" in ds:
        out["clean_accuracy"] = float(ds.clean_accuracy.mean(skipna=True))
    if "adv_accuracy" in ds:
        if "adv_clean_accuracy" in ds:
            out["adv_clean_accuracy"] = float(ds.adv_clean_accuracy.mean(skipna=True))
        for attack in ds.attack.values:
            v = ds.adv_accuracy.sel(attack=attack).where(ds.attack_grid.sel(attack=attack))
            for eps in ds.eps.values[np.asarray(ds.attack_grid.sel(attack=attack))]:
                out[f"{attack}@{round(float(eps) * 255, 4):g}/255"] = float(v.sel(eps=eps).mean(skipna=True))
    if "corruption_accuracy" in ds:
        if "corruption_clean_accuracy" in ds:
            out["corruption_clean_accuracy"] = float(ds.corruption_clean_accuracy.mean(skipna=True))
        out["corruption_accuracy"] = float(ds.corruption_accuracy.mean(skipna=True))
    return {k: v for k, v in out.items() if v == v}


__all__ = [
    "DEFAULT_DASHBOARD", "STAGE_FIELDS", "ResultWriter", "RunReport", "check_dashboard_address", "dashboard_link",
    "check_same_protocol", "execute_unit", "stages_to_run", "headline", "make_client", "make_security", "plan_from_status",
    "plan_units", "prepare_store", "reuse_results",
    "run_pipeline",
    "saved_protocol", "summary_rows", "unit_mix", "unit_mix_line",
]
