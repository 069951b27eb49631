"""One frozen options dataclass per stage: what the stage's command and ``susx_cli.api`` both build.

Every field is declared with ``susx_cli.options.option`` (default, flags, help), so the command's flags,
the API's keywords and their defaults come from one place; ``__post_init__`` checks the values (and
splits ``-m ARCH:TAG``), so a bad value fails alike from the command line and from Python. Importing this
module is cheap: no torch, no h5py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts.prompts import POOLS
from susx_cli.errors import require_range
from susx_cli.method import registry
from susx_cli.options import REPLACES_OWN, REQUIRED, StageOptions, argument, cli_fields, option, parse_seeds
from susx_cli.runtime import DEVICE_HELP, PRECISION_HELP, PRECISIONS
from susx_cli.sources.registry import SOURCES

# ------------------------------------------------------------------ fields several stages declare


def output_field(default: Path = REQUIRED, help: str = "Where to write the artifact.") -> Any:
    return option(default, "--output", "-o", help=help, path="output")


def overwrite_field() -> Any:
    return option(False, "--overwrite", help="Replace an existing output made with other options.")


def model_field(default: str = "ViT-B-32") -> Any:
    return option(
        default,
        "--model",
        "-m",
        help="open_clip architecture or hf-hub:org/repo id, with its weights as ARCH:TAG if you like "
        "(e.g. ViT-B-32:openai).",
    )


def pretrained_field() -> Any:
    return option(
        None,
        "--pretrained",
        "-p",
        help="Weights: an open_clip tag, a checkpoint path, or 'none' (random); default: the -m tag, else openai.",
    )


def device_field() -> Any:
    return option("auto", "--device", help=DEVICE_HELP)


def precision_field(default: str = "fp32") -> Any:
    return option(default, "--precision", help=PRECISION_HELP, choices=PRECISIONS)


def batch_size_field(default: int = 64, help: str = "Images (or prompt texts) per forward pass.") -> Any:
    return option(default, "--batch-size", "-b", help=help)


def workers_field() -> Any:
    return option(None, "--workers", help="Image loading processes (default: cores - 1).")


def num_shards_field() -> Any:
    return option(None, "--num-shards", help="Split the work into this many shards.")


def shard_index_field() -> Any:
    return option(None, "--shard-index", help="This worker's shard (0-based).")


EXECUTORS = ("local", "ray")


def executor_field() -> Any:
    return option(
        "local",
        "--executor",
        help="local (this process, or the shard given by --shard-index) or ray (every shard as a Ray task; "
        "--num-shards defaults to the cluster's GPUs, else its CPUs).",
        choices=EXECUTORS,
    )


def ray_address_field() -> Any:
    return option(
        None,
        "--ray-address",
        help="Ray cluster to run on (host:port, ray://host:port, auto); default: $RAY_ADDRESS, else a local "
        "Ray started for the run.",
    )


# ------------------------------------------------------------------ checks several stages make

# Upper bounds that catch typos: a batch of more images than would fit any accelerator's memory, more
# loader processes than any machine has cores to feed, more augmented views than make a mean any steadier
# (the paper's few-shot figures use 10).
MAX_BATCH_SIZE = 65536
MAX_WORKERS = 256
MAX_AUGMENT_PASSES = 1000


def check_batch_size(batch_size: int) -> None:
    require_range("--batch-size", batch_size, 1, MAX_BATCH_SIZE, hint="e.g. --batch-size 64")


def check_loader_options(workers: int | None, augment_passes: int, keep_views: bool = False) -> None:
    """Refuse a --workers or --augment-passes value out of range, or --keep-views without views to keep
    (embed's and eval's one check)."""
    from susx_cli.errors import SusxError

    if workers is not None:
        require_range("--workers", workers, 0, MAX_WORKERS, hint="0 loads images in this process")
    require_range(
        "--augment-passes", augment_passes, 1, MAX_AUGMENT_PASSES, hint="1 embeds each image once, as it is"
    )
    if keep_views and augment_passes < 2:
        raise SusxError(
            "--keep-views keeps the augmented views of each image, but --augment-passes is 1",
            hint="add --augment-passes 10 (or drop --keep-views)",
        )


def check_executor(executor: str, address: str | None, shard_index: int | None) -> bool:
    """Whether the run goes to Ray; refuses options that make no sense with the executor."""
    from susx_cli.errors import SusxError

    if executor not in EXECUTORS:
        raise SusxError(f"unknown --executor {executor!r}", hint=f"use one of {', '.join(EXECUTORS)}")
    if executor == "local":
        if address is not None:
            raise SusxError(
                "--ray-address needs --executor ray", hint="add --executor ray, or drop --ray-address"
            )
        return False
    if shard_index is not None:
        raise SusxError(
            "--shard-index does not go with --executor ray: Ray runs every shard",
            hint="drop --shard-index (--num-shards alone sets how many tasks)",
        )
    return True


def split_model_spec(options: StageOptions, default: str | None = "openai") -> None:
    """``model="ARCH:TAG"`` -> model ARCH, pretrained TAG (refused when ``pretrained`` names other weights)."""
    from susx_cli.model_spec import resolve_model

    arch, weights = resolve_model(options.model, options.pretrained, default=default)
    options._set("model", arch)
    options._set("pretrained", weights)


# ------------------------------------------------------------------ embed


@dataclass(frozen=True, kw_only=True)
class EmbedOptions(StageOptions):
    """`susx embed`: images -> HDF5 features, or prompts.json -> the HDF5 text classifier."""

    input: Path = argument(
        "prompts.json, a support folder, class folders (names or ImageNet WordNet ids), a path,label CSV/TSV, "
        "an unlabelled folder, or a CoOp split JSON.",
        path="input",
    )
    output: Path = output_field()
    model: str = model_field()
    pretrained: str | None = pretrained_field()
    classes: Path | None = option(
        None,
        "--classes",
        "-c",
        help="Class list (prompts.json) for class folders and path,label tables; WordNet-id folders default "
        "to ImageNet's.",
        path="input",
    )
    split: str | None = option(None, "--split", help="Split of a CoOp split file: train | val | test.")
    image_root: Path | None = option(
        None,
        "--image-root",
        help="Folder the split's or table's paths are relative to (default: the file's folder).",
        path="input",
    )
    shots: int | None = option(None, "--shots", help="Few-shot: K random images per class.")
    seed: int = option(0, "--seed", help="Seed for --shots sampling and --augment-passes views.")
    augment_passes: int = option(
        1,
        "--augment-passes",
        help="Views per image (random resized crop and flip), raw embeddings averaged; 1: plain.",
    )
    keep_views: bool = option(
        False,
        "--keep-views",
        help="Also keep each augmented view's unit row (dataset views, N x K x D; GDA fits on them).",
    )
    unlabelled: bool = option(False, "--unlabelled", help="Treat the folder as images without labels.")
    pool: str | None = option(
        None, "--pool", help="Text pool for prompts.json (default: the prompts').", choices=POOLS
    )
    batch_size: int = batch_size_field()
    workers: int | None = workers_field()
    device: str = device_field()
    precision: str = precision_field()
    overwrite: bool = overwrite_field()
    num_shards: int | None = num_shards_field()
    shard_index: int | None = shard_index_field()
    verify: bool = option(
        True,
        "--verify/--no-verify",
        help="Check each support image's sha256 against its manifest (sizes are always checked).",
    )
    exclude: Path | None = option(
        None,
        "--exclude",
        help="File of image keys to leave out, one a line (e.g. from `susx inspect --influence`).",
        path="input",
    )
    executor: str = executor_field()
    ray_address: str | None = ray_address_field()

    # Options that only images read: given with a prompts file, they are refused.
    IMAGE_ONLY = (
        "classes",
        "split",
        "image_root",
        "shots",
        "seed",
        "augment_passes",
        "keep_views",
        "unlabelled",
        "workers",
        "exclude",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        split_model_spec(self)
        check_batch_size(self.batch_size)
        check_loader_options(self.workers, self.augment_passes, self.keep_views)
        check_executor(self.executor, self.ray_address, self.shard_index)

    @property
    def on_ray(self) -> bool:
        return self.executor == "ray"


# ------------------------------------------------------------------ prompts

_LLM = "CuPL sentences from an LLM"


@dataclass(frozen=True, kw_only=True)
class PromptsOptions(StageOptions):
    """`susx prompts`: class names + templates (+ CuPL sentences from files, URLs or an LLM) -> prompts.json."""

    output: Path = output_field(Path("prompts.json"))
    classes: Path | None = option(
        None,
        "--classes",
        "-c",
        help="Class names: text file (one per line), JSON list, or CoOp split JSON.",
        path="input",
    )
    dataset: str | None = option(
        None, "--dataset", "-d", help="Built-in class list and photo template, e.g. imagenet."
    )
    templates: str = option(
        "ensemble",
        "--templates",
        "-t",
        help="photo | ensemble (7) | openai (80) | path to a file, one per line.",
    )
    photo: str | None = option(
        None, "--photo-template", help="Override the photo template, e.g. 'A photo of a {}.'"
    )
    cupl: tuple[str, ...] = option(
        (),
        "--cupl",
        help="CuPL sentence file {classname: [sentences]}, a path or an http(s) URL; repeatable.",
    )
    cupl_sha256: tuple[str, ...] = option(
        (), "--cupl-sha256", help="sha256 of each --cupl URL, in the same order; cached copies are reused."
    )
    pool: str | None = option(
        None,
        "--pool",
        help="Default text pool (default: combined when CuPL sentences exist, else template).",
        choices=POOLS,
    )
    clean: bool = option(True, "--clean/--no-clean", help="Underscores to spaces, whitespace collapsed.")
    llm: bool = option(
        False, "--llm", help="Ask an OpenAI-compatible endpoint for CuPL sentences.", panel=_LLM
    )
    llm_base_url: str = option(
        "https://api.openai.com/v1",
        "--llm-base-url",
        help="Chat-completions API base, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama).",
        panel=_LLM,
        envvar="OPENAI_BASE_URL",
    )
    llm_model: str | None = option(None, "--llm-model", help="Model name at the endpoint.", panel=_LLM)
    llm_key_env: str = option(
        "OPENAI_API_KEY", "--llm-key-env", help="Environment variable holding the API key.", panel=_LLM
    )
    llm_questions: str | None = option(
        None,
        "--llm-questions",
        help="dataset (the paper's questions for --dataset) | generic | a dataset name | a file of questions "
        "with {class} and {article}.",
        panel=_LLM,
    )
    llm_samples: int = option(10, "--llm-samples", help="Answers per question (paper: 10).", panel=_LLM)
    llm_temperature: float = option(
        0.99, "--llm-temperature", help="Sampling temperature (paper: 0.99).", panel=_LLM
    )
    llm_max_tokens: int = option(50, "--llm-max-tokens", help="Tokens per answer (paper: 50).", panel=_LLM)
    llm_system: str | None = option(
        None,
        "--llm-system",
        help="System message; '' sends none. Default: asks for one plain sentence.",
        panel=_LLM,
    )
    llm_concurrency: int = option(8, "--llm-concurrency", help="Requests in flight at once.", panel=_LLM)
    llm_timeout: float = option(60.0, "--llm-timeout", help="Seconds to wait for one answer.", panel=_LLM)
    llm_retries: int = option(
        5,
        "--llm-retries",
        help="Retries on 429, 5xx, timeouts (exponential backoff, Retry-After honoured).",
        panel=_LLM,
    )
    llm_cache: Path | None = option(
        None,
        "--llm-cache",
        help="Answer cache (JSONL); default: <output stem>.llm-cache.jsonl beside the output.",
        panel=_LLM,
        path="output",
    )
    max_requests: int | None = option(
        None,
        "--max-requests",
        help="Send at most this many requests (retries count); the cache keeps what was done.",
        panel=_LLM,
    )
    overwrite: bool = overwrite_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        from susx_cli.errors import SusxError

        self._set("cupl", tuple(self.cupl))
        self._set("cupl_sha256", tuple(self.cupl_sha256))
        if self.classes is None and self.dataset is None:
            raise SusxError(
                "give --classes FILE, or --dataset NAME for a built-in class list",
                hint="with both, the names come from FILE and the photo template and questions from NAME",
            )
        if not self.llm and (self.llm_model is not None or self.max_requests is not None):
            given = "--llm-model" if self.llm_model is not None else "--max-requests"
            raise SusxError(
                f"{given} is given without --llm", hint="add --llm to ask an LLM for CuPL sentences"
            )
        if self.llm and not self.llm_model:
            raise SusxError(
                "--llm needs --llm-model NAME",
                hint="the model name the endpoint serves, e.g. gpt-4o-mini or llama3.1:8b",
            )


# ------------------------------------------------------------------ curate


@dataclass(frozen=True, kw_only=True)
class CurateOptions(StageOptions):
    """`susx curate`: a support set from prompts.json with a source; ``source_values`` are the source's
    own options by parameter name (the `susx curate` flags in snake case), checked by its options class."""

    prompts: Path = argument("prompts.json (its class list orders the support set).", path="input")
    output: Path = output_field()
    source: str = option(
        "folder",
        "--source",
        help="Where the images come from; each source's options are in its panel below.",
        choices=tuple(SOURCES),
    )
    min_per_class: int = option(
        1,
        "--min-per-class",
        help="Leave the set unfinished (exit 2) if a class has fewer images; 0 accepts empty classes.",
    )
    exclude: Path | None = option(
        None,
        "--exclude",
        help="File of support-set keys to leave out, one a line (e.g. from `susx inspect --influence`).",
        path="input",
    )
    num_shards: int | None = num_shards_field()
    shard_index: int | None = shard_index_field()
    executor: str = executor_field()
    ray_address: str | None = ray_address_field()
    overwrite: bool = overwrite_field()
    source_values: dict[str, Any] = field(default_factory=dict, compare=False)
    source_options: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        from susx_cli.sources.registry import build_options

        check_executor(self.executor, self.ray_address, self.shard_index)
        self._set("source_options", build_options(self.source, _clip_model_spec(self.source_values)))


def _clip_model_spec(given: dict[str, Any]) -> dict[str, Any]:
    """``clip_model="ARCH:TAG"`` split into clip_model ARCH and clip_pretrained TAG (one model syntax)."""
    if given.get("clip_model") is None:
        return given
    from susx_cli.model_spec import resolve_model

    arch, weights = resolve_model(
        given["clip_model"],
        given.get("clip_pretrained"),
        default=None,
        flags=("--clip-model", "--clip-pretrained"),
    )
    return {**given, "clip_model": arch} | ({"clip_pretrained": weights} if weights is not None else {})


# ------------------------------------------------------------------ merge


@dataclass(frozen=True, kw_only=True)
class MergeOptions(StageOptions):
    """`susx merge`: join the parts of a sharded `curate` (support folder) or `embed` (OUT.h5) run."""

    target: Path = argument(
        "The support folder the curate shards wrote into, or the -o OUT.h5 of the embed shards.",
        path="input-output",
    )
    num_shards: int = option(REQUIRED, "--num-shards", help="How many shards the run had.")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range("--num-shards", self.num_shards, 1, hint="pass the count the shards ran with")


# ------------------------------------------------------------------ export


@dataclass(frozen=True, kw_only=True)
class ExportOptions(StageOptions):
    """`susx export`: a predictions file -> a CSV table (one row per query)."""

    predictions: Path = argument("Predictions HDF5 written by susx predict.", path="input")
    output: Path = output_field(Path("predictions.csv"), help="CSV file to write; - for standard output.")
    overwrite: bool = overwrite_field()


# ------------------------------------------------------------------ inspect

CLASSES_PER_PAGE = 50
_INFLUENCE = "Support influence"


@dataclass(frozen=True, kw_only=True)
class InspectOptions(StageOptions):
    """`susx inspect`: describe an artifact; draw a support folder's contact sheet or a confusion matrix."""

    path: Path = argument(
        "Any susx artifact: prompts.json, *.h5, support folder, calibration.json.", path="input"
    )
    contact_sheet: Path | None = option(
        None,
        "--contact-sheet",
        help="Support folder: draw a PNG grid of each class's images." + REPLACES_OWN,
        path="output",
    )
    per_class: int = option(8, "--per-class", help="Images per class on the contact sheet.")
    classes: str | None = option(
        None,
        "--classes",
        help="Contact sheet: only these classes (names or indices, comma-separated, or a file of them).",
    )
    classes_per_page: int = option(
        CLASSES_PER_PAGE,
        "--classes-per-page",
        help="Contact sheet: classes per page; more make sheet-001.png, sheet-002.png, ...",
    )
    confusion: Path | None = option(
        None,
        "--confusion",
        help="Predictions file: draw its confusion matrix (top confusions above 100 classes) as PNG."
        + REPLACES_OWN,
        path="output",
    )
    influence: bool = option(
        False,
        "--influence",
        help="Support features: how each image changes its class's leave-one-out top-1 when left "
        "out, worst first (no query labels; with --contact-sheet, the worst images drawn).",
        panel=_INFLUENCE,
    )
    text: Path | None = option(
        None, "--text", help="--influence: the text classifier.", panel=_INFLUENCE, path="input"
    )
    calibration: Path | None = option(
        None,
        "--calibration",
        help="--influence: a Tip-Adapter or TIP-X calibration (default: TIP-X's default values).",
        panel=_INFLUENCE,
        path="input",
    )
    support_folder: Path | None = option(
        None,
        "--support-folder",
        help="--influence: the support folder of the features (default: the one they record).",
        panel=_INFLUENCE,
        path="input",
    )
    worst: int = option(24, "--worst", help="--influence: images on the contact sheet.", panel=_INFLUENCE)

    def __post_init__(self) -> None:
        super().__post_init__()
        from susx_cli.errors import SusxError

        if self.contact_sheet is None and (
            self.classes is not None or self.classes_per_page != CLASSES_PER_PAGE
        ):
            raise SusxError(
                "--classes and --classes-per-page choose what a contact sheet shows",
                hint="add --contact-sheet sheet.png",
            )
        if not self.influence and any(
            p is not None for p in (self.text, self.calibration, self.support_folder)
        ):
            raise SusxError(
                "--text, --calibration and --support-folder go with --influence", hint="add --influence"
            )
        if self.influence and self.text is None:
            raise SusxError("--influence needs the text classifier", hint="add --text text.h5")


