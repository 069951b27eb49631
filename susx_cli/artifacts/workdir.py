"""The layout of `susx eval`'s work and results folders: every file name eval uses, in one place.

Every name is ``artifact_name(prefix, inputs)``: a readable prefix and a short hash of the canonical JSON
of everything that changes the artifact, so runs that differ never share a file and runs that agree reuse
it (the test set is embedded once per dataset and model, whatever the seeds, methods or calibrations).

    WORK/<dataset>/split.json                               the split the stages read (derived from a layout)
    WORK/<dataset>/prompts-<h>.json                         prompts made from the split's classes
    WORK/<dataset>/classes-<h>.json                         the split's class list as prompts (curate reads it)
    WORK/<dataset>/support/<K>shot-seed<S>-<h>/             few-shot support folders (folder-shots:K)
    WORK/<dataset>/<model>__<weights>/text-<h>.h5           text classifier of one prompts file
    WORK/<dataset>/<model>__<weights>/<split>-<h>.h5        features of a split (test, val)
    WORK/<dataset>/<model>__<weights>/support-<tag>-<h>.h5  support features
    WORK/<dataset>/<model>__<weights>/calibration-<run>-<h>.json
    WORK/<dataset>/<model>__<weights>/predictions-<run>-<h>.h5
    RESULTS/<dataset>__<model>-<weights>__<method>__<tag>[-seed<S>]__<mode>-<h>.json

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
IDENTITY_HEX = 10  # 40 bits: a collision between two runs of one work dir is not a practical concern


def artifact_name(prefix: str, inputs: dict[str, Any]) -> str:
    """``prefix-<hash>``: the one function that names a work-dir or result file from what changes it
    (``inputs``: plain JSON values; key order does not matter)."""
    digest = common.sha256_bytes(common.to_json_str(inputs).encode("utf-8"))[:IDENTITY_HEX]
    return f"{prefix}-{digest}"


def model_tag(arch: str, pretrained: str) -> str:
    """The folder-safe name of a (architecture, weights) pair."""
    return f"{slug(arch, 40)}__{slug(pretrained, 40)}"


def run_prefix(
    dataset: str, arch: str, pretrained: str, method: str, tag: str | None, seed: int | None, mode: str | None
) -> str:
    """The readable part of a run's name: dataset, model, method, support (with its seed) and mode."""
    support = (tag or NONE) + ("" if seed is None else f"-seed{seed}")
    return f"{dataset}__{slug(arch, 40)}-{slug(pretrained, 40)}__{method}__{support}__{mode or NONE}"


@dataclass(frozen=True)
class Workdir:
    """Paths of one dataset's artifacts under ``work`` and its result files under ``results``; each
    path takes the inputs that decide the artifact (see ``artifact_name``)."""

    work: Path
    results: Path
    dataset: str

    @property
    def root(self) -> Path:
        return self.work / self.dataset

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    def prompts(self, inputs: dict[str, Any]) -> Path:
        return self.root / f"{artifact_name('prompts', inputs)}.json"

    def class_prompts(self, inputs: dict[str, Any]) -> Path:
        return self.root / f"{artifact_name('classes', inputs)}.json"

    def support_folder(self, tag: str, seed: int, inputs: dict[str, Any]) -> Path:
        return self.root / "support" / artifact_name(f"{tag}-seed{seed}", inputs)

    def model_dir(self, arch: str, pretrained: str) -> Path:
        return self.root / model_tag(arch, pretrained)

    def text(self, arch: str, pretrained: str, inputs: dict[str, Any]) -> Path:
        return self.model_dir(arch, pretrained) / f"{artifact_name('text', inputs)}.h5"

    def split_features(self, arch: str, pretrained: str, split: str, inputs: dict[str, Any]) -> Path:
        return self.model_dir(arch, pretrained) / f"{artifact_name(slug(split, 40), inputs)}.h5"

    def support_features(self, arch: str, pretrained: str, tag: str, inputs: dict[str, Any]) -> Path:
        return self.model_dir(arch, pretrained) / f"{artifact_name(f'support-{tag}', inputs)}.h5"

    def calibration(self, arch: str, pretrained: str, run: str, inputs: dict[str, Any]) -> Path:
        return self.model_dir(arch, pretrained) / f"{artifact_name(f'calibration-{run}', inputs)}.json"

    def predictions(self, arch: str, pretrained: str, run: str, inputs: dict[str, Any]) -> Path:
        return self.model_dir(arch, pretrained) / f"{artifact_name(f'predictions-{run}', inputs)}.h5"

    def result(self, prefix: str, inputs: dict[str, Any]) -> Path:
        return self.results / f"{artifact_name(prefix, inputs)}.json"


def write_split(path: Path, splits: dict[str, Any]) -> Path:
    """A CoOp-style split JSON ({split: [[path, label, name], ...]}), rewritten only when it changes, so
    its hash (part of every result's configuration) stays put across runs."""
    text = json.dumps(splits, ensure_ascii=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        common.atomic_write_bytes(path, text.encode("utf-8"))
    return path
