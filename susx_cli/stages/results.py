"""What a stage returns: the paths it wrote, whether it skipped, and figures worth printing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    stage: str
    outputs: list[Path]
    skipped: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    text: str = ""  # what the command prints on stdout before the output paths (e.g. a description)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "outputs": [str(p) for p in self.outputs],
            "skipped": self.skipped,
            "summary": self.summary,
        }


@dataclass
class EmbedResult(StageResult):
    """`embed`: the feature file or text classifier (or this shard's part); ``summary``: rows, model,
    layout (images) or classes, texts, pool (texts), and the shard and join when sharded."""

    stage: str = field(default="embed", init=False)


@dataclass
class PromptsResult(StageResult):
    """`prompts`: prompts.json; ``summary``: classes, templates, CuPL sentences, pool (and LLM requests)."""

    stage: str = field(default="prompts", init=False)


@dataclass
class CurateResult(StageResult):
    """`curate`: the support folder; ``summary``: images per class, shards, a retrieval source's
    ``class_stats`` (per-class counts) and ``mode``."""

    stage: str = field(default="curate", init=False)


@dataclass
class MergeResult(StageResult):
    """`merge`: the joined support folder or feature file; ``summary``: images per class, or rows and parts."""

    stage: str = field(default="merge", init=False)


@dataclass
class ExportResult(StageResult):
    """`export`: the CSV table; ``summary``: rows, classes, method."""

    stage: str = field(default="export", init=False)


@dataclass
class InspectResult(StageResult):
    """`inspect`: ``description`` (kind, shapes, model, classes, provenance); ``outputs``: the pictures
    drawn. Its JSON is the description."""

    stage: str = field(default="inspect", init=False)
    description: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.description


@dataclass
class DemoResult(StageResult):
    """`demo`: the demo's folder; ``rows``: one per (support, method), top1 and mean per-class recall in
    %; ``stages``: each stage's JSON record; ``random_weights``: the tiny random-weight models ran."""

    stage: str = field(default="demo", init=False)
    rows: list[dict[str, Any]] = field(default_factory=list)
    random_weights: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": "demo",
            "outputs": [str(p) for p in self.outputs],
            "random_weights": self.random_weights,
            "results": self.rows,
            "stages": self.stages,
        }


@dataclass
class ReportResult(StageResult):
    """`report`: the tables and charts written; ``message``: the Markdown table; ``summary``: results,
    rows, datasets, notes, charts."""

    stage: str = field(default="report", init=False)


@dataclass
class CalibrateResult(StageResult):
    """`calibrate`: calibration.json (and the heatmap); ``summary``: method, mode, the chosen
    hyperparameters, top1 (%) and where the objective was measured."""

    stage: str = field(default="calibrate", init=False)
