"""Benchmark: `susx embed` in one process vs 2 shards (two processes) vs Ray with 2 workers, side by side.

All three embed the same generated images (64 px PNGs in class folders) with the random-weight tiny model
('susx-tiny-vit', --pretrained none) on the CPU, with the same batch size, one torch thread per process and
image loading in the embedding process (--workers 0). Each run is a fresh `python -m susx_cli` process:

  one process   susx embed IMGS -o one.h5
  2 shards      susx embed IMGS -o shards.h5 --num-shards 2 --shard-index {0,1}   (both at once; the
                last to finish joins the parts)
  ray           susx embed IMGS -o ray.h5 --executor ray --num-shards 2           (a local Ray instance
                started by the run: 2 tasks, joined by the driver)

Printed: the wall time of each run (for the shards, from the start of the first process to the end of the
last), its ratio to the one-process run, and whether its features, keys, labels and provenance options
equal the one-process run's bit for bit. The Ray time includes starting and stopping the Ray instance.

    python benchmarks/embed_shards.py                 # 4,000 images
    python benchmarks/embed_shards.py --images 1000 --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "susx-tiny-vit", "--pretrained", "none"]


def make_images(root: Path, count: int, classes: int = 10, size: int = 64) -> Path:
    """``count`` seeded noise images around a per-class colour, spread over ``classes`` folders."""
    import numpy as np
    from PIL import Image

    for i in range(count):
        c = i % classes
        rng = np.random.default_rng(i)
        base = np.random.default_rng(1000 + c).integers(30, 225, 3)
        pixels = np.clip(base[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"img_{i:05d}.png")
    (root.parent / "classes.txt").write_text("".join(f"class_{c:02d}\n" for c in range(classes)))
    return root


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _embed(images: Path, out: Path, batch_size: int, *extra: str) -> subprocess.Popen:
    args = [
        "embed",
        str(images),
        "-o",
        str(out),
        "-c",
        str(images.parent / "classes.txt"),
        *TINY,
        "--batch-size",
        str(batch_size),
        "--workers",
        "0",
        "--device",
        "cpu",
        "-q",
        *extra,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "susx_cli", *args],
        env=_env(),
        cwd=out.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def timed(*procs: subprocess.Popen) -> float:
    start = time.perf_counter()
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a run failed (exit {proc.returncode}):\n{err}")
    return time.perf_counter() - start


def same_as(a: Path, b: Path) -> bool:
    """Features, keys, labels, classes, skipped and provenance options/inputs equal, bit for bit."""
    from susx_cli.artifacts import hdf5

    x, y = hdf5.read_features(a), hdf5.read_features(b)
    return (
        x.features.tobytes() == y.features.tobytes()
        and x.keys == y.keys
        and x.labels.tolist() == y.labels.tolist()
        and x.classes == y.classes
        and x.skipped == y.skipped
        and x.provenance["options"] == y.provenance["options"]
        and x.provenance["inputs"] == y.provenance["inputs"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="susx-embed-shards-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        images = make_images(work / "imgs", args.images)
        print(
            f"{args.images} images of 64 px generated in {time.perf_counter() - t0:.1f} s; "
            f"{os.cpu_count()} CPU cores, one torch thread per process"
        )
        start = time.perf_counter()
        one = timed(_embed(images, work / "one.h5", args.batch_size))
        shards = timed(
            *(
                _embed(
                    images, work / "shards.h5", args.batch_size, "--num-shards", "2", "--shard-index", str(i)
                )
                for i in range(2)
            )
        )
        ray = timed(
            _embed(images, work / "ray.h5", args.batch_size, "--executor", "ray", "--num-shards", "2")
        )
        rows = [
            ("one process", one, True),
            ("2 shards (2 processes)", shards, same_as(work / "shards.h5", work / "one.h5")),
            ("ray, 2 workers", ray, same_as(work / "ray.h5", work / "one.h5")),
        ]
        print(f"{'run':<24} {'wall s':>8} {'img/s':>8} {'vs one':>7}  identical features")
        for name, seconds, same in rows:
            print(
                f"{name:<24} {seconds:8.1f} {args.images / seconds:8.1f} {seconds / one:7.2f}  {'yes' if same else 'NO'}"
            )
        print(f"(all runs: {time.perf_counter() - start:.0f} s)")
        if not all(same for _, _, same in rows):
            raise SystemExit("features differ")


if __name__ == "__main__":
    main()
