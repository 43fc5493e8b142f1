"""A RAG retrieval step in LlamaIndex with funnel as the retriever (no LLM needed to run it).

    python examples/llamaindex_rag.py                                 # in-process, on a small collection
    python examples/llamaindex_rag.py "How does NVIDIA make its chips?" --ticker NVDA
    python examples/llamaindex_rag.py --url http://127.0.0.1:8000 --api-key "$FUNNEL_API_KEY"  # funnel serve

In-process, the collection (``rag-example`` unless ``--collection`` says otherwise) is built on first
use from a sample of financial-qa-10k, or the tiny bundled corpus. Retrieves, drops chunks below a
score cutoff (a LlamaIndex node postprocessor), and prints the context an LLM would get; ``--json``
prints the retrieved nodes as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import os

from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from retriever.errors import CollectionNotFoundError, FunnelError
from retriever.integrations.llamaindex import FunnelRetriever


def make_retriever(args: argparse.Namespace) -> FunnelRetriever:
    options = {"k": args.k, "filter": {"metadata.ticker": args.ticker} if args.ticker else None}
    if args.url:
        return FunnelRetriever.from_url(args.url, api_key=args.api_key, **options)
    try:
        return FunnelRetriever.from_collection(args.collection, data_dir=args.data_dir, **options)
    except CollectionNotFoundError:
        from rag_collection import build

        build(args.collection, args.data_dir, args.corpus)
        return FunnelRetriever.from_collection(args.collection, data_dir=args.data_dir, **options)


def context(nodes: list[NodeWithScore]) -> str:
    """What an LLM sees: each chunk with its title and document metadata (funnel's ids left out)."""
    return "\n\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What did NVIDIA invent in 1999?")
    parser.add_argument("-k", type=int, default=4, help="chunks to retrieve")
    parser.add_argument("--ticker", help="only this company's filings (a metadata filter)")
    parser.add_argument("--cutoff", type=float, default=0.0,
                        help="drop chunks scoring below this (the scale is the search mode's: a cosine for dense, "
                        "~0-2.4 under the default hybrid DBSF; see docs/search.md, Scores)")
    parser.add_argument("--url", help="a running funnel serve (else: in-process)")
    parser.add_argument("--api-key", default=os.environ.get("FUNNEL_API_KEY"))
    parser.add_argument("--collection", default="rag-example")
    parser.add_argument("--data-dir", help="where collections live (default: $FUNNEL_HOME or funnel's default)")
    parser.add_argument("--corpus", help="what to build a missing collection from (default: a financial-qa-10k "
                        "sample, else examples/data/tiny_finance.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the retrieved nodes as JSON")
    args = parser.parse_args()
    try:
        retriever = make_retriever(args)
        try:
            nodes = retriever.retrieve(args.question)       # a LlamaIndex retriever: retrieve / aretrieve
        finally:
            retriever.close()
    except FunnelError as exc:
        raise SystemExit(f"Error: {exc}") from None
    nodes = SimilarityPostprocessor(similarity_cutoff=args.cutoff).postprocess_nodes(
        nodes, query_bundle=QueryBundle(args.question))
    if args.json:
        print(json.dumps([{"id": n.node.node_id, "score": n.score, "text": n.node.get_content(),
                           "metadata": n.node.metadata, "ref_doc_id": n.node.ref_doc_id} for n in nodes]))
        return
    for rank, n in enumerate(nodes, 1):
        print(f"{rank}. {n.score:.3f}  [{n.node.ref_doc_id}] {n.node.get_content()[:100]}")
    print(f"\nContext for the LLM:\n{context(nodes)}\n\nQuestion: {args.question}")


if __name__ == "__main__":
    main()
