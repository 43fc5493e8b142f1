"""``funnel pairs generate``: training pairs (question, chunk) from a raw corpus.

Methods: ``llm`` asks an OpenAI-compatible server for questions (see :mod:`tuner.llm_client`),
``offline`` needs no server: ``ict`` (model-free pseudo-queries, :mod:`tuner.pseudo_queries`) or
``smollm2`` (a small instruct model in-process, :mod:`tuner.local_llm`). Model answers are parsed and
filtered by :mod:`tuner.question_filter`; every method's questions then go through the round-trip
filter (:mod:`tuner.round_trip`) when one is given. Chunks already in the output are skipped (resume),
and ``limit`` picks a seeded random sample of chunks, the same sample on every run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.errors import PairsError
from retriever.ingest.chunking import Chunk
from tuner.llm_client import ChatClient, LLMSettings, check_url
from tuner.pair_file import Key, PairWriter, check_output, record, resume_state
from tuner.prompt import PromptTemplate
from tuner.pseudo_queries import ict_pairs
from tuner.question_filter import QuestionFilter, parse_questions
from tuner.round_trip import RoundTrip

METHODS = ("llm", "offline")
OFFLINE_METHODS = ("ict", "smollm2")
DEFAULT_OFFLINE = "smollm2"  # measured better than ict (benchmarks/results/pairs_generate.md)
LOCAL_BATCH = 8


@dataclass(frozen=True)
class GenerateConfig:
    """How to generate: method, questions per chunk, sample, and the LLM's settings."""

    method: str = "offline"
    offline: str = DEFAULT_OFFLINE
    questions_per_chunk: int = 3
    limit: int | None = None
    seed: int = 42
    concurrency: int = 8
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    llm: LLMSettings | None = None
    device: str | None = None

    def check(self) -> None:
        if self.method not in METHODS:
            raise PairsError(f"unknown --method {self.method!r}: use {' or '.join(METHODS)}")
        if self.method == "llm" and (self.llm is None or not self.llm.url or not self.llm.model):
            raise PairsError("--method llm needs --llm-url and --llm-model")
        if self.method == "llm" and self.llm is not None:
            check_url(self.llm.url)  # before the first request, the output file and the tokenizer
        if self.offline not in OFFLINE_METHODS:
            raise PairsError(f"unknown --offline {self.offline!r}: use {' or '.join(OFFLINE_METHODS)}")
        if not 1 <= self.questions_per_chunk <= 20:
            raise PairsError(f"invalid --questions-per-chunk {self.questions_per_chunk}: use 1..20")
        if self.limit is not None and self.limit < 1:
            raise PairsError(f"invalid --limit {self.limit}: use 1 or more chunks")
        if not 1 <= self.concurrency <= 256:
            raise PairsError(f"invalid --concurrency {self.concurrency}: use 1..256")

    @property
    def label(self) -> str:
        return "llm" if self.method == "llm" else f"offline/{self.offline}"


@dataclass
class GenerateReport:
    """What a run did: chunks seen, skipped (already done), generated, left without a question; pairs."""

    method: str
    out: str
    chunks: int = 0
    resumed: int = 0
    generated: int = 0
    no_questions: int = 0
    pairs: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return (self.generated + self.no_questions) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "chunks_per_second": self.chunks_per_second}


def sample_chunks(chunks: Iterable[Chunk], limit: int | None, seed: int) -> list[Chunk] | Iterable[Chunk]:
    """All chunks, or a seeded uniform sample of ``limit`` of them in corpus order (reservoir sampling)."""
    if limit is None:
        return chunks
    rng = random.Random(seed)
    reservoir: list[tuple[int, Chunk]] = []
    for i, chunk in enumerate(chunks):
        if i < limit:
            reservoir.append((i, chunk))
        else:
            j = rng.randint(0, i)
            if j < limit:
                reservoir[j] = (i, chunk)
    return [c for _, c in sorted(reservoir, key=lambda item: item[0])]


def chunk_seed(seed: int, chunk: Chunk) -> int:
    """A per-chunk seed: the same chunk gets the same sampling on every run."""
    return (seed * 1_000_003 + zlib.crc32(chunk.id.encode())) % (2**31)


