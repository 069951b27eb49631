"""Benchmark: images/s and peak memory of `susx embed` against `clip-retrieval inference`, side by side.

Both embed the same generated JPEGs (class folders) with the same random-weight open_clip model (the
'susx-tiny-vit' config with weights from one local checkpoint file, so no download), on the CPU, with
the same batch size and number of data-loading workers. Each run is its own Python process:

  susx            susx_cli.stages.embed.embed_images(...)  -> HDF5 (features float32)
  clip-retrieval  clip_retrieval.clip_inference.main.main(input_format="files", enable_text=False,
                  clip_model="open_clip:susx-tiny-vit/<checkpoint path>", ...)  -> .npy (float16) + parquet

clip-retrieval loads open_clip models through all_clip, which splits "open_clip:ARCH/PRETRAINED" at the
first '/' and hands PRETRAINED to open_clip.create_model_and_transforms; a local file path is loaded as
a checkpoint. The runner registers the susx-tiny-vit config (open_clip.add_model_config) in the
clip-retrieval process before calling it. CUDA is hidden from both runs (CUDA_VISIBLE_DEVICES="").

Measured per run: the time of the library call (after imports; it includes model loading and, for
clip-retrieval, its warm-up), the wall time of the whole process, ru_maxrss of the process (from
wait4: the largest of the process and its waited-for children, not a sum), and the peak of the summed
proportional set size (PSS) of the whole process tree, sampled every 0.1 s. Both tools also run on 4x
the images: susx's memory should stay flat, and the difference of the two runs' times gives the
marginal throughput with fixed costs (imports, model loading, worker start-up) cancelled out.

    python benchmarks/embed_throughput.py                  # 2,000 images (and 8,000 for the 4N runs)
    python benchmarks/embed_throughput.py --num-images 500 --workers 1 --batch-size 64
    python benchmarks/embed_throughput.py --model ViT-B-16 --device cuda --susx-only --no-4n --repeats 1
                                          # GPU: susx alone, full-size ViT-B/16 with random weights
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODEL = "susx-tiny-vit"


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def class_names(n: int) -> list[str]:
    return [f"class_{i:03d}" for i in range(n)]


def make_images(root: Path, count: int, classes: int, size: int, seed: int) -> None:
    """``count`` size x size JPEGs, round-robin over class folders: smooth colour fields plus grain."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = class_names(classes)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(size, size, 3), dtype=np.int16)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(
            root / names[i % classes] / f"{i // classes:05d}.jpg", quality=90
        )


def subset_links(src: Path, dst: Path, count: int, classes: int) -> None:
    """The first ``count`` images of ``src`` (same round-robin order), hard-linked into ``dst``."""
    names = class_names(classes)
    for name in names:
        (dst / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rel = Path(names[i % classes]) / f"{i // classes:05d}.jpg"
        os.link(src / rel, dst / rel)


def tiny_config_path() -> Path:
    import susx_cli.adapters.openclip as oc

    return Path(oc.__file__).resolve().parent.parent / "data" / oc.BUILTIN_CONFIGS[MODEL]


def write_checkpoint(path: Path, seed: int, model_name: str = MODEL) -> None:
    """Random weights for ``model_name`` (an open_clip architecture), a plain state dict both tools load offline."""
    import open_clip
    import torch

    open_clip.add_model_config(tiny_config_path())
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None)
    torch.save(model.state_dict(), path)


# ----------------------------------------------------------------------------------------------------
# Runners (child processes)
# ----------------------------------------------------------------------------------------------------


def run_susx(args) -> dict:
    import open_clip  # noqa: F401  imported before the clock starts, as in the clip-retrieval runner

    from susx_cli.stages.embed import embed_images

    t0 = time.perf_counter()
    result = embed_images(
        Path(args.input),
        Path(args.out) / "features.h5",
        model=args.model,
        pretrained=args.checkpoint,
        class_names=class_names(args.classes),
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
    )
    return {"call_s": time.perf_counter() - t0, "rows": result.summary.get("rows")}


