"""`report`: join `susx eval` result files into the paper's table layout (datasets as columns, methods
as rows, a mean column), as Markdown and CSV, with the paper's figures (METHOD.md) beside ours, and a
bar chart per dataset."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts import results as res_io
from susx_cli.stages.results import StageResult

METHOD_LABELS = {"zero-shot": "Zero-shot CLIP", "tip-adapter": "Tip-Adapter", "tip-x": "TIP-X", "gda": "GDA"}
METHOD_ORDER = {"zero-shot": 0, "tip-adapter": 1, "tip-x": 2, "gda": 3}
SOURCE_LABELS = {"sd": "SuS-SD", "laion": "SuS-LC", "pool": "SuS-pool"}


def support_label(res: dict[str, Any]) -> str:
    sup = res.get("support")
    if not sup:
        return "-"
    if sup.get("kind") == "folder-shots":
        return f"{sup.get('shots')}-shot"
    return SOURCE_LABELS.get(sup.get("source") or "", Path(sup.get("path") or "support").name)


def paper_key(res: dict[str, Any]) -> str | None:
    """Which of the paper's rows (registry.PAPER_NUMBERS) this result corresponds to, if any."""
    method, sup = res["method"], res.get("support") or {}
    if method == "zero-shot":
        return "zero-shot"
    if sup.get("kind") == "folder-shots":
        return f"{method}-{sup.get('shots')}shot"
    if method == "tip-x" and sup.get("source") == "sd":
        return "sus-x-sd"
    return None


@dataclass
class Row:
    label: str
    model: str
    method: str
    support: str
    calibration: str
    values: dict[str, float] = field(default_factory=dict)
    paper: str | None = None

    def mean(self, columns: list[str]) -> float | None:
        vals = [self.values[c] for c in columns if c in self.values]
        return sum(vals) / len(vals) if vals else None


@dataclass
class Report:
    columns: list[str]  # dataset ids
    names: dict[str, str]  # id -> display name
    rows: list[Row]
    notes: list[str]
    metric: str

    def paper_rows(self) -> list[tuple[int, str, dict[str, float]]]:
        """(index of our row it follows, label, values incl. 'mean') for rows with known paper figures."""
        from susx_cli.datasets.registry import PAPER_MEAN_KEY, PAPER_NUMBERS, PAPER_ROW_LABELS

        out, seen = [], set()
        for i, row in enumerate(self.rows):
            key = row.paper
            if key is None or key not in PAPER_NUMBERS or key in seen:
                continue
            seen.add(key)
            nums = PAPER_NUMBERS[key]
            vals = {c: nums[c] for c in self.columns if c in nums}
            if PAPER_MEAN_KEY in nums:
                vals["mean"] = nums[PAPER_MEAN_KEY]
            method, _, shots = key.rpartition("-")
            label = PAPER_ROW_LABELS.get(key) or f"{METHOD_LABELS.get(method, method)} {shots.replace('shot', '-shot')}"
            out.append((i, f"paper: {label} (RN50)", vals))
        return out

    def lines(self) -> list[tuple[str, str, str, str, str, list[float | None], float | None]]:
        """Table rows in order: (source, label, model, support, calibration, values, mean)."""
        paper = {}
        for i, label, vals in self.paper_rows():
            paper.setdefault(i, []).append((label, vals))
        out = []
        for i, row in enumerate(self.rows):
            out.append(("ours", row.label, row.model, row.support, row.calibration,
                        [row.values.get(c) for c in self.columns], row.mean(self.columns)))
            for label, vals in paper.get(i, []):
                out.append(("paper", label, "RN50/openai", row.support, "val (paper)",
                            [vals.get(c) for c in self.columns], vals.get("mean")))
        return out

    def markdown(self) -> str:
        def fmt(v: float | None) -> str:
            return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

        head = ["method", "model", "support", "calibration", *[self.names[c] for c in self.columns], "mean"]
        text = [f"# susx results ({self.metric}, %)", "", "| " + " | ".join(head) + " |",
                "|" + "|".join(["---"] * 4 + ["---:"] * (len(self.columns) + 1)) + "|"]
        for source, label, model, sup, cal, vals, mean in self.lines():
            name = f"*{label}*" if source == "paper" else label
            text.append("| " + " | ".join([name, model, sup, cal, *map(fmt, vals), fmt(mean)]) + " |")
        if self.notes:
            text += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(text) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "method", "model", "support", "calibration", *self.columns, "mean"])
        for source, label, model, sup, cal, vals, mean in self.lines():
            w.writerow([source, label, model, sup, cal, *["" if v is None else f"{v:.4f}" for v in vals],
                        "" if mean is None else f"{mean:.4f}"])
        return buf.getvalue()


