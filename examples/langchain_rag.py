"""A RAG retrieval step in LangChain with funnel as the retriever (no LLM needed to run it).

    python examples/langchain_rag.py                                  # in-process, on a small collection
    python examples/langchain_rag.py "How does NVIDIA make its chips?" --ticker NVDA
    python examples/langchain_rag.py --url http://127.0.0.1:8000 --api-key "$FUNNEL_API_KEY"   # funnel serve

In-process, the collection (``rag-example`` unless ``--collection`` says otherwise) is built on first
use from a sample of financial-qa-10k, or the tiny bundled corpus. Prints the retrieved chunks and
the prompt an LLM would get; ``--json`` prints the retrieved documents as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import os

from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate

from retriever.errors import CollectionNotFoundError, FunnelError
from retriever.integrations.langchain import FunnelRetriever

PROMPT = PromptTemplate.from_template(
    "Answer the question from the context only; cite the [doc_id] of what you use.\n\n"
    "Context:\n{context}\n\nQuestion: {question}\nAnswer:"
)


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.metadata['doc_id']}] {d.page_content}" for d in docs)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What did NVIDIA invent in 1999?")
    parser.add_argument("-k", type=int, default=4, help="chunks to retrieve")
    parser.add_argument("--ticker", help="only this company's filings (a metadata filter)")
    parser.add_argument("--url", help="a running funnel serve (else: in-process)")
    parser.add_argument("--api-key", default=os.environ.get("FUNNEL_API_KEY"))
    parser.add_argument("--collection", default="rag-example")
    parser.add_argument("--data-dir", help="where collections live (default: $FUNNEL_HOME or funnel's default)")
    parser.add_argument("--corpus", help="what to build a missing collection from (default: a financial-qa-10k "
                        "sample, else examples/data/tiny_finance.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the retrieved documents as JSON")
    args = parser.parse_args()
    try:
        retriever = make_retriever(args)
        try:
            docs = retriever.invoke(args.question)          # a LangChain retriever: invoke / ainvoke / batch
        finally:
            retriever.close()
    except FunnelError as exc:
        raise SystemExit(f"Error: {exc}") from None
    if args.json:
        print(json.dumps([{"page_content": d.page_content, "metadata": d.metadata} for d in docs]))
        return
    for rank, doc in enumerate(docs, 1):
        print(f"{rank}. {doc.metadata['score']:.3f}  [{doc.metadata['doc_id']}] {doc.page_content[:100]}")
    # In a chain: {"context": retriever | format_docs, "question": RunnablePassthrough()} | PROMPT | llm
    print("\n" + PROMPT.invoke({"context": format_docs(docs), "question": args.question}).to_string())


if __name__ == "__main__":
    main()
