"""`curate --source sd` with a real (tiny, random-weight) diffusers StableDiffusionPipeline."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import PromptEntry, Prompts, write_prompts
from susx_cli.sources.sd import derive_seed, pick_prompt
from tests.helpers import invoke

pytest.importorskip("diffusers")

REPO = Path(__file__).resolve().parents[2]
# Index order differs from alphabetical order, so a sorted folder listing would permute the labels.
CLASSES = ["zebra", "apple", "mango"]
CUPL = {
    "zebra": [
        "A zebra has black and white stripes.",
        "A horse-like animal of the savanna.",
        "Stripes everywhere.",
    ],
    "apple": ["A round red or green fruit.", "An apple hangs from a tree."],
    "mango": ["A sweet tropical stone fruit.", "A yellow-orange mango."],
}
K = 4  # images per class in the reference run


def _write_prompts(path: Path, cupl: bool = True) -> Path:
    entries = [
        PromptEntry(
            i, name, name, f"A photo of a {name}.", [f"itap of a {name}."], list(CUPL[name]) if cupl else []
        )
        for i, name in enumerate(CLASSES)
    ]
    write_prompts(path, Prompts(entries, "template", None, {}, common.provenance({}, [])))
    return path


@pytest.fixture(scope="module")
def sd_env(tmp_path_factory):
    """The tiny pipeline (built once), prompts files, and a reference support set made with batch size 1."""
    import torch

    from susx_cli.adapters.tiny_sd import build_tiny_pipeline

    # One thread: the tiny model gains nothing from more, and a busy 2-core machine makes OpenMP's
    # spinning threads several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sd")
    pipe = build_tiny_pipeline(root / "tiny-sd")
    assert build_tiny_pipeline(root / "tiny-sd") == pipe  # idempotent: a second call finds it
    env = {
        "root": root,
        "pipe": pipe,
        "prompts": _write_prompts(root / "prompts.json"),
        "no_cupl": _write_prompts(root / "prompts-nocupl.json", cupl=False),
    }
    env["args"] = [
        "--source",
        "sd",
        "--sd-model",
        pipe,
        "--size",
        "32",
        "--steps",
        "2",
        "--device",
        "cpu",
        "-k",
        K,
        "-q",
    ]
    invoke("curate", env["prompts"], "-o", root / "ref", *env["args"], "--batch-size", "1")
    env["ref"] = root / "ref"
    yield env
    torch.set_num_threads(threads)


def _rows(support: Path) -> list[dict]:
    return [json.loads(line) for line in (support / "manifest.jsonl").read_text().splitlines()]


def _pixels(support: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    out = {}
    for row in _rows(support):
        with Image.open(support / row["path"]) as im:
            out[row["path"]] = np.asarray(im.convert("RGB"))
    return out


def _same_images(a: Path, b: Path, exact: bool = True) -> None:
    """Same files, prompts and seeds; pixel-identical, or (``exact=False``, runs of different --batch-size)
    within fp32 rounding.

    A pipeline call on a CPU computes one image with exactly the same arithmetic as another call only when
    the batch shapes match (every call of a run is padded to its batch size, so they do): MKL's GEMM takes another path for fewer than 4 rows, and vectorised
    element-wise ops treat a tensor's tail elements differently, so a batch of 3 and a batch of 1 differ
    by about 1e-6 in float, which flips an 8-bit value by one in about 1 in 1000 values.
    """
    pa, pb = _pixels(a), _pixels(b)
    assert sorted(pa) == sorted(pb)
    strip = ("sha256", "bytes")
    ra = [{k: v for k, v in r.items() if k not in strip} for r in _rows(a)]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in _rows(b)]
    assert ra == rb
    if exact:
        for key in pa:
            assert np.array_equal(pa[key], pb[key]), key
        assert (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()
        return
    x = np.stack([pa[k] for k in sorted(pa)]).astype(int)
    y = np.stack([pb[k] for k in sorted(pb)]).astype(int)
    assert np.abs(x - y).max() <= 1
    assert (x != y).mean() < 0.01


@pytest.mark.slow
def test_tiny_pipeline_loads_with_auto_pipeline(sd_env):
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(sd_env["pipe"], local_files_only=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    ids = pipe.tokenizer("A photo of a zebra.").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) > 4  # CLIP's BPE vocabulary: real sub-words


@pytest.mark.slow
def test_generation_writes_images_and_a_full_manifest(sd_env):
    ref = sd_env["ref"]
    rows = _rows(ref)
    assert len(rows) == len(CLASSES) * K
    marker = json.loads((ref / "_SUCCESS.json").read_text())
    assert marker["complete"] and marker["per_class"] == [K] * len(CLASSES)
    assert marker["black_dropped"] == 0 and marker["generated"] == len(CLASSES) * K
    for row in rows:
        ci, order = row["class_index"], row["order"]
        assert row["path"].startswith(f"{ci:04d}_{CLASSES[ci]}/")
        assert row["class_name"] == CLASSES[ci]
        assert row["prompt"] == f"A photo of a {CLASSES[ci]}."
        assert row["seed"] == derive_seed(0, ci, order) and row["attempt"] == 0
        assert row["model"] == str(sd_env["pipe"]) and row["revision"] is None
        assert row["pipeline"] == "StableDiffusionPipeline" and row["scheduler"] == "PNDMScheduler"
        assert (row["steps"], row["guidance"], row["width"], row["height"]) == (2, 9.5, 32, 32)
        assert row["precision"] == "fp32" and row["source"] == "sd"
        assert common.sha256_file(ref / row["path"]) == row["sha256"]
    # Seeds differ across classes and images (the reference repeated them across classes).
    assert len({r["seed"] for r in rows}) == len(rows)
    pixels = _pixels(ref)
    assert all(p.shape == (32, 32, 3) and p.max() > 50 for p in pixels.values())
    assert len({p.tobytes() for p in pixels.values()}) == len(rows)
    options = json.loads((ref / "classes.json").read_text())["options"]
    assert options["preset"] == "paper" and options["steps"] == 2 and "batch_size" not in options


@pytest.mark.slow
def test_images_do_not_depend_on_batch_size(sd_env):
    out = sd_env["root"] / "batch3"
    invoke("curate", sd_env["prompts"], "-o", out, *sd_env["args"], "--batch-size", "3")
    # Same prompts and seeds, so the same images, up to the last bit of fp32 arithmetic (see _same_images).
    _same_images(out, sd_env["ref"], exact=False)


@pytest.mark.slow
def test_images_do_not_depend_on_sharding(sd_env, monkeypatch):
    out = sd_env["root"] / "sharded"
    r = invoke(
        "curate",
        sd_env["prompts"],
        "-o",
        out,
        *sd_env["args"],
        "--batch-size",
        "1",
        "--num-shards",
        "2",
        "--shard-index",
        "0",
        "--json",
    )
    assert json.loads(r.stdout)["summary"]["complete"] is False
    assert not (out / "_SUCCESS.json").exists()
    # The second worker finds its position in a SLURM array's environment.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    invoke("curate", sd_env["prompts"], "-o", out, *sd_env["args"], "--batch-size", "1")
    assert sorted(p.name for p in (out / "parts").glob("*.jsonl")) == [
        "manifest-00000-of-00002.jsonl",
        "manifest-00001-of-00002.jsonl",
    ]
    _same_images(out, sd_env["ref"])


@pytest.mark.slow
def test_shards_and_resumes_give_the_images_of_one_run_of_the_same_batch_size(sd_env, monkeypatch):
    """Pixel-identical at one --batch-size: one run makes batches of 5, 5, 2 images; two shards 5, 1
    each; a run stopped after 4 images resumes with 5, 3. Every call is padded to 5 images."""
    from susx_cli.artifacts.support import SupportWriter

    root, args = sd_env["root"], [*sd_env["args"], "--batch-size", "5"]
    invoke("curate", sd_env["prompts"], "-o", root / "b5", *args)
    for i in ("0", "1"):
        invoke(
            "curate",
            sd_env["prompts"],
            "-o",
            root / "b5-sharded",
            *args,
            "--num-shards",
            "2",
            "--shard-index",
            i,
        )
    _same_images(root / "b5-sharded", root / "b5")

    real_add, added = SupportWriter.add, []

    def add_then_stop(self, *a, **k):
        if len(added) == 4:
            raise RuntimeError("stopped")
        added.append(1)
        return real_add(self, *a, **k)

    with monkeypatch.context() as patched:
        patched.setattr(SupportWriter, "add", add_then_stop)
        invoke("curate", sd_env["prompts"], "-o", root / "b5-resumed", *args, expect=1)
    r = invoke("curate", sd_env["prompts"], "-o", root / "b5-resumed", *[a for a in args if a != "-q"])
    assert "4 of 12 images of this shard are already done" in r.stderr
    _same_images(root / "b5-resumed", root / "b5")


@pytest.mark.slow
def test_memory_savers_run_and_stay_out_of_the_options(sd_env):
    out = sd_env["root"] / "savers"
    invoke(
        "curate",
        sd_env["prompts"],
        "-o",
        out,
        *sd_env["args"],
        "-k",
        "1",
        "--batch-size",
        "3",
        "--attention-slicing",
        "--vae-slicing",
        "--vae-tiling",
    )
    marker = json.loads((out / "_SUCCESS.json").read_text())
    assert marker["images"] == 3
    assert marker["runtime"]["attention_slicing"] and marker["runtime"]["vae_tiling"]
    options = json.loads((out / "classes.json").read_text())["options"]
    assert not any("slicing" in k or "tiling" in k or k == "device" for k in options)


@pytest.mark.slow
def test_rerun_is_skipped_and_other_options_are_refused(sd_env):
    r = invoke("curate", sd_env["prompts"], "-o", sd_env["ref"], *sd_env["args"], "--batch-size", "4")
    assert r.stdout.strip() == str(sd_env["ref"])
    r = invoke("curate", sd_env["prompts"], "-o", sd_env["ref"], *sd_env["args"], "--steps", "3", expect=2)
    assert "--overwrite" in r.stderr


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_support_set(sd_env):
    out = sd_env["root"] / "killed"
    cmd = [
        sys.executable,
        "-m",
        "susx_cli",
        "curate",
        str(sd_env["prompts"]),
        "-o",
        str(out),
        *map(str, sd_env["args"]),
        "--batch-size",
        "1",
    ]
    part = out / "parts" / "manifest-00000-of-00001.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if part.exists() and part.read_text().count("\n") >= 1:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "curate finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # Nothing the part manifest calls complete is missing or torn; the set is not marked complete.
    assert not (out / "_SUCCESS.json").exists() and not (out / "manifest.jsonl").exists()
    done = [json.loads(line) for line in part.read_text().splitlines() if line.strip()]
    assert 1 <= len(done) < len(CLASSES) * K
    for row in done:
        assert common.sha256_file(out / row["path"]) == row["sha256"]
    r = invoke("curate", sd_env["prompts"], "-o", out, *sd_env["args"][:-1], "--batch-size", "1")
    assert "resuming" in r.stderr
    _same_images(out, sd_env["ref"])


class _BlackOut:
    """A safety-checker stand-in: blanks (all zeros) and flags the images of chosen seeds, like SD's checker."""

    def __init__(self, pipe, seeds):
        self.pipe, self.seeds = pipe, set(seeds)

    def __call__(self, **kwargs):
        out = self.pipe(**kwargs)
        flags = []
        for j, gen in enumerate(kwargs["generator"]):
            hit = gen.initial_seed() in self.seeds
            if hit:
                out.images[j] = 0.0
            flags.append(hit)
        out.nsfw_content_detected = flags
        return out


