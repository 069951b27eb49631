"""Where and in which precision models run: the one device and precision resolver for every stage,
source and adapter.

Devices: ``auto`` is this process's GPU under torchrun or SLURM (``cuda:LOCAL_RANK``, else
``cuda:SLURM_LOCALID``: one GPU per rank), else ``cuda`` when a CUDA GPU is present, else ``mps``, else
``cpu``; explicit ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked against this machine, and a bad
one is a one-line error that names what the machine has.

Precisions: ``auto``, ``fp32``, ``fp16``, ``bf16``. What ``auto`` means is the consumer's choice (CLIP
embeds in fp32 everywhere; Stable Diffusion generates in fp16 on a GPU), passed as ``gpu_auto``.

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re

from susx_cli.errors import SusxError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Environment variables that name this process's GPU under a launcher, first match wins.
LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID")
DEVICE_HELP = "auto (cuda:LOCAL_RANK under torchrun/SLURM, else CUDA, MPS or CPU), cpu, cuda, cuda:1, mps."
PRECISION_HELP = "auto (fp32 for CLIP; fp16 on a GPU for Stable Diffusion), fp32, fp16 (GPU only) or bf16."


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _has_mps() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices() -> list[str]:
    """What this machine can run on, e.g. ['cpu'] or ['cpu', 'cuda:0', 'cuda:1']."""
    return ["cpu", *(f"cuda:{i}" for i in range(_cuda_count())), *(["mps"] if _has_mps() else [])]


def local_rank() -> int | None:
    """This process's rank on its node under torchrun (LOCAL_RANK) or SLURM (SLURM_LOCALID), else None."""
    for var in LOCAL_RANK_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return None


def _bad_device(device: str, why: str) -> SusxError:
    return SusxError(
        f"--device {device}: {why}; this machine has: {', '.join(available_devices())}",
        hint="use --device auto or one of those",
    )


def resolve_device(device: str | None = None) -> str:
    """The torch device string to run on: see the module docstring for what ``auto`` picks. A batch log
    records it once (with the GPU's name)."""
    from susx_cli.progress import note

    resolved = _resolve_device((device or "auto").strip().lower())
    note(f"device: {describe_device(resolved)}")
    return resolved


def describe_device(device: str) -> str:
    """``device`` with the GPU's name where it is one, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
    if not device.startswith("cuda"):
        return device
    import torch

    try:
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    except (RuntimeError, AssertionError, ValueError):  # a device torch cannot query: its name alone
        return device


def _resolve_device(device: str) -> str:
    if device == "auto":
        count = _cuda_count()
        if count:
            rank = local_rank()
            # modulo: with one visible GPU per task (CUDA_VISIBLE_DEVICES set by the launcher) every rank
            # sees its own GPU as cuda:0
            return "cuda" if rank is None else f"cuda:{rank % count}"
        return "mps" if _has_mps() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not _has_mps():
            raise _bad_device(device, "no Apple MPS device is available")
        return "mps"
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise _bad_device(device, "not a device name")
    count = _cuda_count()
    if count == 0:
        raise _bad_device(device, "no CUDA GPU is available")
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise _bad_device(device, f"there is no GPU {match.group(1)}")
    return device


def method_device(device: str | None = None) -> str:
    """Where the method's float64 math runs: the resolved device, but never MPS (it has no float64)."""
    resolved = resolve_device(device)
    return "cpu" if resolved == "mps" else resolved


def check_precision(precision: str) -> str:
    """``precision`` if it is a known name (no torch needed), else a one-line error."""
    if precision not in PRECISIONS:
        raise SusxError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: str, *, gpu_auto: str = "fp32") -> str:
    """fp32, fp16 or bf16 for a run on the resolved ``device``.

    ``auto`` is ``gpu_auto`` on a GPU (CUDA or MPS) and fp32 on a CPU; fp16 on a CPU is refused (slow and
    unsupported there).
    """
    check_precision(precision)
    on_gpu = device.startswith(("cuda", "mps"))
    if precision == "auto":
        return gpu_auto if on_gpu else "fp32"
    if precision == "fp16" and not on_gpu:
        raise SusxError(
            f"fp16 needs a GPU and this run uses {device}", hint="use --precision fp32 or bf16 on a CPU"
        )
    return precision


def torch_dtype(precision: str):
    """The torch dtype of a resolved precision (fp32, fp16 or bf16)."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
