"""A tiny Stable Diffusion pipeline with random weights, built locally (no download).

It is a real ``StableDiffusionPipeline`` (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer,
PNDM scheduler as in SD 1.x) saved with ``save_pretrained``, so ``susx curate --source sd`` loads it through
the same ``AutoPipelineForText2Image.from_pretrained`` path as a real model. Its images are noise; it exists
for the offline demo, the tests and the throughput benchmark. The tokenizer's ``vocab.json`` and
``merges.txt`` are written from the BPE merges file that open_clip ships (the same vocabulary as CLIP's).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from susx_cli.errors import SusxError, missing_extra

# Same BPE vocabulary size as OpenAI CLIP: 256 bytes, 256 bytes + </w>, 48894 merges, 2 specials.
N_MERGES = 49152 - 256 - 2
SPECIALS = ("<|startoftext|>", "<|endoftext|>")
WEIGHT_SEED = 1234  # fixed, so a rebuilt tiny pipeline has the same weights (and makes the same images)
NATIVE_SIZE = 32  # pixels; the VAE downsamples by 2, so latents are 16 x 16


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode map (printable bytes keep their character)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def write_clip_tokenizer_files(directory: Path) -> None:
    """Write a CLIPTokenizer's vocab.json and merges.txt from open_clip's bpe_simple_vocab_16e6.txt.gz."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")  # locate the package without importing it (and timm)
    if spec is None or not spec.submodule_search_locations:
        raise SusxError("open_clip_torch is not installed", hint="pip install susx")
    bpe = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not bpe.is_file():
        raise SusxError(f"open_clip's BPE file {bpe} is missing", hint="reinstall open_clip_torch")
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1 : 1 + N_MERGES]  # the first line is a version header
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + list(SPECIALS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8"
    )
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


# Architectures: the tiny one for tests and the demo, and Stable Diffusion 1.x's (CompVis/stable-diffusion-v1-4:
# 860M-parameter UNet, 84M VAE, CLIP ViT-L/14 text encoder) for GPU benchmarks with random weights.
TINY = {
    "unet": dict(
        sample_size=NATIVE_SIZE // 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "vae": dict(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=NATIVE_SIZE,
    ),
    "text": dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32
    ),
}
SD1 = {
    "unet": dict(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "vae": dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=512,
    ),
    "text": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        projection_dim=768,
        hidden_act="quick_gelu",
    ),
}


def assemble_pipeline(arch: dict, device: str | None = None):
    """A StableDiffusionPipeline of the given architecture with random weights (seeded), in memory.

    ``device`` creates the weights there directly (a full-size UNet initialises much faster on a GPU);
    ``"meta"`` makes shapes only, for checking an architecture without memory.
    """
    try:
        import torch
        from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise missing_extra("diffusers", "sd") from exc

    import tempfile

    torch.manual_seed(WEIGHT_SEED)
    with torch.device(device or "cpu"):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **arch["unet"])
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **arch["vae"])
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                max_position_embeddings=77,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=1,
                **arch["text"],
            )
        )
    # SD 1.x's scheduler configuration (PNDM with PLMS steps only).
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer(
            str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77
        )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(path: Path) -> Path:
    """Assemble and save a tiny random-weight StableDiffusionPipeline at ``path``; skip if one is there.

    ``AutoPipelineForText2Image.from_pretrained(path, local_files_only=True)`` loads it; a 32 x 32 image
    takes about a quarter of a second on a CPU.
    """
    return save_pipeline(path, lambda: assemble_pipeline(TINY))


def build_random_sd1_pipeline(path: Path, device: str | None = None, fp16: bool = True) -> Path:
    """Save Stable Diffusion 1.x's full-size architecture with random weights (fp16 by default) at ``path``.

    For GPU throughput benchmarks without a download: the same shapes and FLOPs as SD v1-4, 512 px.
    """

    def make():
        pipe = assemble_pipeline(SD1, device=device)
        if fp16:
            import torch

            pipe.to(dtype=torch.float16)
        return pipe

    return save_pipeline(path, make)


def save_pipeline(path: Path, make) -> Path:
    """``make()`` a pipeline and save it at ``path`` atomically; skip if a pipeline is already there."""
    import tempfile

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    pipe = make()
    # Write beside the target and rename, so a killed build never leaves a half-saved pipeline at ``path``.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        pipe.save_pretrained(staging)
        if (path / "model_index.json").is_file():  # another process finished first
            return path
        if path.exists():
            if any(path.iterdir()):
                raise SusxError(
                    f"{path} exists and is not a diffusers pipeline folder", hint="choose an empty folder"
                )
            path.rmdir()
        from susx_cli.artifacts.common import current_umask

        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; give it the usual folder mode
        staging.rename(path)
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return path
