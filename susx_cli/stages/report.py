"""`report`: join `susx eval` result files into the paper's table layout (datasets as columns, methods
as rows, a mean column), as Markdown and CSV, with the paper's figures (docs/METHOD.md) in columns beside ours,
a bar chart per dataset, and a long table (one row per run, every metric and configuration field)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts import results as res_io
from susx_cli.method import registry as methods
from susx_cli.plots import ChartDescription, ShotPanel, ShotSeries
from susx_cli.stages.options import ReportOptions
from susx_cli.stages.results import ReportResult

SOURCE_LABELS = {"sd": "SuS-SD", "laion": "SuS-LC", "pool": "SuS-pool"}


def support_label(res: dict[str, Any]) -> str:
    sup = res.get("support")
    if not sup:
        return "-"
    if sup.get("kind") == "folder-shots":
        return f"{sup.get('shots')}-shot"
    return SOURCE_LABELS.get(sup.get("source") or "", Path(sup.get("path") or "support").name)


def paper_key(res: dict[str, Any]) -> str | None:
    """Which of the paper's rows (registry.PAPER_NUMBERS) this result corresponds to, if any: the method
    alone without support, METHOD-Kshot with K-shot support, METHOD-SOURCE with a curated support set."""
    from susx_cli.datasets.registry import PAPER_NUMBERS

    method, sup = res["method"], res.get("support") or {}
    if not sup:
        key = method
    elif sup.get("kind") == "folder-shots":
        key = f"{method}-{sup.get('shots')}shot"
    else:
        key = f"{method}-{sup.get('source')}"
    return key if key in PAPER_NUMBERS else None


@dataclass
class Row:
    label: str
    model: str
    method: str
    support: str
    calibration: str
    values: dict[str, float] = field(default_factory=dict)
    paper: str | None = None
    shots: int | None = None  # K of a folder-shots:K support set (a point on a few-shot curve)

    def mean(self, columns: list[str]) -> float | None:
        """Mean over every column; None when the row lacks one (a mean over fewer datasets is not comparable)."""
        if not columns or any(c not in self.values for c in columns):
            return None
        return sum(self.values[c] for c in columns) / len(columns)

    def paper_figures(self) -> dict[str, float]:
        """The paper's figures for this row (registry.PAPER_NUMBERS), by dataset id and PAPER_MEAN_KEY."""
        from susx_cli.datasets.registry import PAPER_NUMBERS

        return PAPER_NUMBERS.get(self.paper or "", {})


def paper_label(key: str) -> str:
    from susx_cli.datasets.registry import PAPER_ROW_LABELS

    method, _, shots = key.rpartition("-")
    return PAPER_ROW_LABELS.get(key) or f"{methods.label(method)} {shots.replace('shot', '-shot')}"


