"""``nexus run``, ``nexus status`` and ``nexus runs list``."""

from __future__ import annotations


def run() -> None:
    """Run the whole flow into one workspace."""
    raise NotImplementedError("nexus run is not built yet")


def status() -> None:
    """Show which stages of a workspace are complete."""
    raise NotImplementedError("nexus status is not built yet")
