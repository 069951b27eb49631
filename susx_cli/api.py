"""The Python API: the stages as functions, ``load`` for any artifact, and progress output on request.

``import susx_cli as susx`` exposes these names lazily (this module is imported on first use, and the
stages import torch only when they run). Each stage function takes keyword arguments only, named and
defaulted as the command's options (they build the same options object, ``susx_cli.stages.options``),
accepts ``str`` or ``Path`` for paths, writes the same artifacts as the command of the same name and
returns that stage's ``StageResult`` (``outputs``: the paths written; ``skipped``: an up-to-date output
was left as it was; ``summary``: the figures the command prints). Bad input raises ``susx.SusxError``. Nothing is printed
unless asked: ``susx.verbose()`` turns on the command line's progress bars and log lines (on stderr),
warnings otherwise go to the ``susx`` logger.

The whole pipeline on generated images, with a tiny random-weight model (``pretrained="none"``):

>>> import tempfile
>>> from pathlib import Path
>>> from PIL import Image
>>> import susx_cli as susx
>>> root = Path(tempfile.mkdtemp())
>>> _ = (root / "classes.txt").write_text("red\\nblue\\n")
>>> for name, colour in [("red", (220, 30, 30)), ("blue", (30, 30, 220))]:
...     for i in range(3):
...         for split in ("shots", "queries"):
...             folder = root / split / name
...             folder.mkdir(parents=True, exist_ok=True)
...             Image.new("RGB", (32, 32), tuple(c + 10 * i for c in colour)).save(folder / f"{i}.png")

``prompts`` writes the class names with their prompt texts; ``load`` reads it back as ``Prompts``:

>>> result = susx.prompts(classes=root / "classes.txt", output=root / "prompts.json", templates="ensemble")
>>> result.outputs == [root / "prompts.json"], result.summary["templates"]
(True, 7)
>>> susx.load(root / "prompts.json").classes
['red', 'blue']

``curate`` takes a source name and that source's options (the ``susx curate`` flags in snake case):

>>> support = susx.curate(prompts=root / "prompts.json", output=root / "support",
...                       source="folder", images=root / "shots", shots=2, seed=0)
>>> support.summary["per_class"]
[2, 2]
>>> susx.load(root / "support").counts()
[2, 2]

``embed`` turns prompts into a text classifier and images into features:

>>> tiny = {"model": "susx-tiny-vit", "pretrained": "none"}
>>> _ = susx.embed(input=root / "prompts.json", output=root / "text.h5", **tiny)
>>> _ = susx.embed(input=root / "support", output=root / "support.h5", **tiny)
>>> text = susx.load(root / "text.h5")
>>> type(text).__name__, text.weights.shape
('TextClassifier', (2, 32))
>>> features = susx.load(root / "support.h5")
>>> type(features).__name__, features.features.shape, features.labels.tolist()
('FeatureSet', (4, 32), [0, 0, 1, 1])

``calibrate`` searches the hyperparameters (here leave-one-out on the support set, on a small grid):

>>> grids = {"alpha": "0.1,1", "beta": "1,2", "gamma": "0,0.1"}
>>> _ = susx.calibrate(text=root / "text.h5", support=root / "support.h5", output=root / "calibration.json",
...                    mode="loo", grids=grids)
>>> calibration = susx.load(root / "calibration.json")
>>> calibration.method, calibration.mode, sorted(calibration.hyperparameters), calibration.settings["tau"]
('tip-x', 'loo', ['alpha', 'beta', 'gamma'], 0.5)

``predict`` classifies a folder (embedding it first, with the text classifier's model):

>>> result = susx.predict(text=root / "text.h5", query=root / "queries", output=root / "predictions.h5",
...                       support=root / "support.h5", calibration=root / "calibration.json")
>>> {"top1", "mean_per_class_recall"} <= set(result.metrics), result.metrics["n"]
(True, 6)
>>> predictions = susx.load(root / "predictions.h5")
>>> predictions.method, predictions.predicted.shape, predictions.classes
('tip-x', (6,), ['red', 'blue'])
>>> [predictions.classes[label] for label in predictions.labels]  # the query folders' names, in listing order
['blue', 'blue', 'blue', 'red', 'red', 'red']

Running a stage again with the same inputs and options leaves its output alone:

>>> susx.prompts(classes=root / "classes.txt", output=root / "prompts.json", templates="ensemble").skipped
True

The same without files: the methods (``susx.methods``, the registry), a search on arrays and a method's
logits, with the encoder in memory:

>>> susx.methods.names()[:4], susx.methods.get("tda").group
(('zero-shot', 'tip-adapter', 'tip-x', 'gda'), 'test-time')
>>> tipx = susx.methods.get("tip-x")
>>> tipx.needs_support, tipx.online, [h.name for h in tipx.hyperparameters]
(True, False, ['alpha', 'beta', 'gamma'])
>>> encoder = susx.load_encoder("susx-tiny-vit", pretrained="none")
>>> prompts = susx.load(root / "prompts.json")
>>> W = encoder.classifier([entry.texts(prompts.default_pool) for entry in prompts.entries])
>>> shots = [Image.open(p) for p in sorted((root / "shots").glob("*/*.png"))]
>>> F, y = encoder.images(shots), [1, 1, 1, 0, 0, 0]  # blue (class 1), then red (class 0)
>>> F.shape
(6, 32)
>>> choice = susx.search("tip-x", W, F, y, mode="loo", grid={"alpha": [0.1, 1], "beta": [1, 2], "gamma": [0, 0.1]})
>>> sorted(choice.values) == ["alpha", "beta", "gamma"], choice.total
(True, 6)
>>> state = tipx.fit(susx.tensor(W), susx.support(F, y), choice.values, tau=0.5)
>>> tipx.logits(state, susx.tensor(encoder.images(shots[:2]))).shape
torch.Size([2, 2])
"""

