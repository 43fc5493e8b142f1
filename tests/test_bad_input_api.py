"""Wrong arguments to the Python API (and ``funnel search``) on a real collection with the real model.

Every mistake is a :class:`BadInputError` (a :class:`FunnelError`) with a one-line message, raised
before anything is searched, and the collection answers a normal search afterwards exactly as before.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TOPIC_DOCS, write_jsonl

from cli import main
from retriever import Retriever
from retriever.errors import BadInputError, FunnelError, InvalidFilterError, InvalidPlanError
from retriever.ingest.indexer import index_corpus
from retriever.query.filters import Match, PayloadFilter
from retriever.query.plan import parse_plan
from retriever.store.edge.catalog import EdgeCatalog

QUERY = "Which instrument has four strings and is played with a bow?"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("bad-api")
    records = [{"_id": d, "title": t, "text": x, "metadata": {"n": i}} for i, (d, t, x) in enumerate(TOPIC_DOCS)]
    index_corpus(EdgeCatalog(root / "data"), "topics", [write_jsonl(root / "c.jsonl", records)], embedder)
    return root / "data"


@pytest.fixture(scope="module")
def retriever(data_dir):
    with Retriever.open("topics", data_dir, device="cpu") as r:
        yield r


@pytest.fixture(scope="module")
def baseline(retriever) -> list[str]:
    return [h.id for h in retriever.search(QUERY, k=3)]


def refused(call, error: type[FunnelError], fragment: str) -> str:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, BadInputError) and isinstance(info.value, FunnelError)
    assert message and "\n" not in message and fragment in message, message
    return message


def assert_still_answers(retriever: Retriever, baseline: list[str]) -> None:
    assert [h.id for h in retriever.search(QUERY, k=3)] == baseline


class NotAString:
    def __repr__(self) -> str:
        return "NotAString()"


@pytest.mark.parametrize(
    "query, fragment",
    [
        (123, "a query is a string, not int 123"),
        (None, "a query is a string, not NoneType None"),
        (b"bytes", "a query is a string, not bytes b'bytes'"),
        (["a", "b"], "a query is a string, not list ['a', 'b']"),
        (NotAString(), "a query is a string, not NotAString NotAString()"),
        ("   ", "empty query"),
    ],
)
def test_api_search_non_string_query(retriever, baseline, query, fragment):
    refused(lambda: retriever.search(query), BadInputError, fragment)
    assert_still_answers(retriever, baseline)


@pytest.mark.parametrize(
    "queries, fragment",
    [
        ("abc", "queries is a list of strings, not a single str: use search() for one query"),
        (b"abc", "not a single bytes"),
        (123, "queries is a list of strings, not int 123"),
        ({"a": 1}, "queries is a list of strings, not dict"),
        ((q for q in ["a"]), "queries is a list of strings, not generator"),
        ([], "empty query batch"),
        (["ok", 5], "a query is a string, not int 5"),
        (["ok", ""], "empty query"),
    ],
)
def test_api_search_batch_wrong_queries(retriever, baseline, queries, fragment):
    refused(lambda: retriever.search_batch(queries), BadInputError, fragment)
    assert_still_answers(retriever, baseline)


@pytest.mark.parametrize(
    "options, error, fragment",
    [
        ({"k": "10"}, BadInputError, "k is an integer, not str '10'"),
        ({"k": True}, BadInputError, "k is an integer, not bool True"),
        ({"k": 3.0}, BadInputError, "k is an integer, not float 3.0"),
        ({"k": None}, BadInputError, "k is an integer, not NoneType None"),
        ({"k": 0}, BadInputError, "invalid k 0: k must be between 1 and 1000"),
        ({"k": 1001}, BadInputError, "k must be between 1 and 1000"),
        ({"plan": 123}, InvalidPlanError, "a plan is a string like '64:400,128:200' or a FunnelPlan, not int 123"),
        ({"plan": ["64:100"]}, InvalidPlanError, "not list"),
        ({"plan": "64:100", "exact": True}, InvalidPlanError, "give a plan or exact=True, not both"),
        ({"exact": "yes"}, BadInputError, "exact is True or False, not str 'yes'"),
        ({"exact": 1}, BadInputError, "exact is True or False, not int 1"),
        ({"with_text": None}, BadInputError, "with_text is True or False, not NoneType None"),
        ({"with_text": "false"}, BadInputError, "with_text is True or False, not str 'false'"),
        ({"filter": ["doc_id"]}, InvalidFilterError, "a filter is a mapping of field: condition, not list ['doc_id']"),
        ({"filter": "doc_id=violin"}, InvalidFilterError, "a filter is a mapping of field: condition, not str"),
        ({"filter": {1: "x"}}, InvalidFilterError, "filter field names are strings, not int 1"),
        ({"filter": {"metadata.n": 2**70}}, InvalidFilterError, "integer 1180591620717411303424 is outside"),
        ({"filter": PayloadFilter((("metadata.n", Match(2**64)),))}, InvalidFilterError, "is outside the engine's"),
    ],
)
def test_api_wrong_search_options(retriever, baseline, options, error, fragment):
    refused(lambda: retriever.search(QUERY, **options), error, fragment)
    refused(lambda: retriever.search_batch([QUERY, "volcano"], **options), error, fragment)
    assert_still_answers(retriever, baseline)


@pytest.mark.parametrize("batch_size, fragment", [(0, "batch_size must be at least 1, not 0"),
                                                  ("64", "batch_size is an integer, not str '64'"),
                                                  (2.5, "batch_size is an integer, not float 2.5")])
def test_api_wrong_batch_size(retriever, baseline, batch_size, fragment):
    refused(lambda: retriever.search_batch([QUERY], batch_size=batch_size), BadInputError, fragment)
    assert_still_answers(retriever, baseline)


def test_api_right_types_still_work(retriever, baseline):
    """What the checks must not refuse: numpy integers, tuples, a FunnelPlan, an empty plan with exact."""
    assert [h.id for h in retriever.search(QUERY, k=np.int64(3))] == baseline
    assert [[h.id for h in hits] for hits in retriever.search_batch((QUERY,), k=3)] == [baseline]
    plan = parse_plan("64:8,128:6", retriever.collection.spec.dims, 3)
    assert [h.id for h in retriever.search(QUERY, k=3, plan=plan)] == [h.id for h in retriever.search(QUERY, k=3,
                                                                                                         plan=str(plan))]
    exact = retriever.search(QUERY, k=3, exact=True, plan="  ")
    assert exact[0].id == baseline[0]
    assert [h.doc_id for h in retriever.search(QUERY, k=12, filter={"metadata.n": [2**63 - 1, 7]})] == ["violin"]


@pytest.mark.parametrize(
    "args, kwargs, fragment",
    [
        ((123,), {}, "invalid collection name 123"),
        ((None,), {}, "invalid collection name None"),
        (("topics",), {"data_dir": 123}, "data_dir is a path (str or os.PathLike), not int 123"),
        (("topics",), {"model": 5}, "model is a non-empty string or None, not int 5"),
        (("topics",), {"model": ""}, "model is a non-empty string or None, not str ''"),
        (("topics",), {"device": ["cpu"]}, "device is a non-empty string or None, not list ['cpu']"),
    ],
)
def test_api_open_wrong_arguments(retriever, baseline, args, kwargs, fragment):
    refused(lambda: Retriever.open(*args, **kwargs), BadInputError, fragment)
    assert_still_answers(retriever, baseline)


def test_cli_plan_with_exact_refused(data_dir):
    """``funnel search --plan … --exact``: one line and exit 1, instead of silently dropping the plan."""
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "search", QUERY, "-c", "topics",
                                       "--plan", "64:100", "--exact"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: give --plan or --exact, not both: an exact search has no funnel plan"]
    assert result.stdout == ""
