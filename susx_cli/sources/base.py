"""The contract between `susx curate` and a source: a deterministic list of work units, then run them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.support import SupportWriter


@dataclass(frozen=True)
class WorkUnit:
    """One image to produce: class, its position within the class (for ordering), a stable file key."""

    class_index: int
    order: int
    key: str
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Source(Protocol):
    name: str

    def options(self) -> dict[str, Any]:
        """Everything that changes the output; recorded in provenance and compared on re-runs."""

    def inputs(self) -> list[dict[str, Any]]:
        """Identities of files the source reads besides prompts.json."""

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        """The full, deterministic unit list, the same whatever the shard count."""

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        """Produce the given (not yet done) units into ``writer``; return a summary for the marker."""
