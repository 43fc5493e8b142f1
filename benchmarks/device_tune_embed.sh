#!/usr/bin/env bash
# Tune MiniLM with MatryoshkaLoss on the financial pairs (DOMAIN=dict: on pairs mined from the
# dictionary's own WordNet glosses, benchmarks/dict_pairs.py) and embed the dictionary benchmark corpus
# with the tuned model, on the GPU machine lent through the device tool (no network there; its
# python3 carries torch + sentence-transformers; datasets travels as wheels in .whl/).
#
# Inputs (prepared here, ignored by git, carried: .dev .whl):
#   .dev/minilm16/        all-MiniLM-L6-v2 weights cast to float16 (benchmarks/model_dtype.py)
#   .dev/finqa.tar.xz     ../shared/data/financial-qa-10k (corpus, queries, qrels, train_pairs.jsonl)
#   .dev/dict/            corpus.jsonl.xz + queries.jsonl from benchmarks/realdata.py corpus
# Outputs ($OUT, at most 8 files of 16 MiB per call): the tune report, the tuned model as float16
# (safetensors split in 15 MiB parts + the small files), the query vectors and embed metadata;
# the corpus vectors (float16) stay in /tmp/funnel-dev/parts for `send-part N` calls.
set -euo pipefail
W=/tmp/funnel-dev
if [[ "${1:-}" == "send-part" ]]; then
  for p in $(ls "$W/parts" | sed -n "$(( $2 * 4 + 1 )),$(( $2 * 4 + 4 ))p"); do cp "$W/parts/$p" "$OUT/"; done
  ls -la "$OUT"; exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
python3 -c "import torch, sentence_transformers as st, transformers as t; print('torch', torch.__version__, 'st', st.__version__, 'transformers', t.__version__)" | tee -a "$OUT/machine.txt"
mkdir -p "$W/dict" "$W/parts"
python3 benchmarks/model_dtype.py .dev/minilm16 "$W/base32" --dtype float32
tar -xJf .dev/finqa.tar.xz -C "$W"
xz -dc .dev/dict/corpus.jsonl.xz > "$W/dict/corpus.jsonl"
cp .dev/dict/queries.jsonl "$W/dict/"
if [[ "${DOMAIN:-finqa}" == "dict" ]]; then   # tune on the dictionary's own domain (benchmarks/dict_pairs.py)
  xz -dc .dev/dict/train_glosses.jsonl.xz > "$W/dict/train_glosses.jsonl"
  python3 benchmarks/dict_pairs.py --cache "$W/dict" --model "$W/base32" --out "$W/pairs.jsonl" \
    --limit "${PAIRS:-30000}" --device cuda 2> "$W/pairs.log" | tee "$OUT/pairs.json"
  TRAIN="$W/pairs.jsonl"; TAG=minilm-dict-mrl
else
  TRAIN="$W/finqa/train_pairs.jsonl"; TAG=minilm-fin-mrl
fi
start=$(date +%s)
python3 benchmarks/device_tune.py "$TRAIN" "$W/tuned" "$W/base32" "${EPOCHS:-3}" "${BATCH:-64}" "${LR:-1e-4}" \
  > "$OUT/tune.json" 2> "$W/tune.log" || { tail -40 "$W/tune.log"; exit 1; }
echo "tune: $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"
python3 benchmarks/model_dtype.py "$W/tuned" "$W/tuned16" --dtype float16
python3 benchmarks/model_dtype.py "$W/tuned16" "$W/tuned32" --dtype float32
start=$(date +%s)
python3 benchmarks/realdata.py --cache "$W/dict" embed --model "$W/tuned32" --tag "$TAG" \
  --device cuda --batch-size 512 --shard 50000 > "$W/embed.log" 2>&1 || { tail -40 "$W/embed.log"; exit 1; }
echo "embed: $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"
cp "$W/dict/$TAG/meta.json" "$OUT/embed-meta.json"
python3 - <<PY
import numpy as np
d = "$W/dict/$TAG"
np.save("$OUT/queries-f16.npy", np.load(d + "/queries.npy").astype(np.float16))
np.save("$W/corpus-f16.npy", np.load(d + "/corpus.npy").astype(np.float16))
PY
(cd "$W" && split -b 15M -d -a 2 corpus-f16.npy parts/corpus-f16.npy.part)
(cd "$W/tuned16" && split -b 15M -d -a 2 model.safetensors "$OUT/model.safetensors.part" \
  && tar -cJf "$OUT/tuned16-rest.tar.xz" --exclude=model.safetensors --exclude='checkpoint-*' .)
ls -la "$OUT" "$W/parts"
