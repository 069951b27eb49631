"""Test helpers: generated images with class signal, the tiny random-weight model, CLI invocation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from susx_cli.cli import app

TINY = ["--model", "susx-tiny-vit", "--pretrained", "none"]


def make_image(
    path: Path, seed: int, base_color: tuple[int, int, int], size: int = 32, fmt: str | None = None
) -> Path:
    """An image whose mean colour carries its class, plus seeded noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(base_color)[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(
        np.uint8
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def class_color(index: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(1000 + index)
    return tuple(int(x) for x in rng.integers(30, 225, 3))


def make_class_folders(root: Path, classes: list[str], per_class: int, seed: int = 0) -> Path:
    for ci, name in enumerate(classes):
        for j in range(per_class):
            make_image(root / name / f"img_{j:03d}.png", seed * 100000 + ci * 1000 + j, class_color(ci))
    return root


def make_split(root: Path, classes: list[str], per_split: dict[str, int]) -> Path:
    """A CoOp-style split file with images under root/images/<class>/."""
    data = {}
    for split, n in per_split.items():
        rows = []
        for ci, name in enumerate(classes):
            for j in range(n):
                rel = f"images/{name}/{split}_{j:03d}.png"
                make_image(root / rel, hash((split, ci, j)) % 100000, class_color(ci))
                rows.append([rel, ci, name])
        data[split] = rows
    (root / "split.json").write_text(json.dumps(data))
    return root / "split.json"


def invoke(*args, expect: int = 0, input: str | None = None):
    """Run the CLI in-process; assert the exit code; return the result."""
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == expect, (
        f"exit {result.exit_code} != {expect}\nstdout: {result.stdout}\nstderr: {getattr(result, 'stderr', '')}\n"
        f"exc: {result.exception!r}"
    )
    return result


def build_method_workspace(
    root: Path, classes: list[str], *, shots: int = 3, val: int = 4, test: int = 5
) -> Path:
    """In ``root``: prompts (p.json), a ``shots``-shot support set (sup/), the text classifier (text.h5),
    support / validation / test features (sup.h5, val.h5, test.h5) with the tiny random model."""
    import os

    old = Path.cwd()
    os.chdir(root)
    try:
        (root / "classes.txt").write_text("\n".join(classes))
        invoke("prompts", "-c", "classes.txt", "-o", "p.json")
        make_class_folders(root / "shots", classes, shots)
        split = make_split(root / "data", classes, {"val": val, "test": test})
        invoke("curate", "p.json", "-o", "sup", "--images", "shots")
        invoke("embed", "sup", "-o", "sup.h5", *TINY)
        invoke("embed", "p.json", "-o", "text.h5", *TINY)
        invoke("embed", split, "--split", "val", "-c", "p.json", "-o", "val.h5", *TINY)
        invoke("embed", split, "--split", "test", "-c", "p.json", "-o", "test.h5", *TINY)
    finally:
        os.chdir(old)
    return root


def read_susx_csv(path, kind: str | None = None) -> list[list[str]]:
    """The rows of a CSV file susx wrote, after its first line, which marks the file as susx's (of ``kind``)."""
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        mark = handle.readline()
        assert mark.startswith("# susx."), mark
        assert kind is None or mark.split()[1] == kind, mark
        return list(csv.reader(handle))


def result_file(folder: Path, prefix: str) -> Path:
    """The one result file of `susx eval` in ``folder`` whose readable name is ``prefix`` (its run
    identity hash follows)."""
    found = sorted(Path(folder).glob(f"{prefix}-*.json"))
    assert len(found) == 1, f"{len(found)} result files {prefix}-*.json in {folder}"
    return found[0]
