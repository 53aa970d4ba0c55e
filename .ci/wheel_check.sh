#!/usr/bin/env bash
# The wheel, as a user installs it: build it from this checkout, install it into a clean virtual environment (its
# dependencies from the package index / pip's cache, nothing from the checkout), and run rbnas from outside the tree.
# Fails when the wheel holds any top-level name but robustbench_nas, or when the installed command does not run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" .
wheel=$(ls "$work"/dist/robustbench_nas-*.whl)
python - "$wheel" <<'PY'
import sys, zipfile
tops = {n.split("/")[0] for n in zipfile.ZipFile(sys.argv[1]).namelist()}
extra = sorted(t for t in tops if t != "robustbench_nas" and not t.endswith(".dist-info"))
print("wheel top-level:", sorted(tops))
sys.exit(f"wheel installs other top-level names: {extra}" if extra else 0)
PY
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$wheel"
cd "$work"   # outside the checkout: only the installed package can be imported
"$work/venv/bin/rbnas" --help > /dev/null
"$work/venv/bin/python" -c "import importlib.util as u; bad=[n for n in ('attacks','corruptions','pipelines') if u.find_spec(n)]; assert not bad, bad"
# smoke: a cell's costs; train a tiny cell on the embedded digits data and attack the checkpoint
arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
"$work/venv/bin/rbnas" space show 1462 --json
"$work/venv/bin/rbnas" train "$arch" --dataset digits --profile tiny --set epochs=1 --threads 1 --out "$work/cell"
"$work/venv/bin/rbnas" attack "$work/cell" --dataset digits --attack fgsm@Linf --eps 8/255 --n 64 --threads 1
echo "wheel check: ok ($(du -sh "$work/venv" | cut -f1) venv)"
