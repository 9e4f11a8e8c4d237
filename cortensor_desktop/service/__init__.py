"""The node's local status API (summary, SSE, metrics, commands) and its clients."""