class _Run:
    """Shared state of one run: writer, filter, report, progress."""

    def __init__(self, writer: PairWriter, config: GenerateConfig, report: GenerateReport,
                 progress: Callable[[GenerateReport], None] | None, round_trip: RoundTrip | None) -> None:
        self.writer, self.config, self.report, self.progress = writer, config, report, progress
        self.filter = QuestionFilter()
        self.round_trip = round_trip
        self.round_trip_dropped = 0

    def questions(self, chunk: Chunk, answer: str) -> None:
        kept = self.filter.keep(parse_questions(answer), chunk.text, limit=self.config.questions_per_chunk)
        self.pairs(chunk, [(q, chunk.text) for q in kept])

    def pairs(self, chunk: Chunk, pairs: list[tuple[str, str]]) -> None:
        if pairs and self.round_trip is not None:
            kept = self.round_trip.keep([q for q, _ in pairs], chunk.text)
            self.round_trip_dropped += kept.count(False)
            pairs = [pair for pair, ok in zip(pairs, kept) if ok]
        if not pairs:
            self.report.no_questions += 1
        else:
            self.report.generated += 1
            self.report.pairs += self.writer.write(record(a, p, chunk.doc_id, chunk.index) for a, p in pairs)
        self.report.dropped = dict(self.filter.dropped)
        if self.round_trip_dropped:
            self.report.dropped["round_trip"] = self.round_trip_dropped
        if self.progress:
            self.progress(self.report)


def _todo(chunks: Iterable[Chunk], done: set[Key], report: GenerateReport) -> Iterator[Chunk]:
    for chunk in chunks:
        report.chunks += 1
        if (chunk.doc_id, chunk.index) in done:
            report.resumed += 1
            continue
        yield chunk


def generate_pairs(chunks: Iterable[Chunk], out: Path, config: GenerateConfig,
                   progress: Callable[[GenerateReport], None] | None = None,
                   round_trip: RoundTrip | None = None) -> GenerateReport:
    """Write pairs for every chunk not yet in ``out``; return what was done.

    With ``round_trip`` (built on the same corpus's chunks), a question is written only if the base
    model ranks its chunk in the top k (the dropped ones are counted as ``round_trip``).

    On an :class:`~retriever.errors.LLMError` (server unreachable after the retries) the pairs
    written so far stay in ``out`` and the error is raised; a re-run resumes.
    """
    config.check()
    out = check_output(out)
    done = resume_state(out)
    report = GenerateReport(method=config.label, out=str(out))
    start = time.perf_counter()
    todo = _todo(sample_chunks(chunks, config.limit, config.seed), done, report)
    with PairWriter(out) as writer:
        run = _Run(writer, config, report, progress, round_trip)
        try:
            if config.method == "llm":
                asyncio.run(_llm(todo, run))
            elif config.offline == "smollm2":
                _local(todo, run)
            else:
                _ict(todo, run)
        finally:
            report.seconds = time.perf_counter() - start
    return report


def _ict(todo: Iterable[Chunk], run: _Run) -> None:
    for chunk in todo:
        rng = random.Random(chunk_seed(run.config.seed, chunk))
        run.pairs(chunk, ict_pairs(chunk.text, run.config.questions_per_chunk, rng))


def _local(todo: Iterable[Chunk], run: _Run) -> None:
    from tuner.local_llm import LocalChatModel

    model = LocalChatModel(device=run.config.device, seed=run.config.seed)
    n = run.config.questions_per_chunk
    chunks = iter(todo)
    while batch := list(itertools.islice(chunks, LOCAL_BATCH)):
        answers = model.complete_batch([run.config.prompt.messages(c.text, n, c.title) for c in batch])
        for c, answer in zip(batch, answers):
            run.questions(c, answer)


async def _llm(todo: Iterator[Chunk], run: _Run) -> None:
    """``concurrency`` workers take chunks from one iterator; the first LLMError stops new work."""
    assert run.config.llm is not None
    errors: list[BaseException] = []
    n = run.config.questions_per_chunk
    async with ChatClient(run.config.llm, rng=random.Random(run.config.seed)) as client:

        async def worker() -> None:
            while not errors:
                chunk = next(todo, None)
                if chunk is None:
                    return
                try:
                    answer = await client.complete(run.config.prompt.messages(chunk.text, n, chunk.title),
                                                   seed=chunk_seed(run.config.seed, chunk))
                except Exception as exc:  # noqa: BLE001 - kept, re-raised after the others finish
                    errors.append(exc)
                    return
                run.questions(chunk, answer)

        try:
            await asyncio.gather(*(worker() for _ in range(run.config.concurrency)))
        finally:
            run.report.retries = client.retried
    if errors:
        raise errors[0]
