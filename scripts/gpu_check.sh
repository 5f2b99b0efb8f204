#!/usr/bin/env bash
# One script for a GPU machine (finishes within ~8 minutes): the CUDA tests, then `mmbench bench`
# on a CREMA-D-format tree (scripts/make_cremad_tree.py) at the paper preset (batch 64, two ResNet18), every method timed
# against joint, then the data-wait share of a joint step at that preset for each data path
# (decode, decoded cache with per-frame augmentation in the loader, decoded cache with batched
# augmentation on the device; goal: under 5 %), and `bench --data-only` (samples/s from storage
# to a model-ready batch). Output goes to ${OUT:-gpu_check_out}/ (bench.md, data_wait.md,
# data_only.md, pytest.log, nvidia-smi.txt).
#
#   bash scripts/gpu_check.sh            # assumes `pip install -e '.[dev]'` was done, or does it
#   bash scripts/gpu_check.sh --cpu      # the same steps on the CPU, shortened (no CUDA tests, fewer steps)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c "import mmbench" 2>/dev/null || pip install -q -e '.[dev]'

device=cuda; batch=64; steps=30; warmup=5; rounds=3; clips=300; workers=8; cache_workers=8
if [[ "${1:-}" == "--cpu" ]]; then  # a check that the script works, not a measurement: batch 8
  device=cpu; batch=8; steps=2; warmup=1; rounds=1; clips=60; workers=2; cache_workers=0
fi

if [[ "$device" == cuda ]]; then
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
  echo "== CUDA tests"
  timeout 240 python -m pytest -q tests/benchmark/test_cuda.py 2>&1 | tee "$out/pytest.log" | tail -5
fi

echo "== CREMA-D-format tree at real sizes (2-3 s wavs, 480x360 jpgs; the paper preset decodes it to 1x257x1250 and 224px)"
fix="$(mktemp -d)/cremad"
python scripts/make_cremad_tree.py "$fix" --clips "$clips" >/dev/null

echo "== bench: joint and every method, batch $batch, paper preset, decode path"
methods=$(mmbench list methods | awk '{print $1}' | grep -v -e '^joint$' -e '^unimodal$' | sed 's/^/-m /' | tr '\n' ' ')
[[ "$device" == cpu ]] && methods=""
timeout 300 mmbench bench -d cremad --root "$fix" $methods --device "$device" --set batch_size="$batch" \
  --set data.num_workers="$workers" --set data.cache.mode=off \
  --steps "$steps" --warmup "$warmup" --rounds "$rounds" --note "paper preset, CREMA-D fixture, batch $batch" \
  | tee "$out/bench.md"

echo "== decoded cache of the fixture (paper preset)"
timeout 300 mmbench data cache cremad --root "$fix" --jobs "$cache_workers" | tail -1

echo "== data wait as a share of a joint step (the 'data wait %' column), batch $batch, paper preset"
: > "$out/data_wait.md"
for path in "decode:--set data.cache.mode=off --set data.num_workers=$workers" \
            "cached:--set data.cache.mode=require --set data.cache.augment=loader" \
            "cached-device:--set data.cache.mode=require --set data.cache.augment=device"; do
  name="${path%%:*}"; sets="${path#*:}"
  # shellcheck disable=SC2086  # $sets is several --set options
  timeout 200 mmbench bench -d cremad --root "$fix" --device "$device" --set batch_size="$batch" $sets \
    --steps "$steps" --warmup "$warmup" --rounds "$rounds" --note "data path: $name" | tee -a "$out/data_wait.md"
done

echo "== bench --data-only: storage to model-ready batch, batch $batch, paper preset"
timeout 200 mmbench bench --data-only -d cremad --root "$fix" --device "$device" --set batch_size="$batch" \
  --rounds "$rounds" --note "CREMA-D-format tree, $clips clips" | tee "$out/data_only.md"
echo "== done; results in $out"