from __future__ import annotations

import contextvars
import typing
from collections.abc import Callable, Sequence
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING, Any

from susx_cli import progress
from susx_cli.errors import SusxError

if TYPE_CHECKING:
    from susx_cli.stages.predict import PredictResult
    from susx_cli.stages.results import (
        CalibrateResult,
        CurateResult,
        DemoResult,
        EmbedResult,
        ExportResult,
        InspectResult,
        MergeResult,
        PromptsResult,
        ReportResult,
        StageResult,
    )

PathLike = str | Path


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def _check_options(stage: Callable[..., Any], options: dict[str, Any], fixed: Sequence[str]) -> None:
    """Refuse a keyword the stage does not take (or one the wrapper sets itself) with the ones it does."""
    params = signature(stage).parameters
    allowed = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in fixed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SusxError(
            f"{stage.__module__.rsplit('.', 1)[-1]}() got unknown option(s) {', '.join(unknown)}",
            hint=f"it takes {', '.join(allowed)}",
        )


def _shard(num_shards: int | None, shard_index: int | None):
    from susx_cli.sharding import resolve_shard

    return resolve_shard(num_shards, shard_index)


# ------------------------------------------------------------------------------------------ stages


def prompts(**options: Any) -> PromptsResult:
    """Write prompts.json: class names (``classes`` file: text, CSV or CoOp split; or the built-in
    ``dataset``'s), each with its photo prompt, ``templates`` (photo | ensemble | openai | a file) and
    CuPL sentences from the ``cupl`` files or URLs, or from an LLM (``llm=True``, ``llm_model``, ...);
    ``pool`` chooses the default text pool. The options are ``PromptsOptions``'s (the `susx prompts`
    flags in snake case, same defaults)."""
    from susx_cli.stages.options import PromptsOptions
    from susx_cli.stages.prompts import prompts as prompts_stage

    return prompts_stage(PromptsOptions.build(options, "prompts"))


