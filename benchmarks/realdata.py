"""Real benchmark data: a 200k+ passage dictionary corpus, held-out queries, and their embeddings.

Everything here is offline-reproducible on a Debian machine (bookworm archive): the texts come from
Debian packages fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (no root install).
Nothing produced here is committed: data and vectors go to a cache directory.

Run (from the repository root, project environment active)::

    python benchmarks/realdata.py corpus                       # download, parse, write corpus + queries
    python benchmarks/realdata.py embed --model sentence-transformers/all-MiniLM-L6-v2 --tag minilm-base
    python benchmarks/realdata.py embed --model /work/bench-cache/models/minilm-fin-mrl --tag minilm-fin-mrl

Sources (licenses: see benchmarks/README.md, "realdata.py"):

- ``dict-gcide``: GCIDE 0.48 (Webster's 1913 + WordNet 1.5 + later additions), GPL-2+. The corpus:
  one passage per numbered sense, per unnumbered definition, and per defined phrase
  (``{To feel after}, to search for ...``), as ``"headword: definition"``, markup stripped (braces,
  accent codes such as ``[=a]``, source tags such as ``[1913 Webster]``, quotations, ``--Author.``
  citations, ``Syn:`` and ``Note:`` paragraphs).
- ``dict-foldoc``, ``dict-jargon``, ``dict-vera``: computing dictionaries (see the README for their
  licenses); one passage per body paragraph, ``"headword: paragraph"``.
- ``wordnet-base``: WordNet 3.0 (WordNet 3.0 license, BSD-like). Queries only, never in the corpus:
  the gloss of a synset (the definition part, examples dropped), phrased as a reverse-dictionary
  question, for a synset with a lemma that is a GCIDE headword. A gloss is dropped if it is the same
  text as a corpus passage's definition, or if its word-set Jaccard similarity with any passage of
  that headword is >= 0.5 (GCIDE imported WordNet 1.5's glosses, so many WordNet 3.0 glosses
  are near copies of corpus text). Queries are in random order (seed 10): the peers benchmark
  takes the first 100 for tuning, the next 200+ for measuring, the rest are spare.

Layout of the cache (default ``/work/bench-cache/dict``; option ``--cache``)::

    debs/*.deb, x/usr/share/...            downloaded and unpacked packages
    corpus.jsonl                           {"_id": "g123", "title": headword, "text": "headword: definition",
                                            "source": "gcide"|"foldoc"|"jargon"|"vera"}
    queries.jsonl                          {"_id": "q0001", "text": gloss, "headword": lemma, "pos": "n"}
    train_glosses.jsonl                    the other candidate glosses, minus those of any query's headword
                                           (tuning data for benchmarks/dict_pairs.py; same fields, ids t…)
    qrels/test.tsv                         query-id, corpus-id, score 1 for every passage whose title is the
                                           query's headword (loose: a headword has many senses)
    stats.json                             counts per source, per step
    <model-tag>/corpus.npy                 float32 [n_corpus, dim], L2-normalised full-dim rows,
                                           row i = corpus.jsonl line i
    <model-tag>/queries.npy                float32 [n_queries, dim], row i = queries.jsonl line i
    <model-tag>/ids.json                   {"corpus": [ids in row order], "queries": [...]}
    <model-tag>/meta.json                  model, fingerprint, dim, counts, seconds, passages/s, machine
    <model-tag>/shards/corpus-00000.npy    resumable encoding shards (20k rows each, in corpus order)

Reading the vectors (what the scale and peers benchmarks do)::

    import numpy as np, json
    base = "/work/bench-cache/dict/minilm-base"
    corpus = np.load(f"{base}/corpus.npy", mmap_mode="r")   # (n, 384) float32, unit rows
    queries = np.load(f"{base}/queries.npy")                  # (m, 384)
    ids = json.load(open(f"{base}/ids.json"))

Encoding sorts the texts by length (fewer pad tokens per batch), encodes in shards of ``--shard``
rows saved as they finish (a killed run resumes where it stopped), and writes rows back in corpus
order. ``meta.json`` records the throughput and the machine.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _machine import machine

CACHE = Path("/work/bench-cache/dict")
PACKAGES = ("dict-gcide", "wordnet-base", "dict-foldoc", "dict-jargon", "dict-vera")
OTHER_DICTS = ("foldoc", "jargon", "vera")
QUERY_SEED = 10
MAX_QUERIES = 3000
MIN_WORDS = 3
JACCARD_MAX = 0.5

# --------------------------------------------------------------------------------------------------
# download and unpack


def fetch_packages(cache: Path) -> Path:
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    root = cache / "x"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / "usr" / "share"


# --------------------------------------------------------------------------------------------------
# dictd format: .index lines "headword<TAB>b64offset<TAB>b64length" into the (dictzip = gzip) .dict.dz

B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def b64num(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + B64[c]
    return n


def dictd_entries(share: Path, name: str) -> Iterator[tuple[str, str]]:
    """(headword, entry text) per distinct entry of a dictd database, in file order."""
    data = gzip.decompress((share / "dictd" / f"{name}.dict.dz").read_bytes())
    seen: set[tuple[int, int]] = set()
    spans = []
    for line in (share / "dictd" / f"{name}.index").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        span = (b64num(parts[1]), b64num(parts[2]))
        if span not in seen:
            seen.add(span)
            spans.append((span, parts[0]))
    spans.sort()
    for (offset, length), head in spans:
        yield head, data[offset : offset + length].decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------
# cleaning

SOURCE_TAG = re.compile(r"\[(?:[^\[\]]*(?:Webster|WordNet|PJC|Century|Suppl|Dict\.|RDH|MW|JVS|Chambers)[^\[\]]*)\]")
ACCENT = re.compile(r"\[[=.^~'\"`\\,;:]*([A-Za-z]{1,2})\]")
CITATION = re.compile(r"\s--\s?[A-Z][^.\n]{0,40}\.")
SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    text = SOURCE_TAG.sub(" ", text)
    text = ACCENT.sub(r"\1", text)
    text = CITATION.sub(" ", text)
    text = text.replace("{", "").replace("}", "").replace("\\", "")
    text = SPACES.sub(" ", text).strip()
    return text.strip(" ;,")


def norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# --------------------------------------------------------------------------------------------------
# GCIDE: header (headword \pron\, pos. [etymology]) then senses

SENSE = re.compile(r"^\s{0,6}(\d+)\.\s+(.*)$", re.S)
PHRASE = re.compile(r"^\s{0,6}\{([^{}]+)\}\s*,?\s*(.*)$", re.S)


def _paragraphs(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    for line in lines:
        if line.strip():
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _body(lines: list[str]) -> str:
    """A paragraph's definition text: quotation lines (indented 8+) and source-tag lines dropped."""
    keep = [ln for ln in lines if (len(ln) - len(ln.lstrip(" "))) < 8 and not SOURCE_TAG.fullmatch(ln.strip())]
    return " ".join(ln.strip() for ln in keep)


