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


def write_checkpoint(path: Path, seed: int) -> None:
    """Random weights for susx-tiny-vit, saved as a plain state dict both tools can load offline."""
    import open_clip
    import torch

    open_clip.add_model_config(tiny_config_path())
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL, pretrained=None)
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
        model=MODEL,
        pretrained=args.checkpoint,
        class_names=class_names(args.classes),
        batch_size=args.batch_size,
        workers=args.workers,
        device="cpu",
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
        clip_model=f"open_clip:{MODEL}/{args.checkpoint}",
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
    ]  # fmt: skip
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", NO_ALBUMENTATIONS_UPDATE="1", PYTHONWARNINGS="ignore")
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
        "--repeats", type=int, default=1, help="alternate susx / clip-retrieval runs at N this many times"
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
    N, total = args.num_images, args.num_images * (4 if (args.four_n or args.cr_4n) else 1)
    print(f"embedding throughput: {N:,} JPEGs of {args.image_size} px in {args.classes} class folders, "
          f"model {MODEL} (random weights from one local checkpoint), CPU, batch {args.batch_size}, "
          f"{args.workers} loader worker(s), {os.cpu_count()} cores")  # fmt: skip
    print("load average before (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    try:
        t0 = time.perf_counter()
        big, small = work / f"images_{total}", work / f"images_{N}"
        if not big.exists():
            make_images(big, total, args.classes, args.image_size, args.seed)
        if small != big and not small.exists():
            subset_links(big, small, N, args.classes)
        args.checkpoint = work / "susx-tiny-vit-random.pt"
        write_checkpoint(args.checkpoint, args.seed)
        print(
            f"generated {total:,} images and the checkpoint in {time.perf_counter() - t0:.0f} s ({work})",
            flush=True,
        )

        rows, first = [], {}
        for rep in range(args.repeats):
            for tool in ("susx", "clip-retrieval"):
                print(f"running {tool} on {N:,} images (repeat {rep + 1}) ...", flush=True)
                out = work / f"out_{tool}_{N}_{rep}"
                rows.append(measure(args, tool, small, N, out))
                first.setdefault(tool, out)
        if args.four_n:
            print(f"running susx on {4 * N:,} images ...", flush=True)
            rows.append(measure(args, "susx", big, 4 * N, work / f"out_susx_{4 * N}"))
        if args.cr_4n:
            print(f"running clip-retrieval on {4 * N:,} images ...", flush=True)
            rows.append(measure(args, "clip-retrieval", big, 4 * N, work / f"out_clip-retrieval_{4 * N}"))

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

        ok = [r for r in rows if r["rc"] == 0]
        best = {}
        for tool in ("susx", "clip-retrieval"):
            runs = [r for r in ok if r["tool"] == tool and r["images"] == N]
            if runs:
                best[tool] = min(runs, key=lambda r: r["call_s"])
        print()
        if len(best) == 2:
            s, c = best["susx"], best["clip-retrieval"]
            print(f"susx / clip-retrieval at {N:,} images: images/s (call) {c['call_s'] / s['call_s']:.2f}x, "
                  f"images/s (wall) {c['wall_s'] / s['wall_s']:.2f}x, ru_maxrss {s['maxrss_mib'] / c['maxrss_mib']:.2f}x, "
                  f"tree PSS {s['pss_mib'] / c['pss_mib']:.2f}x")  # fmt: skip
            try:
                print("embeddings: " + compare_embeddings(first["susx"], first["clip-retrieval"], small))
            except Exception as exc:  # a check, not the benchmark: say why it could not run
                print(f"embeddings: comparison failed: {exc.__class__.__name__}: {exc}")
        else:
            failed = [r["tool"] for r in rows if r["rc"] != 0]
            print(f"no side-by-side ratio: {', '.join(failed)} failed (see above)")
        four = [r for r in ok if r["tool"] == "susx" and r["images"] == 4 * N]
        if four and "susx" in best:
            s = best["susx"]
            print(f"susx memory, {4 * N:,} vs {N:,} images: ru_maxrss {four[0]['maxrss_mib'] / s['maxrss_mib']:.2f}x, "
                  f"tree PSS {four[0]['pss_mib'] / s['pss_mib']:.2f}x (1.00x = flat)")  # fmt: skip
        cr_four = [r for r in ok if r["tool"] == "clip-retrieval" and r["images"] == 4 * N]
        if cr_four and "clip-retrieval" in best:
            c = best["clip-retrieval"]
            print(f"clip-retrieval memory, {4 * N:,} vs {N:,} images: ru_maxrss "
                  f"{cr_four[0]['maxrss_mib'] / c['maxrss_mib']:.2f}x, tree PSS {cr_four[0]['pss_mib'] / c['pss_mib']:.2f}x")  # fmt: skip
        for tool in ("susx", "clip-retrieval"):
            four = [r for r in ok if r["tool"] == tool and r["images"] == 4 * N]
            if four and tool in best and four[0]["call_s"] > best[tool]["call_s"]:
                best[tool]["marginal"] = 3 * N / (four[0]["call_s"] - best[tool]["call_s"])
                print(f"{tool}: marginal images/s from {N:,} to {4 * N:,} images (fixed costs cancel): "
                      f"{best[tool]['marginal']:.1f}")  # fmt: skip
        if all("marginal" in best.get(t, {}) for t in ("susx", "clip-retrieval")):
            print(f"susx / clip-retrieval marginal images/s: "
                  f"{best['susx']['marginal'] / best['clip-retrieval']['marginal']:.2f}x")  # fmt: skip
        print("load average after (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
        print("call s: the library call after imports (model load, clip-retrieval's warm-up, reading, writing); "
              "wall s: the whole child process. ru_maxrss: largest single process of the run; tree PSS: "
              "sum over the run's process tree (workers included), sampled every 0.1 s.")  # fmt: skip
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
