"""Training throughput: our trainer vs a plain torchvision ``DataLoader`` + standard training loop.

What is compared (same NB201 cell, same profile, same images, same process):

* **ours**: :func:`robustbench_nas.training.train_model` (uint8 data resident on the device, crop + flip done there
  in batches, per-step cosine schedule, optional ``channels_last`` / bf16 autocast / ``torch.compile``);
* **baseline**: what a user would write from the torchvision tutorial: a ``Dataset`` returning PIL images through
  ``transforms.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor()])``, a ``DataLoader``
  (``num_workers=0`` on this 2-core CPU, where workers only steal cores from the compute; 8 workers with pinned
  memory on a GPU machine) and the textbook ``zero_grad / forward / backward / step`` loop with the same SGD
  settings and a per-step cosine ``LambdaLR``.

Agreement (``results_agree``): both loops run once more *without augmentation* on the same data order from the
same initial weights; the trained weights must agree to float tolerance. That checks that our faster loop computes
the same SGD as the textbook loop (schedule, momentum, nesterov, weight decay, normalisation), independently of the
throughput figures.

On a GPU (skipped cleanly on a machine without CUDA) it also measures, for the all-``nor_conv_3x3`` cell and a light
cell: images/s of fp32 / ``channels_last`` / + bf16 / + ``torch.compile``, GPU utilisation while training, aggregate
images/s of several worker processes sharing the GPU, and bf16 vs fp32 test accuracy after a short real training
of one cell; then the GPU-hours to train all 6466 cells under ``jung2023`` (200 epochs x 50,000 images) from the
measured rates.

Without a GPU it writes a record ``training_gpu_projection`` whose figures are **projections** (``"kind":
"projection"``): CPU-measured time per image vs FLOPs, the exact FLOP count of every unique cell, and a stated range
of achieved GPU throughput (no GPU number in it was measured).

Run: ``python -m benchmarks.bench_training [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import (
    SHARED_DATA,
    Timer,
    cuda_available,
    machine_description,
    make_result,
    save_records,
    torch_threads,
)

log = logging.getLogger(__name__)

ALL_CONV3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: A light cell: one 1x1 conv, one pool, skips (about 8 % of the all-3x3 cell's FLOPs).
LIGHT = "|skip_connect~0|+|none~0|avg_pool_3x3~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
CELLS = {"conv3x3": ALL_CONV3X3, "light": LIGHT}

#: jung2023 training: NB201's 200-epoch setting on the 50,000 CIFAR-10 training images.
JUNG_EPOCHS = 200
JUNG_TRAIN_IMAGES = 50_000
NUM_UNIQUE = 6466
#: NVIDIA H100 SXM dense bf16 tensor peak (datasheet), FLOP/s; the projection states achieved fractions of it.
H100_BF16_PEAK = 989e12
#: Anchor for achievable small-CNN CIFAR training throughput (airbench94_compiled, public figures: 0.36 PFLOP in
#: 3.09 s on an A100, i.e. ~116 TFLOP/s; a wide ResNet-like net, so an optimistic bound for narrow NB201 nets).
AIRBENCH_A100_FLOPS = 0.36e15 / 3.09


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------
def _load_images(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``n_train`` + ``n_test`` class-balanced CIFAR-10 images (uint8 NHWC) from the shared test set, disjoint.

    Falls back to seeded random images (same shapes; throughput is data-independent) when the file is absent.
    """
    p = SHARED_DATA / "cifar10_test.npz"
    if p.is_file():
        with np.load(p) as z:
            x, y = z["x"], z["y"].astype(np.int64)
        per_tr, per_te = -(-n_train // 10), -(-n_test // 10)
        if per_tr + per_te > 1000:
            raise ValueError(f"{n_train} + {n_test} images exceed the 10,000 of {p}")
        # the file is sorted by class: interleave classes so any prefix is balanced
        tr = np.stack([np.arange(1000 * c, 1000 * c + per_tr) for c in range(10)], 1).reshape(-1)[:n_train]
        te = np.stack([np.arange(1000 * c + per_tr, 1000 * c + per_tr + per_te) for c in range(10)], 1)
        te = te.reshape(-1)[:n_test]
        return x[tr], y[tr], x[te], y[te], str(p)
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    ys = rng.integers(0, 10, n_train + n_test).astype(np.int64)
    return xs[:n_train], ys[:n_train], xs[n_train:], ys[n_train:], "random uint8 (shared CIFAR-10 file absent)"


def _make_dataset(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray):
    """Our :class:`~robustbench_nas.data.Dataset` over the given arrays (splits ``train`` and ``test``)."""
    from robustbench_nas.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, DataSplit, Dataset, DatasetInfo

    info = DatasetInfo("cifar10-bench", 10, 3, 32, tuple(CIFAR10_MEAN), tuple(CIFAR10_STD), tuple(CIFAR10_CLASSES))

    def split(name: str, x: np.ndarray, y: np.ndarray):
        return lambda: DataSplit(name, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                                 torch.from_numpy(y), info)

    return Dataset(info, {"train": split("train", x_tr, y_tr), "test": split("test", x_te, y_te)})


class _PILDataset(torch.utils.data.Dataset):
    """The torchvision-tutorial dataset: PIL images through a transform (what ``torchvision.datasets.CIFAR10`` does)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Any) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


# ----------------------------------------------------------------------------------------------------------------
# the baseline: a plain torchvision DataLoader + standard loop
# ----------------------------------------------------------------------------------------------------------------
def baseline_train(
    arch: str,
    x: np.ndarray,
    y: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    profile: Any,
    seed: int,
    device: torch.device,
    augment: bool = True,
    order_seed: int | None = None,
    num_workers: int = 0,
) -> tuple[torch.nn.Module, float]:
    """Train ``arch`` the textbook way; returns the model and its accuracy on ``(x_te, y_te)``.

    Arguments:
        arch: NB201 string.
        x, y: training images uint8 ``(N, 32, 32, 3)`` and labels ``(N,)``.
        x_te, y_te: evaluation images and labels (accuracy measured once at the end, as ours does).
        profile: a :class:`~robustbench_nas.training.TrainProfile` (epochs, batch size, SGD, schedule).
        seed: initialisation seed (``torch.manual_seed`` then ``build_model``, as a user would).
        device: where to train.
        augment: RandomCrop(32, padding=4) + RandomHorizontalFlip; without it only ``ToTensor``.
        order_seed: if given, epoch ``e``'s order is ``torch.randperm(N, generator)`` of a generator seeded
            ``order_seed`` (used by the agreement check to feed both loops the same batches); else DataLoader
            shuffling.
        num_workers: DataLoader worker processes.
    """
    from torchvision import transforms

    from robustbench_nas.models import build_model

    tf = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    ds = _PILDataset(x, y, transforms.Compose([*tf, transforms.ToTensor()]))
    if order_seed is not None:
        g = torch.Generator().manual_seed(order_seed)

        class _Order(torch.utils.data.Sampler):
            def __len__(self) -> int:
                return len(ds)

            def __iter__(self):
                return iter(torch.randperm(len(ds), generator=g).tolist())

        loader = torch.utils.data.DataLoader(ds, batch_size=profile.batch_size, sampler=_Order(), num_workers=0)
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=profile.batch_size, shuffle=True,
                                             num_workers=num_workers, pin_memory=device.type == "cuda",
                                             persistent_workers=False)
    torch.manual_seed(seed)
    model = build_model(arch, C=profile.C, N=profile.N).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=profile.momentum, nesterov=profile.nesterov,
                          weight_decay=profile.weight_decay)
    total = profile.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    for _ in range(profile.epochs):
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x_te.transpose(0, 3, 1, 2)))
        for i in range(0, len(xt), 500):
            xb = xt[i : i + 500].to(device).float().div(255)
            correct += int((model(xb).argmax(1).cpu() == torch.from_numpy(y_te[i : i + 500])).sum())
    return model, correct / max(1, len(y_te))


def ours_train(arch: str, dataset: Any, profile: Any, seed: int, device: torch.device):
    """Our trainer (no progress bar); returns its :class:`~robustbench_nas.training.TrainResult`."""
    from robustbench_nas.training import train_model

    return train_model(arch, dataset, profile, seed=seed, device=device, progress=False)


# ----------------------------------------------------------------------------------------------------------------
# agreement: same SGD as the textbook loop
# ----------------------------------------------------------------------------------------------------------------
def check_agreement(arch: str, n: int = 256, batch_size: int = 64, epochs: int = 2, seed: int = 3) -> dict[str, Any]:
    """Train ``arch`` (C=4, N=1) without augmentation with ours and the baseline on the same batches; compare weights.

    Our trainer draws epoch orders from ``torch.Generator().manual_seed(seed + 1)`` (the trainer's documented seed
    use); the baseline gets the same order through its sampler. Returns ``max_abs_weight_diff``,
    ``max_rel_weight_diff`` and ``agree`` (all parameters within ``atol=1e-5, rtol=1e-4``).
    """
    from robustbench_nas.training import get_profile

    x, y, xt, yt, _ = _load_images(n, 100)
    prof = get_profile("nb201-200e", epochs=epochs, batch_size=batch_size, C=4, N=1, augment=False, eval_every=epochs)
    dev = torch.device("cpu")
    ours = ours_train(arch, _make_dataset(x, y, xt, yt), prof, seed, dev).model
    base, _ = baseline_train(arch, x, y, xt, yt, prof, seed, dev, augment=False, order_seed=seed + 1)
    po, pb = dict(ours.named_parameters()), dict(base.named_parameters())
    diffs = [(po[k] - pb[k]).abs().max().item() for k in po]
    rel = [((po[k] - pb[k]).abs().max() / pb[k].abs().max().clamp_min(1e-12)).item() for k in po]
    agree = all(torch.allclose(po[k], pb[k], atol=1e-5, rtol=1e-4) for k in po)
    moved = max((pb[k] - p0).abs().max().item() for k, p0 in _init_params(arch, seed).items())
    return {"max_abs_weight_diff": max(diffs), "max_rel_weight_diff": max(rel), "agree": bool(agree),
            "max_weight_change_in_training": moved, "n": n, "epochs": epochs, "batch_size": batch_size}


def _init_params(arch: str, seed: int) -> dict[str, torch.Tensor]:
    from robustbench_nas.models import build_model

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build_model(arch, C=4, N=1).named_parameters()}


# ----------------------------------------------------------------------------------------------------------------
# input pipeline alone: what must keep a GPU fed
# ----------------------------------------------------------------------------------------------------------------
def input_pipeline_record(n: int, batch_size: int = 256) -> dict[str, Any]:
    """Images/s of one augmented epoch of batches: our ``DeviceLoader`` vs the torchvision ``DataLoader``.

    No model: this is the rate at which each pipeline can feed a training step (on a GPU, our loader does the same
    work there; the DataLoader stays on the CPU). Agreement: without augmentation and with the same order both
    yield bit-identical batches.
    """
    from torchvision import transforms

    from robustbench_nas.data import DeviceLoader

    x, y, xt, yt, src = _load_images(n, 10)
    split = _make_dataset(x, y, xt, yt).split("train")

    def ours(augment: bool, g: torch.Generator) -> list[torch.Tensor]:
        return [xb for xb, _ in DeviceLoader(split, batch_size, "cpu", shuffle=True, augment=augment, generator=g)]

    def base(augment: bool, g: torch.Generator | None) -> list[torch.Tensor]:
        tf = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
        ds = _PILDataset(x, y, transforms.Compose([*tf, transforms.ToTensor()]))
        if g is None:
            dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)
        else:
            dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=torch.randperm(n, generator=g).tolist())
        return [xb for xb, _ in dl]

    t_o = _timed(lambda: ours(True, torch.Generator().manual_seed(0)))
    t_b = _timed(lambda: base(True, None))
    same = all(torch.equal(a, b) for a, b in zip(ours(False, torch.Generator().manual_seed(5)),
                                                 base(False, torch.Generator().manual_seed(5))))
    return make_result(
        "training_cpu_input_pipeline", t_o.cpu_seconds, t_b.cpu_seconds, same, kind="measured", clock="process_cpu",
        torch_threads=torch.get_num_threads(), unit=f"s for one augmented epoch of {n} images, no model",
        images_per_s=n / t_o.cpu_seconds, baseline_images_per_s=n / t_b.cpu_seconds, n_images=n, data=src,
        wall_s={"ours": t_o.seconds, "baseline": t_b.seconds},
        baseline="torchvision DataLoader, PIL RandomCrop(32,4)+HFlip+ToTensor, num_workers=0",
        note=f"{n / t_o.cpu_seconds:.0f} vs {n / t_b.cpu_seconds:.0f} img/s per core",
    )


# ----------------------------------------------------------------------------------------------------------------
# FLOPs of every unique cell (exact, from per-op costs) and the projection
# ----------------------------------------------------------------------------------------------------------------
def op_flop_table(C: int = 16, N: int = 5) -> dict[str, float]:
    """Per-image multiply-adds (plain convention) of the network as ``base + sum over edges of cost[op]``.

    Every NB201 edge of a stage has the same input and output shape, so a cell's FLOPs are exactly linear in its op
    counts; the per-op costs are measured with :func:`robustbench_nas.models.count_flops` on one-op cells.
    """
    from robustbench_nas.models import build_model, count_flops

    def flops(op: str) -> float:
        arch = "|{0}~0|+|{0}~0|{0}~1|+|{0}~0|{0}~1|{0}~2|".format(op)
        return float(count_flops(build_model(arch, C=C, N=N)).plain)

    base = flops("none")
    table = {"base": base}
    for op in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"):
        table[op] = (flops(op) - base) / 6.0
    table["none"] = 0.0
    return table


def unique_cell_flops(table: dict[str, float]) -> np.ndarray:
    """Plain multiply-adds per image of each of the 6466 unique NB201 cells (C=16, N=5)."""
    from robustbench_nas.search_spaces import get_search_space

    space = get_search_space("nb201")
    out = []
    for idx in space.unique_indices():
        ops = Counter(space.parse(space.arch_str(idx)).ops)
        out.append(table["base"] + sum(table[o] * k for o, k in ops.items()))
    return np.asarray(out)


def fit_time_per_image(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``seconds/image = a + b * flops`` with ``a, b >= 0`` through measured ``(flops, s/image)`` points.

    Timing noise (a loaded machine, two close cells) can make the free fit's slope or intercept negative, which would
    project negative hours; the constrained fit then keeps the better of a constant (``b = 0``) and a line through
    the origin (``a = 0``).
    """
    f = np.array([p[0] for p in points], dtype=np.float64)
    t = np.array([p[1] for p in points], dtype=np.float64)
    if len(points) == 1:
        return 0.0, float(t[0] / f[0])
    b, a = np.polyfit(f, t, 1)
    if a >= 0 and b >= 0:
        return float(a), float(b)
    const = (float(t.mean()), 0.0)
    origin = (0.0, float(f @ t / (f @ f)))
    sse = [float(np.sum((t - (c + s * f)) ** 2)) for c, s in (const, origin)]
    return const if sse[0] <= sse[1] else origin


def project_training_hours(cell_flops: np.ndarray, a: float, b: float, images: float) -> float:
    """Hours to train every cell for ``images`` image-steps at ``a + b * flops`` seconds per image."""
    return float(np.sum(a + b * cell_flops) * images / 3600.0)


# ----------------------------------------------------------------------------------------------------------------
# GPU measurements (only with CUDA)
# ----------------------------------------------------------------------------------------------------------------
class GpuUtilSampler:
    """Samples GPU utilisation (%) every ``period`` s in a thread while active (``nvidia-smi``; NaN if unavailable)."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization())  # needs nvidia-ml-py
        except Exception:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5)
                return float(out.stdout.strip().splitlines()[0])
            except Exception:
                return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.period)

    def __enter__(self) -> "GpuUtilSampler":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


@dataclass(frozen=True)
class GpuBenchConfig:
    """Sizes of the GPU-path measurements (the defaults are for a real GPU; tests shrink them to run on a CPU).

    Arguments:
        device: torch device.
        n_train, n_test: images (from the shared CIFAR-10 test set, disjoint).
        epochs: timed epochs per measurement (after one warm-up epoch).
        variants: trainer options measured, keys of :data:`VARIANTS`.
        processes: numbers of worker processes sharing the device for the aggregate-throughput measurement.
        acc_epochs: epochs of the bf16-vs-fp32 accuracy check (0: skip it).
        overrides: extra training-profile fields (tests: a small network).
        loader_workers: DataLoader workers of the baseline.
    """

    device: str = "cuda"
    n_train: int = 9000
    n_test: int = 1000
    epochs: int = 3
    variants: tuple[str, ...] = ("fp32", "channels_last", "channels_last+bf16", "channels_last+bf16+compile")
    processes: tuple[int, ...] = (2, 4, 8)
    acc_epochs: int = 30
    overrides: tuple[tuple[str, Any], ...] = ()
    loader_workers: int = 8


#: trainer options of each measured variant
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "channels_last+bf16": {"channels_last": True, "amp": "bf16"},
    "channels_last+bf16+compile": {"channels_last": True, "amp": "bf16", "compile": True},
}


def _variant_profile(variant: str, epochs: int, overrides: dict[str, Any] | None = None):
    from robustbench_nas.training import get_profile

    return get_profile("nb201-200e", epochs=epochs, eval_every=10**6, **VARIANTS[variant], **(overrides or {}))


def _gpu_rate(arch: str, dataset: Any, profile: Any, n: int, dev: torch.device) -> tuple[float, float]:
    """(images/s, mean GPU utilisation %) of our trainer for ``profile`` (one warm-up epoch first, for compile)."""
    ours_train(arch, dataset, profile.replace(epochs=1), 0, dev)  # warm-up: cuDNN autotune, compile
    with GpuUtilSampler() as util, Timer() as t:
        ours_train(arch, dataset, profile, 0, dev)
    return profile.epochs * n / t.seconds, util.mean


def _worker_main(spec_json: str) -> None:
    """One of several processes sharing the device: warm up, wait for the others (files in ``sync``), time, print.

    Prints ``{"images": ..., "start": t0, "end": t1}`` (wall-clock ``time.time()``), so the parent computes the
    aggregate rate over the span in which all processes trained, not a sum of rates that may not overlap.
    """
    spec = json.loads(spec_json)
    torch.set_num_threads(1)
    x, y, xt, yt, _ = _load_images(spec["n"], 100)
    ds = _make_dataset(x, y, xt, yt)
    prof = _variant_profile(spec["variant"], spec["epochs"], spec["overrides"])
    dev = torch.device(spec["device"])
    ours_train(spec["arch"], ds, prof.replace(epochs=1), 0, dev)
    sync = Path(spec["sync"])
    (sync / f"ready_{os.getpid()}").touch()
    deadline = time.time() + 600
    while len(list(sync.glob("ready_*"))) < spec["k"] and time.time() < deadline:
        time.sleep(0.05)
    t0 = time.time()
    ours_train(spec["arch"], ds, prof, 0, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"images": spec["epochs"] * spec["n"], "start": t0, "end": time.time()}), flush=True)


def _shared_rate(arch: str, cfg: GpuBenchConfig, variant: str, k: int) -> tuple[float, float]:
    """Aggregate images/s of ``k`` processes each training ``arch`` on the one device, and mean utilisation."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rbnas_share_") as sync:
        spec = json.dumps({"arch": arch, "n": cfg.n_train, "epochs": cfg.epochs, "variant": variant, "k": k,
                           "overrides": dict(cfg.overrides), "device": cfg.device, "sync": sync})
        cmd = [sys.executable, "-m", "benchmarks.bench_training", "--worker", spec]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with GpuUtilSampler() as util:
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(k)]
            outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"a sharing worker failed (exit codes {[p.returncode for p in procs]})")
    res = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    span = max(r["end"] for r in res) - min(r["start"] for r in res)
    return float(sum(r["images"] for r in res) / span), util.mean


