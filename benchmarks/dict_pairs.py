"""Training pairs for tuning a model on the dictionary benchmark's own domain.

Anchors are WordNet glosses from ``train_glosses.jsonl`` (written by ``realdata.py corpus``: glosses
never used as queries, of headwords no query has). The positive of each is the passage of its
headword that the base model finds closest (a mined positive: a headword has several senses); a
passage is the positive of at most one pair, so in-batch negatives are never the pair's own positive.

    python benchmarks/dict_pairs.py --model PATH --out pairs.jsonl [--limit 30000] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from realdata import CACHE, read_jsonl  # noqa: E402


def mine_pairs(cache: Path, model_path: str, limit: int, device: str, seed: int = 0) -> tuple[list[dict], dict]:
    from sentence_transformers import SentenceTransformer

    corpus = read_jsonl(cache / "corpus.jsonl")
    glosses = read_jsonl(cache / "train_glosses.jsonl")
    random.Random(seed).shuffle(glosses)
    by_head: dict[str, list[int]] = defaultdict(list)
    for row, passage in enumerate(corpus):
        by_head[passage["title"].lower()].append(row)
    glosses = [g for g in glosses if by_head.get(g["headword"].lower())][: limit * 2]
    rows = sorted({r for g in glosses for r in by_head[g["headword"].lower()]})
    model = SentenceTransformer(model_path, device=device)
    t0 = time.perf_counter()
    gv = model.encode([g["text"] for g in glosses], batch_size=512, normalize_embeddings=True)
    pv = model.encode([corpus[r]["text"] for r in rows], batch_size=512, normalize_embeddings=True)
    where = {r: i for i, r in enumerate(rows)}
    used: set[int] = set()
    pairs: list[dict] = []
    for g, vec in zip(glosses, gv, strict=True):
        cand = [r for r in by_head[g["headword"].lower()] if r not in used]
        if not cand:
            continue
        best = cand[int(np.argmax(pv[[where[r] for r in cand]] @ vec))]
        used.add(best)
        pairs.append({"anchor": g["text"], "positive": corpus[best]["text"], "doc_id": corpus[best]["_id"]})
        if len(pairs) == limit:
            break
    stats = {"glosses": len(glosses), "pairs": len(pairs), "passages_embedded": len(rows),
             "seconds": round(time.perf_counter() - t0, 1), "model": model_path, "device": device}
    return pairs, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=30000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    pairs, stats = mine_pairs(args.cache, args.model, args.limit, args.device)
    with args.out.open("w") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