def build_report(results: list[dict[str, Any]], metric: str = "top1") -> Report:
    from susx_cli.datasets.registry import DATASETS

    order = {d: i for i, d in enumerate(DATASETS)}
    columns = sorted({r["dataset"]["id"] for r in results}, key=lambda d: (order.get(d, 999), d))
    names = {c: DATASETS[c].name if c in DATASETS else c for c in columns}
    models = {f"{r['model']['arch']}/{r['model']['pretrained']}" for r in results}
    rows: dict[tuple, Row] = {}
    created: dict[tuple, str] = {}
    notes: list[str] = []
    dupes = 0
    for r in results:
        model = f"{r['model']['arch']}/{r['model']['pretrained']}"
        sup = support_label(r)
        cal = (r.get("calibration") or {}).get("mode") or "-"
        key = (model, r["method"], sup, cal)
        label = METHOD_LABELS.get(r["method"], r["method"]) + ("" if sup == "-" else f" ({sup})")
        row = rows.setdefault(key, Row(label, model, r["method"], sup, cal, paper=paper_key(r)))
        ds = r["dataset"]["id"]
        if ds in row.values:
            dupes += 1
            if created.get((*key, ds), "") > r.get("created", ""):
                continue
        row.values[ds] = float(r["metrics"].get(metric, float("nan")))
        created[(*key, ds)] = r.get("created", "")
    ordered = sorted(rows.values(), key=lambda x: (x.model, _support_order(x.support), METHOD_ORDER.get(x.method, 9), x.calibration))
    incomplete = [row for row in ordered if len(row.values) < len(columns)]
    if incomplete:
        notes.append(f"{len(incomplete)} row(s) lack some datasets; their mean is over the datasets they have")
    protocols = {res_io.config_key({k: r["zero_shot_protocol"].get(k) for k in
                                    ("logit_scale", "text_pool", "templates")}): r["zero_shot_protocol"]
                 for r in results}
    if len(protocols) > 1:
        desc = "; ".join(f"pool={p.get('text_pool')}, templates={p.get('templates')}, logit scale={p.get('logit_scale')}"
                         for p in protocols.values())
        notes.append(f"these results mix {len(protocols)} zero-shot protocols ({desc}): rows are not directly comparable")
    if dupes:
        notes.append(f"{dupes} duplicate result(s) for the same row and dataset: the newest is shown")
    if any(r["model"].get("random_weights") for r in results):
        notes.append("some results come from RANDOM-weight models: they only show that the pipeline runs")
    if len(models) > 1:
        notes.append(f"{len(models)} models: {', '.join(sorted(models))}")
    if any(row.paper for row in ordered):
        notes.append("paper figures: OpenAI CLIP RN50, METHOD.md; the paper's mean is over the 11 CoOp datasets, "
                     "its hyperparameters were searched on a labelled validation split (the test set for ImageNet)")
    return Report(columns, names, ordered, notes, metric)


def _support_order(label: str) -> tuple[int, int, str]:
    if label == "-":
        return (0, 0, "")
    if label.endswith("-shot") and label[:-5].isdigit():
        return (2, int(label[:-5]), label)
    return (1, 0, label)


def report(
    paths: list[Path],
    *,
    output: Path | None = None,
    csv_path: Path | None = None,
    chart: Path | None = None,
    metric: str = "top1",
) -> StageResult:
    from susx_cli.errors import SusxError

    if metric not in ("top1", "top5", "mean_per_class_recall"):
        raise SusxError(f"unknown metric {metric!r}", hint="use top1, top5 or mean_per_class_recall")
    # Failed runs of `eval --keep-going` have no figures; they are listed by eval, not tabled here.
    results = [r for r in res_io.collect(paths) if r.get("status") != "failed"]
    if not results:
        raise SusxError("no result files given", hint="pass result files or the --results-dir of susx eval")
    rep = build_report(results, metric)
    md = rep.markdown()
    outputs: list[Path] = []
    if output is not None:
        common.atomic_write_bytes(output, md.encode("utf-8"))
        outputs.append(output)
    if csv_path is not None:
        common.atomic_write_bytes(csv_path, rep.csv().encode("utf-8"))
        outputs.append(csv_path)
    if chart is not None:
        from susx_cli.plots import results_bars

        series = [(f"{r.label}{'' if r.calibration == '-' else ' ' + r.calibration}", r.method,
                   [r.values.get(c) for c in rep.columns]) for r in rep.rows]
        results_bars([rep.names[c] for c in rep.columns], series, chart, title=f"{metric} (%) per dataset")
        outputs.append(chart)
    result = StageResult("report", outputs, summary={"results": len(results), "rows": len(rep.rows),
                                                     "datasets": rep.columns, "notes": rep.notes})
    result.message = md
    result.text = md.rstrip("\n") if output is None else ""  # Markdown on stdout when no -o is given
    return result
