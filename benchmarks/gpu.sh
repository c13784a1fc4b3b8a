#!/usr/bin/env bash
# The GPU path in one call, one table: the model alone (benchmarks/gpu_bench.py, batch swept),
# the trainer end to end against it (benchmarks/gpu_e2e.py: `galaxalign train`'s code on a rendered
# h5, CLIP ViT-B/16, batch 256, images/s, GPU memory, a 10-epoch Galaxy10 DECaLS extrapolation),
# then the rest of the real user's path (benchmarks/gpu_paths.py: two-stage `galaxalign` with the
# stage switch, 1-process NCCL DDP, an fp16-saved checkpoint, `--compile`, host-device syncs per
# step, evaluate and index throughput, and h5 reads with h5py's default chunks against `convert`'s).
# The first two parts' tables are folded into gpu_paths.py's, printed last; their logs go to stderr.
#
# Assumes one NVIDIA GPU and a python that imports torch (CUDA), transformers and h5py: this repo's
# .venv if its torch sees CUDA, else python3. The package is taken from src/ (PYTHONPATH), so no
# `pip install` is needed. Nothing is downloaded: every model is built from its config with random
# weights. Without a CUDA device it prints "no CUDA device: skipped" and exits 0.
#
# Time, under 8 minutes in all, each part behind a `timeout`: gpu_bench.py 40 s, gpu_e2e.py 165 s
# (its own budget 140 s, the CLIP row only), gpu_paths.py 250 s (budget 225 s; each check stops at
# its share and says so). Extra arguments go to benchmarks/gpu_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."

sees_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
PYTHON=""
for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && sees_cuda "$candidate"; then PYTHON=$candidate; break; fi
done
if [ -z "$PYTHON" ]; then
    echo "no CUDA device: skipped"
    exit 0
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ $# -eq 0 ]; then
    set -- --batches 64 256
fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Each part runs to its end (or its limit) whatever the others did; the exit status is the first
# failure's, a part cut at its limit (124) aside: its finished rows still reach the table.
status=0
part() {
    local limit=$1 name=$2
    shift 2
    timeout "$limit" "$PYTHON" "$@" >"$logs/$name.md" || {
        local rc=$?
        echo "$name: exit $rc (124: stopped at its $limit s limit)" >&2
        [ "$rc" -eq 124 ] || [ "$status" -ne 0 ] || status=$rc
    }
    cat "$logs/$name.md" >&2
}
part 40 gpu_bench benchmarks/gpu_bench.py "$@"
part 165 gpu_e2e benchmarks/gpu_e2e.py --models clip-vit-b16 --budget 140
timeout 250 "$PYTHON" benchmarks/gpu_paths.py --budget 225 --include "$logs/gpu_bench.md" "$logs/gpu_e2e.md" || {
    rc=$?
    echo "gpu_paths.py: exit $rc (124: stopped at its 250 s limit)"
    [ "$status" -ne 0 ] || status=$rc
}
exit "$status"
