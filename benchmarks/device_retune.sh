#!/usr/bin/env bash
# Issue 12's last measurement on the GPU machine lent through the device tool: re-tune a tuned model
# on its misses (`funnel pairs misses` on the train split, made on the development machine) with
# and without replay of the pairs it was tuned on, default `funnel tune` recipe (1 epoch, batch 32,
# lr 1e-4), each evaluated on the 700 test queries (the code behind `funnel tune --eval`, through
# benchmarks/device_tune.py: the image lacks the engine package the CLI imports).
#
# Inputs (ignored by git, carried: .dev/retune .dev/finqa.tar.xz .whl):
#   $IN/model16/         the tuned model cast to float16 (benchmarks/model_dtype.py), cast back here
#   $IN/misses.jsonl     `funnel pairs misses` output
#   $IN/replay.jsonl     the pairs the model was tuned on
#   $DATA                ../shared/data/financial-qa-10k as finqa/ in a .tar.xz
# Outputs ($OUT): machine.txt, tune-v2-replay.json, tune-v2.json and the two tune logs.
# Local dry run on CPU: IN=… DATA=… DEVICE=cpu NO_WHEELS=1 PYTHON=.venv/bin/python OUT=… this script.
set -euo pipefail
IN=${IN:-.dev/retune}; DATA=${DATA:-.dev/finqa.tar.xz}; DEVICE=${DEVICE:-cuda}; PY=${PYTHON:-python3}; SEED=${SEED:-42}  # funnel tune --seed
W=${WORK:-/tmp/funnel-retune}
if [[ -z "${NO_WHEELS:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
rm -rf "$W"; mkdir -p "$W"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || lscpu | grep 'Model name'
  "$PY" -c "import torch, sentence_transformers as st, transformers as t; print('torch', torch.__version__, 'st', st.__version__, 'transformers', t.__version__)"
} | tee "$OUT/machine.txt"
"$PY" benchmarks/model_dtype.py "$IN/model16" "$W/base" --dtype float32
tar -xJf "$DATA" -C "$W" && mv "$W/finqa" "$W/financial-qa-10k"  # the eval set is named after its folder
wc -l "$IN/misses.jsonl" "$IN/replay.jsonl" | tee -a "$OUT/machine.txt"
run() {  # NAME [extra device_tune.py args]
  local name=$1; shift; local start; start=$(date +%s)
  "$PY" benchmarks/device_tune.py "$IN/misses.jsonl" "$W/$name" "$W/base" 1 32 1e-4 --eval "$W/financial-qa-10k" \
    --device "$DEVICE" --seed "$SEED" "$@" > "$OUT/tune-$name.json" 2> "$W/tune-$name.log" \
    || { tail -40 "$W/tune-$name.log"; tail -200 "$W/tune-$name.log" > "$OUT/tune-$name.log"; return 1; }
  echo "$name seed $SEED: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/machine.txt"
  tail -200 "$W/tune-$name.log" > "$OUT/tune-$name.log"
}
run v2-replay --replay "$IN/replay.jsonl" --replay-ratio 1
run v2
ls -la "$OUT"
