"""open_clip behind one encoder: load a model (tag, hf-hub id, local checkpoint or random weights) and
run it. This is the only module that calls the model's ``encode_image`` / ``encode_text``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.artifacts.common import sha256_file
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.errors import SusxError

# Small configs shipped with susx, registered on first use: random-weight models for the offline demo
# and the tests (no download), with the same code path as real models.
# susx-tiny-sigmoid is SigLIP-style (logit bias, non-causal text tower pooled at the last token); its name
# avoids "siglip", for which open_clip fetches a SentencePiece vocabulary: it keeps the offline CLIP tokenizer.
BUILTIN_CONFIGS = {"susx-tiny-vit": "susx-tiny-vit.json", "susx-tiny-sigmoid": "susx-tiny-sigmoid.json"}
RANDOM = ("", "none", "random")
RANDOM_WEIGHTS_SEED = 0
TEXT_BATCH = 256


@dataclass
class OpenClipEncoder:
    """A loaded open_clip model; implements ``susx_cli.encoder.Encoder``.

    Both encoders return L2-normalised float32 numpy arrays, computed without gradients.
    """

    model: Any  # open_clip.CLIP
    preprocess: Any  # torchvision transform: PIL image -> (3, H, W) tensor
    tokenizer: Any
    identity: ModelIdentity
    device: str
    dtype: Any
    input_config: dict[str, Any]  # size (H, W), mean, std: the model's own image preprocessing

    def encode_texts(self, texts: list[str], batch_size: int = TEXT_BATCH):
        """(N, D) float32, one unit row per text, in forward passes of ``batch_size`` texts."""
        import numpy as np
        import torch

        out = [np.zeros((0, self.identity.embed_dim), dtype=np.float32)]
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
                emb = self.model.encode_text(tokens).float()
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out)

    def encode_images(self, pixels, normalize: bool = True):
        """(B, D) float32 rows for one batch of preprocessed images, a (B, 3, H, W) tensor: unit rows, or
        the model's raw embeddings with ``normalize=False`` (to average several views before normalising)."""
        import torch

        with torch.no_grad():
            emb = self.model.encode_image(pixels.to(self.device, self.dtype)).float()
            return (torch.nn.functional.normalize(emb, dim=-1) if normalize else emb).cpu().numpy()


def _input_config(model) -> dict[str, Any]:
    """The image size (H, W), mean and std the model's preprocessing uses (open_clip's defaults if unset)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    return {
        "size": tuple(int(s) for s in size),
        "mean": tuple(float(m) for m in cfg.get("mean", OPENAI_DATASET_MEAN)),
        "std": tuple(float(s) for s in cfg.get("std", OPENAI_DATASET_STD)),
    }


def _register_builtin_configs() -> None:
    import open_clip
    from open_clip.factory import _MODEL_CONFIGS

    data = Path(__file__).resolve().parent.parent / "data"
    for name, filename in BUILTIN_CONFIGS.items():
        if name not in _MODEL_CONFIGS:
            open_clip.add_model_config(data / filename)


def load_model(
    arch: str, pretrained: str | None, *, device: str | None = None, precision: str = "fp32"
) -> OpenClipEncoder:
    """Load ``arch`` with ``pretrained`` (a tag such as 'openai', a checkpoint path, or none for random).

    ``arch`` may be an open_clip model name or an ``hf-hub:org/repo`` id; ``device`` and ``precision``
    are resolved by ``susx_cli.runtime`` (precision ``auto`` is fp32).
    """
    try:
        import open_clip
        import torch
    except ImportError as exc:  # pragma: no cover - core dependency
        raise SusxError("open_clip_torch is not installed", hint="pip install susx") from exc

    _register_builtin_configs()
    device = runtime.resolve_device(device)
    precision = runtime.resolve_precision(precision, device)

    is_hub = arch.startswith("hf-hub:")
    if not is_hub and arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "see `python -c 'import open_clip; print(open_clip.list_models())'`"
        )
        raise SusxError(f"unknown model {arch!r}", hint=hint)

    tag = None if (pretrained is None or pretrained.lower() in RANDOM) else pretrained
    checkpoint_sha = None
    if tag is not None and Path(tag).expanduser().exists():
        tag = str(Path(tag).expanduser())
        checkpoint_sha = sha256_file(tag)
    elif tag is not None and not is_hub:
        known = open_clip.list_pretrained_tags_by_model(arch)
        if tag not in known:
            raise SusxError(
                f"no pretrained weights {tag!r} for {arch} (and no such checkpoint file)",
                hint=f"known tags: {', '.join(known) or 'none'}; or pass a checkpoint path, or 'none' for random weights",
            )
    try:
        # Random weights are drawn from a fixed seed so that every stage (texts, support, queries)
        # embeds with the same random model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None if is_hub else tag, device=device, precision=precision
            )
    except RuntimeError as exc:
        raise SusxError(
            f"could not load {arch} with weights {tag}: {exc}", hint="check the name and weights"
        ) from exc
    except Exception as exc:  # network or hub errors for real users
        raise SusxError(
            f"could not load {arch}: {exc.__class__.__name__}: {exc}",
            hint="check network access and the model id",
        ) from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    embed_dim = (
        int(model.text_projection.shape[-1])
        if hasattr(model, "text_projection") and model.text_projection is not None
        else None
    )
    if embed_dim is None:
        with torch.no_grad():
            embed_dim = int(model.encode_text(tokenizer(["x"]).to(device)).shape[-1])
    logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else None
    # SigLIP models learn an additive bias beside the scale: logits = scale * cos + bias.
    bias = getattr(model, "logit_bias", None)
    logit_bias = float(bias.item()) if bias is not None else None
    identity = ModelIdentity(
        arch=arch,
        pretrained=None if is_hub else tag,
        checkpoint_sha256=checkpoint_sha,
        embed_dim=embed_dim,
        logit_scale=logit_scale,
        random_weights=tag is None and not is_hub,
        logit_bias=logit_bias,
    )
    return OpenClipEncoder(
        model, preprocess, tokenizer, identity, device, runtime.torch_dtype(precision), _input_config(model)
    )
