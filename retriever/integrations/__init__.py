"""Adapters that make funnel search a retriever of RAG frameworks, in-process or over HTTP.

Each adapter is its own module and needs its framework (an optional extra), so import the one you
use: ``retriever.integrations.langchain`` (``pip install 'funnel-retriever[langchain]'``) or
``retriever.integrations.llamaindex`` (``pip install 'funnel-retriever[llamaindex]'``). Both search a
:class:`~retriever.Retriever` (in-process) or a :class:`~retriever.service.client.FunnelClient` (a running
``funnel serve``), through :mod:`retriever.integrations.source`.
"""
