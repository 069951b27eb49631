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
from susx_cli.artifacts import outputs as outputs_io
from susx_cli.artifacts import results as res_io
from susx_cli.method import registry as methods
from susx_cli.method.spec import GROUPS
from susx_cli.plots import ChartDescription, ShotPanel, ShotSeries
from susx_cli.stages.options import ReportOptions
from susx_cli.stages.results import ReportResult

SOURCE_LABELS = {"sd": "SuS-SD", "laion": "SuS-LC", "pool": "SuS-pool"}


TEST_TIME_FIGURES_NOTE = (
    "TDA's published figures (paper column of the test-time rows): RN50 from the TDA README, ViT-B/16 as "
    "quoted in DPE (NeurIPS 2024) Tables 1-2; single runs with per-dataset (alpha+, beta+) tuned on test "
    "labels, 64 augmented views on ImageNet-A/V2/R/Sketch, so not the same protocol as a single-view run here"
)


def _group(method: str) -> str:
    return methods.get(method).group if method in methods.names() else "name-only"


def _baseline(method: str) -> str | None:
    return methods.get(method).baseline if method in methods.names() else None


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
    by_model = f"{method}@{res['model']['arch']}/{res['model']['pretrained']}"
    if not sup and by_model in PAPER_NUMBERS:  # a figure published for one model (the test-time methods')
        return by_model
    if not sup:
        key = method
    elif sup.get("kind") == "folder-shots":
        key = f"{method}-{sup.get('shots')}shot"
    else:
        key = f"{method}-{sup.get('source')}"
    return key if key in PAPER_NUMBERS else None


@dataclass
class Cell:
    """One row's runs on one dataset, which differ only by seed: the finished runs' figures and the
    seeds (None: no seed) of the failed ones."""

    figures: list[float] = field(default_factory=list)
    failed: list[int | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.figures)

    @property
    def mean(self) -> float | None:
        return sum(self.figures) / self.n if self.figures else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation over seeds (n - 1 in the denominator); None below two runs."""
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.figures) / (self.n - 1))

    def text(self, pm: str = "±") -> str:
        """``mean`` alone for one run, ``mean ± std (n=N)`` over seeds, ``failed`` without a figure; the
        count of failed runs beside the figure otherwise."""
        if not self.figures:
            return "failed" if self.failed else "—"
        out = fmt_value(self.mean)
        notes = [f"n={self.n}"] if self.n > 1 else []
        if self.n > 1:
            out += f" {pm} {fmt_value(self.std)}"
        if self.failed:
            notes.append(f"{len(self.failed)} failed")
        return out + (f" ({', '.join(notes)})" if notes else "")


def fmt_value(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


@dataclass
class Row:
    label: str
    model: str
    method: str
    support: str
    calibration: str
    cells: dict[str, Cell] = field(default_factory=dict)  # by dataset id: every run, failed ones too
    paper: str | None = None
    shots: int | None = None  # K of a folder-shots:K support set (a point on a few-shot curve)
    group: str = "name-only"  # MethodSpec.group: rows of different groups are tabled apart

    @property
    def values(self) -> dict[str, float]:
        """The mean over seeds of each dataset with a finished run."""
        return {d: c.mean for d, c in self.cells.items() if c.figures}

    def mean(self, columns: list[str]) -> float | None:
        """Mean over every column; None when the row lacks one (a mean over fewer datasets is not comparable)."""
        if not columns or any(c not in self.values for c in columns):
            return None
        return sum(self.values[c] for c in columns) / len(columns)

    def paper_figures(self) -> dict[str, float]:
        """The paper's figures for this row (registry.PAPER_NUMBERS), by dataset id and PAPER_MEAN_KEY."""
        from susx_cli.datasets.registry import PAPER_NUMBERS

        return PAPER_NUMBERS.get(self.paper or "", {})


