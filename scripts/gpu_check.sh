#!/usr/bin/env bash
# One script for a GPU machine (finishes within ~8 minutes): the CUDA tests, then `mmbench bench`
# on CREMA-D-format fixture data at the paper preset (batch 64, two ResNet18), every method timed
# against joint. Output goes to ${OUT:-gpu_check_out}/ (bench.md, pytest.log, nvidia-smi.txt).
#
#   bash scripts/gpu_check.sh            # assumes `pip install -e '.[dev]'` was done, or does it
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c "import mmbench" 2>/dev/null || pip install -q -e '.[dev]'
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

echo "== CUDA tests"
timeout 240 python -m pytest -q tests/test_cuda.py 2>&1 | tee "$out/pytest.log" | tail -5

echo "== CREMA-D-format fixture (paper preset decodes it to 1x257x1004 spectrograms and 224px frames)"
fix="$(mktemp -d)/cremad"
mmbench data fixture cremad --out "$fix" --n-per-class 24 >/dev/null

echo "== bench: joint and every method, batch 64, paper preset"
methods=$(mmbench list methods | awk '{print $1}' | grep -v -e '^joint$' -e '^unimodal$' | sed 's/^/-m /' | tr '\n' ' ')
timeout 300 mmbench bench -d cremad --root "$fix" $methods --set batch_size=64 --set data.num_workers=8 \
  --steps 30 --warmup 5 --rounds 3 --note "paper preset, CREMA-D fixture, batch 64" | tee "$out/bench.md"
echo "== done; results in $out"
