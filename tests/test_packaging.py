"""One installed name: the wheel holds only ``robustbench_nas`` (attacks, corruptions and pipelines inside it).

The folders ``attacks/``, ``corruptions/`` and ``pipelines/`` stay at the top of the source tree (the design puts them
there) but install as ``robustbench_nas.attacks`` etc. (pyproject.toml ``package-dir``). CI also installs the built
wheel into a clean virtual environment and runs ``rbnas`` from it (.ci/run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"attacks": "robustbench_nas.attacks", "corruptions": "robustbench_nas.corruptions",
          "pipelines": "robustbench_nas.pipelines"}
SOURCE_DIRS = ["robustbench_nas", *MAPPED]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _installed_name(folder: Path) -> str:
    rel = folder.relative_to(ROOT).parts
    head = MAPPED.get(rel[0], rel[0])
    return ".".join([head, *rel[1:]])


def test_every_package_folder_is_listed_under_its_installed_name() -> None:
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {_installed_name(p.parent) for d in SOURCE_DIRS for p in (ROOT / d).rglob("__init__.py")}
    assert on_disk == listed, f"missing from pyproject: {sorted(on_disk - listed)}; stale: {sorted(listed - on_disk)}"
    assert all(name == "robustbench_nas" or name.startswith("robustbench_nas.") for name in listed)
    assert cfg["package-dir"] == {v: k for k, v in MAPPED.items()}


def _top_level_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(ln, m) for ln, m in found if m.split(".")[0] in MAPPED]


def test_no_code_imports_the_old_top_level_names() -> None:
    files = [p for d in [*SOURCE_DIRS, "tests", "benchmarks"] for p in (ROOT / d).rglob("*.py")]
    bad = [f"{p.relative_to(ROOT)}:{ln}: import {m}" for p in files for ln, m in _top_level_imports(p)]
    assert not bad, "import the installed names (robustbench_nas.attacks, ...):\n" + "\n".join(bad)


def test_the_installed_package_is_what_tests_import() -> None:
    from robustbench_nas import attacks, corruptions, pipelines

    for mod, folder in ((attacks, "attacks"), (corruptions, "corruptions"), (pipelines, "pipelines")):
        assert Path(mod.__file__).resolve() == (ROOT / folder / "__init__.py").resolve()
    # run from outside the checkout, the names resolve through the installation, not the current directory
    code = "import robustbench_nas.pipelines, importlib.util as u; print(u.find_spec('pipelines') is None)"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.slow
def test_wheel_holds_only_robustbench_nas(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("robustbench_nas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"robustbench_nas"}, sorted(tops)
    for sub in ("attacks/square.py", "corruptions/registry.py", "pipelines/runner.py", "corruptions/assets/",
                "analysis/templates/report.html.j2", "analysis/templates/sections/ranking.html.j2",
                "analysis/sections/ranking.py", "models/darts.py",
                "analysis/data/nb201_cifar10_proxy_images.txt"):  # nb201-proxies reads its images from it
        assert any(n.startswith(f"robustbench_nas/{sub}") for n in names), sub
    (di,) = dist_info
    entry_points = zipfile.ZipFile(wheel).read(f"{di}/entry_points.txt").decode()
    assert "rbnas = robustbench_nas.cli.main:main" in entry_points