def gcide_senses(entry: str) -> Iterator[tuple[str, str]]:
    """(headword, definition) per sense of one GCIDE entry."""
    lines = entry.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or "\\" not in lines[0]:
        return
    headword = lines[0].split("\\", 1)[0].strip().replace('"', "").replace("*", "")
    if not headword:
        return
    # the header runs until its brackets balance (the etymology may span lines)
    depth, i = 0, 0
    while i < len(lines):
        depth += lines[i].count("[") - lines[i].count("]")
        i += 1
        if depth <= 0:
            break
    rest = lines[i:]
    for para in _paragraphs(rest):
        first = para[0]
        indent = len(first) - len(first.lstrip(" "))
        stripped = first.strip()
        if indent >= 8 or stripped.startswith(("Syn:", "Note:", "[")):
            continue
        text = _body(para)
        if m := SENSE.match(text):
            yield headword, m.group(2)
        elif m := PHRASE.match(text):
            phrase, definition = m.group(1), m.group(2)
            if definition:
                yield headword, f"{phrase}, {definition}"
        elif text:
            yield headword, text


def other_senses(entry: str) -> Iterator[tuple[str, str]]:
    """(headword, paragraph) per body paragraph of a FOLDOC / Jargon / VERA / Devil entry."""
    lines = entry.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return
    headword = lines[0].strip()
    for para in _paragraphs(lines[1:]):
        if not para[0].startswith(" "):
            continue  # alternative headword lines at column 0
        text = " ".join(ln.strip() for ln in para)
        if re.fullmatch(r"\(\d{4}-\d{2}-\d{2}\)", text):
            continue
        yield headword, text