def gpu_records(cfg: GpuBenchConfig, cell_flops: np.ndarray) -> list[dict[str, Any]]:
    """The GPU-path records: per-variant rates vs the DataLoader loop, device sharing, bf16 vs fp32, GPU-hours."""
    n, epochs = cfg.n_train, cfg.epochs
    ov = dict(cfg.overrides)
    x, y, xt, yt, src = _load_images(n, cfg.n_test)
    ds = _make_dataset(x, y, xt, yt)
    dev = torch.device(cfg.device)
    records: list[dict[str, Any]] = []
    rates: dict[str, dict[str, float]] = {}
    flops_of = {}
    from robustbench_nas.models import build_model, count_flops

    for cname, arch in CELLS.items():
        base_prof = _variant_profile("fp32", epochs, ov)
        flops_of[cname] = float(count_flops(build_model(arch, C=base_prof.C, N=base_prof.N)).plain)
        # baseline: DataLoader with worker processes + pinned memory, fp32, one warm-up epoch on a slice
        w = min(n, 1024)
        baseline_train(arch, x[:w], y[:w], xt[:10], yt[:10], base_prof.replace(epochs=1), 0, dev,
                       num_workers=cfg.loader_workers)
        with GpuUtilSampler() as butil, Timer() as tb:
            baseline_train(arch, x, y, xt, yt, base_prof, 0, dev, num_workers=cfg.loader_workers)
        base_rate = epochs * n / tb.seconds
        rates[cname] = {}
        for variant in cfg.variants:
            try:
                r, u = _gpu_rate(arch, ds, _variant_profile(variant, epochs, ov), n, dev)
            except Exception as e:  # compile can fail on some stacks: report, keep going
                log.warning("variant %s failed: %s", variant, e)
                continue
            rates[cname][variant] = r
            records.append(make_result(
                f"training_gpu_{cname}_{variant.replace('+', '_')}", n * epochs / r, tb.seconds, None,
                kind="measured", device=cfg.device, unit="s for the same images", cell=arch, variant=variant,
                images_per_s=r, baseline_images_per_s=base_rate, gpu_util_pct=u, baseline_gpu_util_pct=butil.mean,
                baseline=f"torchvision DataLoader ({cfg.loader_workers} workers, pinned) + standard fp32 loop",
                n_train=n, epochs=epochs, data=src, note=f"{r:.0f} img/s vs DataLoader {base_rate:.0f} img/s",
            ))
        if not rates[cname]:
            continue
        best_variant = max(rates[cname], key=rates[cname].get)
        single = rates[cname][best_variant]
        for k in cfg.processes:
            try:
                agg, u = _shared_rate(arch, cfg, best_variant, k)
            except Exception as e:
                log.warning("sharing with %d processes failed: %s", k, e)
                continue
            records.append(make_result(
                f"training_gpu_{cname}_{k}proc", n * epochs / agg, n * epochs / single, None,
                kind="measured", device=cfg.device, unit="s per n_train x epochs images, aggregate over processes",
                cell=arch, variant=best_variant, processes=k, aggregate_images_per_s=agg,
                single_images_per_s=single, gpu_util_pct=u,
                note=f"{k} processes share the device: {agg:.0f} img/s total vs {single:.0f} alone",
            ))
            rates[cname][f"{k}proc"] = agg

    if cfg.acc_epochs > 0:  # bf16 vs fp32 accuracy on one cell: a short real training, same seed, same data
        acc = {}
        for amp in (None, "bf16"):
            prof = _variant_profile("channels_last", cfg.acc_epochs, {**ov, "amp": amp})
            with Timer() as t:
                res = ours_train(ALL_CONV3X3, ds, prof, 0, dev)
            acc[amp or "fp32"] = (res.final_test_acc, t.seconds)
        diff = abs(acc["bf16"][0] - acc["fp32"][0])
        # two independent binomial estimates on n_test images: 3 standard errors of their difference, >= 1.5 points
        se = math.sqrt(2 * max(acc["fp32"][0] * (1 - acc["fp32"][0]), 1e-4) / len(yt))
        tol = max(0.015, 3 * se)
        records.append(make_result(
            "training_gpu_bf16_vs_fp32", acc["bf16"][1], acc["fp32"][1], diff <= tol, kind="measured",
            device=cfg.device, cell=ALL_CONV3X3, epochs=cfg.acc_epochs, n_train=n, n_test=len(yt),
            fp32_test_acc=acc["fp32"][0], bf16_test_acc=acc["bf16"][0], abs_diff=diff, tolerance=tol,
            note=f"test acc fp32 {acc['fp32'][0]:.3f} vs bf16 {acc['bf16'][0]:.3f}",
        ))

    if all(rates.get(c) for c in CELLS):  # all 6466 cells from the measured rates (fit through both cells)
        pts = [(flops_of[c], 1.0 / max(rates[c].values())) for c in CELLS]
        a, b = fit_time_per_image(pts)
        hours = project_training_hours(cell_flops, a, b, JUNG_EPOCHS * JUNG_TRAIN_IMAGES)
        records.append(make_result(
            "training_gpu_hours_jung2023", hours * 3600 / NUM_UNIQUE, None, None,
            kind="projection from measured rates", device=cfg.device, unit="device-s per cell (mean), training only",
            gpu_hours_all_cells=hours, fit_seconds_per_image={"a": a, "b_per_flop": b},
            measured_images_per_s=rates, note=f"{hours:.0f} device-h to train 6466 cells x 200 epochs",
        ))
    return records


