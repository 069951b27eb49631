"""prompts.json: the ordered class list and, per class, its photo prompt, template texts and CuPL sentences."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.classnames import validate_classes
from susx_cli.errors import SusxError

POOLS = ("template", "cupl", "combined")


@dataclass
class PromptEntry:
    index: int
    name: str
    raw_name: str
    photo: str
    template: list[str]
    cupl: list[str] = field(default_factory=list)

    def texts(self, pool: str) -> list[str]:
        """The texts of one pool. `combined` is ONE pool of templates and sentences (docs/METHOD.md)."""
        if pool == "template":
            return list(self.template)
        if pool == "cupl":
            return list(self.cupl)
        if pool == "combined":
            return list(self.template) + list(self.cupl)
        if pool == "photo":
            return [self.photo]
        raise SusxError(f"unknown prompt pool {pool!r}", hint=f"use one of {', '.join(POOLS)}")


@dataclass
class Prompts:
    entries: list[PromptEntry]
    default_pool: str
    dataset: str | None
    cleaning: dict[str, bool]
    provenance: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return [e.name for e in self.entries]

    def pool_texts(self, pool: str | None = None) -> list[list[str]]:
        """Texts per class for ``pool`` (default: the file's default pool); refuses an empty pool."""
        pool = pool or self.default_pool
        texts = [e.texts(pool) for e in self.entries]
        empty = [e.name for e, t in zip(self.entries, texts, strict=True) if not t]
        if empty:
            shown = ", ".join(repr(n) for n in empty[:3]) + (" ..." if len(empty) > 3 else "")
            raise SusxError(
                f"{self.path or 'prompts'}: pool '{pool}' has no texts for {len(empty)} class(es): {shown}",
                hint="add CuPL sentences with `susx prompts --cupl`, or choose --pool template",
            )
        return texts

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": common.PROMPTS,
            "schema_version": common.SCHEMA_VERSION,
            **self.provenance,
            "dataset": self.dataset,
            "cleaning": self.cleaning,
            "default_pool": self.default_pool,
            "classes": self.classes,
            "entries": [
                {
                    "index": e.index,
                    "name": e.name,
                    "raw_name": e.raw_name,
                    "photo": e.photo,
                    "template": e.template,
                    "cupl": e.cupl,
                }
                for e in self.entries
            ],
            **self.extra,
        }


def write_prompts(path: Path, prompts: Prompts) -> None:
    common.atomic_write_json(path, prompts.to_json())


def read_prompts(path: str | Path) -> Prompts:
    path = Path(path)
    data = common.read_json(path, "prompts file")
    if not isinstance(data, dict):
        common.check_header(path, None, None, common.PROMPTS)
    common.check_header(path, data.get("kind"), data.get("schema_version"), common.PROMPTS)
    try:
        entries = [
            PromptEntry(
                index=int(e["index"]),
                name=e["name"],
                raw_name=e.get("raw_name", e["name"]),
                photo=e["photo"],
                template=list(e.get("template", [])),
                cupl=list(e.get("cupl", [])),
            )
            for e in data["entries"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise SusxError(
            f"{path}: malformed prompts entry ({exc})", hint="re-create it with `susx prompts`"
        ) from exc
    if [e.index for e in entries] != list(range(len(entries))):
        raise SusxError(
            f"{path}: entry indices are not 0..C-1 in order", hint="re-create it with `susx prompts`"
        )
    # A hand-edited file must not bring back names that would merge two classes' folders.
    validate_classes([e.name for e in entries], str(path))
    known = {
        "kind",
        "schema_version",
        "tool",
        "created",
        "options",
        "inputs",
        "dataset",
        "cleaning",
        "default_pool",
        "classes",
        "entries",
    }
    return Prompts(
        entries=entries,
        default_pool=data.get("default_pool", "template"),
        dataset=data.get("dataset"),
        cleaning=data.get("cleaning", {}),
        provenance={k: data.get(k) for k in ("tool", "created", "options", "inputs")},
        extra={k: v for k, v in data.items() if k not in known},
        path=path,
    )


def existing_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance of the prompts output at ``path`` (see ``common.existing_json_provenance``)."""
    return common.existing_json_provenance(path, common.PROMPTS, read_prompts)
