"""Corruptions: registry and input errors, statistics the CIFAR-10-C constants imply, seeding, other image sizes,
evaluation (against a recomputation by hand), the CIFAR-C file source, and the summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustbench_nas import corruptions
from robustbench_nas.corruptions import _ops
from robustbench_nas.corruptions.registry import cell_seed, make_generator
from robustbench_nas.utils.streams import ImageStreams, derive_key, image_keys

RANDOM = [n for n in corruptions.list_corruptions() if corruptions.info(n).random]
DETERMINISTIC = [n for n in corruptions.list_corruptions() if not corruptions.info(n).random]


@pytest.fixture(scope="module")
def cifar(request) -> torch.Tensor:
    """64 CIFAR-10 test images float (64, 3, 32, 32) (smooth synthetic ones without the shared data)."""
    try:
        path = request.getfixturevalue("cifar10_npz")
        with np.load(path) as d:
            x = d["x"][::157][:64]
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255
    except pytest.skip.Exception:
        # Without the shared data: multi-scale noise (octaves 4, 8, 16, 32 px, amplitude ~ size), a rough stand-in
        # for natural images' 1/f spectrum.
        g = torch.Generator().manual_seed(0)
        img = torch.zeros(64, 3, 32, 32)
        for size, amp in ((4, 0.5), (8, 0.25), (16, 0.15), (32, 0.1)):
            z = torch.rand(64, 3, size, size, generator=g) - 0.5
            img += amp * torch.nn.functional.interpolate(z, size=32, mode="bilinear", align_corners=False)
        return torch.round((img + 0.5).clamp(0, 1) * 255) / 255


# ---------------------------------------------------------------- registry and errors


def test_registry_lists() -> None:
    assert len(corruptions.list_corruptions()) == 19
    assert corruptions.list_corruptions("benchmark") == list(corruptions.BENCHMARK_CORRUPTIONS)
    assert len(corruptions.list_corruptions("benchmark")) == 15
    assert corruptions.list_corruptions("extra") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    fams = {f: corruptions.list_corruptions(f) for f in corruptions.FAMILIES}
    assert sum(len(v) for v in fams.values()) == 19
    assert fams["noise"] == ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]
    assert set(fams["weather"]) == {"snow", "frost", "fog", "spatter"}
    with pytest.raises(ValueError, match="subset"):
        corruptions.list_corruptions("everything")


def test_unknown_corruption() -> None:
    with pytest.raises(KeyError, match="unknown corruption 'blurr'.*gaussian_noise"):
        corruptions.get("blurr")


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, True, "3", None])
def test_bad_severity(severity) -> None:
    with pytest.raises(ValueError, match="severity"):
        corruptions.get("fog")(torch.rand(2, 3, 32, 32), severity)


def test_numpy_integer_severity_is_accepted() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(corruptions.get("contrast")(x, np.int64(2)), corruptions.get("contrast")(x, 2))


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(3, 32, 32), "shape"),
        (torch.rand(2, 3, 32), "shape"),
        (torch.rand(2, 2, 32, 32), "channels"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "float"),
        (torch.rand(2, 3, 32, 32) * 255, r"\[0, 1\]"),
        (torch.rand(2, 3, 32, 32) - 0.5, r"\[0, 1\]"),
        (torch.full((1, 3, 32, 32), float("nan")), r"\[0, 1\]"),
        (np.zeros((2, 3, 32, 32), dtype=np.float32), "torch.Tensor"),
        (torch.rand(1, 3, 2, 2), "at least"),
    ],
)
def test_bad_images(x, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        corruptions.get("gaussian_noise")(x, 1)


def test_bad_generator() -> None:
    with pytest.raises(ValueError, match="generator"):
        corruptions.get("gaussian_noise")(torch.rand(1, 3, 32, 32), 1, generator=0)


def test_empty_batch() -> None:
    assert corruptions.get("fog")(torch.rand(0, 3, 32, 32), 1).shape == (0, 3, 32, 32)


# ---------------------------------------------------------------- output contract and seeding


@pytest.mark.parametrize("name", corruptions.list_corruptions())
def test_contract_and_seeding(name: str, cifar: torch.Tensor) -> None:
    f = corruptions.get(name)
    x = cifar[:6]
    for s in (1, 5):
        y = f(x, s, generator=make_generator(7))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        lv = y * 255
        assert torch.allclose(lv, lv.round(), atol=1e-3), "output not on 8-bit levels"
        assert not torch.equal(y, x), "corruption left the images unchanged"
        assert torch.equal(y, f(x, s, generator=make_generator(7))), "same seed, different output"
        assert torch.equal(f(x, s), f(x, s)), "generator=None must be deterministic"
        other = f(x, s, generator=make_generator(8))
        if corruptions.info(name).random:
            assert not torch.equal(y, other), "a random corruption ignored its generator"
        else:
            assert torch.equal(y, other)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_act_per_image(name: str, cifar: torch.Tensor) -> None:
    f = corruptions.get(name)
    x = cifar[:4]
    batch = f(x, 3)
    for i in range(4):
        assert torch.equal(batch[i : i + 1], f(x[i : i + 1], 3))


@pytest.mark.parametrize("name", corruptions.list_corruptions())
@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 24, 40), (1, 20, 20)])
def test_other_sizes_and_grey(name: str, shape: tuple[int, int, int]) -> None:
    """Any H, W (the embedded ``digits`` set is 16x16) and grey images run and keep the contract."""
    g = torch.Generator().manual_seed(1)
    x = torch.round(torch.rand(2, *shape, generator=g) * 255) / 255
    y = corruptions.get(name)(x, 4, generator=make_generator(0))
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1 and torch.isfinite(y).all()


def test_matmul_precision_setting_does_not_change_results(cifar: torch.Tensor) -> None:
    """The dense-matrix filters run in full precision whatever float32 matmul precision the caller set."""
    from robustbench_nas.utils import precision

    ref = corruptions.get("gaussian_blur")(cifar[:8], 5)
    # every backend flag as it was (set_float32_matmul_precision(prev) would turn "none" into "ieee": later tests
    # that record the precision in force would see this test's leftovers)
    before = precision.precision_state()
    torch.set_float32_matmul_precision("medium")
    try:
        assert torch.equal(corruptions.get("gaussian_blur")(cifar[:8], 5), ref)
        assert torch.get_float32_matmul_precision() == "medium"  # restored afterwards
    finally:
        precision._set(before)
    assert precision.precision_state() == before


def test_float64_input_keeps_dtype() -> None:
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    y = corruptions.get("zoom_blur")(x, 2)
    assert y.dtype == torch.float64
    assert torch.allclose(y, corruptions.get("zoom_blur")(x.float(), 2).double(), atol=1.5 / 255)


# ---------------------------------------------------------------- statistics implied by the constants


def _grey(n: int = 64, value: float = 0.5) -> torch.Tensor:
    return torch.full((n, 3, 32, 32), value)


@pytest.mark.parametrize("severity, c", list(enumerate([0.04, 0.06, 0.08, 0.09, 0.10], 1)))
def test_gaussian_noise_std(severity: int, c: float) -> None:
    x = _grey()
    d = corruptions.get("gaussian_noise")(x, severity, generator=make_generator(severity)) - x
    expected = math.sqrt(c**2 + 1 / 12 / 255**2)  # plus the uniform 8-bit quantisation error
    assert abs(float(d.std()) - expected) < 0.01 * expected
    # truncation to 8 bit (np.uint8) lowers the mean by half a level
    assert abs(float(d.mean()) + 0.5 / 255) < 5 * c / math.sqrt(d.numel())


@pytest.mark.parametrize("severity, c", list(enumerate([500, 250, 100, 75, 50], 1)))
def test_shot_noise_distribution(severity: int, c: float) -> None:
    """Mean and std match the exact law of ``uint8(clip(Poisson(x c) / c) * 255) / 255`` (scipy's Poisson pmf)."""
    from scipy.stats import poisson

    for value in (0.2, 0.6):
        x = _grey(value=value)
        y = corruptions.get("shot_noise")(x, severity, generator=make_generator(severity))
        k = np.arange(0, 4 * c)
        pmf = poisson.pmf(k, value * c)
        levels = np.floor(np.clip(k / c, 0, 1) * 255 + 1e-9) / 255
        mean = float((pmf * levels).sum())
        std = math.sqrt(float((pmf * (levels - mean) ** 2).sum()))
        assert abs(float(y.mean()) - mean) < 5 * std / math.sqrt(y.numel())
        assert abs(float(y.std()) - std) < 0.01 * std
        assert std == pytest.approx(math.sqrt(value / c), rel=0.05)  # Poisson(x c) / c: variance x / c


@pytest.mark.parametrize("severity, c", list(enumerate([0.01, 0.02, 0.03, 0.05, 0.07], 1)))
def test_impulse_noise_fraction(severity: int, c: float) -> None:
    x = _grey()
    y = corruptions.get("impulse_noise")(x, severity, generator=make_generator(severity))
    hit = (y == 0) | (y == 1)
    tol = 5 * math.sqrt(c * (1 - c) / y.numel())
    assert abs(float(hit.float().mean()) - c) < tol
    assert abs(float((y == 1).float().mean()) - c / 2) < tol
    assert torch.equal(y[~hit], torch.full_like(y[~hit], 127 / 255))  # untouched values: floor(0.5 * 255)


@pytest.mark.parametrize("severity, c", list(enumerate([0.06, 0.1, 0.12, 0.16, 0.2], 1)))
def test_speckle_noise_std(severity: int, c: float) -> None:
    x = _grey(value=0.5)
    d = corruptions.get("speckle_noise")(x, severity, generator=make_generator(severity)) - x
    expected = math.sqrt((0.5 * c) ** 2 + 1 / 12 / 255**2)
    assert abs(float(d.std()) - expected) < 0.01 * expected


@pytest.mark.parametrize("sigma", [0.4, 0.6, 0.7, 0.8, 1.0])
def test_gaussian_kernel_energy_and_width(sigma: float) -> None:
    """An interior impulse keeps its energy (sum 1), equals scipy.ndimage.gaussian_filter's response, and spreads
    with variance sigma^2 per axis once the kernel is wide enough to sample the Gaussian (sigma >= 0.8)."""
    from scipy.ndimage import gaussian_filter

    x = torch.zeros(1, 1, 33, 33, dtype=torch.float64)
    x[0, 0, 16, 16] = 1
    y = _ops.gaussian_filter(x, sigma)[0, 0]
    assert abs(float(y.sum()) - 1) < 1e-12
    assert np.allclose(y.numpy(), gaussian_filter(x[0, 0].numpy(), sigma, mode="nearest", truncate=4.0), atol=1e-14)
    if sigma >= 0.8:
        r = torch.arange(33, dtype=torch.float64) - 16
        var_rows = float((y.sum(1) * r**2).sum())
        assert abs(var_rows - sigma**2) < 1e-3 * sigma**2  # truncation at 4 sigma loses < 0.1 %


@pytest.mark.parametrize("radius, sigma, angle", [(6, 1.0, 0.0), (9, 2.5, 30.0), (8, 2.0, -45.0)])
def test_motion_blur_energy_and_direction(radius: float, sigma: float, angle: float) -> None:
    """Impulse response: sum 1, centred at minus the weighted tap offsets along the angle (ImageMagick taps)."""
    x = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    x[0, 0, 32, 32] = 1
    y = _ops.motion_blur(x, radius, sigma, torch.tensor([angle]))[0, 0]
    assert abs(float(y.sum()) - 1) < 1e-12
    i = np.arange(2 * radius + 1)
    k = np.exp(-(i**2) / (2 * sigma**2))
    k /= k.sum()
    a = math.radians(angle)
    oy = np.ceil(i * math.sin(a) - 0.5)
    ox = np.ceil(i * math.cos(a) - 0.5)
    rr, cc = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    assert abs(float((y * rr).sum()) - (32 - (k * oy).sum())) < 1e-9
    assert abs(float((y * cc).sum()) - (32 - (k * ox).sum())) < 1e-9


def _mean_distance(name: str, x: torch.Tensor) -> list[float]:
    f = corruptions.get(name)
    return [float((f(x, s, generator=make_generator(s)) - x).abs().mean()) for s in range(1, 6)]


MONOTONE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "motion_blur",
            "zoom_blur", "gaussian_blur", "snow", "fog", "brightness", "contrast", "pixelate", "jpeg_compression"]