def curate(
    *,
    prompts: PathLike,
    output: PathLike,
    source: str = "folder",
    min_per_class: int = 1,
    num_shards: int | None = None,
    shard_index: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    overwrite: bool = False,
    exclude: PathLike | None = None,
    **source_options: Any,
) -> CurateResult:
    """Build a support set (one folder per class and a manifest) for the classes of ``prompts`` with a
    source: folder | sd | laion | pool. ``source_options`` are that source's options, named as its
    `susx curate` flags in snake case (``images=``, ``shots=`` for folder; ``per_class=``, ``steps=`` for sd).

    Sharding as on the command line: ``num_shards``/``shard_index``, else a SLURM array or torchrun;
    ``executor="ray"`` runs the shards of source sd as Ray tasks. ``exclude``: a file of support-set keys
    to leave out, one a line."""
    from susx_cli.stages.curate import curate as curate_stage
    from susx_cli.stages.options import CurateOptions

    options = CurateOptions(
        prompts=prompts,
        output=output,
        source=source,
        min_per_class=min_per_class,
        num_shards=num_shards,
        shard_index=shard_index,
        executor=executor,
        ray_address=ray_address,
        overwrite=overwrite,
        exclude=exclude,
        source_values=_source_paths(source_options),
    )
    return curate_stage(options)


def _source_paths(options: dict[str, Any]) -> dict[str, Any]:
    """Strings given for path options become Paths, as the command line would parse them."""
    from susx_cli.sources.registry import cli_params

    path_params = {p.name for p in cli_params() if p.type is Path or Path in typing.get_args(p.type)}
    return {k: Path(v) if k in path_params and isinstance(v, str) else v for k, v in options.items()}


def embed(**options: Any) -> EmbedResult:
    """Embed ``input`` with an open_clip model (``model``: ARCH or ARCH:TAG; ``pretrained``: a tag, a
    checkpoint or 'none') into an HDF5 file: prompts.json gives the text classifier (weights C x D, texts
    of ``pool``); a support folder, class folders, a CoOp split file (``split``) or an unlabelled folder
    gives image features (N x D, L2-normalised). ``classes`` (prompts.json) names the classes of class
    folders. The options are ``EmbedOptions``'s: the `susx embed` flags in snake case, same defaults."""
    from susx_cli.stages.embed import embed as embed_stage
    from susx_cli.stages.options import EmbedOptions

    return embed_stage(EmbedOptions.build(options, "embed"))


def merge(**options: Any) -> MergeResult:
    """Join the parts of a sharded run once every shard finished: ``target`` a support folder (`curate`)
    or the OUT.h5 of `embed`, ``num_shards`` the count the shards ran with (``MergeOptions``)."""
    from susx_cli.stages.merge import merge as merge_stage
    from susx_cli.stages.options import MergeOptions

    return merge_stage(MergeOptions.build(options, "merge"))


def export(**options: Any) -> ExportResult:
    """Write the ``predictions`` file as a CSV table at ``output``, one row per query (``ExportOptions``)."""
    from susx_cli.stages.export import export as export_stage
    from susx_cli.stages.options import ExportOptions

    return export_stage(ExportOptions.build(options, "export"))


def inspect(**options: Any) -> InspectResult:
    """Describe the artifact at ``path`` (``description``); draw a support folder's ``contact_sheet`` or a
    predictions file's ``confusion`` matrix (``InspectOptions``)."""
    from susx_cli.stages.inspect import inspect as inspect_stage
    from susx_cli.stages.options import InspectOptions

    return inspect_stage(InspectOptions.build(options, "inspect"))


def demo(**options: Any) -> DemoResult:
    """Every stage end to end in a fresh ``output`` folder, offline with tiny random-weight models unless
    ``model``/``sd_model`` name real ones (``DemoOptions``); ``rows``: the scores per support and method."""
    from susx_cli.stages.demo import demo as demo_stage
    from susx_cli.stages.options import DemoOptions

    return demo_stage(DemoOptions.build(options, "demo"))