@pytest.mark.slow
def test_black_images_are_regenerated_from_the_next_seed_or_dropped(sd_env, monkeypatch):
    from susx_cli.adapters import diffusers as sd

    # (apple, image 0): black once, then fine. (mango, image 1): black at every attempt, so dropped.
    blacked = [derive_seed(0, 1, 0, 0), derive_seed(0, 2, 1, 0), derive_seed(0, 2, 1, 1)]
    real_load = sd.load_pipeline

    def load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.pipe = _BlackOut(loaded.pipe, blacked)
        return loaded

    monkeypatch.setattr(sd, "load_pipeline", load)
    out = sd_env["root"] / "black"
    args = [a for a in sd_env["args"] if a != "-q"]
    r = invoke(
        "curate", sd_env["prompts"], "-o", out, *args, "-k", "2", "--batch-size", "3", "--black-retries", "1"
    )
    assert "class 'mango' has 1 of 2 images" in r.stderr
    assert "dropped 1 image" in r.stderr
    rows = {(row["class_index"], row["order"]): row for row in _rows(out)}
    assert (2, 1) not in rows and len(rows) == 5
    assert rows[(1, 0)]["attempt"] == 1 and rows[(1, 0)]["seed"] == derive_seed(0, 1, 0, 1)
    assert rows[(0, 0)]["attempt"] == 0 and rows[(0, 0)]["seed"] == derive_seed(0, 0, 0, 0)
    marker = json.loads((out / "_SUCCESS.json").read_text())
    assert marker["black_regenerated"] == 2 and marker["black_dropped"] == 1 and marker["nsfw_flagged"] == 3
    assert marker["per_class"] == [2, 2, 1]
    # Images kept are exactly those of the unblocked seeds: the same as in the reference set.
    ref = _pixels(sd_env["ref"])
    got = _pixels(out)
    assert np.array_equal(got[rows[(0, 1)]["path"]], ref[rows[(0, 1)]["path"]])
    assert not any(np.array_equal(got[rows[(1, 0)]["path"]], p) for p in ref.values())


