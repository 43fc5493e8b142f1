"""Synthetic Matryoshka-like vectors for the scale benchmarks: one generator, importable everywhere.

``Synthetic(n, preset="legacy")`` is the generator ``benchmarks/scale.py`` used before issue 10: a
32-dim latent space mixed into 768 dims whose scale decays with the dim index, plus noise. Its
64-dim prefix sees the whole 32-dim latent, so the 64-dim shortlist is far easier than on real
embeddings (see ``results/coverage.md``).

The other presets are fitted to real embeddings (``benchmarks/coverage.py --fit``) so that the
coverage curve -- the share of the exact full-dim top-10 found in the exact 64-dim top-S -- matches
the real one within 0.02 at S = 10 ... 800, at the real collection's size (see ``results/coverage.md``
for the N each preset was fitted and checked at):

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

Every vector depends only on (seed, its row index): ``batch(start, stop)`` can be called in any
order and block size (up to float rounding of the matrix product), which is what an indexer
streaming 1M points needs.

Usage::

    from synthetic import Synthetic               # with benchmarks/ on sys.path, as the scripts have
    data = Synthetic(1_000_000, preset="minilm-base")
    block = data.batch(0, 5000)                   # float32 (5000, 384), not normalised
    queries = data.queries(300)                   # float32 (300, 384)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

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

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Params] = {
    # benchmarks/scale.py before issue 10
    "legacy": Params(dim=768, latent=32, decay=0.6, noise=0.5, query_noise=0.5, legacy=True),
    # fitted with benchmarks/coverage.py --fit on the dictionary corpus (see results/coverage.md)
    # best of a small grid against real:minilm-base (fitted on 190k of the 227,502 rows; at all 227,502: max gap 0.046
    # at S=10) -- NOT within 0.02 yet (results/coverage.md)
    "minilm-base": Params(dim=384, latent=384, alpha=0.3, decay=0.0, noise=0.3, query_noise=1.0,
                          point_beta=(0.0, 12.0), query_beta=(0.0, 8.0)),
}


class Synthetic:
    """Deterministic Matryoshka-like vectors: point i is always the same vector for a given seed."""

    def __init__(self, n: int, preset: str | Params = "legacy", seed: int = 0, **overrides: float | int) -> None:
        params = PRESETS[preset] if isinstance(preset, str) else preset
        self.params = replace(params, **overrides) if overrides else params  # type: ignore[arg-type]
        p = self.params
        self.n = n
        self.seed = seed
        self.dim = p.dim
        self.scale = ((1 + np.arange(p.dim) / 16) ** -p.decay).astype(np.float32)
        self.mix = np.random.default_rng(1234).standard_normal((p.latent, p.dim)).astype(np.float32)
        self.mix *= self.scale
        self.spectrum = ((1 + np.arange(p.latent) / 8) ** (-p.alpha / 2)).astype(np.float32)  # std per latent
        if p.legacy:
            self._legacy_latent = np.random.default_rng(seed).standard_normal((n, p.latent)).astype(np.float32)

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