def run_clip_retrieval(args) -> dict:
    import open_clip
    from clip_retrieval.clip_inference.main import main as clip_inference

    open_clip.add_model_config(tiny_config_path())  # the architecture; the weights come from the checkpoint
    t0 = time.perf_counter()
    clip_inference(
        input_dataset=args.input,
        output_folder=str(Path(args.out) / "cr"),
        input_format="files",
        batch_size=args.batch_size,
        num_prepro_workers=args.workers,
        enable_text=False,
        enable_image=True,
        enable_metadata=False,
        clip_model=f"open_clip:{args.model}/{args.checkpoint}",
        use_jit=False,
        use_mclip=False,
        distribution_strategy="sequential",
        enable_wandb=False,
    )
    return {"call_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------------
# Measuring a child
# ----------------------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree_pss_kib(root: int) -> int:
    kids, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def measure(args, tool: str, images: Path, count: int, out: Path) -> dict:
    """Run one embedding in a child process; its result plus wall time, ru_maxrss and peak tree PSS."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, os.path.abspath(__file__), "--_run", tool, "--_input", str(images), "--_out", str(out),
        "--_checkpoint", str(args.checkpoint), "--classes", str(args.classes),
        "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--model", args.model, "--device", args.device,
    ]  # fmt: skip
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONWARNINGS="ignore")
    if args.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads))
    log = open(out / "output.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    peak = {"pss": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["pss"] = max(peak["pss"], _tree_pss_kib(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    log.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {"tool": tool, "images": count, "wall_s": wall, "maxrss_mib": usage.ru_maxrss / 1024,
           "pss_mib": peak["pss"] / 1024, "rc": proc.returncode, "log": str(out / "output.log")}  # fmt: skip
    if proc.returncode != 0:
        tail = (out / "output.log").read_text(errors="replace").strip().splitlines()[-15:]
        row["error"] = "\n".join(tail)
        return row
    row.update(json.loads((out / "result.json").read_text()))
    return row


def compare_embeddings(susx_out: Path, cr_out: Path, images: Path) -> str:
    """Same weights and preprocessing: the two tools should give the same embeddings (up to float16)."""
    import glob

    import h5py
    import numpy as np
    import pandas as pd

    with h5py.File(susx_out / "features.h5", "r") as fh:
        feats = fh["features"][:]
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in fh["keys"][:]]
    emb = np.concatenate([np.load(p) for p in sorted(glob.glob(str(cr_out / "cr" / "img_emb" / "*.npy")))])
    meta = pd.concat(
        [pd.read_parquet(p) for p in sorted(glob.glob(str(cr_out / "cr" / "metadata" / "*.parquet")))]
    )
    cr_rows = {str(Path(p).relative_to(images)): i for i, p in enumerate(meta["image_path"])}
    idx = [i for i, k in enumerate(keys) if k in cr_rows]
    a = feats[idx]
    b = emb[[cr_rows[keys[i]] for i in idx]].astype(np.float32)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return (f"{len(idx)} of {len(keys)} susx rows matched clip-retrieval rows by path; "
            f"max |difference| {np.abs(a - b).max():.2e}, min cosine {cos.min():.6f}")  # fmt: skip


# ----------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-images", type=int, default=2000, help="N: images of the side-by-side runs")
    ap.add_argument("--classes", type=int, default=20, help="class folders")
    ap.add_argument("--image-size", type=int, default=224, help="JPEG width and height")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--workers",
        type=int,
        default=max(0, min(8, (os.cpu_count() or 1) - 1)),
        help="data-loading worker processes, both tools (default: cores - 1, susx's default)",
    )
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the runs (0: leave alone)")
    ap.add_argument(
        "--repeats", type=int, default=2, help="run the whole plan this many times; report the fastest"
    )
    ap.add_argument("--no-4n", dest="four_n", action="store_false", help="skip the susx run on 4N images")
    ap.add_argument(
        "--no-cr-4n", dest="cr_4n", action="store_false", help="skip the clip-retrieval run on 4N images"
    )
    ap.add_argument(
        "--work-dir", type=Path, default=None, help="where images and outputs go (default: a temp dir)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--model", default=MODEL, help=f"open_clip architecture, random weights (default {MODEL})"
    )
    ap.add_argument("--device", default="cpu", help="device of the runs: cpu (CUDA hidden) or cuda")
    ap.add_argument("--susx-only", action="store_true", help="run susx alone (no clip-retrieval runs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the per-run rows here")
    ap.add_argument("--_run", dest="run", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_input", dest="input", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_out", dest="out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_checkpoint", dest="checkpoint", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run:
        runner = {"susx": run_susx, "clip-retrieval": run_clip_retrieval}[args.run]
        result = runner(args)
        (Path(args.out) / "result.json").write_text(json.dumps(result))  # stdout is shared with helpers
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="susx-embed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    args.cr_4n = args.cr_4n and not args.susx_only
    N, total = args.num_images, args.num_images * (4 if (args.four_n or args.cr_4n) else 1)
    print(f"embedding throughput: {N:,} JPEGs of {args.image_size} px in {args.classes} class folders, "
          f"model {args.model} (random weights from one local checkpoint), {args.device}, batch {args.batch_size}, "
          f"{args.workers} loader worker(s), {os.cpu_count()} cores")  # fmt: skip
    load_before = os.getloadavg()
    print("load average before (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in load_before), flush=True)
    try:
        t0 = time.perf_counter()
        big, small = work / f"images_{total}", work / f"images_{N}"
        if not big.exists():
            make_images(big, total, args.classes, args.image_size, args.seed)
        if small != big and not small.exists():
            subset_links(big, small, N, args.classes)
        args.checkpoint = work / f"{args.model}-random.pt"
        write_checkpoint(args.checkpoint, args.seed, args.model)
        print(
            f"generated {total:,} images and the checkpoint in {time.perf_counter() - t0:.0f} s ({work})",
            flush=True,
        )

        plan = [("susx", N)] + ([] if args.susx_only else [("clip-retrieval", N)])
        plan += [("susx", 4 * N)] if args.four_n else []
        plan += [("clip-retrieval", 4 * N)] if args.cr_4n and not args.susx_only else []
        rows, first = [], {}
        for rep in range(args.repeats):
            for tool, count in plan:
                print(
                    f"running {tool} on {count:,} images (repeat {rep + 1} of {args.repeats}) ...", flush=True
                )
                out = work / f"out_{tool}_{count}_{rep}"
                rows.append(measure(args, tool, small if count == N else big, count, out))
                first.setdefault((tool, count), out)

        print()
        print(f"{'tool':<16}{'images':>8}{'call s':>9}{'img/s (call)':>14}{'wall s':>9}{'img/s (wall)':>14}"
              f"{'ru_maxrss MiB':>15}{'tree PSS MiB':>14}")  # fmt: skip
        for r in rows:
            if r["rc"] != 0:
                print(
                    f"{r['tool']:<16}{r['images']:>8}  FAILED (exit {r['rc']}), log {r['log']}:\n{r['error']}"
                )
                continue
            print(f"{r['tool']:<16}{r['images']:>8}{r['call_s']:>9.2f}{r['images'] / r['call_s']:>14.1f}"
                  f"{r['wall_s']:>9.2f}{r['images'] / r['wall_s']:>14.1f}{r['maxrss_mib']:>15.0f}{r['pss_mib']:>14.0f}")  # fmt: skip

        # Per (tool, images): the fastest run's times (other processes only slow a run down) and the
        # largest memory peaks over the repeats.
        agg = {}
        for key in dict.fromkeys(plan):
            runs = [r for r in rows if (r["tool"], r["images"]) == key and r["rc"] == 0]
            if runs:
                agg[key] = {
                    "call_s": min(r["call_s"] for r in runs),
                    "wall_s": min(r["wall_s"] for r in runs),
                    "maxrss_mib": max(r["maxrss_mib"] for r in runs),
                    "pss_mib": max(r["pss_mib"] for r in runs),
                }
        if args.json:
            runs = [{"tool": t, "images": n, "img_per_s_call": n / a["call_s"], "img_per_s_wall": n / a["wall_s"], **a}
                    for (t, n), a in agg.items()]  # fmt: skip
            args.json.write_text(
                json.dumps({"model": args.model, "device": args.device, "runs": runs}, indent=2)
            )
        rep_note = " (fastest of the repeats)" if args.repeats > 1 else ""
        print()
        s, c = agg.get(("susx", N)), agg.get(("clip-retrieval", N))
        if s and c:
            print(f"susx / clip-retrieval at {N:,} images{rep_note}: images/s (call) {c['call_s'] / s['call_s']:.2f}x, "
                  f"images/s (wall) {c['wall_s'] / s['wall_s']:.2f}x; memory ru_maxrss {s['maxrss_mib'] / c['maxrss_mib']:.2f}x, "
                  f"tree PSS {s['pss_mib'] / c['pss_mib']:.2f}x")  # fmt: skip
            try:
                print(
                    "embeddings: "
                    + compare_embeddings(first[("susx", N)], first[("clip-retrieval", N)], small)
                )
            except Exception as exc:  # a check, not the benchmark: say why it could not run
                print(f"embeddings: comparison failed: {exc.__class__.__name__}: {exc}")
        elif not args.susx_only:
            failed = sorted({r["tool"] for r in rows if r["rc"] != 0})
            print(f"no side-by-side ratio: {', '.join(failed)} failed (see above)")
        marginal = {}
        for tool in ("susx", "clip-retrieval"):
            one, four = agg.get((tool, N)), agg.get((tool, 4 * N))
            if not (one and four):
                continue
            print(f"{tool} memory, {4 * N:,} vs {N:,} images: ru_maxrss {four['maxrss_mib'] / one['maxrss_mib']:.2f}x, "
                  f"tree PSS {four['pss_mib'] / one['pss_mib']:.2f}x (1.00x = flat)")  # fmt: skip
            if four["call_s"] > one["call_s"]:
                marginal[tool] = 3 * N / (four["call_s"] - one["call_s"])
                print(f"{tool}: marginal images/s from {N:,} to {4 * N:,} images (fixed costs cancel): "
                      f"{marginal[tool]:.1f}")  # fmt: skip
            else:
                print(f"{tool}: marginal images/s not measurable: the {4 * N:,}-image run was not slower than the "
                      f"{N:,}-image one (load from other processes)")  # fmt: skip
        if len(marginal) == 2:
            print(
                f"susx / clip-retrieval marginal images/s: {marginal['susx'] / marginal['clip-retrieval']:.2f}x"
            )
        load_after = os.getloadavg()
        print("load average after (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in load_after))
        if load_before[0] >= 0.5 * (os.cpu_count() or 1):
            print(
                "NOTE: other processes were using the cores when this started (1-min load above half the cores), "
                "so times may be inflated and noisy (the marginal figures most of all); more --repeats help."
            )
        print("call s: the library call after imports (model load, clip-retrieval's warm-up, reading, writing); "
              "wall s: the whole child process. ru_maxrss: largest single process of the run; tree PSS: "
              "sum over the run's process tree (workers included), sampled every 0.1 s.")  # fmt: skip
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