@dataclass
class Report:
    """The paper layout: one row per (model, method, support, calibration), one column per dataset with the
    paper's figure (OpenAI RN50, docs/METHOD.md) in a column beside ours where the paper has one, then our mean and
    the paper's mean. A mean is only shown over exactly the table's datasets: ours when the row has all of
    them; the paper's when it has a figure for each of them, or when they are exactly its 11 CoOp datasets
    (its published mean). Other paper means are named in a note, never put in a column."""

    columns: list[str]  # dataset ids
    names: dict[str, str]  # id -> display name
    rows: list[Row]
    notes: list[str]
    metric: str

    def paper_columns(self) -> list[str]:
        """Datasets for which some row has a paper figure."""
        return [c for c in self.columns if any(c in row.paper_figures() for row in self.rows)]

    def paper_mean(self, row: Row) -> float | None:
        """The paper's mean over exactly this table's datasets, or None."""
        from susx_cli.datasets.registry import DATASETS, PAPER_MEAN_KEY

        nums = row.paper_figures()
        if self.columns and all(c in nums for c in self.columns):
            return sum(nums[c] for c in self.columns) / len(self.columns)
        coop = {d for d, spec in DATASETS.items() if spec.coop}
        return nums.get(PAPER_MEAN_KEY) if set(self.columns) == coop else None

    def header(self, name=lambda c: c, paper=lambda c: f"{c}_paper") -> list[str]:
        """Value columns in order: each dataset (its paper column beside it), mean, paper mean (if any)."""
        with_paper = set(self.paper_columns())
        head = []
        for c in self.columns:
            head += [name(c)] + ([paper(c)] if c in with_paper else [])
        head.append(name("mean"))
        if any(self.paper_mean(row) is not None for row in self.rows):
            head.append(paper("mean"))
        return head

    def lines(self) -> list[tuple[Row, list[float | None]]]:
        """Each row with its values in ``header`` order (None = no figure)."""
        with_paper = set(self.paper_columns())
        show_paper_mean = any(self.paper_mean(row) is not None for row in self.rows)
        out = []
        for row in self.rows:
            nums, vals = row.paper_figures(), []
            for c in self.columns:
                vals += [row.values.get(c)] + ([nums.get(c)] if c in with_paper else [])
            vals.append(row.mean(self.columns))
            if show_paper_mean:
                vals.append(self.paper_mean(row))
            out.append((row, vals))
        return out

    def markdown(self) -> str:
        def fmt(v: float | None) -> str:
            return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

        values = self.header(
            name=lambda c: self.names.get(c, c), paper=lambda c: f"{self.names.get(c, c)} (paper)"
        )
        head = ["method", "model", "support", "calibration", *values]
        text = [
            f"# susx results ({self.metric}, %)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] * 4 + ["---:"] * len(values)) + "|",
        ]
        for row, vals in self.lines():
            text.append(
                "| "
                + " | ".join([row.label, row.model, row.support, row.calibration, *map(fmt, vals)])
                + " |"
            )
        if self.notes:
            text += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(text) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "method", "model", "support", "calibration", *self.header()])
        for row, vals in self.lines():
            w.writerow(
                [
                    "ours",
                    row.label,
                    row.model,
                    row.support,
                    row.calibration,
                    *["" if v is None else f"{v:.4f}" for v in vals],
                ]
            )
        return buf.getvalue()

    def paper_mean_notes(self) -> list[str]:
        """The paper's means that are over other datasets than this table's: named here, not in a column."""
        from susx_cli.datasets.registry import PAPER_MEAN_KEY

        left_out, seen = [], set()
        for row in self.rows:
            nums = row.paper_figures()
            if row.paper in seen or PAPER_MEAN_KEY not in nums or self.paper_mean(row) is not None:
                continue
            seen.add(row.paper)
            left_out.append(f"paper: {paper_label(row.paper)} (RN50) {nums[PAPER_MEAN_KEY]:.2f}")
        if not left_out:
            return []
        return [
            f"the paper's means over its 11 CoOp datasets are not comparable with a mean over this table's "
            f"{len(self.columns)} dataset(s), so they stand here instead of in a column: {'; '.join(left_out)}"
        ]


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
        label = methods.label(r["method"]) + ("" if sup == "-" else f" ({sup})")
        shots = (
            (r.get("support") or {}).get("shots")
            if (r.get("support") or {}).get("kind") == "folder-shots"
            else None
        )
        row = rows.setdefault(
            key,
            Row(
                label,
                model,
                r["method"],
                sup,
                cal,
                paper=paper_key(r),
                shots=int(shots) if shots is not None else None,
            ),
        )
        ds = r["dataset"]["id"]
        if ds in row.values:
            dupes += 1
            if created.get((*key, ds), "") > r.get("created", ""):
                continue
        row.values[ds] = float(r["metrics"].get(metric, float("nan")))
        created[(*key, ds)] = r.get("created", "")
    ordered = sorted(
        rows.values(),
        key=lambda x: (x.model, _support_order(x.support), methods.order(x.method), x.calibration),
    )
    incomplete = [row for row in ordered if len(row.values) < len(columns)]
    if incomplete:
        notes.append(
            f"{len(incomplete)} row(s) lack some datasets: they have no mean, since a mean over other "
            "datasets would not be comparable"
        )
    protocols = {
        res_io.config_key(
            {k: r["zero_shot_protocol"].get(k) for k in ("logit_scale", "text_pool", "templates")}
        ): r["zero_shot_protocol"]
        for r in results
    }
    if len(protocols) > 1:
        desc = "; ".join(
            f"pool={p.get('text_pool')}, templates={p.get('templates')}, logit scale={p.get('logit_scale')}"
            for p in protocols.values()
        )
        notes.append(
            f"these results mix {len(protocols)} zero-shot protocols ({desc}): rows are not directly comparable"
        )
    if dupes:
        notes.append(f"{dupes} duplicate result(s) for the same row and dataset: the newest is shown")
    if any(r["model"].get("random_weights") for r in results):
        notes.append("some results come from RANDOM-weight models: they only show that the pipeline runs")
    if len(models) > 1:
        notes.append(f"{len(models)} models: {', '.join(sorted(models))}")
    rep = Report(columns, names, ordered, notes, metric)
    if any(row.paper_figures() for row in ordered):
        matched = sorted(
            {f"{row.label} = {paper_label(row.paper)}" for row in ordered if row.paper_figures()}
        )
        notes.append(
            f"paper figures ({'; '.join(matched)}): OpenAI CLIP RN50, docs/METHOD.md; the paper's "
            "hyperparameters were searched on a labelled validation split (the test set for ImageNet)"
        )
        notes += rep.paper_mean_notes()
    return rep


