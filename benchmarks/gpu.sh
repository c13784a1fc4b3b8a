#!/usr/bin/env bash
# GPU training and embedding throughput: packaged architecture and CLIP ViT-B/16, bf16, batch swept.
#
# Assumes one NVIDIA GPU and either this repo's .venv with a CUDA build of torch, or a python3 that
# imports torch (CUDA), transformers and PyYAML; the package is taken from src/ (PYTHONPATH), so no
# `pip install` is needed. Nothing is downloaded: both models are built from their configs with
# random weights. Without a CUDA device it prints "no CUDA device: skipped" and exits 0.
# Runs in about 1 minute on an H200 (50 s measured: 16 rows of 10-20 timed steps). Extra arguments
# go to benchmarks/gpu_bench.py, e.g. `benchmarks/gpu.sh --batches 64 128 --models packaged`.
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
exec timeout 290 "$PYTHON" benchmarks/gpu_bench.py "$@"
