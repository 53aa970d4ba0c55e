#!/usr/bin/env bash
# The GPU check in one go (benchmarks/device_check.py): GPU-vs-CPU agreement (logits; a trained network attacked at
# every eps of the pipeline's grids, 0.1/255 included, at its batch size; every corruption,
# one training step, every proxy), throughput of training / attacks / corruptions, and as much of the fidelity study
# as fits; under 8 minutes on one GPU. Records go to $OUT if set, else benchmarks/results.
#
#   bash benchmarks/device_check.sh                      # the real check (needs CUDA; refuses to run without it)
#   bash benchmarks/device_check.sh --dry-run --device cpu   # tiny sizes on a CPU: checks that every section runs
#
# Needs the real CIFAR-10 images (../shared/data/cifar10_test.npz): without them it stops at once (exit 2).
# Extra arguments go to the Python module (--budget-s, --sections, --threads, --out, --perturb).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
THREADS="${DEVICE_CHECK_THREADS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
"$PY" -c "import torch" 2>/dev/null || { echo "device_check: $PY cannot import torch (set PYTHON=...)" >&2; exit 2; }
# 470 s hard limit: the sections share a 420 s budget, the rest is start-up and writing records
exec timeout --signal=INT --kill-after=20 470 "$PY" -m benchmarks.device_check --threads "$THREADS" "$@"