def number(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
LATEX_PM = r"$\pm$"


def latex_escape(text: str) -> str:
    r"""``text`` with LaTeX's special characters escaped, its ``$\pm$`` kept."""
    return LATEX_PM.join("".join(LATEX_SPECIAL.get(ch, ch) for ch in part) for part in text.split(LATEX_PM))


def paper_label(key: str) -> str:
    from susx_cli.datasets.registry import PAPER_ROW_LABELS

    method, _, shots = key.rpartition("-")
    return PAPER_ROW_LABELS.get(key) or f"{methods.label(method)} {shots.replace('shot', '-shot')}"


@dataclass
class Report:
    """The paper layout: one row per (model, method, support, calibration), one column per dataset with the
    paper's figure (OpenAI RN50, as quoted: registry.PAPER_SOURCES) in a column beside ours where the paper has one, then our mean and
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

    def lines(self) -> list[tuple[Row, list[Cell | float | None]]]:
        """Each row with its entries in ``header`` order: a ``Cell`` per dataset, the paper's figure or
        a mean (None = no figure)."""
        with_paper = set(self.paper_columns())
        show_paper_mean = any(self.paper_mean(row) is not None for row in self.rows)
        out = []
        for row in self.rows:
            nums, vals = row.paper_figures(), []
            for c in self.columns:
                vals += [row.cells.get(c, Cell())] + ([nums.get(c)] if c in with_paper else [])
            vals.append(row.mean(self.columns))
            if show_paper_mean:
                vals.append(self.paper_mean(row))
            out.append((row, vals))
        return out

    def groups(self) -> list[tuple[str, Report]]:
        """One table per method group (MethodSpec.group), in GROUPS order: a test-time group holds its rows
        and, beside them, the rows of their baselines (MethodSpec.baseline) for the same models."""
        present = {row.group for row in self.rows}
        out = []
        for group in [g for g in GROUPS if g in present] + sorted(present - set(GROUPS)):
            rows = [row for row in self.rows if row.group == group]
            if group != "name-only":
                baselines = {(_baseline(row.method), row.model) for row in rows}
                rows = [r for r in self.rows if (r.method, r.model) in baselines and r.group != group] + rows
            out.append((group, Report(self.columns, self.names, rows, [], self.metric)))
        return out

    def text_rows(self, pm: str = "±") -> tuple[list[str], list[list[str]]]:
        """(header, rows) as display text: each dataset's cell as ``Cell.text`` shows it."""
        values = self.header(
            name=lambda c: self.names.get(c, c), paper=lambda c: f"{self.names.get(c, c)} (paper)"
        )
        rows = [
            [row.label, row.model, row.support, row.calibration]
            + [v.text(pm) if isinstance(v, Cell) else fmt_value(v) for v in vals]
            for row, vals in self.lines()
        ]
        return ["method", "model", "support", "calibration", *values], rows

    def table(self) -> list[str]:
        """This report's rows as Markdown table lines."""
        head, rows = self.text_rows()
        text = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|",
        ]
        return text + ["| " + " | ".join(r) + " |" for r in rows]

    def markdown(self) -> str:
        text = [f"# susx results ({self.metric}, %)"]
        groups = self.groups()
        for group, part in groups:
            if len(groups) > 1:
                text += ["", f"## {GROUPS.get(group, group)}"]
            text += ["", *part.table()]
        if self.notes:
            text += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(text) + "\n"

    def latex(self) -> str:
        """A tabular (no package needed), the notes as comments."""
        head, rows = self.text_rows(pm=LATEX_PM)
        text = [
            f"% susx results ({self.metric}, %)",
            r"\begin{tabular}{" + "l" * 4 + "r" * (len(head) - 4) + "}",
            r"\hline",
            " & ".join(map(latex_escape, head)) + r" \\",
            r"\hline",
        ]
        text += [" & ".join(map(latex_escape, r)) + r" \\" for r in rows]
        text += [r"\hline", r"\end{tabular}"] + [f"% Note: {n}" for n in self.notes]
        return "\n".join(text) + "\n"

    def csv(self) -> str:
        """Per dataset its mean over seeds, the standard deviation, n and the failed runs (numbers alone)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        head = []
        for c in self.header():
            head += [c, f"{c}_std", f"{c}_n", f"{c}_failed"] if c in self.columns else [c]
        w.writerow(["source", "method", "model", "support", "calibration", *head, "group"])
        for row, vals in self.lines():
            cells = []
            for v in vals:
                if isinstance(v, Cell):
                    cells += [number(v.mean), number(v.std), str(v.n), str(len(v.failed))]
                else:
                    cells.append(number(v))
            w.writerow(["ours", row.label, row.model, row.support, row.calibration, *cells, row.group])
        return buf.getvalue()

    def render(self, fmt: str) -> str:
        return {"markdown": self.markdown, "csv": self.csv, "latex": self.latex}[fmt]()

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


def run_seed(res: dict[str, Any]) -> int | None:
    """The seed a result's support sample was drawn with (None: the run reads no seed)."""
    seed = res.get("seed", (res.get("support") or {}).get("seed"))
    return int(seed) if isinstance(seed, int) else None


