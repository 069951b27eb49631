"""The table of bad inputs and faults, each with its expected exit and one-line message.

``OPEN`` lists the ids that are known to fail today; the suite marks them xfail(strict), so fixing one
turns its test red until it is moved out of ``OPEN`` — the table cannot silently drift.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from tests.faults.harness import Case
from tests.loopback import Server

TINY = ("--model", "susx-tiny-vit", "--pretrained", "none")


# ------------------------------------------------------------------ setups that plant a fault

_TDA = ("predict", "text.h5", "test.h5", "-o", "tda.h5", "--method", "tda")


def _no_rows(f):
    """A query set without rows: its row datasets replaced by empty ones of the same width and types."""
    for name in ("features", "labels", "keys"):
        old = f[name]
        shape, dtype = (0, *old.shape[1:]), old.dtype
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype)


def _edit_h5(name: str, edit):
    def setup(ws: Path) -> None:
        with h5py.File(ws / name, "a") as f:
            edit(f)

    return setup


def _labels_beyond_classes(f):
    f["labels"][0] = len(f["classes"])


def _drop_last_key(f):
    f["keys"].resize(f["keys"].shape[0] - 1, axis=0)


def _nan_row(f):
    f["features"][0] = np.nan


def _fewer_text_rows(f):
    w = f["weights"][()]
    del f["weights"]
    f.create_dataset("weights", data=w[:-1])


def _missing_attr(f):
    del f.attrs["model"]


def _other_support_calibration(ws: Path) -> None:
    # The same classes and model, another support set: shots sampled with another seed.
    shutil.copy(ws / "sup.h5", ws / "sup-other.h5")
    with h5py.File(ws / "sup-other.h5", "a") as f:
        x = f["features"][()]
        f["features"][()] = np.roll(x, 1, axis=0)


def _manifest_escape(ws: Path) -> None:
    manifest = ws / "sup" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["path"] = "../mine/thesis.tex"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _classes_like_folder(ws: Path) -> None:
    # A folder of the user's that merely has a classes.json: not something susx made.
    (ws / "mine" / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))


def _case_clash_classes(ws: Path) -> None:
    (ws / "clash.txt").write_text("Red Fox\nred-fox\nowl\n")


def _unreadable_shots(ws: Path) -> None:
    for name in ("zebra", "apple", "mango", "kiwi"):
        folder = ws / "bad-shots" / name
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"not an image")


def _run_in(ws: Path, *args: str, expect: int = 0) -> None:
    """Run one CLI command inside the workspace (a setup step); assert its exit code."""
    import os

    from typer.testing import CliRunner

    from susx_cli.cli import app

    old = Path.cwd()
    os.chdir(ws)
    try:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == expect, r.stderr
    finally:
        os.chdir(old)


def _sharded_unfinished(ws: Path) -> None:
    _run_in(
        ws,
        "curate",
        "p.json",
        "-o",
        "sharded",
        "--images",
        "shots",
        "--num-shards",
        "2",
        "--shard-index",
        "0",
    )


def _latin1_class_file(ws: Path) -> None:
    (ws / "latin1.txt").write_bytes("caf\xe9\nth\xe9\n".encode("latin-1"))


def _nfd_prompts(ws: Path) -> None:
    # A hand-edited prompts.json whose second class is the first in another Unicode form.
    import unicodedata

    data = json.loads((ws / "p.json").read_text())
    data["entries"][0]["name"] = unicodedata.normalize("NFC", "caf\u00e9")
    data["entries"][1]["name"] = unicodedata.normalize("NFD", "caf\u00e9")
    (ws / "p-edited.json").write_text(json.dumps(data))


def _twin_folders(ws: Path) -> None:
    shutil.copytree(ws / "shots", ws / "twins")
    shutil.copytree(ws / "twins" / "kiwi", ws / "twins" / "Kiwi_")


def _digits_classes(ws: Path) -> None:
    (ws / "digits.txt").write_text("class 1\nclass 2\nclass_3\nn01440764\nn01443537\n")


def _png_named_h5(ws: Path) -> None:
    (ws / "out.h5").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))


def _damaged_calibration(ws: Path) -> None:
    data = json.loads((ws / "cal.json").read_text())
    del data["hyperparameters"]
    (ws / "cal.json").write_text(json.dumps(data))


def _future_version(f):
    f.attrs["schema_version"] = 99


def _drop_weights(f):
    del f["weights"]


def _demo_folder_with_foreign_file(ws: Path) -> None:
    # A folder a demo run made (its marker lists what it wrote), where the user then put a file.
    (ws / "old-demo").mkdir()
    (ws / "old-demo" / "classes.txt").write_text("a\nb\n")
    (ws / "old-demo" / "_DEMO.json").write_text(json.dumps({"kind": "susx.demo", "files": ["classes.txt"]}))
    (ws / "old-demo" / "results-notes.md").write_text("the user's notes")


def _swapped_support_image(ws: Path) -> None:
    # Same name, other bytes: the second image of the manifest copied over the first.
    rows = [json.loads(line) for line in (ws / "sup" / "manifest.jsonl").read_text().splitlines()]
    shutil.copy(ws / "sup" / rows[1]["path"], ws / "sup" / rows[0]["path"])


def _pool_key_escapes(ws: Path) -> None:
    (ws / "pool").mkdir()
    for image in sorted((ws / "shots").rglob("*.png")):
        shutil.copy(image, ws / "pool" / f"{image.parent.name}-{image.name}")
    _run_in(ws, "embed", "pool", "--unlabelled", "-o", "pool.h5", *TINY)
    with h5py.File(ws / "pool.h5", "a") as f:
        for i in range(f["keys"].shape[0]):
            f["keys"][i] = "../x"


def _failed_curate(ws: Path) -> None:
    # A curate run that failed before recording any image (no image readable) leaves its folder behind.
    _unreadable_shots(ws)
    _run_in(ws, "curate", "p.json", "-o", "s8", "--images", "bad-shots", expect=2)


def _failed_embed(ws: Path) -> None:
    # An embed run that failed with 0 rows leaves its .partial file behind.
    _unreadable_shots(ws)
    _run_in(ws, "embed", "bad-shots", "-c", "p.json", "-o", "s9.h5", *TINY, expect=2)
    assert (ws / "s9.h5.partial").exists()


# Loopback servers for the hang cases (their ports go in the commands, so they start with the table):
# a kNN backend whose candidates all trickle one byte per 0.5 s, and one that never answers a query.
_TRICKLE_KNN = Server(knn_target="/trickle")
_SILENT_KNN = Server(knn_target="hang")
_LAION = ("curate", "p.json", "--source", "laion", "--index-name", "idx", "-k", "1", "--candidates", "2")


# ------------------------------------------------------------------ the table

CASES: list[Case] = [
    # missing or wrong artifacts
    Case("embed-missing-input", ("embed", "nope", "-o", "x.h5", *TINY), message="does not exist"),
    Case("calibrate-wrong-kind", ("calibrate", "sup.h5", "sup.h5", "-o", "c2.json"), message="expected"),
    Case("calibrate-json-as-text", ("calibrate", "p.json", "sup.h5", "-o", "c2.json"), message="p.json"),
    Case(
        "predict-missing-calibration",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "nope.json", "-o", "p2.h5"),
        message="does not exist",
    ),
    # numbers from the command line
    Case("tau-negative", ("calibrate", "text.h5", "sup.h5", "-o", "c2.json", "--tau", "-1"), message="--tau"),
    Case(
        "tau-nan",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json", "--tau", "nan"),
        message="--tau",
        issue_item="9",
    ),
    Case(
        "alpha-grid-nan",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--alpha-grid",
            "1,nan",
            "--beta-grid",
            "1",
            "--gamma-grid",
            "1",
        ),
        message="alpha",
        issue_item="9",
    ),
    Case(
        "fixed-alpha-inf",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--mode",
            "fixed",
            "--alpha",
            "inf",
            "--beta",
            "1",
            "--gamma",
            "1",
        ),
        message="--alpha",
        issue_item="9",
    ),
    Case(
        "logit-scale-negative",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json", "--logit-scale", "-5"),
        message="logit",
        issue_item="9",
    ),
    Case(
        "fixed-gamma-nan",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "nan",
        ),
        message="--gamma",
        issue_item="9",
    ),
    Case(
        "beta-grid-inf-range",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json", "--beta-grid", "1:inf:4"),
        message="--beta-grid",
        issue_item="9",
    ),
    Case(
        "logit-scale-nan",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json", "--logit-scale", "nan"),
        message="--logit-scale",
        issue_item="9",
    ),
    Case(
        "grid-too-large",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--alpha-grid",
            "0:1:1000",
            "--beta-grid",
            "0:1:1000",
            "--gamma-grid",
            "0:1:1000",
        ),
        message="points",
        issue_item="tracebacks",
    ),
    Case(
        "embed-workers-negative",
        ("embed", "sup", "-o", "s5.h5", "--workers", "-1", *TINY),
        message="--workers",
        issue_item="tracebacks",
    ),
    Case(
        "report-unknown-metric",
        ("report", "pred.h5", "--metric", "accuracy"),
        message="metric",
        issue_item="tracebacks",
    ),
    # hand-damaged artifacts
    Case(
        "text-missing-weights",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "p2.h5"),
        setup=_edit_h5("text.h5", _drop_weights),
        message="no 'weights'",
        issue_item="tracebacks",
    ),
    Case(
        "calibration-damaged",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "p2.h5"),
        setup=_damaged_calibration,
        message="cal.json",
        issue_item="tracebacks",
    ),
    Case(
        "damaged-output-not-up-to-date",
        ("embed", "sup", "-o", "sup.h5", *TINY),
        setup=_edit_h5("sup.h5", _missing_attr),
        message="--overwrite",
        issue_item="tracebacks",
    ),
    Case(
        "support-label-beyond-classes",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "1",
        ),
        setup=_edit_h5("sup.h5", _labels_beyond_classes),
        message="label",
        issue_item="9",
    ),
    Case(
        "query-keys-shorter",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "p2.h5"),
        setup=_edit_h5("test.h5", _drop_last_key),
        message="keys",
        issue_item="9",
    ),
    Case(
        "support-nan-row",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json"),
        setup=_edit_h5("sup.h5", _nan_row),
        message="NaN",
    ),
    Case(
        "text-fewer-rows",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "p2.h5"),
        setup=_edit_h5("text.h5", _fewer_text_rows),
        message="text.h5",
        issue_item="9",
    ),
    Case(
        "features-missing-model-attr",
        ("calibrate", "text.h5", "sup.h5", "-o", "c2.json"),
        setup=_edit_h5("sup.h5", _missing_attr),
        message="sup.h5",
        issue_item="tracebacks",
    ),
    Case(
        "calibration-of-other-support",
        ("predict", "text.h5", "test.h5", "-s", "sup-other.h5", "--calibration", "cal.json", "-o", "p2.h5"),
        setup=_other_support_calibration,
        message="support",
        issue_item="9",
    ),
    # outputs the user has
    Case("embed-onto-other-artifact", ("embed", "sup", "-o", "text.h5", *TINY), message="text.h5"),
    Case(
        "curate-into-user-folder",
        ("curate", "p.json", "-o", "mine", "--images", "shots"),
        message="not a susx support set",
    ),
    Case(
        "curate-overwrite-lookalike",
        ("curate", "p.json", "-o", "mine", "--images", "shots", "--overwrite"),
        setup=_classes_like_folder,
        message="mine",
        issue_item="1",
    ),
    Case(
        "curate-output-is-input",
        ("curate", "p.json", "-o", "sup", "--images", "sup", "--overwrite"),
        message="input",
        issue_item="2",
    ),
    Case(
        "curate-overwrite-broken-source",
        ("curate", "p.json", "-o", "sup", "--images", "nope", "--overwrite"),
        message="does not exist",
        issue_item="2",
    ),
    Case("demo-overwrite-user-folder", ("demo", "-o", "mine", "--overwrite"), message="mine", issue_item="1"),
    Case(
        "demo-overwrite-foreign-file",
        ("demo", "-o", "old-demo", "--overwrite"),
        setup=_demo_folder_with_foreign_file,
        message="results-notes.md",
        issue_item="1",
    ),
    Case(
        "embed-overwrite-non-susx-file",
        ("embed", "sup", "-o", "out.h5", "--overwrite", *TINY),
        setup=_png_named_h5,
        message="not a file susx wrote",
        issue_item="tracebacks",
    ),
    # --overwrite replaces an output of susx's that is damaged or of a newer schema
    Case(
        "embed-overwrite-damaged-features",
        ("embed", "sup", "-o", "sup.h5", "--overwrite", *TINY),
        setup=_edit_h5("sup.h5", _missing_attr),
        expect_exit=0,
        may_change=("sup.h5",),
        issue_item="tracebacks",
    ),
    Case(
        "predict-overwrite-future-version",
        (
            "predict",
            "text.h5",
            "test.h5",
            "-s",
            "sup.h5",
            "--calibration",
            "cal.json",
            "-o",
            "pred.h5",
            "--overwrite",
        ),
        setup=_edit_h5("pred.h5", _future_version),
        expect_exit=0,
        may_change=("pred.h5",),
        issue_item="tracebacks",
    ),
    Case(
        "calibrate-overwrite-damaged",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "cal.json",
            "--overwrite",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "1",
        ),
        setup=_damaged_calibration,
        expect_exit=0,
        may_change=("cal.json",),
        issue_item="tracebacks",
    ),
    Case(
        "inspect-per-class-huge",
        ("inspect", "sup", "--contact-sheet", "sheet.png", "--per-class", "100000"),
        expect_exit=0,
        issue_item="12",
    ),
    # paths and class lists read from artifacts or files
    Case(
        "manifest-path-escapes",
        ("embed", "sup", "-o", "s2.h5", *TINY),
        setup=_manifest_escape,
        message="manifest",
        issue_item="8",
    ),
    Case(
        "class-names-clash",
        ("prompts", "-c", "clash.txt", "-o", "p2.json"),
        setup=_case_clash_classes,
        message="red",
        issue_item="7",
    ),
    Case(
        "curate-no-readable-image",
        ("curate", "p.json", "-o", "s3", "--images", "bad-shots"),
        setup=_unreadable_shots,
        message="no image",
        issue_item="10",
    ),
    Case(
        "class-file-not-utf8",
        ("prompts", "-c", "latin1.txt", "-o", "p2.json"),
        setup=_latin1_class_file,
        message="UTF-8",
        issue_item="tracebacks",
    ),
    Case(
        "prompts-json-unicode-forms",
        ("embed", "p-edited.json", "-o", "t2.h5", *TINY),
        setup=_nfd_prompts,
        message="Unicode",
        issue_item="7",
    ),
    Case(
        "two-folders-one-class",
        ("curate", "p.json", "-o", "s4", "--images", "twins"),
        setup=_twin_folders,
        message="both match",
        issue_item="7",
    ),
    Case(
        "embed-swapped-support-image",
        ("embed", "sup", "-o", "s2.h5", *TINY),
        setup=_swapped_support_image,
        message="does not match its manifest",
        issue_item="8",
    ),
    Case(
        "curate-pool-key-escapes",
        (
            "curate",
            "p.json",
            "-o",
            "s6",
            "--source",
            "pool",
            "--pool-images",
            "pool",
            "--pool-features",
            "pool.h5",
            "--per-class",
            "1",
            "--clip-model",
            "susx-tiny-vit",
            "--clip-pretrained",
            "none",
        ),
        setup=_pool_key_escapes,
        message="'../x'",
        issue_item="8",
    ),
    # a run that failed before writing anything does not lock its output against the corrected rerun
    Case(
        "curate-rerun-after-failed-run",
        ("curate", "p.json", "-o", "s8", "--images", "shots"),
        setup=_failed_curate,
        expect_exit=0,
        may_change=("s8",),
        issue_item="11",
    ),
    Case(
        "embed-rerun-after-failed-run",
        ("embed", "shots", "-c", "p.json", "-o", "s9.h5", *TINY),
        setup=_failed_embed,
        expect_exit=0,
        may_change=("s9.h5.partial",),
        issue_item="11",
    ),
    # shards
    Case(
        "merge-zero-shards",
        ("merge", "sharded", "--num-shards", "0"),
        setup=_sharded_unfinished,
        message="shards",
        issue_item="5",
    ),
    Case(
        "merge-missing-shard",
        ("merge", "sharded", "--num-shards", "2"),
        setup=_sharded_unfinished,
        message="not finished",
    ),
    Case(
        "merge-other-shard-count",
        ("merge", "sharded", "--num-shards", "3"),
        setup=_sharded_unfinished,
        message="not --num-shards 3",
        issue_item="5",
    ),
    # valid controls: these must succeed
    Case(
        "control-digits-stay-distinct",
        ("prompts", "-c", "digits.txt", "-o", "p3.json"),
        setup=_digits_classes,
        expect_exit=0,
    ),
    Case(
        "control-calibrate-fixed",
        (
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "c2.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "1",
        ),
        expect_exit=0,
    ),
    # hangs
    Case(
        "laion-download-trickle",
        (
            *_LAION,
            "-o",
            "s-trickle",
            "--knn-url",
            _TRICKLE_KNN.url,
            "--allow-private-urls",
            "--download-timeout",
            "2",
            "--download-retries",
            "0",
        ),
        message="no image",
        may_change=("s-trickle",),
        timeout_s=90,
        issue_item="12",
    ),
    Case(
        "knn-never-answers",
        (*_LAION, "-o", "s-knn", "--knn-url", _SILENT_KNN.url, "--knn-timeout", "2"),
        message="did not answer",
        may_change=("s-knn",),
        timeout_s=30,
        issue_item="12",
    ),
    Case(
        "control-rerun-is-skipped",
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5"),
        expect_exit=0,
    ),
    Case("control-embed-rerun", ("embed", "sup", "-o", "sup.h5", *TINY), expect_exit=0),
    # test-time methods: stream order, presets, queries they cannot read
    Case("tda-negative-seed", (*_TDA, "--order-seed", "-1"), message="order seed -1"),
    Case(
        "tda-seed-too-large", (*_TDA, "--order-seeds", f"0,{2**63}"), message="order seed 9223372036854775808"
    ),
    Case("tda-seeds-not-integers", (*_TDA, "--order-seeds", "0,x"), message="--order-seeds"),
    Case("tda-seed-twice", (*_TDA, "--order-seeds", "1,1"), message="twice"),
    Case("tda-file-order-and-seed", (*_TDA, "--order", "file", "--order-seed", "1"), message="--order file"),
    Case(
        "transductive-reads-no-order",
        (*_TDA[:-1], "tda-transductive", "--order-seed", "1"),
        message="do not apply to --method tda-transductive",
    ),
    Case(
        "zero-shot-has-no-preset",
        (*_TDA[:-1], "zero-shot", "--tda-preset", "paper", "--dataset", "dtd"),
        message="does not apply to --method zero-shot",
    ),
    Case("tda-paper-preset-needs-dataset", (*_TDA, "--tda-preset", "paper"), message="needs the dataset"),
    Case(
        "tda-paper-preset-unknown-dataset",
        (*_TDA, "--tda-preset", "paper", "--dataset", "cifar10"),
        message="no paper configuration",
    ),
    Case("tda-dataset-without-preset", (*_TDA, "--dataset", "dtd"), message="--dataset does nothing"),
    Case("tda-nan-query", _TDA, setup=_edit_h5("test.h5", _nan_row), message="NaN"),
    Case("tda-empty-query-set", _TDA, setup=_edit_h5("test.h5", _no_rows), message="no rows"),
    Case(
        "dmn-empty-query-set", (*_TDA[:-1], "dmn-zs"), setup=_edit_h5("test.h5", _no_rows), message="no rows"
    ),
    Case(
        "tip-x-tda-needs-support",
        (*_TDA[:-1], "tip-x+tda", "--calibration", "cal.json"),
        message="needs --support",
    ),
    Case(
        "control-tda-several-seeds", (*_TDA, "--order-seeds", "0,1,2"), expect_exit=0, may_change=("tda.h5",)
    ),
]

# Known to fail today; each fix moves its id out of here.
OPEN: set[str] = set()
