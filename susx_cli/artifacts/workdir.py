"""The layout of `susx eval`'s work and results folders: every file name eval uses, in one place.

    WORK/<dataset>/split.json                          the split the stages read (when derived from a layout)
    WORK/<dataset>/prompts.json                        prompts made from the split's classes
    WORK/<dataset>/support/<K>shot-seed<S>/            few-shot support folders (folder-shots:K)
    WORK/<dataset>/<model>__<weights>/text.h5          text classifier
    WORK/<dataset>/<model>__<weights>/<split>.h5       features of a split (test, val)
    WORK/<dataset>/<model>__<weights>/support-<tag>.h5 support features
    WORK/<dataset>/<model>__<weights>/calibration-<tag>-<method>-<mode>.json
    WORK/<dataset>/<model>__<weights>/predictions-<tag>-<method>-<mode>.h5
    RESULTS/<dataset>__<model>-<weights>__<method>__<tag>__<mode>.json

Runs without a support set or calibration use ``none`` for the tag and the mode. Everything under
WORK is reused by later runs whose inputs and options match; nothing there is removed by eval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.classnames import slug

NONE = "none"


def model_tag(arch: str, pretrained: str) -> str:
    """The folder-safe name of a (architecture, weights) pair."""
    return f"{slug(arch, 40)}__{slug(pretrained, 40)}"


@dataclass(frozen=True)
class Workdir:
    """Paths of one dataset's artifacts under ``work`` and its result files under ``results``."""

    work: Path
    results: Path
    dataset: str

    @property
    def root(self) -> Path:
        return self.work / self.dataset

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.json"

    def support_folder(self, tag: str, seed: int) -> Path:
        return self.root / "support" / f"{tag}-seed{seed}"

    def model_dir(self, arch: str, pretrained: str) -> Path:
        return self.root / model_tag(arch, pretrained)

    def text(self, arch: str, pretrained: str) -> Path:
        return self.model_dir(arch, pretrained) / "text.h5"

    def split_features(self, arch: str, pretrained: str, split: str) -> Path:
        return self.model_dir(arch, pretrained) / f"{split}.h5"

    def support_features(self, arch: str, pretrained: str, tag: str) -> Path:
        return self.model_dir(arch, pretrained) / f"support-{tag}.h5"

    def calibration(self, arch: str, pretrained: str, tag: str, method: str, mode: str) -> Path:
        return self.model_dir(arch, pretrained) / f"calibration-{tag}-{method}-{mode}.json"

    def predictions(self, arch: str, pretrained: str, tag: str | None, method: str, mode: str | None) -> Path:
        return self.model_dir(arch, pretrained) / f"predictions-{tag or NONE}-{method}-{mode or NONE}.h5"

    def run_name(self, arch: str, pretrained: str, method: str, tag: str | None, mode: str | None) -> str:
        return f"{self.dataset}__{slug(arch, 40)}-{slug(pretrained, 40)}__{method}__{tag or NONE}__{mode or NONE}"

    def result(self, arch: str, pretrained: str, method: str, tag: str | None, mode: str | None) -> Path:
        return self.results / f"{self.run_name(arch, pretrained, method, tag, mode)}.json"


def write_split(path: Path, splits: dict[str, Any]) -> Path:
    """A CoOp-style split JSON ({split: [[path, label, name], ...]}), rewritten only when it changes, so
    its hash (part of every result's configuration) stays put across runs."""
    text = json.dumps(splits, ensure_ascii=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        common.atomic_write_bytes(path, text.encode("utf-8"))
    return path
