"""A small prepared workspace every fault case runs in a fresh copy of: prompts, a support folder,
a text classifier, support / validation / test features, a calibration and predictions."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import build_method_workspace, invoke

CLASSES = ["zebra", "apple", "mango", "kiwi"]


def build_workspace(root: Path) -> Path:
    build_method_workspace(root, CLASSES, val=3, test=3)
    old = Path.cwd()
    os.chdir(root)
    try:
        invoke(
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "cal.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "2",
            "--gamma",
            "0.5",
        )
        invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5")
        mine = root / "mine"
        mine.mkdir()
        (mine / "thesis.tex").write_text("the user's own file")
        (mine / "notes").mkdir()
        (mine / "notes" / "n.txt").write_text("more of the user's files")
    finally:
        os.chdir(old)
    return root
