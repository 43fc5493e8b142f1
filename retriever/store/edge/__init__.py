"""Qdrant Edge in-process: the embedded engine, one shard directory per collection."""
