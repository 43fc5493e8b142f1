"""Request and response bodies of the HTTP service, with their bounds (they make the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from retriever.query.filters import (
    INT_MAX,
    INT_MIN,
    MAX_ANY_VALUES,
    MAX_CONDITIONS,
    MAX_VALUE_CHARS,
    RANGE_OPS,
)
from retriever.query.validation import MAX_QUERY_CHARS
from retriever.store.limits import MAX_ID_CHARS, MAX_TITLE_CHARS

MAX_HTTP_K = 100
MAX_HTTP_QUERIES = 32
MAX_PLAN_CHARS = 200
MAX_DOCUMENT_CHARS = 4 * 1024 * 1024  # a document's text (the body limit, 256 KiB by default, usually binds first)
MAX_HTTP_PAGE = 1000  # documents one GET …/documents returns at most
MAX_HTTP_DELETE = 1000  # document ids one POST …/documents/delete takes at most

Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (lone surrogate code points)") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


_NUMBER = {"type": "number"}
_INT64 = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": MAX_CONDITIONS,
    "description": "payload conditions, all must hold: field → value (exact match), list (any of) or "
    "range {gt, gte, lt, lte}. Fields: doc_id and title (strings), chunk (integer), metadata.<key> "
    "(string, integer, lists of strings or integers, ranges); others, integers outside the signed "
    "64-bit range, and booleans (not supported by the embedded engine yet), are refused (400).",
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": MAX_VALUE_CHARS},
            _INT64,
            {"type": "array", "items": {"type": "string", "maxLength": MAX_VALUE_CHARS}, "minItems": 1,
             "maxItems": MAX_ANY_VALUES},
            {"type": "array", "items": _INT64, "minItems": 1, "maxItems": MAX_ANY_VALUES},
            {"type": "object", "properties": {op: _NUMBER for op in RANGE_OPS}, "additionalProperties": False,
             "minProperties": 1},
        ]
    },
    "examples": [{"metadata.topic": "finance", "chunk": {"lte": 1}}, {"doc_id": ["a", "b"]}],
}
# Checked by retriever.query.filters.parse_filter (400 invalid_filter with a precise message), documented here.
FilterSpec = Annotated[dict[str, Any], WithJsonSchema(FILTER_SCHEMA)]


class SearchRequest(BaseModel):
    """One query (``query``) or a batch (``queries``), and how to search them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "What did NVIDIA invent in 1999?", "k": 5},
                {"queries": ["q1", "q2"], "k": 3, "plan": "64:200,128:100", "with_text": False,
                 "filter": {"metadata.topic": "finance", "chunk": {"lte": 1}}},
                {"query": "NVDA revenue 2023", "k": 5, "mode": "hybrid", "fusion": "rrf"},
            ]
        },
    )

    query: Query | None = Field(default=None, description="one question (give this or `queries`)")
    queries: Annotated[list[Query], Field(min_length=1, max_length=MAX_HTTP_QUERIES)] | None = Field(
        default=None, description=f"a batch of up to {MAX_HTTP_QUERIES} questions"
    )
    # strict: a JSON integer, not true, "10" or 10.0 (the same rule as the Python API)
    k: int = Field(default=10, ge=1, le=MAX_HTTP_K, strict=True, description="hits per query")
    plan: str | None = Field(
        default=None, max_length=MAX_PLAN_CHARS,
        description="funnel plan DIM:LIMIT,… e.g. 64:400,128:200,256:100 (default: the collection's default)",
    )
    exact: bool = Field(default=False, strict=True, description="exact search at the top dim instead of the funnel "
                                                   "(not with `plan`: both together are refused, 400)")
    adaptive: bool | None = Field(
        default=None, strict=True,
        description="true: a cheap first pass, the full plan only for queries whose top k is not settled; false: "
        "the plan for every query (default: adaptive when the collection's calibration measured it faster; "
        "true with `plan` or `exact` is refused, 400)",
    )
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        default=None,
        description="dense: the funnel; lexical: BM25 alone; hybrid: both, fused as `fusion` says (lexical and "
        "hybrid need a collection indexed with --lexical bm25, else 400) (default: the collection's: dense without a "
        "lexical index; with one, hybrid unless its calibration chose dense; hybrid when `fusion` is given; dense "
        "with `plan`, `exact` or `adaptive`)",
    )
    fusion: Literal["union", "rrf", "dbsf"] | None = Field(
        default=None,
        description="how a hybrid search combines BM25 and the funnel: union (BM25's best join the funnel's "
        "shortlist, the re-score decides), rrf (reciprocal rank fusion), dbsf (distribution-based score fusion) "
        "(default: the collection's calibrated fusion, else the documented default; with mode dense or lexical "
        "refused, 400)",
    )
    filter: FilterSpec | None = Field(default=None, description="payload filter (see the schema)")
    with_text: bool = Field(default=True, strict=True, description="return each chunk's text")
    collection: str | None = Field(
        default=None, max_length=64,
        description="the collection to search: needed when the server serves several (else 400); with one, "
        "optional (it must name that one, else 404); with POST /collections/{name}/search, optional (it must be "
        "`name`, else 400)",
    )

    @model_validator(mode="after")
    def _one_of_query_or_queries(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of `query` (a string) or `queries` (a list of strings)")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])



class HitModel(BaseModel):
    """One chunk with its score."""

    id: str = Field(description="the chunk's point id (a hash of doc_id and chunk: an integer in decimal, or a UUID in collections made before integer ids)")
    doc_id: str
    chunk: int = Field(description="the chunk's index in its document")
    score: float
    text: str | None = Field(description="the chunk's text (null with with_text=false)")
    title: str
    metadata: dict[str, Any]


class DepthModel(BaseModel):
    """How deep one query went."""

    passes: int = Field(description="1, or 2 when adaptive search widened the query to the full plan")
    stages: int = Field(description="funnel stages run, over all passes")
    candidates: int = Field(description="points scored, over all stages: each stage's shortlist (the whole "
                                        "collection for an exact search)")


class QueryResult(BaseModel):
    query: str
    hits: list[HitModel]
    depth: DepthModel


_CALIBRATION_WARNING = ("set when the collection's calibration record is damaged: one line naming it, what is "
                        "wrong and that searches use the uncalibrated defaults instead of its damaged parts; "
                        "null otherwise")


class SearchResponse(BaseModel):
    """One result per query, in request order."""

    collection: str
    plan: str | None = Field(description="the funnel plan that ran (adaptive: the plan of widened queries; hybrid: "
                                         "the dense side's), 'exact', or null for a lexical search")
    adaptive: bool = Field(description="whether the search ran adaptively")
    mode: Literal["dense", "lexical", "hybrid"] = Field(description="the search mode that ran")
    fusion: str | None = Field(description="hybrid: the fusion that ran with its parameters, e.g. "
                                           "'rrf(k=60,dense=100x1,lexical=100x1)'; null otherwise")
    k: int
    results: list[QueryResult]
    took_ms: float = Field(description="server time for the request, queueing included")
    calibration_warning: str | None = Field(default=None, description=_CALIBRATION_WARNING)


class CollectionResponse(BaseModel):
    """One served collection: its schema, point count and search defaults."""

    name: str
    points: int
    dims: list[int]
    model: str
    model_fingerprint: str
    model_dim: int
    chunk_size: int
    chunk_overlap: int
    engine: str
    default_plan: str = Field(description="the default funnel plan for k=10 (calibrated if funnel calibrate ran)")
    adaptive_default: bool = Field(description="whether searches run adaptively by default (calibration measured "
                                               "adaptive search faster at the recall target)")
    lexical: str | None = Field(description="the lexical index ('bm25'), or null: no lexical or hybrid search")
    lexical_analyzer: str | None = Field(description="how the lexical index splits text (english or plain), or null")
    default_mode: Literal["dense", "lexical", "hybrid"] = Field(description="the mode of a search that gives none")
    default_fusion: str | None = Field(description="the fusion of a hybrid search that gives none (null: no "
                                                   "lexical index)")
    disk_bytes: int | None = Field(description="bytes the collection takes on disk; null on a Qdrant server, "
                                   "which does not report one collection's disk use")
    calibration_warning: str | None = Field(default=None, description=_CALIBRATION_WARNING)
    status: Literal["ready", "loading", "failed"] = Field(description="whether its model is loaded")
    calibration: dict[str, Any] | None = Field(
        description="the calibration record funnel calibrate saved (as stored), or null: never calibrated")


class BatchingInfo(BaseModel):
    max_batch: int
    max_wait_ms: float
    batches: int
    queries: int
    largest_batch: int


class CollectionHealth(BaseModel):
    name: str
    status: Literal["ready", "loading", "failed"]
    model: str
    message: str | None = Field(default=None, description="why the model failed to load (status failed)")


class HealthResponse(BaseModel):
    status: Literal["ready", "loading", "failed"] = Field(
        description="ready when every served collection is; failed when one failed to load; else loading")
    collection: str | None = Field(description="the served collection; null when the server serves several")
    model: str | None = Field(description="its model; null when the server serves several")
    message: str | None = None
    collections: list[CollectionHealth] = Field(description="every served collection, in the order served")
    batching: BatchingInfo


class CollectionSummary(BaseModel):
    name: str
    points: int
    model: str
    dims: list[int]
    lexical: str | None = Field(description="the lexical index ('bm25'), or null")
    status: Literal["ready", "loading", "failed"] = Field(description="whether its model is loaded")


class CollectionListResponse(BaseModel):
    """The collections this server serves, in the order served, with their point counts."""

    collections: list[CollectionSummary]


class FeedbackRequest(BaseModel):
    """A query and the chunk that should have been found for it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "What did NVIDIA invent in 1999?", "doc_id": "dabfa70fea999",
                                         "chunk": 0, "note": "expected first"}]},
    )

    query: Query
    doc_id: Text = Field(min_length=1, max_length=512, description="the document that should have been found")
    chunk: int = Field(default=0, ge=0, le=100_000, strict=True, description="its chunk index")
    note: Text | None = Field(default=None, max_length=1000)
    collection: str | None = Field(default=None, max_length=64,
                                   description="the collection (needed when the server serves several)")


class FeedbackResponse(BaseModel):
    recorded: bool
    time: str
    chunk_id: str


class ErrorDetail(BaseModel):
    type: str = Field(description="a stable code: bad_input, invalid_plan, invalid_filter, validation, "
                                  "malformed_json, unauthorized, collection_not_found, not_ready, …")
    message: str


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"type": ..., "message": ...}}``."""

    error: ErrorDetail


class DocumentRequest(BaseModel):
    """A document's text, and optionally its title and metadata: stored under the id in the path."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Green tea is brewed at 80 °C for two minutes.", "title": "Tea",
                                         "metadata": {"topic": "drinks", "year": 2024}}]},
    )

    text: Text = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS,
                       description="the whole document: chunked and embedded as `funnel index` does")
    title: Text | None = Field(default=None, max_length=MAX_TITLE_CHARS, description="stored with every chunk")
    metadata: dict[str, Any] | None = Field(
        default=None, description="stored with every chunk, filterable as metadata.<key> (JSON, at most 64 KiB, "
        "32 levels deep, integers in the signed 64-bit range; else 400)")


class DocumentWriteResponse(BaseModel):
    """What ``PUT`` did: ``created``, ``replaced`` (the old chunks are gone) or ``unchanged`` (nothing written)."""

    collection: str
    doc_id: str
    chunks: int = Field(description="the document's chunks now")
    status: Literal["created", "replaced", "unchanged"]
    took_ms: float


class DocumentDeleteResponse(BaseModel):
    collection: str
    doc_id: str
    chunks: int = Field(description="the chunks deleted")


class DocumentSummaryModel(BaseModel):
    doc_id: str = Field(max_length=MAX_ID_CHARS)
    chunks: int
    title: str


class DocumentListResponse(BaseModel):
    """One page of the collection's documents, in id order."""

    collection: str
    total: int = Field(description="documents in the collection")
    offset: int
    limit: int
    documents: list[DocumentSummaryModel]


class DocumentsDeleteRequest(BaseModel):
    """Which documents to delete: ``doc_ids`` (a list) or ``filter`` (a payload filter), exactly one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"doc_ids": ["misc/tea.md", "misc/coffee.md"]},
                                        {"doc_ids": ["a", "gone"], "missing_ok": True},
                                        {"filter": {"metadata.source": "notes/tea.md"}}]},
    )

    doc_ids: Annotated[list[Annotated[Text, Field(min_length=1, max_length=MAX_ID_CHARS)]],
                       Field(min_length=1, max_length=MAX_HTTP_DELETE)] | None = Field(
        default=None, description=f"1 to {MAX_HTTP_DELETE:,} document ids (a repeated id counts once). All or "
        "nothing: when one is not stored, 404 document_not_found and nothing is deleted (unless `missing_ok`)")
    missing_ok: bool = Field(default=False, strict=True, description="with `doc_ids`: delete the stored ones and "
                             "list the others in `missing` instead of refusing")
    filter: FilterSpec | None = Field(
        default=None, description="delete every document one of whose chunks matches (the syntax of /search's "
        "filter; not empty). None matching is not an error (`deleted` is empty); more than 10,000 is refused, 400")

    @model_validator(mode="after")
    def _ids_or_filter(self) -> DocumentsDeleteRequest:
        if (self.doc_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of `doc_ids` (a list of document ids) or `filter` (a payload filter)")
        if self.missing_ok and self.doc_ids is None:
            raise ValueError("`missing_ok` goes with `doc_ids` (a filter never misses)")
        return self


class DocumentsDeleteResponse(BaseModel):
    """What a delete removed: the chunks each deleted document had, and the ids that were not stored."""

    collection: str
    deleted: dict[str, int] = Field(description="document id → the chunks deleted")
    missing: list[str] = Field(description="with `missing_ok`: the ids given that were not stored (else empty)")
    documents: int = Field(description="documents deleted")
    chunks: int = Field(description="chunks (points) deleted")
    took_ms: float
