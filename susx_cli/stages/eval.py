"""`eval`: run prompts -> curate -> embed -> calibrate -> predict over datasets x models x support sets x
methods x calibration modes, reusing every artifact that exists and matches, and write one result JSON
per run (skipped when a result with the same configuration exists).

Four steps: ``EvalConfig.from_options`` checks the options and ``plan_runs`` lists the runs (plan);
``check_dataset`` checks every requested dataset (registered or a dataset file) before any is computed
(check); a ``DatasetEval`` makes each run's artifacts through the stage functions, at the paths its
``Workdir`` names (execute); ``results.run_record`` describes the run and ``results.write_result`` stores
it (record). With ``keep_going`` a dataset or run that fails is recorded (a result with ``status: failed``
and the error line) and the rest goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts import results as res_io
from susx_cli.artifacts.workdir import Workdir, write_split
from susx_cli.classnames import check_same_classes, folder_key, slug
from susx_cli.encoder import recorded_pretrained
from susx_cli.errors import SusxError
from susx_cli.method import METHOD_MODES, METHODS, PAPER_METHODS, hyperparameters, uses_support
from susx_cli.model_spec import resolve_model, split_model
from susx_cli.progress import info
from susx_cli.stages.results import StageResult

CALIBRATIONS = ("val", "loo", "kfold", "fixed")
# Augmented views per folder-shots support image, as the paper's few-shot figures used (METHOD.md); generated
# or retrieved support folders get one plain pass, as in the reference.
SHOT_AUGMENT_PASSES = 10


@dataclass(frozen=True)
class SupportChoice:
    spec: str  # as given
    kind: str  # folder-shots | folder
    tag: str  # short name used in file names
    shots: int | None = None
    path: Path | None = None


def parse_support(spec: str) -> SupportChoice:
    """``folder-shots:K`` (K real labelled images per class from the train split) or a support folder."""
    if spec.startswith("folder-shots:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            k = 0
        if k < 1:
            raise SusxError(f"--support {spec!r}: K must be a positive integer", hint="e.g. folder-shots:16")
        return SupportChoice(spec, "folder-shots", f"{k}shot", shots=k)
    if spec.split(":", 1)[0] in ("sd", "laion", "pool"):
        raise SusxError(
            f"--support {spec!r}: eval does not generate or retrieve images itself",
            hint="make the support set with `susx curate --source sd|laion` and pass its folder to --support",
        )
    from susx_cli.artifacts import support

    path = Path(spec)
    if not path.exists():
        raise SusxError(
            f"--support {spec!r} is neither folder-shots:K nor an existing folder", hint="check the path"
        )
    if not support.is_support_dir(path):
        raise SusxError(
            f"--support {path} is not a complete support folder", hint="make one with susx curate"
        )
    return SupportChoice(spec, "folder", slug(path.name, 32), path=path)


def parse_models(models: list[str], pretrained: list[str]) -> list[tuple[str, str]]:
    """Pairs of (architecture, weights): ``--model ARCH[:TAG]`` (susx_cli.model_spec's syntax), the
    ``--pretrained`` values going by position to the models without a tag (one value: to all of them)."""
    if not models:
        raise SusxError(
            "give at least one --model", hint="e.g. --model RN50 --pretrained openai, or --model RN50:openai"
        )
    pairs = [split_model(m) for m in models]
    plain = [m for m, (_, tag) in zip(models, pairs, strict=True) if tag is None]
    if len(pretrained) == 1 and not plain:
        for m in models:  # a single --pretrained next to tagged models only: it must agree with them
            resolve_model(m, pretrained[0], default=None)
    if len(pretrained) == 1:
        tags = pretrained * len(plain)
    elif len(pretrained) in (0, len(plain)):
        tags = list(pretrained)
    else:
        raise SusxError(
            f"{len(pretrained)} --pretrained value(s) for {len(plain)} --model value(s) without ':TAG'",
            hint="give one --pretrained per --model, or write --model ARCH:TAG",
        )
    it = iter(tags)
    return [(a, t if t is not None else next(it, "none")) for a, t in pairs]


def _calibration_options(
    mode: str,
    method: str,
    grids: dict[str, str | None],
    fixed: dict[str, float | None],
    tau: float,
    logit_scale: str,
    folds: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What decides a run's calibration. GDA's alpha is a different quantity from TIP-X's: its fixed value
    is --gda-alpha and its grid is always the paper's (the --*-grid options are TIP-X / Tip-Adapter's)."""
    out: dict[str, Any] = {"mode": mode, "tau": tau, "logit_scale": logit_scale}
    if method == "gda":
        out = {"mode": mode, "logit_scale": logit_scale}
    if mode == "fixed":
        given = {**fixed, "alpha": fixed.get("gda_alpha")} if method == "gda" else fixed
        missing = [f"--{k}" for k in hyperparameters(method) if given.get(k) is None]
        if missing:
            missing = ["--gda-alpha"] if method == "gda" else missing
            raise SusxError(
                f"--calibration fixed needs {', '.join(missing)} for {method}",
                hint="give every hyperparameter of the method",
            )
        out["fixed"] = (
            {k: given.get(k) for k in hyperparameters(method)}
            if method == "gda"
            else {k: fixed.get(k) for k in ("alpha", "beta", "gamma")}
        )
    elif method == "gda":
        out["grid"] = {"alpha": "reference"}
    else:
        out["grid"] = {k: grids.get(k) or "reference" for k in ("alpha", "beta", "gamma")}
    if mode == "kfold":
        out["folds"] = dict(folds or {"k": 4, "seed": 0})
    return out


def method_modes(method: str, calibrations: list[str]) -> list[str]:
    """The asked calibration modes ``method`` has, in the asked order (GDA has no loo: kfold is its name-only mode)."""
    return [m for m in calibrations if m in METHOD_MODES.get(method, ())]


@dataclass(frozen=True)
class EvalConfig:
    """Every option of an eval, checked: what ``plan_runs`` and ``DatasetEval`` work from."""

    data_root: Path | None  # None when every dataset is a dataset file
    work_dir: Path
    results_dir: Path
    models: list[tuple[str, str]]  # (architecture, weights)
    supports: list[SupportChoice]
    methods: list[str]
    calibrations: list[str]
    templates: str = "ensemble"
    cupl_dir: Path | None = None
    prompts_path: Path | None = None
    pool: str | None = None
    logit_scale: str = "100"
    tau: float = 0.5
    grids: dict[str, str | None] = field(default_factory=dict)
    fixed: dict[str, float | None] = field(default_factory=dict)  # alpha, beta, gamma, gda_alpha
    folds: int = 4  # kfold: folds of the support set
    fold_seed: int = 0  # kfold: seed of the split
    seed: int = 0
    augment_passes: int = SHOT_AUGMENT_PASSES  # folder-shots support: augmented views per image
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    overwrite: bool = False
    keep_going: bool = False  # record a failed dataset or run and go on

    @classmethod
    def from_options(
        cls,
        *,
        num_datasets: int,
        models: list[str],
        pretrained: list[str],
        supports: list[str],
        methods: list[str],
        calibrations: list[str],
        alpha_grid: str | None = None,
        beta_grid: str | None = None,
        gamma_grid: str | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        gamma: float | None = None,
        gda_alpha: float | None = None,
        **options: Any,
    ) -> EvalConfig:
        """Refuse bad options before any work starts."""
        pairs = parse_models(list(models), list(pretrained))
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise SusxError(
                f"unknown method(s) {', '.join(bad) or '(none)'}", hint=f"use {', '.join(METHODS)}"
            )
        bad = [c for c in calibrations if c not in CALIBRATIONS]
        if bad or not calibrations:
            raise SusxError(
                f"unknown calibration mode(s) {', '.join(bad) or '(none)'}",
                hint=f"use {', '.join(CALIBRATIONS)}",
            )
        choices = [parse_support(s) for s in supports]
        if any(uses_support(m) for m in methods) and not choices:
            raise SusxError(
                "tip-adapter, tip-x and gda need --support",
                hint="e.g. --support folder-shots:16 or --support SUPPORT_DIR",
            )
        if options.get("augment_passes", 1) < 1:
            raise SusxError(
                f"--augment-passes must be 1 or more, got {options['augment_passes']}",
                hint=f"the paper's few-shot figures used {SHOT_AUGMENT_PASSES}; 1 embeds each image once",
            )
        if options.get("prompts_path") is not None and num_datasets > 1:
            raise SusxError(
                "--prompts holds one dataset's classes; give one --dataset with it",
                hint="or use --cupl-dir DIR",
            )
        cfg = cls(
            models=pairs,
            supports=choices,
            methods=list(methods),
            calibrations=list(calibrations),
            grids={"alpha": alpha_grid, "beta": beta_grid, "gamma": gamma_grid},
            fixed={"alpha": alpha, "beta": beta, "gamma": gamma, "gda_alpha": gda_alpha},
            **options,
        )
        for method in methods:
            if uses_support(method):
                if not method_modes(method, calibrations):
                    raise SusxError(
                        f"{method} has none of the calibration modes {', '.join(calibrations)}",
                        hint=f"add --calibration {' or '.join(METHOD_MODES[method])}",
                    )
                for mode in method_modes(method, calibrations):
                    cfg.calibration_options(mode, method)  # refuse early
        return cfg

    def calibration_options(self, mode: str, method: str) -> dict[str, Any]:
        folds = {"k": self.folds, "seed": self.fold_seed}
        return _calibration_options(mode, method, self.grids, self.fixed, self.tau, self.logit_scale, folds)

    def support_passes(self, choice: SupportChoice) -> int:
        """Augmented views per support image: ``augment_passes`` for folder-shots, one for a support folder."""
        return self.augment_passes if choice.kind == "folder-shots" else 1


@dataclass(frozen=True)
class Run:
    """One result: a model, a method and, for methods with support, a support set and calibration mode."""

    arch: str
    pretrained: str
    method: str
    support: SupportChoice | None = None
    mode: str | None = None

    @property
    def tag(self) -> str | None:
        return self.support.tag if self.support else None


def plan_runs(cfg: EvalConfig) -> list[Run]:
    """Every run of one dataset, in order: per model, zero-shot, then support x method x calibration mode
    (each method with the asked modes it has: GDA skips loo)."""
    runs: list[Run] = []
    for arch, tag in cfg.models:
        if "zero-shot" in cfg.methods:
            runs.append(Run(arch, tag, "zero-shot"))
        for choice in cfg.supports:
            for method in cfg.methods:
                if uses_support(method):
                    runs += [
                        Run(arch, tag, method, choice, mode)
                        for mode in method_modes(method, cfg.calibrations)
                    ]
    return runs


@dataclass
class EvalResult(StageResult):
    """``rows``: per run dataset, model, method, support, calibration, top1, mean_per_class_recall,
    status (done | skipped | failed, with ``error``) and path of the result file."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "results": self.rows}


def run_eval(
    datasets: list[str],
    *,
    data_root: Path | None,
    work_dir: Path,
    results_dir: Path,
    models: list[str],
    pretrained: list[str] = (),
    supports: list[str] = (),
    methods: list[str] = PAPER_METHODS,
    calibrations: list[str] = ("loo",),
    templates: str = "ensemble",
    cupl_dir: Path | None = None,
    prompts_path: Path | None = None,
    pool: str | None = None,
    logit_scale: str = "100",
    tau: float = 0.5,
    alpha_grid: str | None = None,
    beta_grid: str | None = None,
    gamma_grid: str | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    gamma: float | None = None,
    gda_alpha: float | None = None,
    folds: int = 4,
    fold_seed: int = 0,
    seed: int = 0,
    augment_passes: int = SHOT_AUGMENT_PASSES,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    keep_going: bool = False,
) -> EvalResult:
    from susx_cli import runtime
    from susx_cli.datasets import registry

    runtime.resolve_device(device)  # a bad --device fails before any work
    if not datasets:
        raise SusxError("give at least one --dataset", hint="see susx datasets list")
    specs = [registry.resolve(d) for d in datasets]
    ids = [s.id for s in specs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise SusxError(
            f"dataset {twice[0]!r} is requested twice",
            hint="give each --dataset once (dataset files need distinct ids)",
        )
    if data_root is None and any(s.layout != "dataset-file" for s in specs):
        raise SusxError(
            "registered datasets need --data-root ROOT (one folder per dataset)",
            hint="pass --data-root, or describe the dataset in a file: --dataset path/to/dataset.json",
        )
    cfg = EvalConfig.from_options(
        num_datasets=len(specs),
        models=models,
        pretrained=pretrained,
        supports=supports,
        methods=methods,
        calibrations=calibrations,
        alpha_grid=alpha_grid,
        beta_grid=beta_grid,
        gamma_grid=gamma_grid,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        gda_alpha=gda_alpha,
        folds=folds,
        fold_seed=fold_seed,
        data_root=None if data_root is None else Path(data_root),
        work_dir=Path(work_dir),
        results_dir=Path(results_dir),
        templates=templates,
        cupl_dir=cupl_dir,
        prompts_path=prompts_path,
        pool=pool,
        logit_scale=logit_scale,
        tau=tau,
        seed=seed,
        augment_passes=augment_passes,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        overwrite=overwrite,
        keep_going=keep_going,
    )
    runs = plan_runs(cfg)
    result = EvalResult("eval", [])
    # Every dataset is checked before any is computed: a broken second dataset stops the eval before the
    # first one's artifacts are made (or, with --keep-going, is recorded as failed).
    checked = []
    for spec in specs:
        try:
            checked.append((spec, check_dataset(spec, cfg)))
        except SusxError as exc:
            if not cfg.keep_going:
                raise
            record_failed_dataset(spec, cfg, runs, exc, result)
    for spec, local in checked:
        try:
            dataset_eval = DatasetEval(spec, cfg, local)
        except Exception as exc:  # noqa: BLE001 - --keep-going records any failure, then goes on
            if not cfg.keep_going:
                raise
            record_failed_dataset(spec, cfg, runs, exc, result)
            continue
        dataset_eval.execute(runs, result)
    statuses = [r["status"] for r in result.rows]
    result.summary = {
        "runs": len(statuses),
        "skipped": statuses.count("skipped"),
        "failed": statuses.count("failed"),
    }
    return result


def check_dataset(spec, cfg: EvalConfig):
    """What can be checked of one dataset before any work: its images and splits present and its labels in
    range (``registry.check_local``), and the class lists of --prompts and of support folders the same as
    its own. Returns its ``registry.LocalSplits``."""
    from susx_cli.artifacts import support
    from susx_cli.artifacts.prompts import read_prompts
    from susx_cli.datasets import registry

    local = registry.check_local(spec, cfg.data_root)
    if local.problems:
        hint = (
            f"fix the dataset file {spec.split_file}"
            if spec.layout == "dataset-file"
            else f"run `susx datasets check {cfg.data_root} {spec.id}`; {spec.name} needs {spec.needs()}"
        )
        raise SusxError(
            f"{spec.id}: the local copy under {local.root} is incomplete: {local.problems[0]}", hint=hint
        )
    with_support = any(uses_support(m) for m in cfg.methods)
    needed = (
        {spec.calibration_split: "--calibration val"} if with_support and "val" in cfg.calibrations else {}
    )
    if with_support and any(c.kind == "folder-shots" for c in cfg.supports):
        needed["train"] = "--support folder-shots:K"
    for split, why in needed.items():
        if not local.splits.get(split):
            raise SusxError(
                f"{spec.id}: {why} needs a {split!r} split, which the dataset does not have",
                hint=f"add a {split!r} split, or drop {why}",
            )
    given = (
        [(str(cfg.prompts_path), read_prompts(cfg.prompts_path).classes)]
        if cfg.prompts_path is not None
        else []
    )
    given += [(str(c.path), support.read_support(c.path).classes) for c in cfg.supports if c.path is not None]
    for what, classes in given:
        if [folder_key(c) for c in classes] != [folder_key(c) for c in local.classes]:
            check_same_classes(local.classes, classes, f"{spec.id}'s split", what)
    return local


def error_line(exc: BaseException) -> str:
    """One line for a result record: a SusxError's message and hint, else the exception's type and first line."""
    if isinstance(exc, SusxError):
        return exc.one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def is_failed_record(path: Path) -> bool:
    """Whether ``path`` holds a result of a failed run (replaced by the next attempt without --overwrite)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kind") == res_io.RESULT and data.get("status") == "failed"


def record_failure(
    out_json: Path,
    config: dict[str, Any],
    run: Run,
    spec,
    exc: BaseException,
    row: dict[str, Any],
    result: EvalResult,
) -> None:
    """A failed run's row, and its result file (``status: failed`` and the error line) unless that would
    replace a finished result: a failure never overwrites a figure."""
    error = error_line(exc)
    info(f"   [red]failed[/red] {out_json.stem}: {error}")
    if not out_json.exists() or is_failed_record(out_json):
        res_io.write_result(
            out_json,
            {
                "status": "failed",
                "error": error,
                "config_key": res_io.config_key(config),
                "config": config,
                "dataset": {"id": spec.id, "name": spec.name, "split": spec.test_split},
                "model": {"arch": run.arch, "pretrained": run.pretrained},
                "method": run.method,
                "support": None,
                "calibration": None,
                "zero_shot_protocol": None,
                "metrics": {},
            },
        )
        result.outputs.append(out_json)
    result.rows.append({**row, **_metric_row({}), "status": "failed", "error": error})


def record_failed_dataset(
    spec, cfg: EvalConfig, runs: list[Run], exc: BaseException, result: EvalResult
) -> None:
    """--keep-going: every run of a dataset that could not be checked or prepared is recorded as failed."""
    wd = Workdir(cfg.work_dir, cfg.results_dir, spec.id)
    for run in runs:
        config = {
            "dataset": spec.id,
            "model": run.arch,
            "pretrained": run.pretrained,
            "method": run.method,
            "support": run.support.spec if run.support else None,
            "calibration": run.mode,
        }
        out_json = wd.result(run.arch, run.pretrained, run.method, run.tag, run.mode)
        record_failure(out_json, config, run, spec, exc, _row(spec, run, out_json), result)


def _row(spec, run: Run, out_json: Path) -> dict[str, Any]:
    return {
        "dataset": spec.id,
        "model": f"{run.arch}/{run.pretrained}",
        "method": run.method,
        "support": run.tag or "-",
        "calibration": run.mode or "-",
        "path": str(out_json),
    }


class DatasetEval:
    """The runs of one dataset: its split and prompts, then per run the artifacts it needs, each made once."""

    def __init__(self, spec, cfg: EvalConfig, local):
        """``local``: the dataset's splits as ``check_dataset`` returned them."""
        info(f"[bold cyan]== {spec.name}[/bold cyan]")
        self.spec, self.cfg, self.local = spec, cfg, local
        self.wd = Workdir(cfg.work_dir, cfg.results_dir, spec.id)
        self.wd.root.mkdir(parents=True, exist_ok=True)
        # The split JSON the stages read: the dataset's own file, or one derived from its layout.
        if local.source_file is not None and spec.layout in ("coop-split", "split-file"):
            self.split_path = local.source_file
        else:
            self.split_path = write_split(self.wd.split, local.splits)
        self.split_sha = common.sha256_file(self.split_path)
        self._made: dict[tuple, Any] = {}
        self.prompts_file, self.prompts_cfg = self._prompts()

    # ------------------------------------------------------------------ artifacts, each made once

    def _once(self, key: tuple, make) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def _prompts(self) -> tuple[Path, dict[str, Any]]:
        """The given prompts file (``check_dataset`` checked its classes), or one made here from the split's."""
        from susx_cli.stages.prompts import build_prompts

        spec, cfg = self.spec, self.cfg
        if cfg.prompts_path is not None:
            return cfg.prompts_path, {"file_sha256": common.sha256_file(cfg.prompts_path)}
        found = cfg.cupl_dir / f"{spec.id}.json" if cfg.cupl_dir is not None else None
        cupl = [found] if found is not None and found.is_file() else []
        if cfg.cupl_dir is not None and not cupl:
            info(f"   no CuPL sentences for {spec.id} in {cfg.cupl_dir} ({spec.id}.json): templates only")
        prompts_cfg = {
            "templates": cfg.templates,
            "photo_template": spec.photo_template,
            "pool": cfg.pool,
            "cupl_sha256": common.sha256_file(cupl[0]) if cupl else None,
        }
        build_prompts(
            self.wd.prompts,
            classes_path=self.split_path,
            template_set=cfg.templates,
            photo=spec.photo_template,
            cupl_paths=cupl,
            pool=cfg.pool,
        )
        return self.wd.prompts, prompts_cfg

    @property
    def prompts(self):
        from susx_cli.artifacts.prompts import read_prompts

        return self._once(("prompts",), lambda: read_prompts(self.prompts_file))

    def _embed_options(self, run: Run) -> dict[str, Any]:
        cfg = self.cfg
        return dict(
            batch_size=cfg.batch_size,
            workers=cfg.workers,
            device=None if cfg.device == "auto" else cfg.device,
            precision=cfg.precision,
            model=run.arch,
            pretrained=run.pretrained,
        )

    def text(self, run: Run) -> Path:
        from susx_cli.stages.embed import embed_texts

        out = self.wd.text(run.arch, run.pretrained)

        def make() -> Path:
            embed_texts(
                self.prompts_file,
                out,
                pool=self.cfg.pool or self.prompts.default_pool,
                device=None if self.cfg.device == "auto" else self.cfg.device,
                precision=self.cfg.precision,
                model=run.arch,
                pretrained=run.pretrained,
            )
            return out

        return self._once(("text", run.arch, run.pretrained), make)

    def split_features(self, run: Run, split: str) -> Path:
        from susx_cli.stages.embed import embed_images

        out = self.wd.split_features(run.arch, run.pretrained, split)

        def make() -> Path:
            embed_images(
                self.split_path,
                out,
                split=split,
                image_root=self.local.image_root,
                classes_path=self.prompts_file,
                **self._embed_options(run),
            )
            return out

        return self._once(("split", run.arch, run.pretrained, split), make)

    def support_folder(self, choice: SupportChoice) -> Path:
        if choice.path is not None:
            return choice.path
        from susx_cli.sources.folder import FolderSource
        from susx_cli.stages.curate import curate

        out = self.wd.support_folder(choice.tag, self.cfg.seed)

        def make() -> Path:
            curate(
                self.prompts_file,
                out,
                FolderSource(
                    self.split_path,
                    split="train",
                    image_root=self.local.image_root,
                    shots=choice.shots,
                    seed=self.cfg.seed,
                ),
            )
            return out

        return self._once(("curate", choice.tag), make)

    def support_features(self, run: Run) -> Path:
        from susx_cli.stages.embed import embed_images

        passes = self.cfg.support_passes(run.support)
        # Augmented features get their own file name, so plain ones made before are neither reused nor refused.
        out = self.wd.support_features(
            run.arch, run.pretrained, run.tag if passes == 1 else f"{run.tag}-aug{passes}"
        )

        def make() -> Path:
            embed_images(
                self.support_folder(run.support),
                out,
                classes_path=self.prompts_file,
                augment_passes=passes,
                seed=self.cfg.seed,
                **self._embed_options(run),
            )
            return out

        return self._once(("support", run.arch, run.pretrained, run.tag), make)

    # ------------------------------------------------------------------ runs

    def config(self, run: Run) -> dict[str, Any]:
        """What decides a run's result; its hash (the config key) tells whether a result file is this run's."""
        spec, cfg, choice = self.spec, self.cfg, run.support
        sup_cfg = None
        if choice is not None:
            sup_cfg = {
                "spec": choice.spec if choice.kind != "folder" else "folder",
                "kind": choice.kind,
                "shots": choice.shots,
                "seed": cfg.seed if choice.kind == "folder-shots" else None,
                "manifest_sha256": common.identity(choice.path)["sha256"] if choice.path else None,
            }
            if choice.kind == "folder-shots":  # support folders keep their configuration (one plain pass)
                sup_cfg["augment_passes"] = cfg.support_passes(choice)
        cal_cfg = None if run.mode is None else cfg.calibration_options(run.mode, run.method)
        if cal_cfg is not None and run.mode == "val":
            cal_cfg["split"] = spec.calibration_split
        return {
            "dataset": spec.id,
            "split_sha256": self.split_sha,
            "test_split": spec.test_split,
            "model": run.arch,
            "pretrained": run.pretrained and recorded_pretrained(run.pretrained),
            "precision": cfg.precision,
            "method": run.method,
            "support": sup_cfg,
            "calibration": cal_cfg,
            "prompts": self.prompts_cfg,
        }

    def execute(self, runs: list[Run], result: EvalResult) -> None:
        """Each run: skipped when its result exists with the same configuration, else made; a failed run's
        result is retried. With --keep-going a failure is recorded and the next run goes on."""
        for run in runs:
            config = self.config(run)
            out_json = self.wd.result(run.arch, run.pretrained, run.method, run.tag, run.mode)
            row = _row(self.spec, run, out_json)
            retry = is_failed_record(out_json)
            try:
                if res_io.existing_key(out_json) == res_io.config_key(config) and not (
                    self.cfg.overwrite or retry
                ):
                    info(f"   {out_json.name}: a result with the same configuration exists; skipped")
                    metrics, status = res_io.read_result(out_json)["metrics"], "skipped"
                elif out_json.exists() and not (self.cfg.overwrite or retry):
                    raise SusxError(
                        f"{out_json} exists and was made with another configuration",
                        hint="pass --overwrite to replace it, or another --results-dir",
                    )
                else:
                    info(f"   run {out_json.stem}")
                    metrics, status = self._run(run, config, out_json)["metrics"], "done"
            except Exception as exc:  # noqa: BLE001 - --keep-going records any failure, then goes on
                if not self.cfg.keep_going:
                    raise
                record_failure(out_json, config, run, self.spec, exc, row, result)
                continue
            result.rows.append({**row, **_metric_row(metrics), "status": status})
            info(f"   {status} {out_json.stem}: {_metric_text(result.rows[-1])}")
            result.outputs.append(out_json)

    def _search_options(self, run: Run) -> dict[str, Any]:
        """calibrate's grids or fixed values for this run; GDA: the paper's alpha grid, or --gda-alpha."""
        fixed = self.cfg.fixed
        if run.method == "gda":
            return {"alpha": fixed.get("gda_alpha")} if run.mode == "fixed" else {}
        if run.mode == "fixed":
            return {k: fixed.get(k) for k in ("alpha", "beta", "gamma")}
        return {f"{k}_grid": v for k, v in self.cfg.grids.items()}

    def _run(self, run: Run, config: dict[str, Any], out_json: Path) -> dict[str, Any]:
        """Make the run's artifacts, calibrate, predict, and write its result record."""
        from susx_cli.artifacts import calibration as cal_io
        from susx_cli.artifacts import hdf5, support
        from susx_cli.stages.calibrate import calibrate
        from susx_cli.stages.predict import predict

        spec, cfg, wd = self.spec, self.cfg, self.wd
        text, query = self.text(run), self.split_features(run, spec.test_split)
        sup_path = cal_path = sup_record = cal_record = None
        scale_source = "reference (100)"
        if run.support is not None:
            sup_path = self.support_features(run)
            cal_path = wd.calibration(run.arch, run.pretrained, run.tag, run.method, run.mode)
            val = self.split_features(run, spec.calibration_split) if run.mode == "val" else None
            calibrate(
                text,
                sup_path,
                cal_path,
                mode=run.mode,
                val_path=val,
                method=run.method,
                tau=cfg.tau,
                logit_scale=cfg.logit_scale,
                device=cfg.device,
                folds=cfg.folds,
                fold_seed=cfg.fold_seed,
                **self._search_options(run),
            )
            cal = cal_io.read_calibration(cal_path)
            scale_source = cal.logit_scale_source
            cal_record = res_io.calibration_record(
                cal, cal_path, spec.calibration_split if run.mode == "val" else None
            )
            sup_record = res_io.support_record(
                config["support"], support.read_support(self.support_folder(run.support))
            )
        pred_path = wd.predictions(run.arch, run.pretrained, run.tag, run.method, run.mode)
        predict(
            text,
            query,
            pred_path,
            support_path=sup_path,
            calibration_path=cal_path,
            method=run.method,
            device=cfg.device,
        )
        prompt_opts = self.prompts.provenance.get("options") or {}
        record = res_io.run_record(
            config,
            dataset={
                "id": spec.id,
                "name": spec.name,
                "split": spec.test_split,
                "data_root": None if spec.layout == "dataset-file" else str(cfg.data_root),
                "split_file": str(self.split_path),
            },
            text=self._once(("text-classifier", text), lambda: hdf5.read_text_classifier(text)),
            predictions=hdf5.read_predictions(pred_path),
            support=sup_record,
            calibration=cal_record,
            logit_scale_source=scale_source,
            prompt_options={
                "templates": prompt_opts.get("template_set", cfg.templates),
                "photo_template": prompt_opts.get("photo_template", spec.photo_template),
            },
            artifacts={
                "prompts": str(self.prompts_file),
                "text": str(text),
                "query": str(query),
                "support": str(sup_path) if sup_path else None,
                "calibration": str(cal_path) if cal_path else None,
                "predictions": str(pred_path),
            },
        )
        res_io.write_result(out_json, record)
        return record


def _metric_text(row: dict[str, Any]) -> str:
    """A finished run's result in one line of the log: 'top-1 71.23, mean recall 70.10'."""
    return f"top-1 {row['top1']:.2f}, mean recall {row['mean_per_class_recall']:.2f}"


def _metric_row(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        "top1": float(metrics.get("top1", float("nan"))),
        "mean_per_class_recall": float(metrics.get("mean_per_class_recall", float("nan"))),
    }
