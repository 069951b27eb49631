"""The image-text encoder every stage and source runs: the ``Encoder`` interface and ``load_encoder``.

An ``Encoder`` (open_clip today: ``adapters/openclip.py``) turns texts and preprocessed image batches
into L2-normalised float32 numpy rows and carries the ``ModelIdentity`` written into every artifact.
Nothing outside a backend calls a model's ``encode_image`` / ``encode_text``; ``embedding.py`` runs an
encoder over image sets and class prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from susx_cli.artifacts import common
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.progress import warn

TEXT_BATCH = 256
# CLIP embeds in fp32 unless told otherwise: ``--precision auto`` means fp32 for every CLIP consumer.
CLIP_AUTO_PRECISION = "fp32"


class Encoder(Protocol):
    """A loaded image-text model. Both encoders return (N, D) float32 numpy rows of unit L2 norm."""

    identity: ModelIdentity
    preprocess: Any  # PIL image -> (3, H, W) tensor; picklable, so DataLoader workers can run it
    device: str
    input_config: dict[str, Any]  # size (H, W), mean, std of ``preprocess``: what augmented views use

    def encode_texts(self, texts: list[str], batch_size: int = TEXT_BATCH) -> Any: ...

    def encode_images(self, pixels: Any, normalize: bool = True) -> Any: ...


def clip_precision(precision: str) -> str:
    """The precision name a CLIP run records: ``auto`` is fp32 (checked against the device at load time)."""
    from susx_cli import runtime

    runtime.check_precision(precision)
    return CLIP_AUTO_PRECISION if precision == "auto" else precision


def recorded_pretrained(pretrained: str | None) -> str:
    """The weights as options record them: 'none', a tag, or a checkpoint file's resolved path."""
    if not pretrained:
        return "none"
    path = Path(pretrained).expanduser()
    return common.resolved_path(path) if path.is_file() else pretrained


def load_encoder(
    model: str,
    pretrained: str | None,
    *,
    device: str | None = None,
    precision: str = "fp32",
    random_note: str | None = None,
) -> Encoder:
    """Load the encoder on ``device`` (resolved by ``susx_cli.runtime``); warn when its weights are random."""
    from susx_cli.adapters.openclip import load_model

    pretrained = None if pretrained is None else recorded_pretrained(pretrained)  # a checkpoint: one spelling
    encoder = load_model(model, pretrained, device=device, precision=clip_precision(precision))
    if encoder.identity.random_weights:
        warn(f"{model} has RANDOM weights: {random_note or 'results only show that the pipeline runs'}")
    return encoder