def report(**options: Any) -> ReportResult:
    """The paper's table from ``results`` (result JSON files of `eval`, or folders of them) in ``fmt``
    (markdown | csv | latex) at ``output`` (else in ``message``), a ``long`` CSV and ``chart`` PNGs
    (``ReportOptions``)."""
    from susx_cli.stages.options import ReportOptions
    from susx_cli.stages.report import report as report_stage

    return report_stage(ReportOptions.build(options, "report"))


def calibrate(**options: Any) -> CalibrateResult:
    """Choose the method's hyperparameters and write calibration.json. ``mode``: loo (leave one out on
    the support set) | kfold | val (search on the ``val`` features) | fixed (the given ``values``, by
    hyperparameter name); default: val with ``val``, else the method's name-only mode. ``grids``: per
    hyperparameter "reference", "0.1,1" or "start:stop:steps". The other options are ``CalibrateOptions``'s
    (the `susx calibrate` flags in snake case, same defaults), the method flags included (``alpha=1.0``,
    ``gda_alpha_grid="0.1,1"``)."""
    import dataclasses

    from susx_cli.stages.calibrate import calibrate as calibrate_stage
    from susx_cli.stages.options import CalibrateOptions

    fields = {f.name for f in dataclasses.fields(CalibrateOptions) if f.init}
    hyperparameters = {k: options.pop(k) for k in list(options) if k not in fields}
    options["hyperparameters"] = {**options.get("hyperparameters", {}), **hyperparameters}
    return calibrate_stage(CalibrateOptions.build(options, "calibrate"))


def predict(**options: Any) -> PredictResult:
    """Classify ``query`` (image features, or images that are embedded first beside ``output`` with the
    text classifier's model) and write predictions.h5. Zero-shot with ``text`` alone; with ``support``
    and ``calibration`` the calibrated method (``method`` defaults to the calibration's). The result's
    ``metrics`` hold top-1/top-5 accuracy and mean per-class recall (percent) when labels are known. The
    options are ``PredictOptions``'s (the `susx predict` flags in snake case, same defaults)."""
    from susx_cli.stages.options import PredictOptions
    from susx_cli.stages.predict import predict as predict_stage

    return predict_stage(PredictOptions.build(options, "predict"))


def eval(  # noqa: A001 - the stage's name, as `susx eval`
    *,
    dataset: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    pretrained: str | Sequence[str] | None = None,
    data_root: PathLike | None = None,
    support: str | Sequence[str] | None = None,
    method: str | Sequence[str] | None = None,
    calibration: str | Sequence[str] | None = None,
    work_dir: PathLike = Path("susx-work"),
    results_dir: PathLike = Path("susx-results"),
    templates: str = "ensemble",
    cupl_dir: PathLike | None = None,
    prompts: PathLike | None = None,
    pool: str | None = None,
    logit_scale: str = "100",
    tau: float = 0.5,
    folds: int | None = None,
    fold_seed: int | None = None,
    seeds: str = "0",
    augment_passes: int = 10,
    order_seeds: str | None = None,
    tda_preset: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    keep_going: bool = False,
    config: PathLike | None = None,
    dry_run: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    **hyperparameters: float | str | None,
) -> StageResult:
    """Run the paper's protocol on registered datasets under ``data_root``: prompts, text classifier,
    features, calibration, predictions per (dataset, model, method, support, calibration), each a
    self-describing result JSON in ``results_dir`` (intermediate artifacts in ``work_dir``). The keywords
    are `susx eval`'s options by parameter name, with the same defaults (a list for a repeatable option;
    ``seeds`` and ``order_seeds`` as "0,1,2"); hyperparameters by flag name (``gda_alpha_grid="0.1,1"``).
    The result's ``rows`` list one record per run."""
    from susx_cli.method import registry
    from susx_cli.stages.eval import eval_parameters

    params = {
        k: v for k, v in locals().items() if k not in ("hyperparameters", "registry", "eval_parameters")
    }
    flags = {p for h, _ in registry.hyperparameter_flags().values() for p in (h.param, f"{h.param}_grid")}
    unknown = sorted(set(hyperparameters) - flags)
    if unknown:
        raise SusxError(f"eval() got unknown option(s) {', '.join(unknown)}", hint="see `susx eval --help`")
    for name in ("dataset", "model", "pretrained", "support", "method", "calibration"):
        params[name] = None if params[name] is None else _as_list(params[name])
    for name in ("data_root", "work_dir", "results_dir", "cupl_dir", "prompts", "config"):
        params[name] = _path(params[name])
    given = [k for k, v in params.items() if v is not None] + list(hyperparameters)
    return eval_parameters({**params, **hyperparameters}, given=given)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# ------------------------------------------------------------------------------------------ in memory


