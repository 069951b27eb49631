"""How many query rows the method may process at once, from the memory free on its device.

The search and the TIP-X logits hold a few (rows, N) and (rows, C) float64 tensors per chunk of query
rows; the chunk is sized so their sum stays within a working budget: a quarter of what is free, capped
(1 GiB on CPU, 8 GiB on CUDA) so that a large machine does not trade cache locality for nothing and a
50,000-query ImageNet problem stays well under 4 GB of peak memory. Results never depend on the chunk.
"""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30
CPU_CAP = 1 * GIB
CUDA_CAP = 8 * GIB
FALLBACK = 2 * GIB  # when nothing says how much is free
L2_FALLBACK = 1 << 20


def available_bytes(device) -> int:
    """Free memory on ``device`` (a torch.device): CUDA's free memory; on CPU psutil's 'available', else
    /proc/meminfo's MemAvailable, else a conservative guess."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts in KiB
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK


def working_budget(device) -> int:
    """Bytes the method's per-chunk tensors may take together."""
    cap = CUDA_CAP if getattr(device, "type", str(device)) == "cuda" else CPU_CAP
    return max(1, min(available_bytes(device) // 4, cap))


def chunk_rows(bytes_per_row: int, total_rows: int, device, budget: int | None = None) -> int:
    """Rows per chunk so that rows * bytes_per_row fits the budget: at least 1, at most total_rows."""
    budget = working_budget(device) if budget is None else budget
    return max(1, min(max(total_rows, 1), budget // max(bytes_per_row, 1)))


def l2_cache_bytes() -> int:
    """The per-core L2 cache size Linux reports in sysfs, else 1 MiB."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(root.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return L2_FALLBACK
