"""``nexus serve`` and ``nexus bench serve``."""

from __future__ import annotations


def serve() -> None:
    """Serve a model over an OpenAI-compatible HTTP API."""
    raise NotImplementedError("nexus serve is not built yet")


def bench_serve() -> None:
    """Load-test a running server."""
    raise NotImplementedError("nexus bench serve is not built yet")
