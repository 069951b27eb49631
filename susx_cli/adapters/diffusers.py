"""diffusers behind a few functions: presets, scheduler names, model checks, pipeline loading.

Everything heavy (torch, diffusers) is imported inside the functions, so importing this module is cheap.
Any text-to-image pipeline that ``AutoPipelineForText2Image`` knows loads here: Stable Diffusion 1.x and
2.x, SDXL, turbo variants and others, from a Hugging Face model id (with a revision) or a local folder
written by ``save_pretrained``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.errors import SusxError, missing_extra

# An image whose every channel value is at most this (of 255) counts as black: what a safety checker
# returns for a flagged image, and what NaNs from an fp16 overflow become.
BLACK_MAX = 8


@dataclass(frozen=True)
class Preset:
    """A named bundle of generation settings; each field can be overridden by its own option."""

    model: str
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str
    about: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "CompVis/stable-diffusion-v1-4",
        85,
        9.5,
        512,
        512,
        "default",
        "the SuS-X paper's SuS-SD settings: SD v1-4 with its PNDM scheduler, 85 steps, guidance 9.5, 512 px",
    ),
    "fast": Preset(
        "CompVis/stable-diffusion-v1-4",
        25,
        9.5,
        512,
        512,
        "dpm++",
        "the paper's model, guidance and size with DPM-Solver++ (2M) and 25 steps: 3.4x fewer UNet calls",
    ),
    "sd15": Preset(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        25,
        7.5,
        512,
        512,
        "dpm++",
        "Stable Diffusion v1-5, DPM-Solver++ 25 steps, guidance 7.5, 512 px",
    ),
    "sdxl": Preset(
        "stabilityai/stable-diffusion-xl-base-1.0",
        30,
        5.0,
        1024,
        1024,
        "dpm++",
        "SDXL base 1.0, DPM-Solver++ 30 steps, guidance 5.0, 1024 px",
    ),
    "sd-turbo": Preset(
        "stabilityai/sd-turbo",
        1,
        0.0,
        512,
        512,
        "default",
        "SD-Turbo (distilled SD 2.1): one step, no guidance, 512 px",
    ),
    "sdxl-turbo": Preset(
        "stabilityai/sdxl-turbo",
        1,
        0.0,
        512,
        512,
        "default",
        "SDXL-Turbo: one step, no guidance, 512 px",
    ),
}
DEFAULT_PRESET = "paper"

# Short scheduler names -> (diffusers class, config overrides). "default" keeps the model's own scheduler.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


@dataclass
class LoadedPipeline:
    pipe: Any  # a diffusers DiffusionPipeline
    model: str  # model id or local folder, as given
    revision: str | None  # requested revision (hub ids)
    commit: str | None  # the resolved hub commit when it can be read from the local cache
    pipeline_class: str
    scheduler: str  # the scheduler class in use
    device: str
    precision: str
    vae_scale_factor: int


def preset_names() -> str:
    return ", ".join(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SusxError(f"unknown preset {name!r}", hint=f"use one of {preset_names()}")
    return PRESETS[name]


def check_scheduler_name(name: str) -> None:
    """Accept a short name, 'default', or a diffusers scheduler class name (checked when loading)."""
    if name == "default" or name in SCHEDULERS or re.fullmatch(r"[A-Z][A-Za-z0-9]*Scheduler", name):
        return
    raise SusxError(
        f"unknown scheduler {name!r}",
        hint=f"use default, {', '.join(SCHEDULERS)}, or a diffusers class name such as DPMSolverMultistepScheduler",
    )


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '768x512' -> (width 768, height 512). Both must be positive multiples of 8."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+)\s*)?", text)
    if not match:
        raise SusxError(f"--size {text!r} is not N or WIDTHxHEIGHT", hint="e.g. --size 512 or --size 768x512")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    check_size(width, height)
    return width, height


def check_size(width: int, height: int, multiple: int = 8) -> None:
    for what, value in (("width", width), ("height", height)):
        if value < multiple or value % multiple:
            raise SusxError(
                f"image {what} {value} is not a positive multiple of {multiple}, which this model cannot make",
                hint=f"use a size such as {max(multiple, value // multiple * multiple)} (a multiple of {multiple})",
            )


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - core dependency
        raise SusxError("torch is not installed", hint="pip install susx") from exc
    return torch


def available() -> bool:
    """Whether the `sd` extra (diffusers and transformers) is installed, without importing it."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("diffusers", "transformers"))


