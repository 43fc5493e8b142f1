"""Synthetic Matryoshka-like vectors for the scale benchmarks: one generator, importable everywhere.

``Synthetic(n, preset="legacy")`` is the generator ``benchmarks/scale.py`` used before issue 10: a
32-dim latent space mixed into 768 dims whose scale decays with the dim index, plus noise. Its
64-dim prefix sees the whole 32-dim latent, so the 64-dim shortlist is far easier than on real
embeddings (see ``results/coverage.md``).

A synthetic set may stand in for real vectors only where its coverage curve -- the share of the
exact full-dim top-10 found in the exact 64-dim top-S, S = 10 ... 800 -- matches the real one within
0.02 at the real collection's size (``benchmarks/coverage.py``, ``results/coverage.md``).

Real-anchored presets (``anchored-dict-mrl``, ``anchored-base``, ``anchored-fin-mrl``): these are
the ones that match. They NEED THE REAL VECTORS at run time: ``Synthetic(n, preset, real=<cache dir>)``
reads ``<cache dir>/<anchors>/corpus.npy`` and ``queries.npy`` (e.g. ``/work/bench-cache/dict``, written
by ``benchmarks/realdata.py embed``). The model:

- anchor pool: ``round(n / copies)`` real corpus rows (at most all of them), a seeded random subset,
  L2-normalised; ``copies`` = 1,000,000 / 227,502, so a set of n points uses each anchor about 4.4
  times at every n up to 1M: the check at the real size (227,502 points from 51,757 anchors) has the
  same expansion as the 1M set (all 227,502 anchors), which is what makes it a test of the 1M set
  and not just of the real vectors themselves;
- partners: each anchor's ``neighbours`` (4) nearest anchors by cosine (faiss IVF-Flat, approximate,
  deterministic k-means seed);
- row i: anchor ``a = i mod pool``, partner ``b`` = one of ``a``'s partners drawn per row, and
  ``x_i = u_a + t (u_b - u_a)`` with ``t`` uniform in ``[0, reach]`` (0.5): a new point on the local
  manifold between two real neighbours (interpolation, SMOTE-like). Every dim -- the 64-dim prefix and
  the rest -- comes from real vectors, so how the prefix ranks neighbours is the real model's;
- queries: the real query vectors of the same model (not in the collection), in file order.

Why not the alternatives (measured at 227,502 points from the same 51,757-anchor pool, 200 real
dict-mrl queries): jittered copies ``u_a + sigma * noise`` (noise with the real 384 x 384 covariance)
miss by 0.045 (sigma 0: 4.4 copies of one anchor crowd the top-10) to 0.13 (sigma 0.4), worst at
S = 20 ... 50 -- global-covariance noise is not local structure; the latent-spectrum preset below
misses minilm-base by 0.046. Interpolation with the same two parameters fits both the base and the
Matryoshka-tuned model.

Latent-spectrum presets (``minilm-base``; the earlier attempt, kept for comparison):

- each point has a latent vector ``z`` of ``latent`` dims with a decaying spectrum
  ``var_j = (1 + j / 8) ** -alpha`` (larger ``alpha``: fewer effective dims: easier);
- each point tilts its latent by ``(1 + j / 8) ** (-beta / 2)`` with its own ``beta`` drawn uniformly
  from ``point_beta``: points whose energy sits in the trailing latents are the ones a 64-dim view
  ranks badly (real collections have such items: the long tail of the curve);
- the vector is ``z @ mix + noise * scale * e``, ``mix`` Gaussian (a plain, non-Matryoshka model:
  the 64-dim prefix is a random 64-dim view of the latent) with a column scale
  ``scale_i = (1 + i / 16) ** -decay``;
- a query is a random point's latent plus ``query_noise`` times a fresh draw of the same spectrum,
  tilted with its own ``beta`` drawn from ``query_beta`` (query difficulty varies: a steep tilt puts
  the query on the leading latents, which the prefix sees well), mapped the same way.

Every vector depends only on (seed, n, its row index) -- for the anchored presets also on the real
vectors and the partner table, computed once per ``Synthetic`` -- so ``batch(start, stop)`` can be
called in any order and block size (up to float rounding of the matrix product), which is what an
indexer streaming 1M points needs.

Usage::

    from synthetic import Synthetic               # with benchmarks/ on sys.path, as the scripts have
    data = Synthetic(1_000_000, preset="minilm-base")
    block = data.batch(0, 5000)                   # float32 (5000, 384), not normalised
    queries = data.queries(300)                   # float32 (300, 384)
    data = Synthetic(1_000_000, preset="anchored-dict-mrl", real=Path("/work/bench-cache/dict"))

Write 1M vectors for ``benchmarks/peers.py --vectors DIR`` (corpus.npy, queries.npy, meta.json)::

    python benchmarks/synthetic.py write /work/bench-cache/synth-dict-mrl-1m --n 1000000 --real /work/bench-cache/dict
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

BLOCK = 4096  # rows per deterministic latent block


@dataclass(frozen=True)
class Params:
    dim: int = 768
    latent: int = 32
    alpha: float = 0.0  # latent spectrum decay
    decay: float = 0.6  # per-dim scale decay of the mixed vector
    noise: float = 0.5  # per-dim noise (times the dim's scale)
    query_noise: float = 0.5  # query latent perturbation (times the spectrum)
    point_beta: tuple[float, float] = (0.0, 0.0)  # per-point spectrum tilt, uniform in [lo, hi]
    query_beta: tuple[float, float] = (0.0, 0.0)  # per-query spectrum tilt, uniform in [lo, hi]
    legacy: bool = False  # the pre-issue-10 generator (one latent matrix, queries from the same rows)
    # real-anchored generator (``anchors`` = a tag of the real-vector cache): see the module docstring
    anchors: str = ""  # real embeddings to interpolate between (cache/<tag>/corpus.npy, queries.npy)
    neighbours: int = 8  # partner = one of the anchor's ``neighbours`` nearest anchors (cosine)
    reach: float = 1.0  # point = anchor + t * (partner - anchor), t uniform in [0, reach]
    copies: float = 1_000_000 / 227_502  # generated rows per anchor: the pool is round(n / copies) real rows

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.anchors:  # the latent-model fields do not apply
            return {k: d[k] for k in ("dim", "anchors", "neighbours", "reach", "copies")}
        return {k: v for k, v in d.items() if k not in ("anchors", "neighbours", "reach", "copies")}


PRESETS: dict[str, Params] = {
    # benchmarks/scale.py before issue 10
    "legacy": Params(dim=768, latent=32, decay=0.6, noise=0.5, query_noise=0.5, legacy=True),
    # fitted with benchmarks/coverage.py --fit on the dictionary corpus (see results/coverage.md)
    # best of a small grid against real:minilm-base (fitted on 190k of the 227,502 rows; at all 227,502: max gap 0.046
    # at S=10) -- NOT within 0.02 yet (results/coverage.md)
    "minilm-base": Params(dim=384, latent=384, alpha=0.3, decay=0.0, noise=0.3, query_noise=1.0,
                          point_beta=(0.0, 12.0), query_beta=(0.0, 8.0)),
    # real-anchored (needs the real vectors: Synthetic(..., real=<cache dir>)); fitted in results/coverage.md
    # neighbours=4, reach=0.5: best of (neighbours, reach) = (1, 0.5), (1, 1), (2, 0.5), (4, 0.25), (4, 0.5),
    # (8, 0.5), (8, 1) against real:minilm-dict-mrl at 227,502 points, first 1,000 queries, seed 0 (max gaps
    # 0.015 ... 0.046); also best of (4, 0.5), (8, 1), (16, 0.5) on seeds 1 and 2; the same values fit minilm-base
    "anchored-dict-mrl": Params(dim=384, latent=0, anchors="minilm-dict-mrl", neighbours=4, reach=0.5),
    "anchored-base": Params(dim=384, latent=0, anchors="minilm-base", neighbours=4, reach=0.5),
    "anchored-fin-mrl": Params(dim=384, latent=0, anchors="minilm-fin-mrl", neighbours=4, reach=0.5),
}

ANCHOR_SEED = 29  # rng stream for the anchor pool / kNN (seeded with the generator's seed too)


def _knn(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Approximate k nearest neighbours (cosine, self excluded) of every row: faiss IVF-Flat, deterministic
    k-means (fixed seed), nprobe 16 of sqrt-sized lists. The partner of an interpolation only needs to be
    close, not the exact nearest; ``Synthetic.partner_recall`` measures it against exact search (``write`` records it)."""
    import faiss

    n, d = vectors.shape
    nlist = max(1, int(2 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.add(vectors)
    index.nprobe = 16
    out = np.empty((n, k), np.int64)
    for start in range(0, n, 16384):
        stop = min(n, start + 16384)
        _, idx = index.search(vectors[start:stop], k + 1)
        for r in range(stop - start):  # drop the row itself (or, for duplicates, the last hit)
            row = idx[r]
            keep = row[row != start + r][:k]
            if len(keep) < k:  # rare: a list shorter than k + 1 -- pad with the row's first hit
                keep = np.concatenate([keep, np.full(k - len(keep), keep[0] if len(keep) else (start + r + 1) % n)])
            out[start + r] = keep
    return out


class Synthetic:
    """Deterministic Matryoshka-like vectors: point i is always the same vector for a given seed."""

    def __init__(self, n: int, preset: str | Params = "legacy", seed: int = 0, real: Path | None = None,
                 **overrides: float | int) -> None:
        params = PRESETS[preset] if isinstance(preset, str) else preset
        self.params = replace(params, **overrides) if overrides else params  # type: ignore[arg-type]
        p = self.params
        self.n = n
        self.seed = seed
        self.dim = p.dim
        if p.anchors:
            self._init_anchored(real)
            return
        self.scale = ((1 + np.arange(p.dim) / 16) ** -p.decay).astype(np.float32)
        self.mix = np.random.default_rng(1234).standard_normal((p.latent, p.dim)).astype(np.float32)
        self.mix *= self.scale
        self.spectrum = ((1 + np.arange(p.latent) / 8) ** (-p.alpha / 2)).astype(np.float32)  # std per latent
        if p.legacy:
            self._legacy_latent = np.random.default_rng(seed).standard_normal((n, p.latent)).astype(np.float32)

    def _init_anchored(self, real: Path | None) -> None:
        p = self.params
        if real is None:
            raise ValueError(f"preset with anchors={p.anchors!r} needs real=<cache dir holding {p.anchors}/corpus.npy>")
        base = Path(real) / p.anchors
        corpus = np.load(base / "corpus.npy", mmap_mode="r")
        self.real_n = len(corpus)
        self.pool_size = min(self.real_n, max(p.neighbours + 1, round(self.n / p.copies)))
        pool = np.sort(np.random.default_rng([self.seed, ANCHOR_SEED]).permutation(self.real_n)[: self.pool_size])
        anchors = np.asarray(corpus[pool], dtype=np.float32)
        self.anchor_rows = pool  # real corpus rows used as anchors
        self.anchor_vectors = anchors / np.maximum(np.linalg.norm(anchors, axis=1, keepdims=True), 1e-12)
        self.dim = self.anchor_vectors.shape[1]
        self.partners = _knn(self.anchor_vectors, p.neighbours, seed=self.seed + ANCHOR_SEED)
        self.real_queries = base / "queries.npy"

    def partner_recall(self, sample: int = 500) -> float:
        """Share of the exact ``neighbours`` nearest anchors found in the approximate partner table."""
        k = self.params.neighbours
        rows = np.random.default_rng([self.seed, ANCHOR_SEED, 1]).choice(self.pool_size, min(sample, self.pool_size),
                                                                          replace=False)
        scores = self.anchor_vectors[rows] @ self.anchor_vectors.T
        scores[np.arange(len(rows)), rows] = -np.inf
        exact = np.argpartition(-scores, k, axis=1)[:, :k]
        return float(np.mean([len(set(exact[i]) & set(self.partners[r])) / k for i, r in enumerate(rows)]))

    def _anchored(self, start: int, stop: int) -> np.ndarray:
        p = self.params
        rows = np.arange(start, stop)
        a = rows % self.pool_size
        pick = np.empty(stop - start, np.int64)
        t = np.empty(stop - start, np.float32)
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):  # per-row draws, independent of the blocks asked for
            rng = np.random.default_rng([self.seed, 17, b])
            jb, tb = rng.integers(0, p.neighbours, BLOCK), rng.random(BLOCK, dtype=np.float32) * p.reach
            lo, hi = max(start, b * BLOCK), min(stop, (b + 1) * BLOCK)
            pick[lo - start : hi - start] = jb[lo - b * BLOCK : hi - b * BLOCK]
            t[lo - start : hi - start] = tb[lo - b * BLOCK : hi - b * BLOCK]
        u = self.anchor_vectors[a]
        v = self.anchor_vectors[self.partners[a, pick]]
        return u + t[:, None] * (v - u)

    def _latent(self, start: int, stop: int) -> np.ndarray:
        if self.params.legacy:
            return self._legacy_latent[start:stop]
        blocks = []
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            z = np.random.default_rng([self.seed, 7, b]).standard_normal((BLOCK, self.params.latent)).astype(np.float32)
            lo, hi = max(start, b * BLOCK) - b * BLOCK, min(stop, (b + 1) * BLOCK) - b * BLOCK
            if self.params.point_beta[1] > 0:  # per-point tilt: how much of a point is in the leading latents
                beta = np.random.default_rng([self.seed, 13, b]).uniform(*self.params.point_beta, BLOCK)
                tilt = (1 + np.arange(self.params.latent) / 8) ** (-beta[:, None] / 2)
                z = z * tilt.astype(np.float32)
            blocks.append(z[lo:hi])
        return np.concatenate(blocks) * self.spectrum

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, float32 (not normalised)."""
        p = self.params
        if p.anchors:
            return self._anchored(start, stop)
        noise = np.random.default_rng([self.seed, start]).standard_normal((stop - start, p.dim)).astype(np.float32)
        if not p.legacy:  # noise per row, independent of the block boundaries asked for
            noise = np.concatenate([
                np.random.default_rng([self.seed, 11, b]).standard_normal((BLOCK, p.dim)).astype(np.float32)[
                    max(start, b * BLOCK) - b * BLOCK : min(stop, (b + 1) * BLOCK) - b * BLOCK]
                for b in range(start // BLOCK, (stop - 1) // BLOCK + 1)])
        return self._latent(start, stop) @ self.mix + p.noise * self.scale * noise

    def queries(self, count: int) -> np.ndarray:
        """Queries near random points (perturbed latents), float32 (not normalised)."""
        p = self.params
        if p.anchors:  # the real queries (their own encoder's vectors; not in the collection)
            q = np.load(self.real_queries)
            if count > len(q):
                raise ValueError(f"{self.real_queries} has {len(q)} queries, {count} asked for")
            return np.asarray(q[:count], dtype=np.float32)
        rng = np.random.default_rng([self.seed, 10**9])
        rows = rng.choice(self.n, count, replace=False)
        if p.legacy:
            latent = self._legacy_latent[rows] + 0.5 * rng.standard_normal((count, p.latent)).astype(np.float32)
            return latent @ self.mix + p.noise * self.scale * rng.standard_normal((count, p.dim)).astype(np.float32)
        latent = np.concatenate([self._latent(int(r), int(r) + 1) for r in rows])
        latent = latent + p.query_noise * rng.standard_normal((count, p.latent)).astype(np.float32) * self.spectrum
        lo, hi = p.query_beta
        if hi > 0:  # per-query difficulty: a steeper tilt puts the query on the leading latents (easier)
            beta = rng.uniform(lo, hi, count).astype(np.float32)[:, None]
            latent = latent * (1 + np.arange(p.latent, dtype=np.float32) / 8) ** (-beta / 2)
        return latent @ self.mix + p.noise * self.scale * rng.standard_normal((count, p.dim)).astype(np.float32)


def write(out: Path, preset: str, n: int, real: Path | None, seed: int = 0, queries: int = 0, block: int = 20000) -> dict:
    """Write ``out/corpus.npy`` (n x dim float32, rows L2-normalised, streamed in blocks), ``out/queries.npy``
    (normalised) and ``out/meta.json``: the layout ``benchmarks/peers.py --vectors`` reads."""
    import json
    import sys
    import time

    t0 = time.perf_counter()
    data = Synthetic(n, preset, seed=seed, real=real)
    out.mkdir(parents=True, exist_ok=True)
    corpus = np.lib.format.open_memmap(out / "corpus.npy", mode="w+", dtype=np.float32, shape=(n, data.dim))
    for start in range(0, n, block):
        x = data.batch(start, min(n, start + block))
        corpus[start : start + len(x)] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    corpus.flush()
    del corpus
    count = queries or (len(np.load(data.real_queries, mmap_mode="r")) if data.params.anchors else 1000)
    q = data.queries(count)
    np.save(out / "queries.npy", q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12))
    meta = {"preset": preset, "params": data.params.to_dict(), "n": n, "seed": seed, "dim": data.dim,
            "queries": count, "normalized": True, "dtype": "float32", "command": " ".join(sys.argv)}
    if data.params.anchors:
        meta |= {"real": str(real), "anchor_pool": data.pool_size, "real_rows": data.real_n,
                 "partner_recall_vs_exact": round(data.partner_recall(), 4),
                 "queries_source": f"the first {count} real {data.params.anchors} queries (not in the collection)"}
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def main() -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Write synthetic vectors as corpus.npy + queries.npy (peers.py --vectors).")
    ap.add_argument("command", choices=["write"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", default="anchored-dict-mrl", choices=sorted(PRESETS))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--real", type=Path, default=None, help="real-vector cache dir (anchored presets): holds <tag>/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=0, help="queries to write [default: all real ones / 1000]")
    args = ap.parse_args()
    print(json.dumps(write(args.out, args.preset, args.n, args.real, args.seed, args.queries), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