# --------------------------------------------------------------------------------------------------
# WordNet glosses (queries)


def wordnet_glosses(share: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(pos, gloss definition, lemmas) per synset of WordNet 3.0."""
    for pos, name in (("n", "noun"), ("v", "verb"), ("a", "adj"), ("r", "adv")):
        for line in (share / "wordnet" / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            count = int(parts[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", parts[4 + 2 * k]).replace("_", " ") for k in range(count)]
            definition = re.split(r';\s*"', gloss.strip(), maxsplit=1)[0].strip().rstrip(";").strip()
            yield pos, definition, lemmas


# --------------------------------------------------------------------------------------------------
# corpus + queries


def build_corpus(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    share = fetch_packages(args.cache)
    stats: dict = {"sources": {}}
    passages: list[dict] = []
    seen: set[str] = set()
    by_head: dict[str, list[int]] = defaultdict(list)
    defs: set[str] = set()

    def add(source: str, prefix: str, head: str, definition: str) -> None:
        definition = clean(definition)
        head = clean(head)
        s = stats["sources"].setdefault(source, {"senses": 0, "kept": 0, "short": 0, "duplicate": 0})
        s["senses"] += 1
        if len(definition.split()) < MIN_WORDS or not head:
            s["short"] += 1
            return
        text = f"{head}: {definition}"
        key = norm(text)
        if key in seen:
            s["duplicate"] += 1
            return
        seen.add(key)
        s["kept"] += 1
        by_head[head.lower()].append(len(passages))
        defs.add(norm(definition))
        passages.append({"_id": f"{prefix}{len(passages)}", "title": head, "text": text, "source": source})

    for _head, entry in dictd_entries(share, "gcide"):
        for h, d in gcide_senses(entry):
            add("gcide", "g", h, d)
    for name in OTHER_DICTS:
        for _head, entry in dictd_entries(share, name):
            for h, d in other_senses(entry):
                add(name, name[0], h, d)

    # queries: WordNet 3.0 glosses of GCIDE headwords, not (near-)copies of corpus text
    wn = {"synsets": 0, "no_headword": 0, "short": 0, "same_text": 0, "near_copy": 0, "candidates": 0}
    candidates = []
    used: set[str] = set()
    for pos, definition, lemmas in wordnet_glosses(share):
        wn["synsets"] += 1
        heads = [lemma for lemma in lemmas if lemma.lower() in by_head]
        if not heads:
            wn["no_headword"] += 1
            continue
        if len(definition.split()) < MIN_WORDS:
            wn["short"] += 1
            continue
        key = norm(definition)
        if key in defs or key in used:
            wn["same_text"] += 1
            continue
        head = heads[0]
        qwords = words(definition)
        near = False
        for lemma in heads:
            for row in by_head[lemma.lower()]:
                pw = words(passages[row]["text"].split(":", 1)[1])
                if len(qwords & pw) / max(1, len(qwords | pw)) >= JACCARD_MAX:
                    near = True
                    break
            if near:
                break
        if near:
            wn["near_copy"] += 1
            continue
        used.add(key)
        wn["candidates"] += 1
        candidates.append((head, pos, definition))
    random.Random(QUERY_SEED).shuffle(candidates)
    queries = [{"_id": f"q{i:05d}", "text": d, "headword": h, "pos": p}
               for i, (h, p, d) in enumerate(candidates[: args.queries])]

    args.cache.mkdir(parents=True, exist_ok=True)
    with (args.cache / "corpus.jsonl").open("w") as f:
        for p in passages:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    with (args.cache / "queries.jsonl").open("w") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    # Glosses for tuning a model on this domain (benchmarks/dict_pairs.py): the candidates not used
    # as queries whose headword is no query's headword, so a tuned model never saw a query's word.
    query_heads = {q["headword"].lower() for q in queries}
    train = [{"_id": f"t{i:05d}", "text": d, "headword": h, "pos": p}
             for i, (h, p, d) in enumerate(candidates[args.queries:]) if h.lower() not in query_heads]
    with (args.cache / "train_glosses.jsonl").open("w") as f:
        for t in train:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    wn["train_glosses"] = len(train)
    (args.cache / "qrels").mkdir(exist_ok=True)
    with (args.cache / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            for row in by_head[q["headword"].lower()]:
                f.write(f"{q['_id']}\t{passages[row]['_id']}\t1\n")
    stats |= {"passages": len(passages), "queries": len(queries), "wordnet": wn,
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    (args.cache / "stats.json").write_text(json.dumps(stats, indent=2))
    print(f"{'source':<8} {'senses':>8} {'kept':>8} {'short':>7} {'dup':>7}")
    for name, s in stats["sources"].items():
        print(f"{name:<8} {s['senses']:>8,} {s['kept']:>8,} {s['short']:>7,} {s['duplicate']:>7,}")
    print(f"passages {len(passages):,}; queries {len(queries):,} (of {wn['candidates']:,} candidates; WordNet: {wn})")
    print(f"wrote {args.cache}/corpus.jsonl, queries.jsonl, qrels/test.tsv, stats.json "
          f"in {stats['seconds']} s")
    return 0


# --------------------------------------------------------------------------------------------------
# embeddings


def read_jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f]


def model_fingerprint(model) -> str:  # noqa: ANN001 - a SentenceTransformer
    """Same as ``retriever.encoding.embedder.Embedder.fingerprint``: sha256 over parameter names and values."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def shard_rows(n: int, shard: int, lengths: list[int], shuffle: bool) -> list[np.ndarray]:
    """Row indices of each shard: a fixed random split of the rows (seed 0) when ``shuffle`` (so the
    shards done so far are a uniform sample of the corpus), each shard sorted by text length."""
    base = np.random.default_rng(0).permutation(n) if shuffle else np.arange(n)
    out = []
    for start in range(0, n, shard):
        rows = base[start : start + shard]
        out.append(rows[np.argsort([lengths[i] for i in rows], kind="stable")])
    return out


def encode_shards(model, texts: list[str], out_dir: Path, name: str, shard: int, batch: int,  # noqa: ANN001
                  log: dict, shuffle: bool, bf16: bool) -> np.ndarray:
    """Encode shard by shard (each saved as it finishes, with its row indices); rows in input order."""
    import torch

    shards = out_dir / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    out: np.ndarray | None = None
    spent = 0.0
    encoded = 0
    for k, rows in enumerate(shard_rows(len(texts), shard, [len(t) for t in texts], shuffle)):
        path = shards / f"{name}-{k:05d}.npy"
        if path.exists() and np.load(path, mmap_mode="r").shape[0] == len(rows):
            vecs = np.load(path)
        else:
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                vecs = model.encode([texts[i] for i in rows], batch_size=batch, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            dt = time.perf_counter() - t0
            spent += dt
            encoded += len(rows)
            np.save(shards / f"{name}-{k:05d}.rows.npy", rows)
            np.save(path.with_suffix(".tmp.npy"), vecs)
            path.with_suffix(".tmp.npy").rename(path)
            print(f"  {name} shard {k}: {len(rows):,} rows in {dt:.1f} s ({len(rows) / dt:,.0f}/s)", flush=True)
        if out is None:
            out = np.empty((len(texts), vecs.shape[1]), np.float32)
        out[rows] = vecs
    log[name] = {"rows": len(texts), "encoded_this_run": encoded, "seconds_this_run": round(spent, 1),
                 "rows_per_s_this_run": round(encoded / spent, 1) if spent else None, "bf16_autocast": bf16}
    assert out is not None
    return out


def load_partial(cache: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(corpus row indices, their vectors) of the corpus shards finished so far, for use before the
    whole corpus is encoded: the shards are a uniform random split, so any prefix is a fair sample."""
    shards = sorted((cache / tag / "shards").glob("corpus-?????.npy"))
    rows = [np.load(p.with_name(p.stem + ".rows.npy")) for p in shards]
    vecs = [np.load(p) for p in shards]
    return np.concatenate(rows), np.concatenate(vecs)


class FunnelEncoder:
    """``retriever.encoding``'s fast encoder of a model behind sentence-transformers' ``encode`` call."""

    def __init__(self, model: str, encoder: str) -> None:
        from retriever.encoding.embedder import Embedder

        self.embedder = Embedder(model, encoder=encoder)

    def encode(self, texts: list[str], batch_size: int = 32, normalize_embeddings: bool = False,
               **_: object) -> np.ndarray:
        full = self.embedder.encode_full(texts, batch_size=batch_size)
        if normalize_embeddings:
            full = full / np.maximum(np.linalg.norm(full, axis=1, keepdims=True), 1e-12)
        return full


def embed(args: argparse.Namespace) -> int:
    import torch
    from sentence_transformers import SentenceTransformer

    from retriever.encoding.embedder import resolve_model

    torch.set_num_threads(args.threads)
    corpus = read_jsonl(args.cache / "corpus.jsonl")
    queries = read_jsonl(args.cache / "queries.jsonl")
    out = args.cache / args.tag
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(args.model)
    t0 = time.perf_counter()
    model = SentenceTransformer(path, device=args.device)
    fingerprint = model_fingerprint(model)
    if args.encoder != "torch":  # funnel's fast encoder of the same weights (openvino fp32: the same vectors)
        model = FunnelEncoder(args.model, args.encoder)
    load_s = time.perf_counter() - t0
    texts = [p["text"] for p in corpus]
    log: dict = {}
    if args.probe:
        sample: list[str] = random.Random(0).sample(texts, min(args.probe, len(texts)))
        model.encode(sample[:64], batch_size=args.batch_size)
        t0 = time.perf_counter()
        by_length: list[str] = sorted(sample, key=len)
        model.encode(by_length, batch_size=args.batch_size, normalize_embeddings=True)
        dt = time.perf_counter() - t0
        rate = len(sample) / dt
        log["probe"] = {"rows": len(sample), "seconds": round(dt, 1), "rows_per_s": round(rate, 1),
                        "estimated_corpus_s": round(len(texts) / rate, 0)}
        print(f"probe: {len(sample):,} random passages in {dt:.1f} s = {rate:,.0f}/s; "
              f"whole corpus ≈ {len(texts) / rate / 60:.1f} min", flush=True)
    t0 = time.perf_counter()
    qv = encode_shards(model, [q["text"] for q in queries], out, "queries", args.shard, args.batch_size, log,
                       shuffle=False, bf16=args.bf16)
    cv = encode_shards(model, texts, out, "corpus", args.shard, args.batch_size, log, shuffle=True, bf16=args.bf16)
    total = time.perf_counter() - t0
    np.save(out / "corpus.npy", cv)
    np.save(out / "queries.npy", qv)
    (out / "ids.json").write_text(json.dumps({"corpus": [p["_id"] for p in corpus],
                                              "queries": [q["_id"] for q in queries]}))
    runs = []
    if (out / "meta.json").exists():
        old = json.loads((out / "meta.json").read_text())
        runs = old.get("earlier_runs", []) + [{k: old.get(k) for k in ("seconds_this_run", "encode", "command")}]
    meta = {"model": args.model, "model_path": path, "device": args.device, "fingerprint": fingerprint, "encoder": args.encoder,
            "dim": int(cv.shape[1]), "corpus": int(cv.shape[0]), "queries": int(qv.shape[0]),
            "normalized": True, "dtype": "float32", "batch_size": args.batch_size, "threads": args.threads,
            "load_s": round(load_s, 1), "seconds_this_run": round(total, 1), "encode": log,
            "command": " ".join(sys.argv), "earlier_runs": runs, "machine": machine()}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps({k: v for k, v in meta.items() if k != "machine"}, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus", help="download, parse, write corpus.jsonl / queries.jsonl")
    c.add_argument("--queries", type=int, default=MAX_QUERIES)
    e = sub.add_parser("embed", help="encode corpus and queries with one model")
    e.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    e.add_argument("--tag", required=True, help="subdirectory of the cache for this model's vectors")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--shard", type=int, default=10000)
    e.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU (about 1.4x faster here)")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--encoder", default="torch", help="torch (sentence-transformers) or a funnel encoder, e.g. openvino")
    e.add_argument("--device", default="cpu", help="cpu or cuda (float32 on cuda; --bf16 applies to the CPU only)")
    e.add_argument("--probe", type=int, default=0, help="time this many random passages first")
    args = ap.parse_args()
    return build_corpus(args) if args.cmd == "corpus" else embed(args)


if __name__ == "__main__":
    sys.exit(main())
