"""Networking shared by funnel's HTTP clients (the Qdrant server connection, FunnelClient): a wall-clock deadline per request. Imports nothing of funnel."""
