"""Benchmark: images/s of `susx curate --source sd` against a one-image-per-call loop, side by side.

Both sides use the same pipeline (loaded the same way), the same prompts, the same per-image seeds and
write the same PNG files, so the only difference is how images are fed to the pipeline:

- loop: one pipeline call per image with its own ``torch.Generator``, like a plain generation script
  (and like the reference's per-image loop, minus its seed reuse across classes);
- susx: the curate stage (``SDSource`` through ``stages.curate``): ``--batch-size`` images per call, one
  generator per image, per-image atomic writes and the part manifest.

It prints images/s for both, their ratio, and how far apart the two image sets are (they should be the
same images; on a CPU a batch and a single call can differ by one 8-bit level in about 1 value in 1000).

    python benchmarks/sd_throughput.py                      # tiny random SD pipeline, CPU, 32 px
    python benchmarks/sd_throughput.py --classes 8 --per-class 8 --batch-size 16
    python benchmarks/sd_throughput.py --full-size          # GPU: SD 1.x architecture, random weights,
                                                            # 512 px fp16, paper and fast presets
    python benchmarks/sd_throughput.py --full-size --check  # no GPU: build the full-size architecture on
                                                            # the meta device and run shapes through it
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = [
    "zebra",
    "apple",
    "mango",
    "kiwi",
    "tiger",
    "tulip",
    "canoe",
    "violin",
    "cactus",
    "falcon",
    "lemon",
    "piano",
]


def write_prompts(path: Path, n_classes: int) -> Path:
    from susx_cli.artifacts import common
    from susx_cli.artifacts.prompts import PromptEntry, Prompts, write_prompts

    names = [
        WORDS[i % len(WORDS)] + ("" if i < len(WORDS) else f" {i // len(WORDS)}") for i in range(n_classes)
    ]
    entries = [PromptEntry(i, n, n, f"A photo of a {n}.", [f"itap of a {n}."]) for i, n in enumerate(names)]
    write_prompts(path, Prompts(entries, "template", None, {}, common.provenance({}, [])))
    return path


def run_loop(loaded, jobs, settings, out_dir: Path) -> float:
    """One pipeline call per image; PNG written per image. Returns seconds."""
    import torch
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for key, prompt, seed in jobs:
        image = loaded.pipe(
            prompt=prompt,
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance"],
            width=settings["size"],
            height=settings["size"],
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        ).images[0]
        pixels = (np.clip(np.nan_to_num(image), 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(out_dir / f"{key}.png")
    _sync()
    return time.perf_counter() - start


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_susx(prompts: Path, model: Path, settings, batch_size: int, device: str, precision: str, out: Path):
    """The curate stage; returns (seconds spent generating, as the source measures it, and the folder)."""
    from susx_cli.sources.sd import SDSource
    from susx_cli.stages.curate import curate_source

    if out.exists():
        shutil.rmtree(out)
    source = SDSource(
        settings["per_class"],
        preset=settings["preset"],
        model=str(model),
        steps=settings["steps"],
        guidance=settings["guidance"],
        size=str(settings["size"]),
        scheduler=settings["scheduler"],
        precision=precision,
        device=device,
        batch_size=batch_size,
    )
    result = curate_source(prompts, out, source)
    _sync()
    return float(result.summary["seconds"]), out


def compare(support: Path, loop_dir: Path) -> dict:
    from PIL import Image

    rows = [json.loads(line) for line in (support / "manifest.jsonl").read_text().splitlines()]
    diffs, equal, total = [], 0, 0
    for row in rows:
        with (
            Image.open(support / row["path"]) as a,
            Image.open(loop_dir / f"{row['class_index']:04d}-{row['key']}.png") as b,
        ):
            x, y = np.asarray(a.convert("RGB")).astype(int), np.asarray(b.convert("RGB")).astype(int)
        diffs.append(int(np.abs(x - y).max()))
        equal += int((x == y).sum())
        total += x.size
    return {
        "images": len(rows),
        "max_abs_diff": max(diffs),
        "identical_images": sum(d == 0 for d in diffs),
        "identical_values": equal / total,
    }


def measure(model: Path, work: Path, settings: dict, args, label: str) -> dict:
    from susx_cli import runtime
    from susx_cli.adapters import diffusers as sd
    from susx_cli.artifacts.prompts import read_prompts
    from susx_cli.sources.sd import derive_seed

    device = runtime.resolve_device(args.device)
    precision = runtime.resolve_precision(args.precision, device, gpu_auto="fp16")
    prompts_path = write_prompts(work / "prompts.json", args.classes)
    prompts = read_prompts(prompts_path)
    jobs = [
        (f"{c:04d}-{i:05d}", prompts.entries[c].photo, derive_seed(0, c, i))
        for c in range(args.classes)
        for i in range(settings["per_class"])
    ]
    loaded = sd.load_pipeline(str(model), device=device, precision=precision, scheduler=settings["scheduler"])
    # Warm up both call shapes (kernel selection, caches) so neither side pays it in its timing.
    for n in sorted({1, min(args.batch_size, len(jobs))}):
        sd.generate(
            loaded,
            [jobs[0][1]] * n,
            list(range(n)),
            steps=min(settings["steps"], 3),
            guidance=settings["guidance"],
            width=settings["size"],
            height=settings["size"],
        )
    loop_s, susx_s = [], []
    for _ in range(args.repeats):
        loop_s.append(run_loop(loaded, jobs, settings, work / f"loop-{label}"))
        seconds, support = run_susx(
            prompts_path, model, settings, args.batch_size, device, precision, work / f"susx-{label}"
        )
        susx_s.append(seconds)
    del loaded
    n = len(jobs)
    result = {
        "label": label,
        "device": device,
        "precision": precision,
        "images": n,
        "batch_size": args.batch_size,
        **{k: settings[k] for k in ("steps", "guidance", "size", "scheduler")},
        "loop_img_per_s": n / min(loop_s),
        "susx_img_per_s": n / min(susx_s),
        "same_images": compare(support, work / f"loop-{label}"),
        "black": {
            k: json.loads((support / "_SUCCESS.json").read_text()).get(k)
            for k in ("black_regenerated", "black_dropped")
        },
    }
    result["ratio"] = result["susx_img_per_s"] / result["loop_img_per_s"]
    return result


def report(r: dict) -> None:
    same = r["same_images"]
    print(
        f"\n[{r['label']}] {r['images']} images, {r['size']} px, {r['steps']} steps {r['scheduler']}, "
        f"guidance {r['guidance']}, {r['precision']} on {r['device']}"
    )
    print(f"  one image per call (loop)          {r['loop_img_per_s']:9.3f} img/s")
    print(f"  susx curate --source sd (batch {r['batch_size']:<3}) {r['susx_img_per_s']:9.3f} img/s")
    print(f"  ratio susx / loop                  {r['ratio']:9.2f} x")
    print(
        f"  same images: {same['identical_images']}/{same['images']} bit-identical, "
        f"{100 * same['identical_values']:.3f}% of values equal, max |diff| {same['max_abs_diff']} (of 255)"
    )
    if any(r["black"].values()):
        print(f"  black images (random weights can overflow in fp16): {r['black']}")


def check_full_size() -> None:
    """Without a GPU: build SD 1.x's architecture on the meta device and push shapes through it."""
    import torch

    from susx_cli.adapters.tiny_sd import SD1, assemble_pipeline

    pipe = assemble_pipeline(SD1, device="meta")
    counts = {
        n: sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e6
        for n in ("unet", "vae", "text_encoder")
    }
    with torch.no_grad():
        eps = pipe.unet(
            torch.empty(2, 4, 64, 64, device="meta"),
            torch.tensor(10, device="meta"),
            encoder_hidden_states=torch.empty(2, 77, 768, device="meta"),
        ).sample
        image = pipe.vae.decode(torch.empty(1, 4, 64, 64, device="meta")).sample
        text = pipe.text_encoder(torch.zeros(1, 77, dtype=torch.long, device="meta"))[0]
    print("SD 1.x architecture, millions of parameters:", {k: round(v, 2) for k, v in counts.items()})
    print(f"UNet eps {tuple(eps.shape)}, VAE image {tuple(image.shape)}, text states {tuple(text.shape)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, default=None, help="classes (default 4; full size 2)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default 8)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="tiny pipeline: denoising steps")
    parser.add_argument("--size", type=int, default=32, help="tiny pipeline: image size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument(
        "--full-size", action="store_true", help="SD 1.x architecture, random weights, 512 px (GPU)"
    )
    parser.add_argument(
        "--check", action="store_true", help="with --full-size: shape check on the meta device only"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for pipelines and images (default: temporary)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.full_size and args.check:
        check_full_size()
        return 0
    import torch

    from susx_cli import runtime
    from susx_cli.adapters import diffusers as sd
    from susx_cli.adapters.tiny_sd import build_random_sd1_pipeline, build_tiny_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)

    work = args.work or Path(tempfile.mkdtemp(prefix="susx-sd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        if args.full_size:
            if not torch.cuda.is_available() and args.device in ("auto", "cuda"):
                print(
                    "--full-size needs a CUDA GPU (use --check to verify the architecture without one)",
                    file=sys.stderr,
                )
                return 2
            args.classes = args.classes or 2
            per_class = args.per_class or 8
            t = time.perf_counter()
            model = build_random_sd1_pipeline(
                work / "sd1-random-fp16", device=runtime.resolve_device(args.device)
            )
            print(f"built random-weight SD 1.x pipeline in {time.perf_counter() - t:.1f} s: {model}")
            for name in ("paper", "fast"):
                p = sd.PRESETS[name]
                settings = {
                    "preset": name,
                    "per_class": per_class,
                    "steps": p.steps,
                    "guidance": p.guidance,
                    "size": p.width,
                    "scheduler": p.scheduler,
                }
                results.append(measure(model, work, settings, args, f"full-size {name}"))
                report(results[-1])
        else:
            args.classes = args.classes or 4
            model = build_tiny_pipeline(work / "tiny-sd")
            settings = {
                "preset": "paper",
                "per_class": args.per_class or 8,
                "steps": args.steps,
                "guidance": 9.5,
                "size": args.size,
                "scheduler": "default",
            }
            results.append(measure(model, work, settings, args, "tiny"))
            report(results[-1])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