def build_report(results: list[dict[str, Any]], metric: str = "top1") -> Report:
    """The paper-layout table of ``results`` (failed runs too: they are counted in their cells)."""
    from susx_cli.datasets.registry import DATASETS

    order = {d: i for i, d in enumerate(DATASETS)}
    columns = sorted({r["dataset"]["id"] for r in results}, key=lambda d: (order.get(d, 999), d))
    names = {c: DATASETS[c].name if c in DATASETS else c for c in columns}
    models = {f"{r['model']['arch']}/{r['model']['pretrained']}" for r in results}
    rows: dict[tuple, Row] = {}
    newest: dict[tuple, dict[str, Any]] = {}  # (row key, dataset, seed) -> its newest result
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
        rows.setdefault(
            key,
            Row(
                label,
                model,
                r["method"],
                sup,
                cal,
                paper=paper_key(r),
                shots=int(shots) if shots is not None else None,
                group=_group(r["method"]),
            ),
        )
        run = (key, r["dataset"]["id"], run_seed(r))
        if run in newest:
            dupes += 1
            if newest[run].get("created", "") > r.get("created", ""):
                continue
        newest[run] = r
    for (key, ds, seed), r in newest.items():
        cell = rows[key].cells.setdefault(ds, Cell())
        if r.get("status") == "failed":
            cell.failed.append(seed)
        else:
            cell.figures.append(float(r["metrics"].get(metric, float("nan"))))
    group_order = {g: i for i, g in enumerate(GROUPS)}
    ordered = sorted(
        rows.values(),
        key=lambda x: (
            group_order.get(x.group, len(GROUPS)),
            x.model,
            _support_order(x.support),
            methods.order(x.method),
            x.calibration,
        ),
    )
    incomplete = [row for row in ordered if len(row.values) < len(columns)]
    if incomplete:
        notes.append(
            f"{len(incomplete)} row(s) lack some datasets: they have no mean, since a mean over other "
            "datasets would not be comparable"
        )
    failed = [r for r in newest.values() if r.get("status") == "failed"]
    if failed:
        notes.append(
            f"{len(failed)} failed run(s), counted beside their cells: "
            + "; ".join(f"{Path(r['_path']).stem}: {r.get('error')}" for r in failed[:3])
            + ("; ..." if len(failed) > 3 else "")
        )
    if any(c.n > 1 for row in ordered for c in row.cells.values()):
        notes.append("mean ± sample standard deviation over n runs that differ only by seed")
    finished = [r for r in results if r.get("status") != "failed"]
    protocols = {
        res_io.config_key(
            {k: r["zero_shot_protocol"].get(k) for k in ("logit_scale", "text_pool", "templates")}
        ): r["zero_shot_protocol"]
        for r in finished
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
        notes.append(f"{dupes} duplicate result(s) for the same row, dataset and seed: the newest is shown")
    if any(r["model"].get("random_weights") for r in results):
        notes.append("some results come from RANDOM-weight models: they only show that the pipeline runs")
    if len(models) > 1:
        notes.append(f"{len(models)} models: {', '.join(sorted(models))}")
    rep = Report(columns, names, ordered, notes, metric)
    if any(row.paper_figures() and "@" in row.paper for row in ordered):
        notes.append(TEST_TIME_FIGURES_NOTE)
    if any(row.paper_figures() and "@" not in row.paper for row in ordered):
        from susx_cli.datasets.registry import PAPER_SOURCES

        matched = sorted(
            {
                f"{row.label} = {paper_label(row.paper)}, {PAPER_SOURCES[row.paper]}"
                for row in ordered
                if row.paper_figures() and "@" not in row.paper
            }
        )
        notes.append(
            f"paper figures, OpenAI CLIP RN50, each with its source ({'; '.join(matched)}); the papers' "
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


def chart_layout(rep: Report, chart: Path) -> tuple[list[ShotPanel], list, bool, tuple[Path, Path]]:
    """(few-shot panels, name-only / zero-shot rows, whether there are name-only rows, chart_paths)."""
    panels = shot_panels(rep)
    bar_rows = [row for row in rep.rows if row.shots is None]
    name_only = any(row.support != "-" for row in bar_rows)
    return panels, bar_rows, name_only, chart_paths(chart, bool(panels) and name_only)


def chart_outputs(rep: Report, chart: Path) -> list[Path]:
    """The PNG files ``draw_charts`` will write for ``rep``."""
    panels, _, name_only, (curves_path, bars_path) = chart_layout(rep, chart)
    return list(
        dict.fromkeys(([curves_path] if panels else []) + ([bars_path] if not panels or name_only else []))
    )


def draw_charts(
    rep: Report, chart: Path, metric: str, note: str | None
) -> list[tuple[Path, ChartDescription]]:
    """Few-shot results as curves over shots; name-only support sets (and zero-shot) as bars, one panel per
    dataset. Both kinds in one report make two pictures (chart_paths)."""
    from susx_cli.plots import results_bars, shot_curves

    panels, bar_rows, name_only, (curves_path, bars_path) = chart_layout(rep, chart)
    drawn = []
    if panels:
        title = f"{METRIC_AXIS[metric]} over shots (colour and marker: method, line: calibration mode; dotted: zero-shot)"
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
    """The table (and long table, charts) of the result files ``options`` name; the metric and format are
    checked where the options are built."""
    from susx_cli.errors import SusxError

    paths, output, fmt, chart = list(options.results), options.output, options.fmt, options.chart
    long_path, metric = options.long, options.metric
    # Failed runs of `eval --keep-going` are cells of the table (marked failed); charts draw figures only.
    everything = res_io.collect(paths)
    results = [r for r in everything if r.get("status") != "failed"]
    if not everything:
        raise SusxError("no result files given", hint="pass result files or the --results-dir of susx eval")
    rep = build_report(everything, metric)
    charts_planned = chart_outputs(rep, chart) if chart is not None else []
    table_kind = {
        "markdown": outputs_io.REPORT_MARKDOWN,
        "csv": outputs_io.REPORT_CSV,
        "latex": outputs_io.REPORT_LATEX,
    }
    planned = [
        ("-o/--output", output, table_kind[fmt]),
        ("--long", long_path, outputs_io.REPORT_LONG_CSV),
        *(("--chart", path, outputs_io.CHART) for path in charts_planned),
    ]
    # Every path is checked before anything is written: a refused one leaves the others as they were.
    outputs_io.check_paths(paths, [(option, path) for option, path, _ in planned])
    for option, path, kind in planned:
        if path is not None:
            outputs_io.claim(path, kind, option=option)
    table = rep.render(fmt)
    outputs: list[Path] = []
    if output is not None:
        with outputs_io.writing(output):
            common.atomic_write_bytes(
                output, (outputs_io.text_mark(table_kind[fmt], fmt) + table).encode("utf-8")
            )
        outputs.append(output)
    if long_path is not None:
        from susx_cli.artifacts import tables

        header, rows = long_table(everything)
        tables.write_csv(long_path, header, rows, kind=outputs_io.REPORT_LONG_CSV)
        outputs.append(long_path)
    charts = draw_charts(rep, chart, metric, random_note(results)) if chart is not None else []
    outputs += [path for path, _ in charts]
    result = ReportResult(
        outputs,
        summary={
            "results": len(everything),
            "failed": len(everything) - len(results),
            "rows": len(rep.rows),
            "datasets": rep.columns,
            "notes": rep.notes,
            "charts": [{"path": str(p), "kind": d.kind, "title": d.title, "note": d.note} for p, d in charts],
        },
    )
    result.message = table
    result.text = table.rstrip("\n") if output is None else ""  # the table on stdout when no -o is given
    return result
