#!/usr/bin/env sh
# `make gpu-check`: everything that needs a CUDA GPU, in one short script, with its figures under $OUT.
#   1. the CUDA-only tests (peak memory per run, CUDA events vs wall clock, AMP memory, OOM status, fast path);
#   2. one short run per model, and a report of the three;
#   3. the pipelines benchmark (lab / tuned / resident + lean step / bare loop).
# Runs where bench is importable: .venv if present, else $PYTHON or python3 (e.g. a machine with torch
# but no Hydra: see README "GPU check" for the wheel install line). Exit 0 only if every part succeeded.
set -u
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
OUT=${OUT:-outputs/gpu-check}
mkdir -p "$OUT"

"$PY" -c 'import sys, torch; torch.cuda.is_available() or sys.exit("gpu-check: no CUDA GPU is visible here"); print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)' || exit 2
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
status=0

echo "== CUDA tests"
"$PY" -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest-cuda.txt"
tail -n 1 "$OUT/pytest-cuda.txt" | grep -Eq "failed|error" && status=1

echo "== One short run per model"
for model in small medium large; do
  "$PY" -m bench model="$model" device=cuda epochs=2 dataset.train_size=10000 dataset.test_size=2000 \
    "hydra.run.dir=$OUT/runs/$model" || status=1
done
"$PY" -m bench.report "$OUT/runs/small" "$OUT/runs/medium" "$OUT/runs/large" --out "$OUT/runs" || status=1
cat "$OUT/runs/report.md" 2>/dev/null

echo "== Pipelines benchmark"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
"$PY" benchmarks/pipelines.py --out "$OUT/pipelines" ${BENCH_ARGS:-} || status=1

echo "gpu-check: figures in $OUT (exit $status)"
exit $status