@pytest.mark.parametrize("name", MONOTONE)
def test_distance_grows_with_severity(name: str, cifar: torch.Tensor) -> None:
    d = _mean_distance(name, cifar)
    assert all(a < b for a, b in zip(d, d[1:])), d


def test_non_monotone_severities_follow_the_constants(cifar: torch.Tensor) -> None:
    # elastic_transform: the displacement smoothing sigma and the affine jitter shrink with severity
    d = _mean_distance("elastic_transform", cifar)
    assert all(a > b for a, b in zip(d, d[1:])), d
    # glass_blur: one shuffle pass at severities 1-3 (sigma 0.05, 0.25, 0.4), two passes at 4-5
    d = _mean_distance("glass_blur", cifar)
    assert d[3] > d[2] and d[4] > d[2] and d[3] > d[1], d
    # frost: frost weight rises to 0.4 at severity 3 while the image weight keeps falling (1 -> 0.75)
    d = _mean_distance("frost", cifar)
    assert d[0] < d[1] and d[4] < d[2], d
    # spatter: water drops at 1-3 (growing), sparser mud at 4-5
    d = _mean_distance("spatter", cifar)
    assert d[0] < d[1] < d[2] and d[3] < d[2], d
    # saturate: factors 0.3, 0.1 (desaturate), 1.5 (mild), 2 + 0.1, 2.5 + 0.2
    d = _mean_distance("saturate", cifar)
    assert d[2] < d[0] < d[1] and d[2] < d[3] < d[4], d


