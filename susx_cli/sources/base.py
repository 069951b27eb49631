"""The contract between `susx curate` and a source: a deterministic list of work units, then run them.

A source's user-facing options are an options dataclass whose fields carry their command-line flag and
help (``susx_cli.options.option(...)``) and whose ``__post_init__`` fills and checks them; the source class extends it
with behaviour, so ``XSource(**fields)`` and ``XSource.from_options(XOptions(...))`` validate alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.support import SupportWriter
from susx_cli.errors import SusxError, require_range


@dataclass(frozen=True)
class WorkUnit:
    """One image to produce: class, its position within the class (for ordering), a stable file key."""

    class_index: int
    order: int
    key: str
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Source(Protocol):
    name: str
    per_class: int | None  # images wanted per class (None: whatever the source has); short classes are named

    def options(self) -> dict[str, Any]:
        """Everything that changes the output; recorded in provenance and compared on re-runs."""

    def inputs(self) -> list[dict[str, Any]]:
        """Identities of files the source reads besides prompts.json."""

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        """The full, deterministic unit list, the same whatever the shard count."""

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        """Produce the given (not yet done) units into ``writer``; return a summary for the marker."""


class FromOptions:
    """``XSource.from_options(options)``: the source for a validated options object (its subclass)."""

    @classmethod
    def from_options(cls, options: Any) -> Any:
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.init})


# Ten times ImageNet's ~1,300 training images per class, far above the paper's largest support sets
# (hundreds per class): beyond it, a typo would only allocate the work list of billions of images.
MAX_PER_CLASS = 10_000


def require_per_class(source: str, per_class: int | None, what: str = "images per class") -> None:
    if per_class is None:
        raise SusxError(f"--source {source} needs --per-class M ({what})", hint="e.g. --per-class 16")
    require_range("--per-class", per_class, 1, MAX_PER_CLASS, hint="e.g. --per-class 16")
