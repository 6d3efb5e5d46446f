#!/usr/bin/env bash
# The embedded demo: score the authors' released GPT-4o answers (ImageNet200, 5% subset, baseline)
# through lmms-eval with reguide_replay, then write the cross-model report. No images, GPU or network.
# SSB-hard has no released answers in the shipped sample: missing=skip leaves those documents out of every
# metric and the report lists them as "not in release" (reguide-audit OUT reads the same output).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/demo}
VENV=${VENV:-.venv}  # utils/check_upstream.sh runs the demo in its own environment
rm -rf "$OUT"; mkdir -p "$(dirname "$OUT")"
"$VENV/bin/reguide-eval" --model reguide_replay --model_args model=gpt,missing=skip \
  --tasks reguide_baseline_imagenet200_5pct --output_path "$OUT" --log_samples >"$OUT.log" 2>&1 \
  || { tail -n 5 "$OUT.log"; exit 1; }
"$VENV/bin/reguide-report" "$OUT" --out "$OUT/report"
"$VENV/bin/reguide-audit" "$OUT" --out "$OUT/audit"