# ----------------------------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------------------------
def run(quick: bool = False) -> list[dict[str, Any]]:
    """CPU: ours vs DataLoader loop on the all-3x3 and a light cell (real NB201 size, C=16 N=5, batch 256); the
    agreement check; the FLOP-based projection; and the GPU records when CUDA is available.

    The CPU part runs on one torch thread and reports process CPU seconds (``clock="process_cpu"``): on a shared
    2-core machine the wall time mostly measures the other jobs.
    """
    with torch_threads(1):
        records = _cpu_records(quick)
    cf = unique_cell_flops(op_flop_table())
    if cuda_available():
        cfg = GpuBenchConfig(n_train=4000, epochs=1, processes=(4,), acc_epochs=5) if quick else GpuBenchConfig()
        records.extend(gpu_records(cfg, cf))
    else:
        log.info("no CUDA device: GPU-path measurements skipped (%s)", machine_description())
    return save_records(records, quick)


def projection_record(measured: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """The ``training_gpu_projection`` record (no GPU measured): CPU seconds per image vs FLOPs fitted through the
    measured cells ``{cell: (plain multiply-adds, CPU s per image)}``, applied to the exact FLOPs of all 6466
    unique cells, and GPU-hours from the training FLOPs at stated fractions of the H100 peak."""
    table = op_flop_table()
    cf = unique_cell_flops(table)
    a, b = fit_time_per_image(list(measured.values()))
    images = JUNG_EPOCHS * JUNG_TRAIN_IMAGES
    cpu_hours = project_training_hours(cf, a, b, images)
    train_flop_per_cell = 3 * 2 * cf * images  # fwd + bwd ~ 3x forward; 2 FLOP per multiply-add
    total_flop = float(train_flop_per_cell.sum())
    fractions = (0.02, 0.05, 0.10, 0.20)
    gpu_hours = {f"{int(f * 100)}pct_of_h100_bf16_peak": total_flop / (f * H100_BF16_PEAK) / 3600 for f in fractions}
    gpu_hours["at_airbench_a100_rate"] = total_flop / AIRBENCH_A100_FLOPS / 3600
    return make_result(
        "training_gpu_projection", total_flop / NUM_UNIQUE / (0.05 * H100_BF16_PEAK), None, None,
        kind="projection (no GPU measured)",
        unit="projected H100 GPU-s per cell (mean over 6466) at 5% of bf16 peak, training only (200 ep x 50k)",
        cpu_s_per_cell_projected=float(np.mean(a + b * cf) * images),
        cpu_fit_seconds_per_image={"a": a, "b_per_flop": b}, cpu_hours_all_cells=cpu_hours,
        cpu_achieved_gflop_s=float(3 * 2 * measured["conv3x3"][0] / measured["conv3x3"][1] / 1e9),
        cell_flops_plain={"mean": float(cf.mean()), "min": float(cf.min()), "max": float(cf.max()),
                          "per_op": table},
        training_flop_all_cells=total_flop, projected_gpu_hours_all_cells=gpu_hours,
        assumptions="training FLOP = 3 x forward multiply-adds x 2 x 200 epochs x 50,000 images; GPU-hours = total "
                    "FLOP / (fraction x 989 TFLOP/s H100 dense bf16 peak). Narrow NB201 nets (16-64 channels) "
                    "reach a small fraction of peak; the airbench anchor (116 TFLOP/s on an A100, wide net) is an "
                    "optimistic bound. Replace with training_gpu_hours_jung2023 once measured on a GPU.",
        note=f"{gpu_hours['5pct_of_h100_bf16_peak']:.0f} GPU-h at 5% of H100 peak (projection)",
    )


def _cpu_records(quick: bool) -> list[dict[str, Any]]:
    from robustbench_nas.training import get_profile

    dev = torch.device("cpu")
    # quick: one or two optimiser steps per loop (the whole module then takes about a minute on 2 busy cores)
    sizes = {"conv3x3": 256 if quick else 2048, "light": 512 if quick else 4096}
    n_test = 100 if quick else 500
    records: list[dict[str, Any]] = []

    agreement = check_agreement(LIGHT, n=128 if quick else 512, epochs=2)
    log.info("agreement: %s", agreement)
    records.append(input_pipeline_record(2000 if quick else 9000))

    measured: dict[str, tuple[float, float]] = {}
    from robustbench_nas.models import build_model, count_flops

    for cname, arch in CELLS.items():
        n = sizes[cname]
        x, y, xt, yt, src = _load_images(n, n_test)
        ds = _make_dataset(x, y, xt, yt)
        prof = get_profile("nb201-200e", epochs=1, eval_every=1)
        # warm-up (allocator, oneDNN primitive cache) on a few images for both, untimed
        w = 32 if quick else 256
        baseline_train(arch, x[:w], y[:w], xt[:10], yt[:10], prof.replace(batch_size=w), 0, dev)
        ours_train(arch, _make_dataset(x[:w], y[:w], xt[:10], yt[:10]), prof.replace(batch_size=w), 0, dev)
        # interleaved repeats, best of each; process CPU time, one thread (see the module docstring)
        t_ours = t_base = w_ours = w_base = math.inf
        for _ in range(1 if quick else 2):
            to, tb = _timed(lambda: ours_train(arch, ds, prof, 0, dev)), _timed(
                lambda: baseline_train(arch, x, y, xt, yt, prof, 0, dev))
            t_ours, w_ours = min(t_ours, to.cpu_seconds), min(w_ours, to.seconds)
            t_base, w_base = min(t_base, tb.cpu_seconds), min(w_base, tb.seconds)
        flops = float(count_flops(build_model(arch)).plain)
        measured[cname] = (flops, t_ours / n)
        records.append(make_result(
            f"training_cpu_{cname}", t_ours, t_base, agreement["agree"],
            kind="measured", unit="s for one epoch over n_train images (+ eval of n_test)", cell=arch,
            profile="nb201-200e (C=16, N=5, batch 256, SGD nesterov, cosine), 1 epoch", n_train=n, n_test=n_test,
            clock="process_cpu", torch_threads=1, wall_s={"ours": w_ours, "baseline": w_base},
            images_per_s=n / t_ours, baseline_images_per_s=n / t_base, baseline="torchvision DataLoader "
            "(PIL RandomCrop(32,4)+HFlip+ToTensor, num_workers=0) + standard loop",
            flops_plain=flops, agreement=agreement, data=src,
            note=f"{n / t_ours:.0f} vs {n / t_base:.0f} img/s",
        ))

    records.append(projection_record(measured))
    return records


def _timed(fn) -> Timer:
    with Timer() as t:
        fn()
    return t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", metavar="JSON", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker_main(args.worker)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from benchmarks.__main__ import format_table

    print(format_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