def __getattr__(name: str) -> Any:
    if name == "methods":  # the registry module: names(), get(name) -> MethodSpec, registered(spec)
        from susx_cli.method import registry

        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tensor(x: Any):
    """``x`` (an array, list or tensor) as a float64 CPU tensor, as the methods compute."""
    import numpy as np
    import torch

    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def support(features: Any, labels: Any, views: Any = None):
    """A labelled support set from arrays: features (N, D), labels (N,) in 0..C-1, and optionally the
    augmented views' unit rows (N, K, D), which GDA fits on."""
    import numpy as np
    import torch

    from susx_cli.method.spec import Support

    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return Support(tensor(features), labels, None if views is None else tensor(views))


def search(
    method: str,
    text_weights: Any,
    features: Any,
    labels: Any,
    *,
    mode: str = "loo",
    grid: dict[str, Any] | None = None,
    queries: Any = None,
    query_labels: Any = None,
    folds: int = 4,
    fold_seed: int = 0,
    **settings: Any,
):
    """Grid search of ``method``'s hyperparameters on arrays or tensors, as `calibrate` does on files:
    text_weights (C, D), support features (N, D) and labels (N,); mode val scores ``queries`` (n, D) with
    ``query_labels``. ``grid``: per hyperparameter a list of values or a `--*-grid` string (default: the
    reference grids). ``settings``: tau, normalize, logit_scale, logit_bias as the method reads them.
    Returns a ``Choice`` (``values``, ``correct``, ``total``, ``counts`` per grid point)."""
    from susx_cli.method import registry
    from susx_cli.stages.calibrate import parse_grid, search_hyperparameters

    spec = registry.get(method)
    registry.check_mode(spec, mode)
    if mode == "fixed":
        raise SusxError("search has no mode fixed", hint="fit the method with the values directly")
    given = grid or {}
    registry.refuse_foreign(
        spec, [f"--{k}" for k in given if k not in {h.name for h in spec.hyperparameters}]
    )
    axes = {
        h.name: parse_grid(given[h.name], h)
        if isinstance(given.get(h.name), str | None)
        else [h.check(v, h.grid_flag) for v in given[h.name]]
        for h in spec.hyperparameters
    }
    q = support(queries, query_labels) if mode == "val" else None
    choice, _ = search_hyperparameters(
        spec,
        mode,
        tensor(text_weights),
        support(features, labels),
        axes,
        queries=q,
        folds=folds,
        fold_seed=fold_seed,
        **settings,
    )
    return choice