def test_black_detection_threshold():
    from susx_cli.adapters.diffusers import is_black

    rng = np.random.default_rng(0)
    assert is_black(np.zeros((8, 8, 3), np.uint8))
    assert is_black(rng.integers(0, 6, (8, 8, 3)).astype(np.uint8))
    dark = np.zeros((8, 8, 3), np.uint8)
    dark[3, 4, 1] = 40
    assert not is_black(dark)


@pytest.mark.slow
def test_cupl_prompts_are_seeded_draws_of_the_class_sentences(sd_env):
    out = sd_env["root"] / "cupl"
    # Also: no classifier-free guidance (as turbo models), an ancestral scheduler (noise at every step, from
    # each image's own generator), M smaller than the batch size.
    invoke(
        "curate",
        sd_env["prompts"],
        "-o",
        out,
        *sd_env["args"],
        "-k",
        "3",
        "--prompt-mode",
        "cupl",
        "--batch-size",
        "5",
        "--seed",
        "7",
        "--guidance",
        "0",
        "--scheduler",
        "euler-a",
    )
    from susx_cli.artifacts.prompts import read_prompts

    prompts = read_prompts(sd_env["prompts"])
    rows = _rows(out)
    assert len(rows) == 9
    for row in rows:
        assert row["prompt"] in CUPL[row["class_name"]] and row["prompt_mode"] == "cupl"
        assert row["prompt"] == pick_prompt(prompts, row["class_index"], row["order"], "cupl", 7)
        assert row["seed"] == derive_seed(7, row["class_index"], row["order"])
        assert row["scheduler"] == "EulerAncestralDiscreteScheduler" and row["guidance"] == 0.0
    assert len({r["prompt"] for r in rows}) > 3  # sampled, not one sentence per class


