"""The status API client's error: no running node answered (the CLI maps it to exit code 8)."""

from __future__ import annotations


class NodeNotRunningError(Exception):
    """No running node answered on its status API (exit code 8)."""
