"""`curate --source sd`: generate M images per class with a diffusers text-to-image pipeline (SuS-SD).

Every image is a work unit with its own seed, derived from (run seed, class index, image index), and its
own torch.Generator, so an image does not depend on the batch it is generated in, on the number of
shards or on where an interrupted run resumed. An image that comes back black (a safety checker's
blank, or an fp16 overflow) is generated again from the next derived seed, a bounded number of times,
then dropped and counted.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from dataclasses import dataclass, field
from typing import Any

from susx_cli import runtime
from susx_cli.adapters import diffusers as sd
from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.support import SupportWriter
from susx_cli.errors import SusxError, require_range
from susx_cli.options import option
from susx_cli.progress import bar, info, warn
from susx_cli.sources.base import FromOptions, WorkUnit, require_per_class

PROMPT_MODES = ("photo", "cupl")


def derive_seed(
    run_seed: int, class_index: int, image_index: int, attempt: int = 0, purpose: str = "noise"
) -> int:
    """A 53-bit seed (exact in any JSON reader) that depends only on its arguments (not on batch, shard or process)."""
    text = f"susx.sd/{purpose}/{run_seed}/{class_index}/{image_index}/{attempt}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & (2**53 - 1)


def pick_prompt(prompts: Prompts, class_index: int, image_index: int, mode: str, run_seed: int) -> str:
    """The class's photo prompt, or one of its CuPL sentences drawn by a generator seeded per image."""
    entry = prompts.entries[class_index]
    if mode == "photo":
        return entry.photo
    rng = random.Random(derive_seed(run_seed, class_index, image_index, purpose="prompt"))
    return rng.choice(entry.cupl)