class InMemoryEncoder:
    """A loaded model that embeds in memory: ``images(list of PIL images)`` and ``texts(list of str)`` give
    unit rows (N, D) float32; ``classifier(texts per class)`` the text classifier (C, D) as `embed` builds
    it. ``encoder`` is the underlying ``susx_cli.encoder.Encoder``."""

    def __init__(self, encoder: Any, batch_size: int = 64):
        self.encoder, self.batch_size = encoder, batch_size
        self.identity = encoder.identity

    def texts(self, texts: Sequence[str]):
        return self.encoder.encode_texts(list(texts))

    def images(self, images: Sequence[Any]):
        import numpy as np
        import torch

        rows = [np.zeros((0, self.identity.embed_dim), dtype=np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = [
                self.encoder.preprocess(im.convert("RGB")) for im in images[start : start + self.batch_size]
            ]
            rows.append(self.encoder.encode_images(torch.stack(batch)))
        return np.concatenate(rows)

    def classifier(self, texts_per_class: Sequence[Sequence[str]]):
        from susx_cli.embedding import class_text_weights

        return class_text_weights(self.encoder, [list(t) for t in texts_per_class])


def load_encoder(model: str, *, pretrained: str | None = None, device: str = "auto", precision: str = "fp32"):
    """The model ``model`` (open_clip architecture or ARCH:TAG) with weights ``pretrained``, on ``device``,
    as an ``InMemoryEncoder``."""
    from susx_cli import runtime
    from susx_cli.encoder import load_encoder as load
    from susx_cli.model_spec import resolve_model

    arch, tag = resolve_model(model, pretrained, default=None)
    return InMemoryEncoder(load(arch, tag, device=runtime.resolve_device(device), precision=precision))


# ------------------------------------------------------------------------------------------ readers


def load(path: PathLike) -> Any:
    """Read any susx artifact by its recorded kind: prompts.json -> ``Prompts``; features .h5 ->
    ``FeatureSet`` (``features`` N x D, ``labels`` N); text classifier -> ``TextClassifier``
    (``weights`` C x D); predictions -> ``Predictions``; calibration.json -> ``Calibration``; a support
    folder -> ``SupportSet``; a result JSON of `susx eval` -> its record (a dict). Arrays are numpy."""
    path = Path(path)
    if not path.exists():
        raise SusxError(f"{path} does not exist", hint="check the path")
    if path.is_dir():
        return _load_support(path)
    if _is_hdf5(path):
        return _load_hdf5(path)
    return _load_json(path)


def _load_support(path: Path) -> Any:
    from susx_cli.artifacts import support

    if not support.is_support_dir(path):
        raise SusxError(
            f"{path} is a folder but not a susx support set", hint="pass the -o folder of `susx curate`"
        )
    return support.read_support(path)


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _load_hdf5(path: Path) -> Any:
    from susx_cli.artifacts import common, hdf5

    readers = {
        common.IMAGE_FEATURES: hdf5.read_features,
        common.TEXT_CLASSIFIER: hdf5.read_text_classifier,
        common.PREDICTIONS: hdf5.read_predictions,
    }
    kind = hdf5.read_kind(path)
    if kind not in readers:
        raise SusxError(
            f"{path} is an HDF5 file but not a susx artifact (kind {kind!r})", hint="pass a file made by susx"
        )
    return readers[kind](path)


def _load_json(path: Path) -> Any:
    from susx_cli.artifacts import common, results
    from susx_cli.artifacts.calibration import read_calibration
    from susx_cli.artifacts.prompts import read_prompts

    readers = {
        common.PROMPTS: read_prompts,
        common.CALIBRATION: read_calibration,
        results.RESULT: results.read_result,
    }
    data = common.read_json(path, "artifact")
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in readers:
        raise SusxError(
            f"{path} is not a susx artifact susx.load reads (kind {kind!r})",
            hint="pass prompts.json, calibration.json, a result JSON, an .h5 artifact or a support folder",
        )
    return readers[kind](path)


# ------------------------------------------------------------------------------------------ output


class Verbosity:
    """What ``verbose()`` returns: the choice holds from the call on; a ``with`` block undoes it at its end."""

    def __init__(self, token: contextvars.Token):
        self._token = token

    def __enter__(self) -> Verbosity:
        return self

    def __exit__(self, *exc: object) -> None:
        progress.uninstall(self._token)


def verbose(enabled: bool = True, *, quiet: bool = False) -> Verbosity:
    """Show progress bars and log lines on stderr from now on (``enabled=False``: silent again;
    ``quiet``: warnings only), or only inside ``with susx.verbose(): ...``."""
    reporter = progress.RichReporter(quiet=quiet) if enabled else progress.NULL
    return Verbosity(progress.install(reporter))


reporting = progress.reporting  # `with susx.reporting(reporter):` for a reporter of one's own