# Long table: the leading columns say which run a row is; the rest follow, grouped by the result's
# top-level field in this order, each group in the order its fields first appear.
LONG_LEADING = (
    "result",
    "dataset.id",
    "model.arch",
    "model.pretrained",
    "method",
    "support.kind",
    "support.shots",
    "support.source",
    "calibration.mode",
)
LONG_GROUPS = (
    "dataset",
    "model",
    "method",
    "support",
    "calibration",
    "metrics",
    "zero_shot_protocol",
    "config",
    "config_key",
    "created",
    "tool",
    "artifacts",
)
LONG_SKIPPED = (
    "kind",
    "schema_version",
    "_path",
    "per_class",
    "metric_descriptions",
)  # not one value per run


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys ({"calibration": {"alpha": 1}} -> {"calibration.alpha": 1}); other values as is."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def long_cell(value: Any) -> str:
    """A CSV cell pandas reads back: empty for None, True/False, floats in full precision, lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


def long_table(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per result, every metric and configuration field flattened to dotted columns."""
    flat = []
    for r in results:
        record = {k: v for k, v in r.items() if k not in LONG_SKIPPED}
        flat.append({"result": r.get("_path"), **flatten(record)})
    seen: dict[str, None] = {}
    for f in flat:
        seen.update(dict.fromkeys(f))
    # A field that is null in one run (no support set) and a dict in another is its dotted columns alone.
    parents = {c[:i] for c in seen for i, ch in enumerate(c) if ch == "."}
    seen = {c: None for c in seen if c not in parents}
    group = {g: i for i, g in enumerate(LONG_GROUPS)}
    rest = sorted(
        (c for c in seen if c not in LONG_LEADING),
        key=lambda c: group.get(c.split(".", 1)[0], len(LONG_GROUPS)),
    )  # stable: first-seen order kept
    header = [c for c in LONG_LEADING if c in seen or c == "result"] + rest
    return header, [[long_cell(f.get(c)) for c in header] for f in flat]


def _support_order(label: str) -> tuple[int, int, str]:
    if label == "-":
        return (0, 0, "")
    if label.endswith("-shot") and label[:-5].isdigit():
        return (2, int(label[:-5]), label)
    return (1, 0, label)


METRIC_AXIS = {
    "top1": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "mean_per_class_recall": "mean per-class recall (%)",
}


def random_note(results: list[dict[str, Any]]) -> str | None:
    """The warning a chart carries when its figures come from random-weight models."""
    random = sum(bool(r["model"].get("random_weights")) for r in results)
    if not random:
        return None
    who = "every result" if random == len(results) else f"{random} of {len(results)} results"
    return f"RANDOM weights ({who}): these figures only show that the pipeline runs"