def test_zoom_factors_match_numpy_arange() -> None:
    """The CIFAR generator's float ``np.arange(1, 1.06, 0.01)`` includes 1.06 (7 factors)."""
    from robustbench_nas.corruptions.blur import ZOOM_FACTORS

    assert [len(z) for z in ZOOM_FACTORS] == [len(np.arange(1, s, 0.01)) for s in (1.06, 1.11, 1.16, 1.21, 1.26)]
    assert len(ZOOM_FACTORS[0]) == 7


@pytest.mark.gpu
@pytest.mark.parametrize("name", corruptions.list_corruptions())
def test_cpu_equals_gpu(name: str, cifar: torch.Tensor) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    f = corruptions.get(name)
    for s in (1, 3, 5):
        cpu = f(cifar[:16], s, generator=make_generator(3))
        gpu = f(cifar[:16].cuda(), s, generator=make_generator(3)).cpu()  # CPU generator: same draws
        d = (cpu - gpu).abs() * 255
        assert float((d <= 1.01).float().mean()) > 0.999 and float(d.max()) <= 3, (name, s, float(d.max()))


# ---------------------------------------------------------------- evaluation


ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def model_and_data():
    from robustbench_nas.data import get_dataset
    from robustbench_nas.models import build_model

    torch.manual_seed(0)
    model = build_model(ARCH, num_classes=10, C=4, N=1)
    model.eval()
    split = get_dataset("digits").split("test")
    x = split.x[:40].float() / 255
    y = split.y[:40].long()
    return model, x, y


