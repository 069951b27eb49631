"""`demo`: the whole pipeline (prompts, curate, embed, calibrate, predict) in a fresh folder, offline.

Default: a tiny random-weight open_clip model, a tiny random-weight diffusers pipeline for the
name-only support set, and generated query images whose colour carries the class. With --model /
--pretrained (and --sd-model) the same run uses real weights.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, demo_folder, outputs
from susx_cli.progress import info, warn
from susx_cli.stages.options import DemoOptions
from susx_cli.stages.results import DemoResult

# Alphabetical order differs from index order on purpose: labels must follow the class list.
DEMO_CLASSES = ["zebra", "apple", "mango", "kiwi", "banana"]
TINY_MODEL = ("susx-tiny-vit", "none")


_MODE_WORDS = {"loo": "leave-one-out", "kfold": "k-fold"}


def _color(index: int) -> tuple[int, int, int]:
    import numpy as np

    rng = np.random.default_rng(1000 + index)
    return tuple(int(x) for x in rng.integers(30, 225, 3))


def make_query_images(root: Path, classes: list[str], per_class: int, seed: int, size: int = 64) -> Path:
    """Class folders of generated images: each class a colour plus seeded noise."""
    import numpy as np
    from PIL import Image

    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            rng = np.random.default_rng([seed, ci, j])
            arr = np.array(_color(ci))[None, None, :] + rng.normal(0, 30, (size, size, 3))
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"{j:03d}.png")
    return root


def demo(options: DemoOptions, *, queries_per_class: int = 12, shots: int = 4) -> DemoResult:
    """Every stage in a fresh folder: prompts, two support sets (name-only generated, ``shots`` real
    images per class), features, a calibration per calibrated method, predictions and their scores."""
    final = options.output
    demo_folder.check_output(final, options.overwrite)
    # The run is built in a hidden sibling and swapped in when complete: a failed run leaves the old one.
    output = common.staging_dir(final)
    with outputs.writing(final):  # a read-only folder or a parent that is a file: one line
        if output.exists():
            shutil.rmtree(output)  # a staging folder left by an interrupted run
        output.mkdir(parents=True)
    run = _DemoRun(output, final, options.model or TINY_MODEL[0], options.pretrained or TINY_MODEL[1])
    random_weights = options.model is None
    if random_weights:
        warn(
            "susx demo: tiny models with RANDOM weights, generated images — the numbers below "
            "show that the pipeline runs, not how well SuS-X works."
        )
    supports = run.supports(options.sd_model, options.per_class, shots, queries_per_class)
    run.embed_texts_and_queries()
    rows: list[dict[str, Any]] = []
    for label, sup_dir in supports.items():
        rows += run.methods(label, sup_dir, zero_shot=not rows)
    demo_folder.write_marker(output)
    common.swap_into_place(output, final)
    return DemoResult([final], rows=rows, random_weights=random_weights, stages=run.stages)


def _banner(text: str) -> None:
    info(f"\n[bold cyan]== {text}[/bold cyan]")


@dataclass
class _DemoRun:
    """One demo run in its staging folder ``output``: the stage calls and their JSON records."""

    output: Path
    final: Path
    model: str
    pretrained: str
    stages: list[dict[str, Any]] = field(default_factory=list)

    def log(self, result: Any) -> None:
        # Name the outputs where they will be once the finished run is swapped into place.
        record = result.to_json()
        record["outputs"] = [str(self.final / Path(p).relative_to(self.output)) for p in record["outputs"]]
        self.stages.append(record)
        for p in record["outputs"]:
            info(f"   wrote {p}")

    def supports(self, sd_model: str | None, per_class: int, shots: int, queries: int) -> dict[str, Path]:
        """prompts.json, the support sets (name-only generated, few-shot real) and the query images."""
        from susx_cli.sources.folder import FolderSource
        from susx_cli.stages.curate import curate_source
        from susx_cli.stages.prompts import build_prompts

        output = self.output
        common.atomic_write_bytes(output / "classes.txt", ("\n".join(DEMO_CLASSES) + "\n").encode())
        _banner("1. prompts: class names -> prompts.json")
        self.log(
            build_prompts(
                output / "prompts.json", classes_path=output / "classes.txt", template_set="ensemble"
            )
        )
        _banner("2. curate: name-only support set (text-to-image)")
        supports = {}
        sd_source = _sd_source(output, sd_model, per_class)
        if sd_source is not None:
            self.log(curate_source(output / "prompts.json", output / "support-sd", sd_source))
            supports["SuS-SD (name-only)"] = output / "support-sd"
        _banner("2b. curate: few-shot support set (k real labelled images per class)")
        with outputs.writing(self.final):
            make_query_images(output / "images" / "train", DEMO_CLASSES, shots, seed=1)
            make_query_images(output / "images" / "test", DEMO_CLASSES, queries, seed=2)
        train = FolderSource(output / "images" / "train")
        self.log(curate_source(output / "prompts.json", output / "support-fewshot", train))
        supports[f"{shots}-shot (few-shot)"] = output / "support-fewshot"
        return supports

    def embed_texts_and_queries(self) -> None:
        from susx_cli.stages.embed import embed_images, embed_texts

        _banner("3. embed: text classifier, support features, query features")
        m = {"model": self.model, "pretrained": self.pretrained}
        self.log(embed_texts(self.output / "prompts.json", self.output / "text.h5", **m))
        query = self.output / "images" / "test"
        classes = self.output / "prompts.json"
        self.log(embed_images(query, self.output / "query.h5", classes_path=classes, workers=0, **m))

    def methods(self, label: str, sup_dir: Path, zero_shot: bool) -> list[dict[str, Any]]:
        """Embed one support set, then calibrate and predict every paper method that uses it (and
        zero-shot, with ``zero_shot``); one table row per method."""
        from susx_cli.method import registry as methods
        from susx_cli.stages.embed import embed_images

        output, tag = self.output, sup_dir.name
        features = output / f"{tag}.h5"
        self.log(embed_images(sup_dir, features, workers=0, model=self.model, pretrained=self.pretrained))
        specs = [methods.get(n) for n in methods.paper_names()]
        return [self._method(spec, label, tag, features) for spec in specs if spec.needs_support or zero_shot]

    def _method(self, spec: Any, label: str, tag: str, features: Path) -> dict[str, Any]:
        from susx_cli.artifacts.hdf5 import read_predictions
        from susx_cli.stages.calibrate import calibrate_files as calibrate
        from susx_cli.stages.predict import predict_files as predict

        output, method, calibration, mode = self.output, spec.name, None, None
        if spec.calibrated:
            calibration = output / f"calibration-{tag}-{method}.json"
            mode = "loo" if "loo" in spec.modes else "kfold"
            _banner(
                f"4. calibrate {method} on {label}: {_MODE_WORDS[mode]} over the support set, no target labels"
            )
            self.log(calibrate(output / "text.h5", features, calibration, mode=mode, method=method))
        _banner(f"5. predict {method}" + (f" with {label}" if spec.needs_support else ""))
        out = output / f"predictions-{tag}-{method}.h5"
        support = features if spec.needs_support else None
        self.log(
            predict(
                output / "text.h5",
                output / "query.h5",
                out,
                support_path=support,
                calibration_path=calibration,
                method=method,
            )
        )
        metrics = read_predictions(out).metrics
        return {
            "support": label if spec.needs_support else "-",
            "method": method,
            "calibration": _MODE_WORDS[mode] if mode else "-",
            "top1": metrics["top1"],
            "mean_per_class_recall": metrics["mean_per_class_recall"],
        }


def _sd_source(output: Path, sd_model: str | None, per_class: int):
    """The text-to-image source, or None (with a note) when the `sd` extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        info("   (skipped: the text-to-image source needs `pip install 'susx[sd]'`)")
        return None
    from susx_cli.adapters.tiny_sd import build_tiny_pipeline
    from susx_cli.sources.sd import SDSource

    if sd_model is None:
        sd_model = str(build_tiny_pipeline(output / "tiny-sd-pipeline"))
        return SDSource.for_demo(sd_model, per_class)
    return SDSource.for_demo(sd_model, per_class, tiny=False)
