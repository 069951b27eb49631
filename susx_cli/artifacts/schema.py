"""Records shared by every artifact format: which model made an artifact, and whether two may mix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.errors import SusxError


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a feature file; two files mix only if arch, weights and checkpoint agree."""

    arch: str
    pretrained: str | None
    checkpoint_sha256: str | None
    embed_dim: int
    logit_scale: float | None = None
    random_weights: bool = False
    logit_bias: float | None = None  # SigLIP-style models: learned additive bias on the logits

    def key(self) -> tuple:
        # A checkpoint file is the same weights by its content, however its path was spelled.
        return (self.arch, self.checkpoint_sha256 or self.pretrained, self.embed_dim)

    def describe(self) -> str:
        weights = "random weights" if self.random_weights else (self.pretrained or "checkpoint")
        return f"{self.arch} ({weights}, dim {self.embed_dim})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "pretrained": self.pretrained,
            "checkpoint_sha256": self.checkpoint_sha256,
            "embed_dim": self.embed_dim,
            "logit_scale": self.logit_scale,
            "random_weights": self.random_weights,
            # Only models that have one record it, so CLIP artifacts keep their exact attributes.
            **({"logit_bias": self.logit_bias} if self.logit_bias is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelIdentity:
        return cls(
            arch=d["arch"],
            pretrained=d.get("pretrained"),
            checkpoint_sha256=d.get("checkpoint_sha256"),
            embed_dim=int(d["embed_dim"]),
            logit_scale=d.get("logit_scale"),
            random_weights=bool(d.get("random_weights", False)),
            logit_bias=d.get("logit_bias"),  # absent in files of models without one, and in older files
        )


def check_same_model(a: ModelIdentity, b: ModelIdentity, what_a: str, what_b: str) -> None:
    if a.key() != b.key():
        raise SusxError(
            f"{what_a} was embedded with {a.describe()} but {what_b} with {b.describe()}",
            hint="embed every input with the same --model and --pretrained",
        )
