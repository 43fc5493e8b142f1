"""Moved: the HTTP client is :mod:`retriever.service.client`; ``from retriever.client import FunnelClient`` keeps working."""

from retriever.service.client import DEFAULT_TIMEOUT_S, FeedbackReceipt, FunnelClient, Health

__all__ = ["DEFAULT_TIMEOUT_S", "FeedbackReceipt", "FunnelClient", "Health"]