def test_evaluate_matches_recomputation(model_and_data) -> None:
    model, x, y = model_and_data
    model.train()
    res = corruptions.evaluate(model, x, y, ["contrast", "shot_noise"], severities=(2, 5), batch_size=64, seed=3)
    assert model.training, "evaluate must restore the model's mode"
    assert [(r.corruption, r.severity) for r in res] == [("contrast", 2), ("contrast", 5), ("shot_noise", 2),
                                                        ("shot_noise", 5)]
    model.eval()
    for r in res:
        # the documented scheme: one CPU stream per image, keyed by the cell and the image's position
        keys = image_keys(derive_key("corruption", cell_seed(3, r.corruption, r.severity)), np.arange(40))
        xc = corruptions.get(r.corruption)(x, r.severity, generator=ImageStreams(keys))
        with torch.no_grad():
            logits = model(xc)
        prob = logits.softmax(1)
        pred = prob.argmax(1)
        assert r.stats.n == 40
        assert r.stats.accuracy == pytest.approx(float((pred == y).float().mean()))
        assert r.stats.confidence_pred == pytest.approx(float(prob.max(1).values.mean()), abs=1e-6)
        assert r.stats.confusion.sum() == 40
        assert np.array_equal(r.stats.correct, (pred == y).numpy())
        assert r.source == "generated" and r.seed == 3
        d = r.to_dict(correct_bits=True)
        assert d["corruption"] == r.corruption and d["family"] == corruptions.family_of(r.corruption)
        assert np.array_equal(np.unpackbits(np.frombuffer(bytes.fromhex(d["correct_bits"]), np.uint8))[:40],
                              (pred == y).numpy().astype(np.uint8))
        assert np.array_equal(np.array(d["confusion"]), r.stats.confusion) and d["time_s"] > 0