# ------------------------------------------------------------------ demo


@dataclass(frozen=True, kw_only=True)
class DemoOptions(StageOptions):
    """`susx demo`: every stage end to end in a fresh folder (tiny random-weight models by default)."""

    output: Path = output_field(Path("demo-run"), help="A fresh folder for every artifact.")
    model: str | None = option(
        None, "--model", "-m", help="Real open_clip model, ARCH or ARCH:TAG (default: tiny random)."
    )
    pretrained: str | None = option(None, "--pretrained", "-p", help="Weights for --model, e.g. openai.")
    sd_model: str | None = option(
        None, "--sd-model", help="diffusers model id or folder (default: tiny random)."
    )
    per_class: int = option(4, "--per-class", help="Generated support images per class.")
    overwrite: bool = overwrite_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model is not None:
            split_model_spec(self, default=None)


# ------------------------------------------------------------------ report

METRICS: tuple[str, ...] = ("top1", "top5", "mean_per_class_recall")
FORMATS: tuple[str, ...] = ("markdown", "csv", "latex")


@dataclass(frozen=True, kw_only=True)
class ReportOptions(StageOptions):
    """`susx report`: result files of `susx eval` -> the paper's table (Markdown, CSV), a long table, charts."""

    results: tuple[Path, ...] = argument(
        "Result JSON files or folders of them (susx eval --results-dir).", path="input"
    )
    output: Path | None = option(
        None, "--output", "-o", help="Write the table here (default: print it)." + REPLACES_OWN, path="output"
    )
    fmt: str = option(
        "markdown",
        "--format",
        "-f",
        help="The table's format: markdown, csv (mean, std, n, failed per dataset) or latex.",
        choices=FORMATS,
    )
    chart: Path | None = option(
        None,
        "--chart",
        help="PNG: few-shot curves over shots; bars for name-only support sets (both: NAME-shots.png, "
        "NAME-name-only.png)." + REPLACES_OWN,
        path="output",
    )
    long: Path | None = option(
        None,
        "--long",
        help="Long CSV: one row per run, every metric and configuration field (dotted names)." + REPLACES_OWN,
        path="output",
    )
    metric: str = option(
        "top1", "--metric", help="The score in the tables and chart (percent).", choices=METRICS
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        paths = [self.results] if isinstance(self.results, str | Path) else self.results
        self._set("results", tuple(Path(p) for p in paths))


# ------------------------------------------------------------------ calibrate


def _readers(has: Any) -> str:
    """The registered methods for which ``has(spec)`` holds, for an option's help."""
    return ", ".join(n for n, spec in registry.METHODS.items() if has(spec))


@dataclass(frozen=True, kw_only=True)
class CalibrateOptions(StageOptions):
    """`susx calibrate`: choose a method's hyperparameters -> calibration.json. Fixed values and grids come
    by hyperparameter name (``values``, ``grids``) or as the command's flags by parameter name
    (``hyperparameters``: ``alpha=1.0``, ``gda_alpha_grid="0.1,1"``); both end up in ``values``/``grids``."""

    text: Path = argument("Text classifier HDF5 (susx embed prompts.json).", path="input")
    support: Path = argument("Support features HDF5 (susx embed SUPPORT_DIR).", path="input")
    output: Path = output_field(Path("calibration.json"))
    mode: str | None = option(
        None,
        "--mode",
        help="loo: leave-one-out on the support set (name-only); kfold: k-fold on the support set "
        "(name-only); val: labelled --val; fixed: the values given. Default: val with --val, else the "
        "method's name-only mode.",
        choices=registry.MODES,
    )
    val: Path | None = option(None, "--val", help="Labelled validation features (mode val).", path="input")
    method: str = option(
        "tip-x",
        "--method",
        help="The method whose hyperparameters to choose; its options are below.",
        choices=registry.calibrated_names(),
    )
    tau: float | None = option(
        None,
        "--tau",
        help=f"Signature temperature on raw cosines ({_readers(lambda s: 'tau' in s.settings)}; default 0.5).",
    )
    logit_scale: str = option("100", "--logit-scale", help="Zero-shot scale: 100 (reference) or 'model'.")
    normalize: bool = option(
        False,
        "--normalize-per-class",
        help=f"Divide support terms by class size ({_readers(lambda s: 'normalize' in s.settings)}).",
    )
    heatmap: Path | None = option(
        None,
        "--heatmap",
        help=f"{_readers(lambda s: s.heatmap)}: PNG of accuracy over (alpha, gamma) at the chosen beta."
        + REPLACES_OWN,
        path="output",
    )
    folds: int | None = option(None, "--folds", help="kfold: number of folds of the support set (default 4).")
    fold_seed: int | None = option(
        None, "--fold-seed", help="kfold: seed of the stratified fold split (default 0)."
    )
    device: str = device_field()
    overwrite: bool = overwrite_field()
    values: dict[str, float] = field(default_factory=dict, compare=False)
    grids: dict[str, str] = field(default_factory=dict, compare=False)
    hyperparameters: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        flags = [p for h, _ in registry.hyperparameter_flags().values() for p in (h.param, f"{h.param}_grid")]
        unknown = sorted(set(self.hyperparameters) - set(flags))
        if unknown:
            from susx_cli.errors import SusxError

            named = [f.name for f, _ in cli_fields(CalibrateOptions)]
            raise SusxError(
                f"calibrate() got unknown option(s) {', '.join(unknown)}",
                hint=f"it takes {', '.join(named + ['values', 'grids'] + flags)}",
            )
        values, grids = method_values(self.method, self.hyperparameters)
        self._set("values", {**(self.values or {}), **values})
        self._set("grids", {**(self.grids or {}), **grids})


def method_values(method: str, given: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(fixed values, grids) of ``method`` by hyperparameter name, from the options ``with_method_options``
    added (by parameter name); a flag of another method is refused."""
    spec = registry.get(method)
    flags = registry.hyperparameter_flags().values()
    set_flags = [h.flag for h, _ in flags if given.get(h.param) is not None]
    set_flags += [h.grid_flag for h, _ in flags if given.get(f"{h.param}_grid") is not None]
    registry.refuse_foreign(spec, set_flags)
    values = {h.name: given[h.param] for h in spec.hyperparameters if given.get(h.param) is not None}
    grids = {h.name: given[f"{h.param}_grid"] for h in spec.hyperparameters if given.get(f"{h.param}_grid")}
    return values, grids


# ------------------------------------------------------------------ predict

_TEST_TIME = "Test-time methods"


@dataclass(frozen=True)
class StreamOptions:
    """How a test-time method reads the queries. ``seeds``: one pass per seeded permutation (empty: seed 0);
    ``file_order``: one pass in file order instead (a diagnostic); ``preset``/``dataset``: the stream
    values of TDA's per-dataset preset (MethodSpec.presets)."""

    seeds: tuple[int, ...] = ()
    file_order: bool = False
    preset: str | None = None
    dataset: str | None = None


@dataclass(frozen=True, kw_only=True)
class PredictOptions(StageOptions):
    """`susx predict`: classify query features (or images, embedded first) -> predictions.h5."""

    text: Path = argument("Text classifier HDF5.", path="input")
    query: Path = argument("Query features HDF5, or images (folder / split JSON) to embed now.", path="input")
    output: Path = output_field(Path("predictions.h5"))
    support: Path | None = option(
        None, "--support", "-s", help="Support features HDF5 (methods that read a support set).", path="input"
    )
    calibration: Path | None = option(None, "--calibration", help="calibration.json.", path="input")
    method: str | None = option(
        None, "--method", help="Default: the calibration's (zero-shot without one).", choices=registry.names()
    )
    split: str | None = option(None, "--split", help="Images: split of a split JSON.")
    image_root: Path | None = option(
        None, "--image-root", help="Images: root of the split's paths.", path="input"
    )
    unlabelled: bool = option(False, "--unlabelled", help="Images: a folder without labels.")
    batch_size: int = batch_size_field(help="Images: embedding batch size.")
    order: str = option(
        "seeded",
        "--order",
        help="Online test-time methods: the query stream, seeded permutations or the file order "
        "(a diagnostic: class folders come grouped by class).",
        choices=("seeded", "file"),
        panel=_TEST_TIME,
    )
    order_seed: tuple[int, ...] = option(
        (),
        "--order-seed",
        help="Seed of the stream (torch.randperm under torch.Generator().manual_seed), repeatable; "
        "default 0. Several: the file holds the first seed's predictions, the metrics of each and "
        "their mean and std.",
        panel=_TEST_TIME,
    )
    order_seeds: str | None = option(
        None, "--order-seeds", help="Seeds as a list, e.g. 0,1,2.", panel=_TEST_TIME
    )
    tda_preset: str | None = option(
        None,
        "--tda-preset",
        help="TDA's alpha+, beta+: default (2, 5) on every dataset, or paper: the official per-dataset "
        "values, which were tuned on test labels (needs --dataset).",
        choices=("default", "paper"),
        panel=_TEST_TIME,
    )
    dataset: str | None = option(
        None, "--dataset", help="--tda-preset paper: the dataset id.", panel=_TEST_TIME
    )
    device: str = device_field()
    overwrite: bool = overwrite_field()
    stream: StreamOptions = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_batch_size(self.batch_size)
        self._set("order_seed", tuple(self.order_seed))
        stream = StreamOptions(
            seeds=self.order_seed + parse_seeds(self.order_seeds),
            file_order=self.order == "file",
            preset=self.tda_preset,
            dataset=self.dataset,
        )
        self._set("stream", stream)


# ------------------------------------------------------------------ every stage

OPTIONS: dict[str, type[StageOptions]] = {
    "embed": EmbedOptions,
    "prompts": PromptsOptions,
    "curate": CurateOptions,
    "merge": MergeOptions,
    "export": ExportOptions,
    "inspect": InspectOptions,
    "demo": DemoOptions,
    "report": ReportOptions,
    "calibrate": CalibrateOptions,
    "predict": PredictOptions,
}
