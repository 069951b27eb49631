"""Prompts, curate --source folder, embed, inspect through the CLI, and their bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, invoke, make_class_folders, make_image, make_split

# Index order differs from alphabetical order: a sorted folder listing would permute the labels.
CLASSES = ["zebra", "apple", "mango", "kiwi"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return tmp_path


def test_prompts_from_text_file_records_pools_and_cleaning(work):
    (work / "raw.txt").write_text("golden_retriever\n  tabby   cat \n")
    r = invoke("prompts", "-c", "raw.txt", "-o", "p.json", "--templates", "ensemble")
    assert r.stdout.strip() == "p.json"
    data = json.loads((work / "p.json").read_text())
    assert data["kind"] == "susx.prompts" and data["schema_version"] == 1
    assert data["classes"] == ["golden retriever", "tabby cat"]
    assert data["entries"][0]["raw_name"] == "golden_retriever"
    assert data["cleaning"] == {"underscores_to_spaces": True, "collapse_whitespace": True}
    assert (
        len(data["entries"][1]["template"]) == 7
        and data["entries"][1]["template"][0] == "itap of a tabby cat."
    )
    assert data["entries"][0]["photo"] == "A photo of a golden retriever."
    assert data["default_pool"] == "template"


def test_prompts_combined_pool_is_one_pool_of_templates_and_sentences(work):
    (work / "cupl.json").write_text(
        json.dumps({"zebra": ["A zebra has stripes.", "Black and white."], "apple": ["Red fruit."]})
    )
    invoke("prompts", "-c", "classes.txt", "-o", "p.json", "--cupl", "cupl.json", "--templates", "photo")
    data = json.loads((work / "p.json").read_text())
    assert data["default_pool"] == "combined"
    assert data["entries"][0]["cupl"] == ["A zebra has stripes.", "Black and white."]
    from susx_cli.artifacts.prompts import read_prompts

    texts = read_prompts(work / "p.json").pool_texts("combined")
    assert texts[0] == ["A photo of a zebra.", "A zebra has stripes.", "Black and white."]
    with pytest.raises(Exception, match="no texts for 2 class"):
        read_prompts(work / "p.json").pool_texts("cupl")


def test_prompts_builtin_imagenet_and_openai_templates(work):
    invoke("prompts", "--dataset", "imagenet", "--templates", "openai", "-o", "in.json")
    data = json.loads((work / "in.json").read_text())
    assert len(data["entries"]) == 1000 and len(data["entries"][0]["template"]) == 80
    assert data["entries"][0]["photo"] == f"A photo of a {data['classes'][0]}."


def test_prompts_from_coop_split_uses_label_order(work):
    split = make_split(work / "data", CLASSES, {"train": 1})
    invoke("prompts", "-c", split, "-o", "p.json")
    assert json.loads((work / "p.json").read_text())["classes"] == CLASSES


@pytest.mark.parametrize(
    "content,needle",
    [
        ("", "empty"),
        ("cat\ndog\ncat\n", "appears twice"),
        ("cat\n../x\n", "escape"),
        ("/\n", "escape"),
        ('["cat", "d\\u0000og"]', "control character"),
    ],
)
def test_prompts_refuses_bad_class_lists(work, content, needle):
    path = work / ("bad.json" if content.startswith("[") else "bad.txt")
    path.write_text(content)
    r = invoke("prompts", "-c", path, "-o", "p.json", expect=2)
    assert needle in r.stderr and "error:" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (work / "p.json").exists()


def test_outputs_are_idempotent_and_never_overwritten_without_flag(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    before = (work / "p.json").read_bytes()
    r = invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    assert "up to date" in r.stderr and (work / "p.json").read_bytes() == before
    r = invoke("prompts", "-c", "classes.txt", "-o", "p.json", "--templates", "photo", expect=2)
    assert "--overwrite" in r.stderr and (work / "p.json").read_bytes() == before
    invoke("prompts", "-c", "classes.txt", "-o", "p.json", "--templates", "photo", "--overwrite")
    assert len(json.loads((work / "p.json").read_text())["entries"][0]["template"]) == 1


def test_folder_support_and_embed_keep_class_indices(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(work / "shots", CLASSES, 3)
    r = invoke("curate", "p.json", "-o", "sup", "--images", "shots", "--json")
    out = json.loads(r.stdout)
    assert out["summary"]["per_class"] == [3, 3, 3, 3]
    rows = [json.loads(x) for x in (work / "sup" / "manifest.jsonl").read_text().splitlines()]
    assert {r["class_name"] for r in rows if r["class_index"] == 0} == {"zebra"}
    assert all(r["path"].startswith(f"{r['class_index']:04d}_") for r in rows)
    assert (work / "sup" / "_SUCCESS.json").exists()
    for row in rows:
        assert len(row["sha256"]) == 64 and row["width"] == 32

    invoke("embed", "sup", "-o", "sup.h5", *TINY)
    feats = hdf5.read_features(work / "sup.h5")
    by_key = {r["path"]: r["class_index"] for r in rows}
    assert [by_key[k] for k in feats.keys] == feats.labels.tolist()
    assert feats.classes == CLASSES
    np.testing.assert_allclose(np.linalg.norm(feats.features, axis=1), 1.0, atol=1e-5)

    # Plain class folders are matched to the class list by name, not by sort order.
    invoke("embed", "shots", "-o", "plain.h5", "-c", "p.json", *TINY)
    plain = hdf5.read_features(work / "plain.h5")
    assert [CLASSES.index(k.split("/")[0]) for k in plain.keys] == plain.labels.tolist()


def test_few_shot_split_sampling_is_seeded(work):
    split = make_split(work / "data", CLASSES, {"train": 5})
    invoke("embed", split, "--split", "train", "--shots", "2", "--seed", "3", "-o", "a.h5", *TINY)
    invoke("embed", split, "--split", "train", "--shots", "2", "--seed", "3", "-o", "b.h5", *TINY)
    invoke("embed", split, "--split", "train", "--shots", "2", "--seed", "4", "-o", "c.h5", *TINY)
    a, b, c = (hdf5.read_features(work / n) for n in ("a.h5", "b.h5", "c.h5"))
    assert a.keys == b.keys and np.bincount(a.labels).tolist() == [2, 2, 2, 2]
    assert a.keys != c.keys
    r = invoke("embed", split, "--split", "train", "--shots", "9", "-o", "d.h5", *TINY, expect=2)
    assert "fewer than --shots 9" in r.stderr


def test_text_classifier_is_normalised_mean_of_normalised_texts(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    invoke("embed", "p.json", "-o", "text.h5", *TINY)
    tc = hdf5.read_text_classifier(work / "text.h5")
    assert tc.weights.shape == (4, 32) and tc.num_texts.tolist() == [7, 7, 7, 7]
    import torch

    from susx_cli.adapters.openclip import load_model
    from susx_cli.artifacts.prompts import read_prompts

    m = load_model("susx-tiny-vit", "none")
    texts = read_prompts(work / "p.json").pool_texts("template")[1]
    with torch.no_grad():
        e = torch.nn.functional.normalize(m.model.encode_text(m.tokenizer(texts)).float(), dim=-1).mean(0)
    np.testing.assert_allclose(tc.weights[1], torch.nn.functional.normalize(e, dim=0).numpy(), atol=1e-5)


def test_unreadable_images_are_skipped_and_listed(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(work / "imgs", CLASSES, 2)
    good = (work / "imgs" / "kiwi" / "img_000.png").read_bytes()
    (work / "imgs" / "kiwi" / "trunc.png").write_bytes(good[: len(good) // 2])
    (work / "imgs" / "apple" / "html.jpg").write_text("<html>not an image</html>")
    r = invoke("embed", "imgs", "-o", "f.h5", "-c", "p.json", *TINY)
    assert "skipped unreadable image" in r.stderr
    f = hdf5.read_features(work / "f.h5")
    assert len(f.keys) == 8 and {s["key"] for s in f.skipped} == {"kiwi/trunc.png", "apple/html.jpg"}
    # curate refuses nothing silently either: bad files are left out and named
    r = invoke("curate", "p.json", "-o", "sup", "--images", "imgs")
    assert "skipped unreadable image" in r.stderr
    assert len((work / "sup" / "manifest.jsonl").read_text().splitlines()) == 8


@pytest.mark.parametrize(
    "args,needle",
    [
        (["embed", "missing.json", "-o", "x.h5"], "does not exist"),
        (["embed", "empty", "-o", "x.h5", "--unlabelled", *TINY], "holds no images"),
        (["embed", "p.json", "-o", "x.h5", "--model", "ViT-B-99", "--pretrained", "none"], "unknown model"),
        (
            ["embed", "p.json", "-o", "x.h5", "--model", "susx-tiny-vit", "--pretrained", "laion9000"],
            "no pretrained weights",
        ),
        (
            ["embed", "p.json", "-o", "x.h5", *TINY, "--precision", "fp16", "--device", "cpu"],
            "fp16 needs a GPU",
        ),
        (["embed", "wrongnames", "-o", "x.h5", "-c", "p.json", *TINY], "match no class name"),
        (["curate", "p.json", "-o", "sup", "--images", "partial"], "no images for 1 class"),
        (["curate", "classes.txt", "-o", "sup", "--images", "partial"], "not valid JSON"),
        (["curate", "text.h5", "-o", "sup", "--images", "partial"], "not valid JSON"),
        (["inspect", "nothing"], "does not exist"),
    ],
)
def test_bad_inputs_give_one_line_errors(work, args, needle):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    (work / "empty").mkdir()
    make_class_folders(work / "wrongnames", ["zebra", "durian"], 1)
    make_class_folders(work / "partial", CLASSES[:3], 1)
    (work / "text.h5").write_bytes(b"\x89HDF junk")
    r = invoke(*args, expect=2)
    assert needle in r.stderr, r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_readers_refuse_wrong_kind_and_schema(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    invoke("embed", "p.json", "-o", "text.h5", *TINY)
    make_class_folders(work / "shots", CLASSES, 2)
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    invoke("embed", "sup", "-o", "sup.h5", *TINY)
    r = invoke("calibrate", "sup.h5", "sup.h5", "-o", "c.json", expect=2)
    assert "expected susx.text_classifier" in r.stderr and "susx embed" in r.stderr
    with h5py.File(work / "sup.h5", "a") as f:
        f.attrs["schema_version"] = 7
    r = invoke("calibrate", "text.h5", "sup.h5", "-o", "c.json", expect=2)
    assert "schema version 7" in r.stderr
    assert not (work / "c.json").exists()


def test_class_list_mismatch_is_refused(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    (work / "other.txt").write_text("\n".join(["apple", "zebra", "mango", "kiwi"]))
    invoke("prompts", "-c", "other.txt", "-o", "q.json")
    make_class_folders(work / "shots", CLASSES, 2)
    invoke("curate", "q.json", "-o", "sup", "--images", "shots")
    invoke("embed", "sup", "-o", "sup.h5", *TINY)
    invoke("embed", "p.json", "-o", "text.h5", *TINY)
    r = invoke("calibrate", "text.h5", "sup.h5", "-o", "c.json", expect=2)
    assert "class lists" in r.stderr and "other order" in r.stderr


def test_inspect_describes_every_artifact(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(work / "shots", CLASSES, 2)
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    invoke("embed", "sup", "-o", "sup.h5", *TINY)
    d = json.loads(invoke("inspect", "sup.h5", "--json").stdout)
    assert d["kind"] == "susx.image_features" and d["datasets"]["features"]["shape"] == [8, 32]
    assert d["model"]["arch"] == "susx-tiny-vit" and d["model"]["random_weights"] is True
    assert d["provenance"]["inputs"][0]["kind"] == "susx.support_set"
    d = json.loads(invoke("inspect", "sup", "--json").stdout)
    assert d["kind"] == "susx.support_set" and d["per_class"] == [2, 2, 2, 2]
    d = json.loads(invoke("inspect", "p.json", "--json").stdout)
    assert d["num_classes"] == 4
    invoke("inspect", "sup", "--contact-sheet", "sheet.png")
    from PIL import Image

    with Image.open(work / "sheet.png") as im:
        assert im.size[1] >= 4 * 96


@pytest.mark.slow
def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom susx_cli.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'open_clip', 'h5py', 'diffusers') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert "HEAVY []" in out


@pytest.mark.slow
def test_console_script_runs_as_subprocess(work):
    exe = Path(sys.executable).parent / "susx"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "susx_cli"]
    out = subprocess.run(
        [*cmd, "prompts", "-c", "classes.txt", "-o", "p.json", "--json"],
        capture_output=True,
        text=True,
        cwd=work,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["outputs"] == ["p.json"]
    bad = subprocess.run([*cmd, "embed", "nope.h5", "-o", "x.h5"], capture_output=True, text=True, cwd=work)
    # stderr is a pipe, so a log: every line starts with the time, the error last
    assert bad.returncode == 2 and bad.stderr.splitlines()[-1].split(" ", 1)[1].startswith("error: nope.h5")


@pytest.mark.slow
def test_killed_embed_resumes_to_the_same_result(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    for ci, name in enumerate(CLASSES):
        for j in range(400):
            make_image(
                work / "many" / name / f"{j:04d}.png", ci * 1000 + j, (60 * ci, 100, 200 - 40 * ci), size=48
            )
    args = [
        "-m",
        "susx_cli",
        "embed",
        "many",
        "-c",
        "p.json",
        *TINY,
        "--batch-size",
        "8",
        "--workers",
        "0",
        "-q",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, *args, "-o", "killed.h5"], cwd=work, env=env)
    partial = work / "killed.h5.partial"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            with h5py.File(partial, "r", locking=False) as f:
                done = int(f.attrs["items_done"])
        except (OSError, KeyError):
            done = 0
        if done >= 160:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "embed finished before it could be killed; make the input larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "killed.h5").exists() and partial.exists()
    r = subprocess.run(
        [sys.executable, *args[:-1], "-o", "killed.h5"], cwd=work, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    subprocess.run([sys.executable, *args, "-o", "whole.h5"], cwd=work, env=env, check=True)
    a, b = hdf5.read_features(work / "killed.h5"), hdf5.read_features(work / "whole.h5")
    assert a.keys == b.keys and a.labels.tolist() == b.labels.tolist() and len(a.keys) == 1600
    np.testing.assert_allclose(a.features, b.features, atol=1e-6)


def test_classes_file_with_dataset_takes_that_datasets_photo_template(work):
    invoke("prompts", "-c", "classes.txt", "--dataset", "dtd", "--templates", "photo", "-o", "p.json")
    data = json.loads((work / "p.json").read_text())
    assert data["classes"] == CLASSES and data["entries"][0]["photo"] == "zebra texture."
    r = invoke("prompts", "-o", "q.json", expect=2)
    assert "--classes" in r.stderr
