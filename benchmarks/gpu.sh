#!/usr/bin/env bash
# GPU training and embedding throughput, packaged architecture and CLIP ViT-B/16, bf16: first the
# model alone (benchmarks/gpu_bench.py, batch swept), then end to end through the trainer
# (benchmarks/gpu_e2e.py: `galaxalign train`'s code on a Galaxy10-Sim h5 it renders first, batch
# 256, trainer images/s against the model-only step in the same process, GPU memory, and the
# extrapolated time of a 10-epoch fine-tune on Galaxy10 DECaLS).
#
# Assumes one NVIDIA GPU and either this repo's .venv with a CUDA build of torch, or a python3 that
# imports torch (CUDA), transformers, h5py and PyYAML; the package is taken from src/ (PYTHONPATH),
# so no `pip install` is needed. Nothing is downloaded: every model is built from its config with
# random weights. Without a CUDA device it prints "no CUDA device: skipped" and exits 0.
#
# Time, kept under 8 minutes in all: gpu_bench.py at most 50 s (its sweep is cut to batches 64 and
# 256 by default, from 32 64 128 256, which took 50 s alone on an H200), then gpu_e2e.py within
# its own 370 s budget (it stops a fit that overruns its share and skips what no longer fits),
# with `timeout 405` behind it. Extra arguments go to benchmarks/gpu_bench.py, e.g.
# `benchmarks/gpu.sh --batches 64 128 --models packaged`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' 2>/dev/null; then
    PYTHON=.venv/bin/python
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "no CUDA device: skipped"
    exit 0
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ $# -eq 0 ]; then
    set -- --batches 64 256
fi

# Each part runs to its end (or its limit) whatever the other did; the exit status is the first
# failure's, a sweep cut at its limit (124) aside: its finished rows are printed as they come.
status=0
timeout 50 "$PYTHON" benchmarks/gpu_bench.py "$@" || {
    rc=$?
    if [ "$rc" -eq 124 ]; then echo "gpu_bench.py: stopped at its 50 s limit"; else status=$rc; echo "gpu_bench.py: exit $rc"; fi
}
echo
timeout 405 "$PYTHON" benchmarks/gpu_e2e.py --budget 370 || {
    rc=$?
    [ "$status" -ne 0 ] || status=$rc
    echo "gpu_e2e.py: exit $rc (124: stopped at its 405 s limit)"
}
exit "$status"
