"""A small prepared workspace every fault case runs in a fresh copy of: prompts, a support folder,
a text classifier, support / validation / test features, a calibration and predictions."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import TINY, invoke, make_class_folders, make_split

CLASSES = ["zebra", "apple", "mango", "kiwi"]


def build_workspace(root: Path) -> Path:
    old = Path.cwd()
    os.chdir(root)
    try:
        (root / "classes.txt").write_text("\n".join(CLASSES))
        invoke("prompts", "-c", "classes.txt", "-o", "p.json")
        make_class_folders(root / "shots", CLASSES, 3)
        split = make_split(root / "data", CLASSES, {"val": 3, "test": 3})
        invoke("curate", "p.json", "-o", "sup", "--images", "shots")
        invoke("embed", "sup", "-o", "sup.h5", *TINY)
        invoke("embed", "p.json", "-o", "text.h5", *TINY)
        invoke("embed", split, "--split", "val", "-c", "p.json", "-o", "val.h5", *TINY)
        invoke("embed", split, "--split", "test", "-c", "p.json", "-o", "test.h5", *TINY)
        invoke("calibrate", "text.h5", "sup.h5", "-o", "cal.json", "--mode", "fixed", "--alpha", "1", "--beta", "2",
               "--gamma", "0.5")
        invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "-c", "cal.json", "-o", "pred.h5")
        mine = root / "mine"
        mine.mkdir()
        (mine / "thesis.tex").write_text("the user's own file")
        (mine / "notes").mkdir()
        (mine / "notes" / "n.txt").write_text("more of the user's files")
    finally:
        os.chdir(old)
    return root