def require_diffusers() -> None:
    """Raise the missing-extra error unless diffusers and transformers import."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise missing_extra("diffusers", "sd") from exc


def local_pipeline_dir(model: str) -> Path | None:
    """The folder if ``model`` names an existing local path (checked to be a pipeline), else None."""
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
            raise SusxError(
                f"--sd-model {model!r}: no such folder (and not a model id of the form org/name)",
                hint="pass a folder written by save_pretrained, or a Hugging Face id such as CompVis/stable-diffusion-v1-4",
            )
        return None
    if not path.is_dir() or not (path / "model_index.json").is_file():
        raise SusxError(
            f"{path} is not a diffusers pipeline folder (no model_index.json)",
            hint="pass a folder written by DiffusionPipeline.save_pretrained, or a Hugging Face model id",
        )
    return path


def _load_error(model: str, revision: str | None, local: Path | None, exc: Exception) -> SusxError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    where = "local folder" if local else "model"
    at = f" at revision {revision}" if revision and not local else ""
    return SusxError(
        f"could not load diffusers {where} {model!r}{at}: {first}",
        hint="check the model id and --revision, network access and a Hugging Face login for gated models, "
        "or pass a local folder written by save_pretrained",
    )


def check_model(model: str, revision: str | None = None) -> Path | None:
    """Refuse an unknown model id or a folder that is not a pipeline before any work starts.

    Reads only the pipeline's small ``model_index.json`` (from the hub, or its cache when offline).
    Returns the local folder, or None for a hub id.
    """
    local = local_pipeline_dir(model)
    if local is not None:
        return local
    require_diffusers()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from diffusers import DiffusionPipeline
    try:
        config = DiffusionPipeline.load_config(model, revision=revision)
    except Exception as exc:  # repository not found, offline without a cache, bad revision, bad id
        raise _load_error(model, revision, None, exc) from exc
    if not isinstance(config, dict) or "_class_name" not in config:
        raise SusxError(
            f"{model!r} is not a diffusers pipeline (its model_index.json names no pipeline class)",
            hint="pass a text-to-image pipeline such as CompVis/stable-diffusion-v1-4",
        )
    return None


def folder_identity(path: Path) -> dict[str, Any]:
    """A cheap identity for a local pipeline folder: its config files' contents and every file's size."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{file.stat().st_size}\0".encode())
        if file.suffix in (".json", ".txt"):
            digest.update(file.read_bytes())
    return {"path": str(path), "kind": "diffusers.pipeline", "sha256": digest.hexdigest()}