def png_bytes(pixels: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class SDOptions:
    """`curate --source sd`: a preset (default: the paper's) with any field overridden."""

    per_class: int | None = option(None, "--per-class", "-k", help="images per class.")
    preset: str | None = option(
        None,
        "--preset",
        choices=tuple(sd.PRESETS),
        help="paper (default) | fast | sd15 | sdxl | sd-turbo | sdxl-turbo.",
    )
    model: str | None = option(
        None, "--sd-model", help="diffusers model id or local pipeline folder (overrides the preset's)."
    )
    revision: str | None = option(
        None, "--revision", help="model revision (branch, tag or commit) of a hub model id."
    )
    steps: int | None = option(None, "--steps", help="denoising steps (paper: 85).")
    guidance: float | None = option(
        None, "--guidance", help="classifier-free guidance scale (paper: 9.5; 0 for turbo)."
    )
    size: str | None = option(
        None, "--size", help="image size, N or WIDTHxHEIGHT, multiples of 8 (paper: 512)."
    )
    scheduler: str | None = option(
        None,
        "--scheduler",
        help="default | dpm++ | dpm++-karras | ddim | pndm | euler | euler-a | unipc | lcm | a diffusers class.",
    )
    precision: str = option(
        "auto",
        "--precision",
        choices=runtime.PRECISIONS,
        help="auto (fp16 on a GPU, fp32 on a CPU) | fp32 | fp16 | bf16.",
    )
    prompt_mode: str = option(
        "photo",
        "--prompt-mode",
        choices=PROMPT_MODES,
        help="photo (the class's photo prompt) | cupl (a seeded draw of its CuPL sentences).",
    )
    seed: int = option(0, "--seed", help="run seed: generation and prompt sampling.")
    batch_size: int = option(4, "--batch-size", help="images per pipeline call (does not change the images).")
    black_retries: int = option(
        2,
        "--black-retries",
        help="regenerate a black (safety-flagged) image from the next seed this often, then drop it.",
    )
    # Runtime settings: they change speed and memory, not the images, so they stay out of the options.
    device: str = option(
        "auto", "--device", help="auto (cuda:LOCAL_RANK under torchrun), cpu, cuda, cuda:1, mps."
    )
    attention_slicing: bool = option(
        False, "--attention-slicing", help="compute attention in slices (less GPU memory)."
    )
    vae_slicing: bool = option(
        False, "--vae-slicing", help="decode the batch one image at a time (less GPU memory)."
    )
    vae_tiling: bool = option(False, "--vae-tiling", help="decode in tiles (large images on small GPUs).")
    compile: bool = option(False, "--compile", help="torch.compile the denoiser (slow start, faster steps).")
    cpu_offload: bool = option(
        False, "--cpu-offload", help="keep idle sub-models in CPU memory (small GPUs; needs accelerate)."
    )

    def __post_init__(self) -> None:
        require_per_class("sd", self.per_class)
        preset = sd.get_preset(self.preset or sd.DEFAULT_PRESET)
        self.preset = self.preset or sd.DEFAULT_PRESET
        self.model = self.model or preset.model
        self.steps = preset.steps if self.steps is None else self.steps
        self.guidance = preset.guidance if self.guidance is None else self.guidance
        self.scheduler = self.scheduler or preset.scheduler
        self.width, self.height = sd.parse_size(self.size) if self.size else (preset.width, preset.height)
        # Diffusion models are trained on 1,000 noise levels: more steps than that only repeat them.
        require_range("--steps", self.steps, 1, 1000, hint="e.g. --steps 25")
        if self.guidance < 0:
            raise SusxError(f"--guidance must be 0 or more, got {self.guidance}", hint="e.g. --guidance 7.5")
        require_range("--batch-size", self.batch_size, 1, 1024, hint="e.g. --batch-size 4")
        # A prompt that is black this often is flagged every time: more retries would never end.
        require_range("--black-retries", self.black_retries, 0, 100, hint="0 drops black images")
        if self.prompt_mode not in PROMPT_MODES:
            raise SusxError(
                f"unknown --prompt-mode {self.prompt_mode!r}", hint=f"use one of {', '.join(PROMPT_MODES)}"
            )
        runtime.check_precision(self.precision)
        sd.check_scheduler_name(self.scheduler)


@dataclass
class SDSource(SDOptions, FromOptions):
    """Text-to-image generation with diffusers, one seeded work unit per image."""

    name: str = "sd"
    _resolved: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def for_demo(cls, model: str, per_class: int, tiny: bool = True) -> SDSource:
        """The demo's settings: the fast preset with ``model``; 4 steps at 32 px for the tiny pipeline."""
        if tiny:
            return cls(per_class=per_class, preset="fast", model=model, steps=4, size="32", batch_size=8)
        return cls(per_class=per_class, preset="fast", model=model)

    def _runtime(self) -> dict[str, Any]:
        """Device and precision, resolved once (needs torch; fp16 on a CPU is refused here)."""
        if not self._resolved:
            sd.require_diffusers()
            device = runtime.resolve_device(self.device)
            precision = runtime.resolve_precision(self.precision, device, gpu_auto="fp16")
            if self.cpu_offload and not device.startswith("cuda"):
                raise SusxError(
                    f"--cpu-offload needs a CUDA GPU and this run uses {device}", hint="drop --cpu-offload"
                )
            local = sd.check_model(self.model, self.revision)
            self._resolved = {"device": device, "precision": precision, "local": local}
        return self._resolved

    def options(self) -> dict[str, Any]:
        runtime = self._runtime()
        local = runtime["local"]
        return {
            "per_class": self.per_class,
            "preset": self.preset,
            "model": common.resolved_path(local) if local else self.model,
            "revision": None if local else self.revision,
            "scheduler": self.scheduler,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
            "precision": runtime["precision"],
            "prompt_mode": self.prompt_mode,
            "seed": self.seed,
            "black_retries": self.black_retries,
        }

    def inputs(self) -> list[dict[str, Any]]:
        local = self._runtime()["local"]
        return [sd.folder_identity(local)] if local else []

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        if self.prompt_mode == "cupl":
            prompts.pool_texts("cupl")  # refuses a file without CuPL sentences for some class
        return [
            WorkUnit(c, i, f"{i:05d}", {"prompt": pick_prompt(prompts, c, i, self.prompt_mode, self.seed)})
            for c in range(len(prompts.classes))
            for i in range(self.per_class)
        ]

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        runtime = self._runtime()
        loaded = sd.load_pipeline(
            self.model,
            revision=self.revision,
            device=runtime["device"],
            precision=runtime["precision"],
            scheduler=self.scheduler,
            attention_slicing=self.attention_slicing,
            vae_slicing=self.vae_slicing,
            vae_tiling=self.vae_tiling,
            compile=self.compile,
            cpu_offload=self.cpu_offload,
        )
        sd.check_size(self.width, self.height, max(8, loaded.vae_scale_factor))
        info(
            f"sd: {loaded.pipeline_class} {loaded.model}"
            f"{f' @ {loaded.revision}' if loaded.revision else ''}, {loaded.scheduler} x {self.steps} steps, "
            f"guidance {self.guidance}, {self.width}x{self.height}, {loaded.precision} on {loaded.device}, "
            f"batch {self.batch_size}"
        )
        common = {
            "source": "sd",
            "model": loaded.model,
            "revision": loaded.revision,
            "commit": loaded.commit,
            "pipeline": loaded.pipeline_class,
            "scheduler": loaded.scheduler,
            "steps": self.steps,
            "guidance": self.guidance,
            "precision": loaded.precision,
            "prompt_mode": self.prompt_mode,
        }
        queue: list[tuple[WorkUnit, int]] = [(u, 0) for u in units]
        regenerated = 0
        dropped: list[str] = []
        flagged = 0
        written = 0
        start = time.perf_counter()
        with bar("generate images (sd)", total=len(units), unit="img") as progress:
            batch_number = 0
            while queue:
                batch, queue = queue[: self.batch_size], queue[self.batch_size :]
                batch_number += 1
                seeds = [derive_seed(self.seed, u.class_index, u.order, attempt) for u, attempt in batch]
                pixels, flags = sd.generate(
                    loaded,
                    [u.payload["prompt"] for u, _ in batch],
                    seeds,
                    steps=self.steps,
                    guidance=self.guidance,
                    width=self.width,
                    height=self.height,
                    batch_size=self.batch_size,
                    on_step=lambda done, steps, b=batch_number: progress.update(
                        detail=f"step {done}/{steps} of batch {b}"
                    ),
                )
                retry: list[tuple[WorkUnit, int]] = []
                for j, ((unit, attempt), seed) in enumerate(zip(batch, seeds, strict=True)):
                    if flags is not None and flags[j]:
                        flagged += 1
                    if sd.is_black(pixels[j]):
                        if attempt < self.black_retries:
                            regenerated += 1
                            retry.append((unit, attempt + 1))
                            continue
                        dropped.append(writer.class_dir(unit.class_index).name + "/" + unit.key)
                        progress.advance()
                        continue
                    writer.add(
                        unit.class_index,
                        unit.key,
                        png_bytes(pixels[j]),
                        "png",
                        {
                            **common,
                            "order": unit.order,
                            "prompt": unit.payload["prompt"],
                            "seed": seed,
                            "attempt": attempt,
                        },
                    )
                    written += 1
                    progress.advance()
                queue = retry + queue  # retries go first, so a class finishes before the next one starts
        seconds = time.perf_counter() - start
        if regenerated:
            info(f"sd: {regenerated} black image(s) generated again from the next seed")
        if dropped:
            warn(
                f"sd: dropped {len(dropped)} image(s) still black after {self.black_retries} retries "
                "(safety checker or fp16 overflow; try --precision fp32/bf16 or other prompts)"
            )
        return {
            "generated": written,
            "black_regenerated": regenerated,
            "black_dropped": len(dropped),
            "dropped_keys": dropped[:1000],
            "nsfw_flagged": flagged,
            "seconds": round(seconds, 3),
            "images_per_s": round(written / seconds, 4) if seconds > 0 else None,
            "runtime": {
                "device": loaded.device,
                "batch_size": self.batch_size,
                "attention_slicing": self.attention_slicing,
                "vae_slicing": self.vae_slicing,
                "vae_tiling": self.vae_tiling,
                "compile": self.compile,
                "cpu_offload": self.cpu_offload,
            },
        }