def test_evaluate_cells_independent_of_order(model_and_data) -> None:
    model, x, y = model_and_data
    a = corruptions.evaluate(model, x, y, ["fog", "snow"], severities=(3,), batch_size=16, seed=1)
    b = corruptions.evaluate(model, x, y, ["snow", "fog"], severities=(3,), batch_size=16, seed=1)
    assert np.array_equal(a[0].stats.correct, b[1].stats.correct)
    assert np.array_equal(a[1].stats.correct, b[0].stats.correct)


def test_evaluate_errors(model_and_data) -> None:
    model, x, y = model_and_data
    with pytest.raises(KeyError, match="unknown corruption"):
        corruptions.evaluate(model, x, y, ["nope"])
    with pytest.raises(ValueError, match="severity"):
        corruptions.evaluate(model, x, y, ["fog"], severities=(0,))
    with pytest.raises(ValueError, match="duplicate"):
        corruptions.evaluate(model, x, y, ["fog", "fog"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corruptions.evaluate(model, x * 255, y, ["fog"])
    with pytest.raises(ValueError, match="labels"):
        corruptions.evaluate(model, x, y[:5], ["fog"])


def _write_generated_files(root, x, y, names, seed, batch_size) -> None:
    for name in names:
        src = corruptions.GeneratedSource(x, y, seed=seed)
        blocks = []
        for s in range(1, 6):
            imgs = torch.cat([xb for xb, _ in src.batches(name, s, batch_size)])
            blocks.append(torch.round(imgs * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        corruptions.write_cifar_c(root, name, np.concatenate(blocks), np.tile(y.numpy(), 5))


def test_files_and_generated_sources_agree(tmp_path, model_and_data) -> None:
    """Write the generated corruptions in the official layout, read them back through the file source: the
    evaluation must give identical statistics (one interface, two sources)."""
    model, x, y = model_and_data
    _write_generated_files(tmp_path, x, y, ["frost", "pixelate"], seed=5, batch_size=16)
    gen = corruptions.evaluate(model, x, y, ["frost", "pixelate"], batch_size=16, seed=5)
    files = corruptions.evaluate(model, None, None, ["frost", "pixelate"], batch_size=7, source=tmp_path)
    assert len(gen) == len(files) == 10
    for a, b in zip(gen, files):
        assert (a.corruption, a.severity) == (b.corruption, b.severity)
        assert np.array_equal(a.stats.confusion, b.stats.confusion)
        assert np.array_equal(a.stats.correct, b.stats.correct)
        assert b.source == "files" and b.seed is None
    # a subset through x/y, labels checked against labels.npy
    sub = corruptions.evaluate(model, x[:10], y[:10], ["pixelate"], severities=(4,), source=tmp_path)
    assert sub[0].stats.n == 10 and np.array_equal(sub[0].stats.correct, gen[8].stats.correct[:10])
    with pytest.raises(ValueError, match="do not match"):
        corruptions.evaluate(model, x[:10], (y[:10] + 1) % 10, ["pixelate"], source=tmp_path)


def test_file_source_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corruptions.CifarCFiles(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="labels.npy"):
        corruptions.CifarCFiles(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="5 \\* n"):
        corruptions.CifarCFiles(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros(10, dtype=np.uint8))
    src = corruptions.CifarCFiles(tmp_path)
    with pytest.raises(FileNotFoundError, match="fog.npy not found"):
        src.load("fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((10, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        src.load("fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((15, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 5 x 2"):
        src.load("fog", 1)
    np.save(tmp_path / "fog.npy", np.arange(10 * 8 * 8 * 3, dtype=np.int64).astype(np.uint8).reshape(10, 8, 8, 3))
    x3, _ = src.load("fog", 3)  # severity 3 = rows 4, 5 (severity-major)
    full = np.load(tmp_path / "fog.npy")
    assert np.array_equal(x3.permute(0, 2, 3, 1).numpy(), full[4:6])
    with pytest.raises(ValueError, match="severity"):
        src.load("fog", 6)


def test_file_source_indices(tmp_path) -> None:
    """An index selection (e.g. the pipeline's stratified subset) reads the same rows in every severity, in order."""
    full = np.random.default_rng(0).integers(0, 256, (5 * 12, 4, 4, 3)).astype(np.uint8)
    labels = np.tile(np.arange(12) % 10, 5)
    corruptions.write_cifar_c(tmp_path, "snow", full, labels)
    idx = [7, 2, 3, 11]
    src = corruptions.CifarCFiles(tmp_path, indices=idx)
    assert src.num_images() == 4 and src.labels().tolist() == [7, 2, 3, 1]
    for sev in (1, 4):
        x, y = src.load("snow", sev)
        assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), full[(sev - 1) * 12 + np.array(idx)])
    batches = list(src.batches("snow", 2, 3))
    assert [b[0].shape[0] for b in batches] == [3, 1]
    assert torch.equal(torch.cat([b[0] for b in batches]), src.load("snow", 2)[0].float() / 255)
    with pytest.raises(ValueError, match="indices must lie"):
        corruptions.CifarCFiles(tmp_path, indices=[12])


def test_write_cifar_c_rejects_bad_input_without_touching_files(tmp_path) -> None:
    good = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    corruptions.write_cifar_c(tmp_path, "fog", good, np.zeros(5, dtype=np.int64))
    before = (tmp_path / "fog.npy").read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        corruptions.write_cifar_c(tmp_path, "fog", good.astype(np.float32))
    with pytest.raises(ValueError, match="5 \\* n"):
        corruptions.write_cifar_c(tmp_path, "fog", good[:4])
    assert (tmp_path / "fog.npy").read_bytes() == before


# ---------------------------------------------------------------- summaries


def test_summarize_hand_computed() -> None:
    ours = {("fog", 1): 0.8, ("fog", 2): 0.6, ("gaussian_noise", 1): 0.5, ("gaussian_noise", 2): 0.3}
    ref = {("fog", 1): 0.6, ("fog", 2): 0.4, ("gaussian_noise", 1): 0.5, ("gaussian_noise", 2): 0.1}
    s = corruptions.summarize(ours, ref, clean_accuracy=0.9, reference_clean_accuracy=0.8)
    assert s.mean_accuracy == pytest.approx(0.55)
    assert s.per_corruption == pytest.approx({"fog": 0.7, "gaussian_noise": 0.4})
    assert s.per_severity == pytest.approx({1: 0.65, 2: 0.45})
    assert s.per_family == pytest.approx({"weather": 0.7, "noise": 0.4})
    # CE_fog = (0.2 + 0.4) / (0.4 + 0.6) = 0.6; CE_noise = (0.5 + 0.7) / (0.5 + 0.9) = 6/7
    assert s.ce == pytest.approx({"fog": 0.6, "gaussian_noise": 6 / 7})
    assert s.mce == pytest.approx((0.6 + 6 / 7) / 2)
    # relative: fog (0.1 + 0.3) / (0.2 + 0.4); noise (0.4 + 0.6) / (0.3 + 0.7)
    assert s.relative_mce == pytest.approx((0.4 / 0.6 + 1.0) / 2)


def test_summarize_from_results_and_errors(model_and_data) -> None:
    model, x, y = model_and_data
    res = corruptions.evaluate(model, x[:8], y[:8], ["contrast", "pixelate"], severities=(1, 2), batch_size=8)
    s = corruptions.summarize(res)
    assert s.mean_accuracy == pytest.approx(np.mean([r.stats.accuracy for r in res]))
    assert set(s.per_family) == {"digital"} and s.mce is None
    assert corruptions.summarize(res, res).mce in (1.0, float("inf"))
    with pytest.raises(ValueError, match="reference lacks"):
        corruptions.summarize(res, res[:1])
    with pytest.raises(ValueError, match="no results"):
        corruptions.summarize([])


def test_evaluate_restores_each_modules_own_mode() -> None:
    """A frozen BN inside a training model stays frozen after evaluate (each module gets its own mode back)."""
    from robustbench_nas.models import build_model

    model = build_model(ARCH, num_classes=10, C=4, N=1).train()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.eval()
    before = {name: m.training for name, m in model.named_modules()}
    g = torch.Generator().manual_seed(0)
    corruptions.evaluate(model, torch.rand(8, 3, 32, 32, generator=g), torch.arange(8), ["contrast"],
                         severities=(1,), batch_size=8, seed=0)
    assert {name: m.training for name, m in model.named_modules()} == before and not bn.training