def _hub_commit(model: str, revision: str | None) -> str | None:
    """The commit of the cached snapshot that was loaded (read from the local cache; no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except Exception:
        return None
    if isinstance(cached, str) and Path(cached).parent.parent.name == "snapshots":
        return Path(cached).parent.name
    return None


def _set_scheduler(pipe: Any, name: str) -> None:
    if name == "default":
        return
    import diffusers

    class_name, overrides = SCHEDULERS.get(name, (name, {}))
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        raise SusxError(
            f"diffusers has no scheduler {class_name!r}",
            hint=f"use default or one of {', '.join(SCHEDULERS)}",
        )
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


def _quiet_libraries() -> None:
    """diffusers' and transformers' own progress bars and info logs would break the rich bar on stderr."""
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    try:
        from transformers.utils import logging as tlogging

        tlogging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def load_pipeline(
    model: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    scheduler: str = "default",
    attention_slicing: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    compile: bool = False,
    cpu_offload: bool = False,
) -> LoadedPipeline:
    """Load a text-to-image pipeline (``device`` and ``precision`` already resolved) ready to generate."""
    require_diffusers()
    torch = _torch()
    import warnings

    with warnings.catch_warnings():  # deprecation chatter from libraries diffusers imports on the way
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from diffusers import AutoPipelineForText2Image

    _quiet_libraries()
    dtype = runtime.torch_dtype(precision)
    local = local_pipeline_dir(model)
    if cpu_offload and not device.startswith("cuda"):
        raise SusxError("--cpu-offload needs a CUDA GPU", hint="drop --cpu-offload on a CPU")
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if local is not None:
        kwargs["local_files_only"] = True
    elif revision:
        kwargs["revision"] = revision
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(str(local) if local else model, **kwargs)
    except ImportError as exc:
        raise SusxError(
            f"loading {model!r} needs a package that is missing: {exc}", hint="pip install 'susx[sd]'"
        ) from exc
    except (OSError, ValueError) as exc:
        raise _load_error(model, revision, local, exc) from exc
    except Exception as exc:
        raise SusxError(
            f"could not load diffusers model {model!r}: {exc.__class__.__name__}: {exc}",
            hint="check that it is a text-to-image pipeline",
        ) from exc
    _set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    if attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if compile:
        for name in ("unet", "transformer"):
            module = getattr(pipe, name, None)
            if module is not None:
                setattr(pipe, name, torch.compile(module))
    return LoadedPipeline(
        pipe=pipe,
        model=model,
        revision=revision if local is None else None,
        commit=None if local is not None else _hub_commit(model, revision),
        pipeline_class=type(pipe).__name__,
        scheduler=type(pipe.scheduler).__name__,
        device=device,
        precision=precision,
        vae_scale_factor=int(getattr(pipe, "vae_scale_factor", 8) or 8),
    )


def generate(
    loaded: LoadedPipeline,
    prompts: list[str],
    seeds: list[int],
    *,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    batch_size: int = 1,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Any, list[bool] | None]:
    """One pipeline call: one image per prompt, each from its own CPU ``torch.Generator`` seeded with its seed.

    CPU generators make the starting noise the same on every device and independent of the batch it is
    in. The call is padded to ``batch_size`` images (repeating the last prompt and seed; the extra images
    are dropped): the batch's shape picks the kernels (MKL's GEMM, the tails of vectorised loops, cuBLAS),
    and with it the last bits of every image, while companions and positions in a batch of one shape
    change nothing. So a shard's or a resumed run's short last batch gives the images a full one would.
    ``on_step(done, steps)`` is called after each denoising step (where the pipeline offers a step
    callback), so a long call can say how far it is.
    Returns (uint8 array N x H x W x 3, the safety checker's flags or None), N = len(prompts).
    """
    import numpy as np

    torch = _torch()
    n = len(prompts)
    pad = max(0, batch_size - n)
    prompts, seeds = [*prompts, *[prompts[-1]] * pad], [*seeds, *[seeds[-1]] * pad]
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    try:
        with torch.inference_mode():
            out = loaded.pipe(
                prompt=list(prompts),
                num_inference_steps=steps,
                guidance_scale=guidance,
                width=width,
                height=height,
                generator=generators,
                output_type="np",
                **_step_callback(loaded.pipe, on_step, steps),
            )
    except torch.cuda.OutOfMemoryError as exc:
        raise SusxError(
            f"out of GPU memory generating {len(prompts)} image(s) of {width}x{height} on {loaded.device}",
            hint="lower --batch-size, or add --attention-slicing / --vae-slicing / --cpu-offload; "
            "re-running resumes where it stopped",
        ) from exc
    except ValueError as exc:  # diffusers' own input checks (size, steps, ...)
        raise SusxError(
            f"{loaded.model}: {exc}", hint="check --size, --steps and --guidance for this model"
        ) from exc
    images = np.asarray(out.images[:n], dtype=np.float32)
    images = np.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0)
    pixels = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    flags = getattr(out, "nsfw_content_detected", None)
    return pixels, (list(flags[:n]) if flags is not None else None)


def _step_callback(pipe: Any, on_step: Callable[[int, int], None] | None, steps: int) -> dict[str, Any]:
    """The keyword that makes ``pipe`` call ``on_step(done, steps)`` after each step (none if it has none)."""
    if on_step is None or "callback_on_step_end" not in inspect.signature(pipe.__call__).parameters:
        return {}

    def step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(step + 1, steps)
        return tensors

    return {"callback_on_step_end": step_end}


def is_black(pixels: Any) -> bool:
    """True when every value of a uint8 image is near 0 (a safety checker's blank, or an fp16 overflow)."""
    return bool(pixels.max() <= BLACK_MAX)
