#!/usr/bin/env bash
# The claim study of issue 13 on Galaxy10-Sim, resumable (each benchmark folder resumes its runs).
#   1. render a training/validation file (150 per class) and a separate test file (200 per class,
#      its own seed);
#   2. validation only: galaxalign with class symbols against per-galaxy symbols, 10 % labels,
#      3 seeds (the choice of symbol source is made here, never on test);
#   3. the test reading: every method at 10 % and 1 % labels, 3 seeds, on the separate test file,
#      with the symbol source chosen in step 2 (SYMBOLS=class|galaxy).
# Usage: benchmarks/claim_study.sh validate   |   SYMBOLS=galaxy benchmarks/claim_study.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/claim}
BIN=${BIN:-.venv/bin}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
[ -f "$OUT/train.h5" ] || "$BIN/galaxalign" synth --out "$OUT/train.h5" --per-class 150 --size 128 --seed 0 --quiet
[ -f "$OUT/test.h5" ] || "$BIN/galaxalign" synth --out "$OUT/test.h5" --per-class 200 --size 128 --seed 1 --quiet
# 1500 galaxies: 960 train, 510 validation; the split's 30-galaxy test part is never used.
common=(--data "$OUT/train.h5" --val-fraction 0.34 --test-fraction 0.02 --seeds 0,1,2 --workers 1 --quiet)
case "${1:-}" in
  validate)
    for symbols in class galaxy; do
      "$BIN/galaxalign" benchmark "${common[@]}" --out "$OUT/val-$symbols" --validation-only \
        --methods galaxalign --label-fractions 0.1 --symbols "$symbols"
    done ;;
  test)
    "$BIN/galaxalign" benchmark "${common[@]}" --out "$OUT/test-${SYMBOLS:?choose on validation first}" \
      --test-data "$OUT/test.h5" --label-fractions 0.1,0.01 --symbols "$SYMBOLS" \
      --methods supervised,clip,galaxalign,zero-label,linear-probe,zero-shot ;;
  *) echo "usage: $0 validate | SYMBOLS=class|galaxy $0 test" >&2; exit 2 ;;
esac
