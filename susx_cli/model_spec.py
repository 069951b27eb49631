"""One model syntax for every command: ``-m ARCH[:TAG]`` plus ``-p TAG`` (no torch import).

``ARCH`` is an open_clip architecture (``ViT-B-32``) or a Hugging Face hub id (``hf-hub:org/repo``, whose
``hf-hub:`` prefix is part of the id). The weights tag starts at the first colon after that: architecture
names and hub repos hold no colon, while a tag may (a checkpoint path), so ``ViT-B-32:openai`` is
(ViT-B-32, openai), ``hf-hub:org/repo`` has no tag and ``hf-hub:org/repo:v1`` is (hf-hub:org/repo, v1).
An empty tag (``ARCH:``) means random weights ('none').
"""

from __future__ import annotations

from susx_cli.errors import SusxError

HF_HUB = "hf-hub:"


def split_model(spec: str) -> tuple[str, str | None]:
    """``ARCH[:TAG]`` -> (ARCH, TAG or None when the spec names no weights)."""
    head = HF_HUB if spec.startswith(HF_HUB) else ""
    rest = spec[len(head) :]
    if ":" not in rest:
        return spec, None
    arch, tag = rest.split(":", 1)
    return head + arch, tag or "none"


def resolve_model(
    spec: str,
    pretrained: str | None,
    *,
    default: str | None,
    flags: tuple[str, str] = ("--model", "--pretrained"),
) -> tuple[str, str | None]:
    """(architecture, weights) from ``-m ARCH[:TAG]`` and ``-p TAG`` (None: not given, then ``default``).
    A tag in both that disagrees is refused: the user meant one of them."""
    arch, tag = split_model(spec)
    if tag is not None and pretrained is not None and pretrained != tag:
        raise SusxError(
            f"{flags[0]} {spec} names weights {tag!r} but {flags[1]} says {pretrained!r}",
            hint=f"give the weights once: {flags[0]} {arch}:{pretrained} or {flags[0]} {arch} {flags[1]} {pretrained}",
        )
    if tag is not None:
        return arch, tag
    return arch, default if pretrained is None else pretrained