def shot_panels(rep: Report) -> list[ShotPanel]:
    """The few-shot rows (``folder-shots:K`` support sets) as curves, one panel per dataset with a result:
    one series per (model, method, calibration mode), its points in ascending shots; zero-shot rows are
    the panel's baselines. Non-finite values are left out."""
    several_models = len({row.model for row in rep.rows}) > 1
    panels = []
    for c in rep.columns:
        points: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for row in rep.rows:
            if row.shots is not None and math.isfinite(row.values.get(c, math.nan)):
                points.setdefault((row.model, row.method, row.calibration), []).append(
                    (row.shots, row.values[c])
                )
        series = []
        for (model, method, mode), pts in points.items():
            pts.sort()
            label = f"{methods.label(method)}, {mode} calibration" + (f" [{model}]" if several_models else "")
            series.append(ShotSeries(model, method, mode, label, [k for k, _ in pts], [v for _, v in pts]))
        baselines = [
            (
                methods.label(row.method) + (f" [{row.model}]" if several_models else ""),
                row.values[c],
                row.method,
            )
            for row in rep.rows
            if row.support == "-" and math.isfinite(row.values.get(c, math.nan))
        ]
        if series:
            panels.append(ShotPanel(rep.names[c], series, baselines))
    return panels


def chart_paths(chart: Path, both: bool) -> tuple[Path, Path]:
    """(few-shot curves, name-only bars): both at ``chart`` when only one is drawn, else
    ``chart-shots.png`` and ``chart-name-only.png``."""
    if not both:
        return chart, chart
    suffix = chart.suffix or ".png"
    return chart.with_name(f"{chart.stem}-shots{suffix}"), chart.with_name(f"{chart.stem}-name-only{suffix}")


def draw_charts(
    rep: Report, chart: Path, metric: str, note: str | None
) -> list[tuple[Path, ChartDescription]]:
    """Few-shot results as curves over shots; name-only support sets (and zero-shot) as bars, one panel per
    dataset. Both kinds in one report make two pictures (chart_paths)."""
    from susx_cli.plots import results_bars, shot_curves

    panels = shot_panels(rep)
    bar_rows = [row for row in rep.rows if row.shots is None]
    name_only = any(row.support != "-" for row in bar_rows)
    curves_path, bars_path = chart_paths(chart, bool(panels) and name_only)
    drawn = []
    if panels:
        title = (
            f"{METRIC_AXIS[metric]} over shots (colour: calibration mode, line: method; dotted: zero-shot)"
        )
        drawn.append(
            (
                curves_path,
                shot_curves(panels, curves_path, title=title, note=note, ylabel=METRIC_AXIS[metric]),
            )
        )
    if not panels or name_only:
        series = [
            (
                f"{r.label}{'' if r.calibration == '-' else ' ' + r.calibration}",
                r.method,
                [r.values.get(c) for c in rep.columns],
            )
            for r in bar_rows
        ]
        drawn.append(
            (
                bars_path,
                results_bars(
                    [rep.names[c] for c in rep.columns],
                    series,
                    bars_path,
                    title=f"{metric} (%) per dataset",
                    note=note,
                ),
            )
        )
    return drawn


def report(options: ReportOptions) -> ReportResult:
    from susx_cli.errors import SusxError

    paths, output, csv_path, chart = list(options.results), options.output, options.csv, options.chart
    long_path, metric = options.long, options.metric
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
    if long_path is not None:
        from susx_cli.artifacts import tables

        header, rows = long_table(results)
        tables.write_csv(long_path, header, rows)
        outputs.append(long_path)
    charts = draw_charts(rep, chart, metric, random_note(results)) if chart is not None else []
    outputs += [path for path, _ in charts]
    result = ReportResult(
        outputs,
        summary={
            "results": len(results),
            "rows": len(rep.rows),
            "datasets": rep.columns,
            "notes": rep.notes,
            "charts": [{"path": str(p), "kind": d.kind, "title": d.title, "note": d.note} for p, d in charts],
        },
    )
    result.message = md
    result.text = md.rstrip("\n") if output is None else ""  # Markdown on stdout when no -o is given
    return result