@pytest.mark.slow
def test_contact_sheet_of_a_generated_support_set(sd_env):
    from PIL import Image

    sheet = sd_env["root"] / "sheet.png"
    r = invoke("inspect", sd_env["ref"], "--contact-sheet", sheet, "--per-class", "3")
    assert r.stdout.strip().splitlines()[-1] == str(sheet)
    described = json.loads(
        invoke("inspect", sd_env["ref"], "--contact-sheet", sheet, "--per-class", "3", "--json").stdout
    )["contact_sheet"]
    (page,) = described["pages"]
    assert page["classes"] == CLASSES and described["columns"] == 3 and described["thumb"] == 128
    assert "source sd" in page["title"][0] and "model " in page["title"][0]
    assert "images 32x32 px" in page["title"][3]
    with Image.open(sheet) as im:
        grid = np.asarray(im.convert("RGB"))
    cell, label_w, top = 128 + 4, 220, page["rows_top"]
    height = top + len(CLASSES) * page["row_height"]
    assert grid.shape == (page["size"][1], page["size"][0], 3) == (height, 640, 3)
    # One row per class in index order, its first three images left to right, each 32 px pixel drawn as a
    # 4 x 4 block (nearest-neighbour enlargement).
    pixels = _pixels(sd_env["ref"])
    for ci, name in enumerate(CLASSES):
        y = top + ci * page["row_height"]
        assert (grid[y : y + 128, :label_w] < 128).any()  # the class label is drawn
        for j in range(3):
            x = label_w + j * cell
            block = np.repeat(np.repeat(pixels[f"{ci:04d}_{name}/{j:05d}.png"], 4, axis=0), 4, axis=1)
            assert np.array_equal(grid[y : y + 128, x : x + 128], block)


def _one_line_error(r, needle: str) -> None:
    assert needle in r.stderr, r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--precision", "fp16"], "fp16 needs a GPU"),
        (["--size", "30"], "not a positive multiple of 8"),
        (["--size", "32x"], "is not N or WIDTHxHEIGHT"),
        (["-k", "0"], "--per-class must be at least 1"),
        (["--preset", "nope"], "'nope' is not one of 'paper'"),
        (["--scheduler", "warp"], "unknown scheduler 'warp'"),
        (["--prompt-mode", "poem"], "'poem' is not one of 'photo', 'cupl'"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--cpu-offload"], "--cpu-offload needs a CUDA GPU"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_options_give_one_line_errors(sd_env, extra, needle):
    out = sd_env["root"] / "bad-option"
    r = invoke("curate", sd_env["prompts"], "-o", out, *sd_env["args"], *extra, expect=2)
    _one_line_error(r, needle)
    assert not out.exists()


@pytest.mark.slow
def test_bad_models_and_prompts_give_one_line_errors(sd_env, tmp_path, monkeypatch):
    base = [a for a in sd_env["args"] if a != sd_env["pipe"]]
    i = base.index("--sd-model")
    del base[i]
    (tmp_path / "not-a-pipeline").mkdir()
    cases = [
        (["--sd-model", tmp_path / "not-a-pipeline"], sd_env["prompts"], "not a diffusers pipeline folder"),
        (["--sd-model", tmp_path / "missing" / "dir"], sd_env["prompts"], "no such folder"),
        (["--sd-model", "nobody-xyz/no-such-model"], sd_env["prompts"], "could not load diffusers model"),
        (
            ["--sd-model", sd_env["pipe"], "--prompt-mode", "cupl"],
            sd_env["no_cupl"],
            "pool 'cupl' has no texts",
        ),
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for extra, prompts, needle in cases:
        out = tmp_path / "out"
        r = invoke("curate", prompts, "-o", out, *base, *extra, expect=2)
        _one_line_error(r, needle)
        assert not out.exists() or not list(out.glob("*/*.png"))
    r = invoke(
        "curate",
        sd_env["prompts"],
        "-o",
        tmp_path / "o2",
        "--source",
        "sd",
        "--sd-model",
        sd_env["pipe"],
        expect=2,
    )
    _one_line_error(r, "needs --per-class")


@pytest.mark.slow
def test_missing_diffusers_names_the_extra(sd_env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    r = invoke("curate", sd_env["prompts"], "-o", tmp_path / "out", *sd_env["args"], expect=2)
    _one_line_error(r, "susx[sd]")
    from susx_cli.adapters.tiny_sd import build_tiny_pipeline
    from susx_cli.errors import SusxError

    with pytest.raises(SusxError, match="diffusers"):
        build_tiny_pipeline(tmp_path / "tiny")


def test_presets_fill_in_the_paper_settings_and_options_override_them():
    from susx_cli.adapters.diffusers import PRESETS
    from susx_cli.sources.sd import SDSource

    paper = SDSource(per_class=2)
    assert (
        paper.preset,
        paper.model,
        paper.steps,
        paper.guidance,
        paper.width,
        paper.height,
        paper.scheduler,
    ) == ("paper", "CompVis/stable-diffusion-v1-4", 85, 9.5, 512, 512, "default")
    fast = SDSource(per_class=2, preset="fast", steps=30, size="768x512")
    assert (fast.model, fast.steps, fast.scheduler, fast.width, fast.height) == (
        "CompVis/stable-diffusion-v1-4",
        30,
        "dpm++",
        768,
        512,
    )
    assert PRESETS["fast"].steps == 25 and PRESETS["sd-turbo"].guidance == 0.0


def test_seed_derivation_is_stable():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) < 2**53
    assert (
        len({derive_seed(s, c, i, a) for s in (0, 1) for c in range(5) for i in range(5) for a in range(3)})
        == 150
    )
    # Pinned: seeds must never change between susx versions, or resumed runs would mix two seed schemes.
    assert derive_seed(0, 0, 0) == derive_seed(0, 0, 0, 0, "noise") == 3096686234150244
    assert derive_seed(3, 2, 1, 1) == 5930544426219908


def test_png_encoding_roundtrip():
    from PIL import Image

    from susx_cli.sources.sd import png_bytes

    arr = np.random.default_rng(1).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(arr))) as im:
        assert im.size == (24, 16) and np.array_equal(np.asarray(im), arr)


def test_shards_starting_together_do_not_refuse_each_other(tmp_path):
    """torchrun ranks create the folder at the same moment: another rank's temporary file is not a foreign folder."""
    from susx_cli.artifacts.support import SupportWriter

    root = tmp_path / "support"
    root.mkdir()
    (root / ".classes.json.abc123.tmp").write_text("{")  # rank 0 is writing classes.json right now
    prov = common.provenance({"source": "sd"}, [])
    writer = SupportWriter(root, CLASSES, prov, shard_index=1, num_shards=2)
    writer.close()
    assert (root / "classes.json").is_file() and (root / "parts").is_dir()
