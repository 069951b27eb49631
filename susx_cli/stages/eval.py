"""`eval`: run prompts -> curate -> embed -> calibrate -> predict over datasets x models x support sets x
seeds x methods x calibration modes, reusing every artifact that exists and matches, and write one result
JSON per run (skipped when a result with the same configuration exists).

Four steps: ``EvalConfig.from_options`` checks the options and ``plan_runs`` lists the runs (plan);
``check_dataset`` checks every requested dataset (registered or a dataset file) and ``check_runs`` /
``check_disk`` every run before any is computed (check; ``dry_run`` stops here and lists the plan); a
``DatasetEval`` makes each run's artifacts through the stage functions, at the paths its ``Workdir`` names
from the run's inputs (execute, here or one Ray task per run); ``results.run_record`` describes the run and
``results.write_result`` stores it (record). With ``keep_going`` a dataset or run that fails or is refused
is recorded (a result with ``status: failed`` and the error line) and the rest goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, outputs
from susx_cli.artifacts import results as res_io
from susx_cli.artifacts.workdir import Workdir, run_prefix, write_split
from susx_cli.classnames import check_same_classes, folder_key, slug
from susx_cli.encoder import recorded_pretrained
from susx_cli.errors import SusxError
from susx_cli.method import registry as methods_registry
from susx_cli.model_spec import resolve_model, split_model
from susx_cli.progress import info
from susx_cli.stages.results import StageResult

CALIBRATIONS = methods_registry.MODES
# Augmented views per folder-shots support image, as the paper's few-shot figures used (docs/METHOD.md); generated
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


def _calibration_options(spec: methods_registry.MethodSpec, mode: str, cfg: EvalConfig) -> dict[str, Any]:
    """What decides a run's calibration: the mode, the scale, the settings the method reads, and its fixed
    values or grids (each hyperparameter by its own flag: GDA's alpha is --gda-alpha)."""
    out: dict[str, Any] = {"mode": mode, "logit_scale": cfg.logit_scale}
    if "tau" in spec.settings:
        out["tau"] = cfg.tau
    if mode == "fixed":
        missing = [h.flag for h in spec.hyperparameters if cfg.fixed.get(h.param) is None]
        if missing:
            raise SusxError(
                f"--calibration fixed needs {', '.join(missing)} for {spec.name}",
                hint="give every hyperparameter of the method",
            )
        out["fixed"] = {h.name: h.check(cfg.fixed[h.param]) for h in spec.hyperparameters}
    else:
        from susx_cli.stages.calibrate import check_grid_size, parse_grid

        out["grid"] = {h.name: cfg.grids.get(h.param) or "reference" for h in spec.hyperparameters}
        # Read every grid now, as calibrate will: a NaN or out-of-range point is refused before any work.
        check_grid_size({h.name: parse_grid(out["grid"][h.name], h) for h in spec.hyperparameters}, spec)
    if mode == "kfold":
        out["folds"] = {"k": cfg.folds, "seed": cfg.fold_seed}
    return out


def method_modes(method: str, calibrations: list[str]) -> list[str]:
    """The asked calibration modes ``method`` has, in the asked order (GDA has no loo: kfold is its name-only mode)."""
    return [m for m in calibrations if m in methods_registry.get(method).modes]


def _check_unused(cfg: EvalConfig, given_folds: bool) -> None:
    """Refuse options no planned run reads: a hyperparameter flag of no asked method, fixed values without
    --calibration fixed, grids without a searching mode, fold options without kfold."""
    flags = methods_registry.hyperparameter_flags()
    asked = set(cfg.methods)
    unused = [
        h.flag
        for h, owners in flags.values()
        if cfg.fixed.get(h.param) is not None and not asked & set(owners)
    ]
    unused += [
        h.grid_flag for h, owners in flags.values() if cfg.grids.get(h.param) and not asked & set(owners)
    ]
    if "fixed" not in cfg.calibrations:
        unused += [h.flag for h, _ in flags.values() if cfg.fixed.get(h.param) is not None]
    if not set(cfg.calibrations) - {"fixed"}:
        unused += [h.grid_flag for h, _ in flags.values() if cfg.grids.get(h.param)]
    if given_folds and "kfold" not in cfg.calibrations:
        unused.append("--folds/--fold-seed")
    if unused:
        unused = list(dict.fromkeys(unused))
        raise SusxError(
            f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing with these --method and "
            "--calibration values",
            hint="drop them, or add the method or calibration mode that reads them",
        )


def _check_stream_options(cfg: EvalConfig) -> None:
    """--order-seeds needs an online method and --tda-preset one with presets; seeds as predict checks them."""
    from susx_cli.stages.predict import StreamOptions, plan_orders

    specs = [methods_registry.get(m) for m in cfg.methods]
    online = [s for s in specs if s.online]
    if cfg.order_seeds and not online:
        raise SusxError(
            "--order-seeds does nothing with these --method values", hint="add an online test-time method"
        )
    for spec in online:
        plan_orders(spec, StreamOptions(seeds=cfg.order_seeds), 0)
    if cfg.tda_preset is not None and not any(cfg.tda_preset in s.presets for s in specs):
        raise SusxError(
            f"--tda-preset {cfg.tda_preset} does nothing with these --method values",
            hint="add a method with TDA's caches",
        )


def with_baselines(methods: list[str]) -> list[str]:
    """``methods`` and the baseline of each test-time method (MethodSpec.baseline: the same classifier
    without the test stream, reported beside it), in registry order after the asked ones."""
    wanted = {methods_registry.get(m).baseline for m in methods} - {None, *methods}
    return list(methods) + [m for m in methods_registry.names() if m in wanted]


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
    grids: dict[str, str | None] = field(default_factory=dict)  # by hyperparameter flag's parameter name
    fixed: dict[str, float | None] = field(default_factory=dict)  # alpha, beta, gamma, gda_alpha, ...
    folds: int = 4  # kfold: folds of the support set
    fold_seed: int = 0  # kfold: seed of the split
    seeds: tuple[int, ...] = (0,)  # folder-shots support: one run per seed (sample and augmented views)
    augment_passes: int = SHOT_AUGMENT_PASSES  # folder-shots support: augmented views per image
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    overwrite: bool = False
    keep_going: bool = False  # record a failed dataset or run and go on
    # Test-time methods: the order seeds of online methods (empty: seed 0) and TDA's preset.
    order_seeds: tuple[int, ...] = ()
    tda_preset: str | None = None
    dry_run: bool = False  # plan and check only: compute nothing, write nothing
    executor: str = "local"  # local | ray: one Ray task per run, the driver records
    ray_address: str | None = None

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
        hyperparameters: dict[str, Any] | None = None,
        **options: Any,
    ) -> EvalConfig:
        """Refuse bad options before any work starts. ``hyperparameters``: fixed values and grids by the
        parameter names of the registered flags (alpha, alpha_grid, gda_alpha, ...)."""
        pairs = parse_models(list(models), list(pretrained))
        given = {k: v for k, v in (hyperparameters or {}).items() if v is not None}
        given_folds = options.get("folds") is not None or options.get("fold_seed") is not None
        options["folds"] = options.get("folds") or 4
        options["fold_seed"] = options.get("fold_seed") or 0
        bad = [m for m in methods if m not in methods_registry.names()]
        if bad or not methods:
            raise SusxError(
                f"unknown method(s) {', '.join(bad) or '(none)'}",
                hint=f"use {', '.join(methods_registry.names())}",
            )
        bad = [c for c in calibrations if c not in CALIBRATIONS]
        if bad or not calibrations:
            raise SusxError(
                f"unknown calibration mode(s) {', '.join(bad) or '(none)'}",
                hint=f"use {', '.join(CALIBRATIONS)}",
            )
        choices = [parse_support(s) for s in supports]
        with_support = [m for m in methods if methods_registry.get(m).needs_support]
        if with_support and not choices:
            raise SusxError(
                f"{', '.join(with_support)} {'needs' if len(with_support) == 1 else 'need'} --support",
                hint="e.g. --support folder-shots:16 or --support SUPPORT_DIR",
            )
        from susx_cli.stages.options import check_loader_options

        check_loader_options(options.get("workers"), options.get("augment_passes", 1))
        options["seeds"] = check_seeds(options.get("seeds", (0,)))
        from susx_cli.stages.options import check_executor

        check_executor(options.get("executor", "local"), options.get("ray_address"), None)
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
            grids={k.removesuffix("_grid"): v for k, v in given.items() if k.endswith("_grid")},
            fixed={k: v for k, v in given.items() if not k.endswith("_grid")},
            **options,
        )
        _check_unused(cfg, given_folds)
        _check_stream_options(cfg)
        if cfg.logit_scale != "model":
            from susx_cli.stages.calibrate import resolve_logit_scale

            resolve_logit_scale(cfg.logit_scale, None)  # a NaN or negative scale is refused before any work
        for method in methods:
            spec = methods_registry.get(method)
            if spec.calibrated:
                if not method_modes(method, calibrations):
                    raise SusxError(
                        f"{method} has none of the calibration modes {', '.join(calibrations)}",
                        hint=f"add --calibration {' or '.join(spec.modes)}",
                    )
                for mode in method_modes(method, calibrations):
                    cfg.calibration_options(mode, method)  # refuse early
        return cfg

    def calibration_options(self, mode: str, method: str) -> dict[str, Any]:
        return _calibration_options(methods_registry.get(method), mode, self)

    def support_passes(self, choice: SupportChoice) -> int:
        """Augmented views per support image: ``augment_passes`` for folder-shots, one for a support folder."""
        return self.augment_passes if choice.kind == "folder-shots" else 1

    def keeps_views(self, choice: SupportChoice) -> bool:
        """Whether the support features keep their augmented views (folder-shots with several passes):
        GDA fits on them, as its paper does."""
        return self.support_passes(choice) > 1


def check_seeds(seeds) -> tuple[int, ...]:
    """Distinct non-negative integer seeds, at least one."""
    out = tuple(seeds)
    if not out or any(not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < 2**63 for x in out):
        raise SusxError(
            f"--seeds {','.join(map(str, out)) or '(none)'}: give non-negative integers that fit in 64 bits",
            hint="e.g. --seeds 0,1,2",
        )
    if len(set(out)) != len(out):
        raise SusxError(f"--seeds {','.join(map(str, out))} names a seed twice", hint="give each seed once")
    return out


@dataclass(frozen=True)
class Run:
    """One result: a model, a method and, for methods with support, a support set, its seed (None when
    nothing of the run reads one: no support, or a support folder without augmented views) and a
    calibration mode."""

    arch: str
    pretrained: str
    method: str
    support: SupportChoice | None = None
    mode: str | None = None
    seed: int | None = None

    @property
    def tag(self) -> str | None:
        return self.support.tag if self.support else None


def plan_runs(cfg: EvalConfig) -> list[Run]:
    """Every run of one dataset, in order: per model, zero-shot, then support x method x calibration mode
    (each method with the asked modes it has: GDA skips loo)."""
    runs: list[Run] = []
    for arch, tag in cfg.models:
        runs += [Run(arch, tag, m) for m in cfg.methods if not methods_registry.get(m).needs_support]
        for choice in cfg.supports:
            seeds = cfg.seeds if choice.kind == "folder-shots" else (None,)
            for seed in seeds:
                for method in cfg.methods:
                    spec = methods_registry.get(method)
                    if not spec.needs_support:
                        continue
                    modes = method_modes(method, cfg.calibrations) if spec.calibrated else [None]
                    runs += [Run(arch, tag, method, choice, mode, seed) for mode in modes]
    return runs


def prompts_inputs(spec, cfg: EvalConfig) -> dict[str, Any]:
    """What decides a dataset's prompts: the given file's hash, or the templates (a file's hash), the
    photo template, the pool and the CuPL file's hash."""
    if cfg.prompts_path is not None:
        return {"file_sha256": common.sha256_file(cfg.prompts_path)}
    cupl = cupl_file(spec, cfg)
    templates = Path(cfg.templates)
    return {
        "templates": cfg.templates,
        "templates_sha256": common.sha256_file(templates) if templates.is_file() else None,
        "photo_template": spec.photo_template,
        "pool": cfg.pool,
        "cupl_sha256": common.sha256_file(cupl) if cupl is not None else None,
    }


def cupl_file(spec, cfg: EvalConfig) -> Path | None:
    found = cfg.cupl_dir / f"{spec.id}.json" if cfg.cupl_dir is not None else None
    return found if found is not None and found.is_file() else None


def support_inputs(cfg: EvalConfig, choice: SupportChoice, seed: int | None) -> dict[str, Any]:
    """What decides a run's support set and its features: the spec (a folder by its manifest's hash),
    the shots, the seed and the augmented views per image."""
    return {
        "spec": choice.spec if choice.kind != "folder" else "folder",
        "kind": choice.kind,
        "shots": choice.shots,
        "seed": seed,
        "manifest_sha256": common.identity(choice.path)["sha256"] if choice.path else None,
        "augment_passes": cfg.support_passes(choice),
        "keep_views": cfg.keeps_views(choice),
    }


def run_inputs(spec, cfg: EvalConfig, run: Run, prompts: dict[str, Any]) -> dict[str, Any]:
    """Everything that changes a run's result, known before any work: its identity (the hash in its
    result, calibration and predictions names)."""
    return {
        "dataset": spec.id,
        "model": run.arch,
        "pretrained": run.pretrained,
        "precision": cfg.precision,
        "method": run.method,
        "logit_scale": cfg.logit_scale,
        "tau": cfg.tau if "tau" in methods_registry.get(run.method).settings else None,
        "prompts": prompts,
        "support": None if run.support is None else support_inputs(cfg, run.support, run.seed),
        "calibration": None if run.mode is None else cfg.calibration_options(run.mode, run.method),
    }


def result_path(wd: Workdir, spec, cfg: EvalConfig, run: Run, prompts: dict[str, Any]) -> Path:
    """The run's result file: its readable name and the hash of its inputs."""
    prefix = run_prefix(spec.id, run.arch, run.pretrained, run.method, run.tag, run.seed, run.mode)
    return wd.result(prefix, run_inputs(spec, cfg, run, prompts))


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
    methods: list[str] | None = None,
    calibrations: list[str] = ("loo",),
    templates: str = "ensemble",
    cupl_dir: Path | None = None,
    prompts_path: Path | None = None,
    pool: str | None = None,
    logit_scale: str = "100",
    tau: float = 0.5,
    hyperparameters: dict[str, Any] | None = None,
    folds: int | None = None,
    fold_seed: int | None = None,
    seeds: list[int] = (0,),
    augment_passes: int = SHOT_AUGMENT_PASSES,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    keep_going: bool = False,
    order_seeds: tuple[int, ...] = (),
    tda_preset: str | None = None,
    dry_run: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
) -> EvalResult:
    from susx_cli import runtime
    from susx_cli.datasets import registry

    runtime.resolve_device(device)  # a bad --device fails before any work
    outputs.check_paths(
        [data_root, prompts_path, cupl_dir], [("--work-dir", work_dir), ("--results-dir", results_dir)]
    )
    if not datasets:
        raise SusxError("give at least one --dataset", hint="see susx datasets list")
    specs = [registry.resolve(d) for d in registry.expand_groups(list(datasets))]
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
        methods=with_baselines(list(methods) if methods else list(methods_registry.paper_names())),
        calibrations=calibrations,
        hyperparameters=hyperparameters,
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
        seeds=tuple(seeds),
        augment_passes=augment_passes,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        overwrite=overwrite,
        keep_going=keep_going,
        order_seeds=tuple(order_seeds),
        tda_preset=tda_preset,
        dry_run=dry_run,
        executor=executor,
        ray_address=ray_address,
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
    refused = {spec.id: check_runs(spec, local, cfg, runs) for spec, local in checked}
    first = next(((spec, run, why) for spec, _ in checked for run, why in refused[spec.id].items()), None)
    if first is not None and not cfg.keep_going:
        spec, run, why = first
        raise SusxError(
            f"{run_label(spec, run)}: {why}",
            hint="change the plan, or pass --keep-going to record it as failed",
        )
    feature_bytes = check_disk(checked, cfg, runs)
    for spec, local in checked:
        if cfg.dry_run:
            list_plan(spec, cfg, runs, refused[spec.id], result)
            continue
        try:
            dataset_eval = DatasetEval(spec, cfg, local)
        except Exception as exc:  # noqa: BLE001 - --keep-going records any failure, then goes on
            if not cfg.keep_going:
                raise
            record_failed_dataset(spec, cfg, runs, exc, result)
            continue
        dataset_eval.execute(runs, result, refused[spec.id])
    statuses = [r["status"] for r in result.rows]
    result.summary = {
        "runs": len(statuses),
        **({"planned": statuses.count("planned"), "feature_bytes": feature_bytes} if cfg.dry_run else {}),
        "skipped": statuses.count("skipped"),
        "failed": statuses.count("failed"),
    }
    return result


SWEEP_KEYS = {"modes": "calibrations", "shots": "supports"}  # sweep file key -> run_eval parameter


# `susx eval`'s parameters (and `susx.eval`'s keywords) by the run_eval option they set, where names differ.
PARAMETER_OPTIONS = {
    "dataset": "datasets",
    "model": "models",
    "support": "supports",
    "method": "methods",
    "calibration": "calibrations",
    "prompts": "prompts_path",
}


def eval_parameters(params: dict[str, Any], given: Sequence[str] = ()) -> EvalResult:
    """`susx eval` and `susx.eval` alike: their parameters by name (hyperparameter flags by parameter name,
    e.g. ``gda_alpha_grid``), with a sweep file's options when ``config`` is given; ``given`` names the
    parameters the caller set, which the file may not set again."""
    from susx_cli.options import parse_seeds

    params = dict(params)
    hyper = {
        p for h, _ in methods_registry.hyperparameter_flags().values() for p in (h.param, f"{h.param}_grid")
    }
    hyperparameters = {k: params.pop(k) for k in list(params) if k in hyper and params[k] is not None}
    for k in hyper:
        params.pop(k, None)
    config = params.pop("config", None)
    options = {PARAMETER_OPTIONS.get(k, k): v for k, v in params.items()}
    options.update(
        datasets=list(options.get("datasets") or []),
        models=list(options.get("models") or []),
        pretrained=list(options.get("pretrained") or []),
        supports=list(options.get("supports") or []),
        methods=list(options["methods"]) if options.get("methods") else None,
        calibrations=list(options.get("calibrations") or ["loo"]),
        hyperparameters=hyperparameters or None,
        seeds=list(parse_seeds(options.get("seeds", "0"), "--seeds")),
        order_seeds=parse_seeds(options.get("order_seeds")),
    )
    if config is not None:
        named = ["hyperparameters" if k in hyper else PARAMETER_OPTIONS.get(k, k) for k in given]
        options = sweep_options(Path(config), {k: options[k] for k in dict.fromkeys(named) if k in options})
    return run_eval(options.pop("datasets", []), **options)


def sweep_options(path: Path, given: dict[str, Any]) -> dict[str, Any]:
    """``run_eval``'s keyword arguments from a sweep file (artifacts/sweep.py) and the options ``given`` on
    the command line (by parameter name). An option set in both is refused: the file is the record of
    the sweep, so the command line only adds what the file leaves out."""
    import inspect

    from susx_cli.artifacts.sweep import read_sweep

    sweep = read_sweep(path)
    known = set(inspect.signature(run_eval).parameters)
    unknown = [k for k in sweep if SWEEP_KEYS.get(k, k) not in known]
    if unknown:
        raise SusxError(
            f"{path}: unknown key(s) {', '.join(unknown)}",
            hint="keys are eval's option names (datasets, models, methods, modes, shots, supports, seeds, ...)",
        )
    both = sorted({SWEEP_KEYS.get(k, k) for k in sweep} & set(given))
    if both:
        raise SusxError(
            f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} set both in {path} and on the command line",
            hint="set each option in one place: edit the file, or drop the option",
        )
    options = {**given, **{k: v for k, v in sweep.items() if k not in SWEEP_KEYS}}
    if "modes" in sweep:
        options["calibrations"] = [str(m) for m in sweep["modes"]]
    if "shots" in sweep or "supports" in sweep:
        options["supports"] = [f"folder-shots:{k}" for k in sweep.get("shots", [])] + [
            str(p) for p in sweep.get("supports", [])
        ]
    return options


def check_dataset(spec, cfg: EvalConfig):
    """What can be checked of one dataset before any work: its images and splits present and its labels in
    range (``registry.check_local``), and the class lists of --prompts and of support folders the same as
    its own. Returns its ``registry.LocalSplits``."""
    from susx_cli.artifacts import support
    from susx_cli.artifacts.prompts import read_prompts
    from susx_cli.datasets import registry

    for method in cfg.methods:  # a preset without values for this dataset fails before any work
        method_spec = methods_registry.get(method)
        if cfg.tda_preset in method_spec.presets:
            method_spec.stream_values(cfg.tda_preset, spec.id)
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
    with_support = any(methods_registry.get(m).needs_support for m in cfg.methods)
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


def run_label(spec, run: Run) -> str:
    """A run as one readable name: dataset, model, method, support (with its seed) and mode."""
    return run_prefix(spec.id, run.arch, run.pretrained, run.method, run.tag, run.seed, run.mode)


def per_class_counts(rows: list[list[Any]], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for row in rows:
        counts[int(row[1])] += 1
    return counts


def check_runs(spec, local, cfg: EvalConfig, runs: list[Run]) -> dict[Run, str]:
    """Why each run that cannot succeed would fail, known before any work: a folder-shots:K sample larger
    than the train split's smallest class, or fewer support images per class than the method and
    calibration mode need (registry.min_shots; k-fold also needs no more folds than support images)."""
    from susx_cli.artifacts import support

    train = per_class_counts(local.splits.get("train") or [], len(local.classes))
    per_class: dict[SupportChoice, tuple[int, int]] = {}  # (smallest class, images)
    problems: dict[SupportChoice, str] = {}
    for choice in cfg.supports:
        if choice.path is not None:
            counts = support.read_support(choice.path).counts()
            per_class[choice] = (min(counts), sum(counts))
        else:
            per_class[choice] = (choice.shots, choice.shots * len(local.classes))
            thin = min(range(len(train)), key=train.__getitem__) if train else None
            if thin is not None and train[thin] < choice.shots:
                problems[choice] = (
                    f"{choice.spec} needs {choice.shots} train images per class; "
                    f"class {local.classes[thin]!r} has {train[thin]}"
                )
    refused: dict[Run, str] = {}
    for run in runs:
        if run.support is None:
            continue
        if run.support in problems:
            refused[run] = problems[run.support]
            continue
        smallest, images = per_class[run.support]
        views = cfg.support_passes(run.support) if cfg.keeps_views(run.support) else 1
        need = methods_registry.min_shots(methods_registry.get(run.method), run.mode, views)
        if smallest < need:
            mode = f" with {run.mode} calibration" if run.mode else ""
            refused[run] = (
                f"{run.method}{mode} needs at least {need} support images per class; "
                f"{run.support.spec} has {smallest}"
                + (
                    " (k-fold never splits one image's views: use --calibration val)"
                    if run.mode == "kfold"
                    else ""
                )
            )
        elif run.mode == "kfold" and images < cfg.folds:
            refused[run] = f"--folds {cfg.folds} is more than the {images} support images"
    return refused


FEATURE_BYTES = 4  # float32


def check_disk(checked: list, cfg: EvalConfig, runs: list[Run]) -> int:
    """Refuse a plan whose feature files would not fit on the work dir's disk: images to embed x feature
    width x 4 bytes, over every dataset, model, split and (support set, seed), an upper bound (files made
    before count too). Returns the estimate in bytes; a model whose width is unknown without loading
    it adds nothing."""
    from susx_cli.adapters.openclip import embed_dim_of

    images = 0
    for spec, local in checked:
        splits = {spec.test_split} | (
            {spec.calibration_split} if any(r.mode == "val" for r in runs) else set()
        )
        images += sum(len(local.splits.get(s) or []) for s in splits)
        for choice, _ in {(r.support, r.seed) for r in runs if r.support is not None}:
            images += choice.shots * len(local.classes) if choice.shots else len(support_rows(choice))
    total = sum(images * (embed_dim_of(arch) or 0) * FEATURE_BYTES for arch, _ in cfg.models)
    free = common.free_space(cfg.work_dir)
    if free is not None and free < total:
        raise SusxError(
            f"the plan's features need about {total / 2**20:.1f} MiB; {cfg.work_dir} has {free / 2**20:.1f} MiB free",
            hint="free some space, or use another --work-dir",
        )
    return total


def support_rows(choice: SupportChoice) -> list:
    from susx_cli.artifacts import support

    return support.read_support(choice.path).rows


def list_plan(spec, cfg: EvalConfig, runs: list[Run], refused: dict[Run, str], result: EvalResult) -> None:
    """--dry-run: each run's row and result path, with status planned, exists (its result file is there)
    or refused (and why)."""
    wd = Workdir(cfg.work_dir, cfg.results_dir, spec.id)
    prompts = prompts_inputs(spec, cfg)
    for run in runs:
        out_json = result_path(wd, spec, cfg, run, prompts)
        row = {**_row(spec, run, out_json), **_metric_row({})}
        if run in refused:
            row.update(status="refused", error=refused[run])
        else:
            row["status"] = (
                "exists" if out_json.is_file() and not res_io.is_failed_result(out_json) else "planned"
            )
        result.rows.append(row)


def error_line(exc: BaseException) -> str:
    """One line for a result record: a SusxError's message and hint, else the exception's type and first line."""
    if isinstance(exc, SusxError):
        return exc.one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def record_failure(
    out_json: Path,
    config: dict[str, Any],
    run: Run,
    spec,
    cfg: EvalConfig,
    exc: BaseException,
    result: EvalResult,
) -> None:
    """A failed run's row, and its result file (``status: failed``, the error line and what the run was, so
    that report shows it in its cell) unless that would replace a finished result: a failure never
    overwrites a figure."""
    error = error_line(exc)
    info(f"   [red]failed[/red] {out_json.stem}: {error}")
    if not out_json.exists() or res_io.is_failed_result(out_json):
        res_io.write_result(
            out_json,
            {
                "status": "failed",
                "error": error,
                "config_key": res_io.config_key(config),
                "config": config,
                "seed": run.seed,
                "dataset": {"id": spec.id, "name": spec.name, "split": spec.test_split},
                "model": {"arch": run.arch, "pretrained": run.pretrained},
                "method": run.method,
                "support": failed_support(cfg, run),
                "calibration": None if run.mode is None else {"mode": run.mode},
                "zero_shot_protocol": None,
                "metrics": {},
            },
        )
        result.outputs.append(out_json)
    result.rows.append({**_row(spec, run, out_json), **_metric_row({}), "status": "failed", "error": error})


def failed_support(cfg: EvalConfig, run: Run) -> dict[str, Any] | None:
    """A failed run's support entry: what report needs to put it in its row (kind, shots, seed, and a
    folder's path and source)."""
    if run.support is None:
        return None
    out = support_inputs(cfg, run.support, run.seed)
    if run.support.path is not None:
        from susx_cli.artifacts import support

        options = support.read_support(run.support.path).provenance.get("options") or {}
        out.update(path=str(run.support.path), source=options.get("source"))
    return out


def record_failed_dataset(
    spec, cfg: EvalConfig, runs: list[Run], exc: BaseException, result: EvalResult
) -> None:
    """--keep-going: every run of a dataset that could not be checked or prepared is recorded as failed."""
    wd = Workdir(cfg.work_dir, cfg.results_dir, spec.id)
    prompts = prompts_inputs(spec, cfg) if cfg.prompts_path is None or cfg.prompts_path.is_file() else {}
    for run in runs:
        config = run_inputs(spec, cfg, run, prompts)
        record_failure(result_path(wd, spec, cfg, run, prompts), config, run, spec, cfg, exc, result)


def _row(spec, run: Run, out_json: Path) -> dict[str, Any]:
    return {
        "dataset": spec.id,
        "model": f"{run.arch}/{run.pretrained}",
        "method": run.method,
        "support": run.tag or "-",
        "seed": run.seed,
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
        with outputs.writing(self.wd.root):
            self.wd.root.mkdir(parents=True, exist_ok=True)
        # The split JSON the stages read: the dataset's own file, or one derived from its layout.
        if local.source_file is not None and spec.layout in ("coop-split", "split-file"):
            self.split_path = local.source_file
        else:
            self.split_path = write_split(self.wd.split, local.splits)
        self.split_sha = common.sha256_file(self.split_path)
        self._made: dict[tuple, Any] = {}
        self.prompts_file, self.prompts_cfg = self._prompts()
        # The class list image artifacts record: the split's own, so that prompt variants share them (a
        # given prompts file may spell the classes otherwise: then it is the class list of everything).
        self.classes_path = self.prompts_file if cfg.prompts_path is not None else self.split_path

    # ------------------------------------------------------------------ artifacts, each made once

    def _once(self, key: tuple, make) -> Any:
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def _prompts(self) -> tuple[Path, dict[str, Any]]:
        """The given prompts file (``check_dataset`` checked its classes), or one made here from the split's."""
        from susx_cli.stages.prompts import build_prompts

        spec, cfg = self.spec, self.cfg
        prompts_cfg = prompts_inputs(spec, cfg)
        if cfg.prompts_path is not None:
            return cfg.prompts_path, prompts_cfg
        cupl = [c for c in (cupl_file(spec, cfg),) if c is not None]
        if cfg.cupl_dir is not None and not cupl:
            info(f"   no CuPL sentences for {spec.id} in {cfg.cupl_dir} ({spec.id}.json): templates only")
        out = self.wd.prompts(prompts_cfg)
        build_prompts(
            out,
            classes_path=self.split_path,
            template_set=cfg.templates,
            photo=spec.photo_template,
            cupl_paths=cupl,
            pool=cfg.pool,
        )
        return out, prompts_cfg

    def class_prompts(self) -> Path:
        """A prompts file that stands for the split's class list alone (curate reads its classes from a
        prompts file), so that support samples are shared by every prompt variant."""
        from susx_cli.stages.prompts import build_prompts

        if self.cfg.prompts_path is not None:
            return self.prompts_file
        out = self.wd.class_prompts({"split_sha256": self.split_sha})

        def make() -> Path:
            build_prompts(
                out, classes_path=self.split_path, template_set="photo", photo=self.spec.photo_template
            )
            return out

        return self._once(("class-prompts",), make)

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

        out = self.wd.text(
            run.arch, run.pretrained, {"prompts": self.prompts_cfg, "precision": self.cfg.precision}
        )

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

        inputs = {"split": split, "split_sha256": self.split_sha, "precision": self.cfg.precision}
        out = self.wd.split_features(run.arch, run.pretrained, split, inputs)

        def make() -> Path:
            embed_images(
                self.split_path,
                out,
                split=split,
                image_root=self.local.image_root,
                classes_path=self.classes_path,
                **self._embed_options(run),
            )
            return out

        return self._once(("split", run.arch, run.pretrained, split), make)

    def support_folder(self, choice: SupportChoice, seed: int | None) -> Path:
        if choice.path is not None:
            return choice.path
        from susx_cli.sources.folder import FolderSource
        from susx_cli.stages.curate import curate_source as curate

        inputs = {"split_sha256": self.split_sha, "shots": choice.shots, "seed": seed}
        out = self.wd.support_folder(choice.tag, seed, inputs)

        def make() -> Path:
            curate(
                self.class_prompts(),
                out,
                FolderSource(
                    self.split_path,
                    split="train",
                    image_root=self.local.image_root,
                    shots=choice.shots,
                    seed=seed,
                ),
            )
            return out

        return self._once(("curate", choice.tag, seed), make)

    def support_features(self, run: Run) -> Path:
        from susx_cli.stages.embed import embed_images

        passes, views = self.cfg.support_passes(run.support), self.cfg.keeps_views(run.support)
        inputs = {
            "support": support_inputs(self.cfg, run.support, run.seed),
            "split_sha256": self.split_sha if run.support.path is None else None,
            "precision": self.cfg.precision,
        }
        out = self.wd.support_features(run.arch, run.pretrained, run.tag, inputs)

        def make() -> Path:
            embed_images(
                self.support_folder(run.support, run.seed),
                out,
                classes_path=self.classes_path,
                augment_passes=passes,
                keep_views=views,
                seed=run.seed or 0,
                **self._embed_options(run),
            )
            return out

        return self._once(("support", run.arch, run.pretrained, run.tag, run.seed), make)

    # ------------------------------------------------------------------ runs

    def config(self, run: Run) -> dict[str, Any]:
        """What decides a run's result; its hash (the config key) tells whether a result file is this run's."""
        spec, cfg, choice = self.spec, self.cfg, run.support
        sup_cfg = None if choice is None else support_inputs(cfg, choice, run.seed)
        cal_cfg = None if run.mode is None else cfg.calibration_options(run.mode, run.method)
        if cal_cfg is not None and run.mode == "val":
            cal_cfg["split"] = spec.calibration_split
        stream = {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.stream_options(run)).items()
        }
        return {
            **({"stream": stream} if any(stream.values()) else {}),
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

    def stream_options(self, run: Run):
        """predict's stream options for this run: the order seeds of an online method, the preset of one
        with presets (its paper values are this dataset's)."""
        from susx_cli.stages.predict import StreamOptions

        method, cfg = methods_registry.get(run.method), self.cfg
        preset = cfg.tda_preset if cfg.tda_preset in method.presets else None
        return StreamOptions(
            seeds=(cfg.order_seeds or (0,)) if method.online else (),
            preset=preset,
            dataset=self.spec.id if preset not in (None, "default") else None,
        )

    def execute(self, runs: list[Run], result: EvalResult, refused: dict[Run, str]) -> None:
        """Each run: skipped when its result exists with the same configuration, else made (here, or with
        --executor ray as one Ray task each, its shared artifacts made here first); a failed run's result is
        retried. With --keep-going a failure (or a run ``check_runs`` refused) is recorded and the next run
        goes on. Result files are written here, by the driver."""
        pending: list[tuple[Run, dict[str, Any], Path]] = []
        for run in runs:
            config = self.config(run)
            out_json = result_path(self.wd, self.spec, self.cfg, run, self.prompts_cfg)
            row = _row(self.spec, run, out_json)
            res_io.claim_result_path(out_json)  # a file there that is not a result of susx's stays
            retry = res_io.is_failed_result(out_json)
            try:
                if run in refused:
                    raise SusxError(refused[run], hint="change the plan")
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
                elif self.cfg.executor == "ray":
                    self.prepare(run)
                    pending.append((run, config, out_json))
                    continue
                else:
                    info(f"   run {out_json.stem}")
                    metrics, status = self.record(out_json, self.compute(run, config)), "done"
            except Exception as exc:  # noqa: BLE001 - --keep-going records any failure, then goes on
                if not self.cfg.keep_going:
                    raise
                record_failure(out_json, config, run, self.spec, self.cfg, exc, result)
                continue
            result.rows.append({**row, **_metric_row(metrics), "status": status})
            info(f"   {status} {out_json.stem}: {_metric_text(result.rows[-1])}")
            result.outputs.append(out_json)
        if pending:
            self.execute_on_ray(pending, result)

    def record(self, out_json: Path, record: dict[str, Any]) -> dict[str, Any]:
        """Write a run's result file; its metrics."""
        res_io.write_result(out_json, record)
        return record["metrics"]

    def execute_on_ray(self, pending: list[tuple[Run, dict[str, Any], Path]], result: EvalResult) -> None:
        """One Ray task per run (stages/on_ray.eval_runs_on_ray); the records are written here, in plan order."""
        from susx_cli.stages.on_ray import eval_runs_on_ray

        outcomes = eval_runs_on_ray(self.spec, self.cfg, self.local, [(r, c) for r, c, _ in pending])
        for (run, config, out_json), (record, failure) in zip(pending, outcomes, strict=True):
            if failure is not None:
                if not self.cfg.keep_going:
                    raise failure
                record_failure(out_json, config, run, self.spec, self.cfg, failure, result)
                continue
            metrics = self.record(out_json, record)
            result.rows.append({**_row(self.spec, run, out_json), **_metric_row(metrics), "status": "done"})
            result.outputs.append(out_json)

    def _search_options(self, run: Run) -> dict[str, Any]:
        """calibrate's options for this run: fixed values or grids, the settings the method reads, folds."""
        spec, cfg = methods_registry.get(run.method), self.cfg
        out: dict[str, Any] = {"tau": cfg.tau if "tau" in spec.settings else None}
        if run.mode == "fixed":
            out["values"] = {h.name: cfg.fixed.get(h.param) for h in spec.hyperparameters}
        else:
            out["grids"] = {
                h.name: cfg.grids[h.param] for h in spec.hyperparameters if cfg.grids.get(h.param)
            }
        if run.mode == "kfold":
            out.update(folds=cfg.folds, fold_seed=cfg.fold_seed)
        return out

    def prepare(self, run: Run) -> None:
        """Make the artifacts runs share (text classifier, split and support features) before the runs
        go to Ray tasks, so that no two tasks write one file."""
        self.text(run)
        self.split_features(run, self.spec.test_split)
        if run.mode == "val":
            self.split_features(run, self.spec.calibration_split)
        if run.support is not None:
            self.support_features(run)

    def compute(self, run: Run, config: dict[str, Any]) -> dict[str, Any]:
        """Make the run's artifacts, calibrate and predict: its result record (``execute`` writes it)."""
        from susx_cli.artifacts import calibration as cal_io
        from susx_cli.artifacts import hdf5, support
        from susx_cli.stages.calibrate import calibrate_files as calibrate
        from susx_cli.stages.predict import predict_files as predict

        spec, cfg, wd = self.spec, self.cfg, self.wd
        text, query = self.text(run), self.split_features(run, spec.test_split)
        sup_path = cal_path = sup_record = cal_record = None
        scale_source = "reference (100)"
        if run.support is not None:
            sup_path = self.support_features(run)
        if run.mode is not None:
            cal_path = wd.calibration(run.arch, run.pretrained, f"{run.method}-{run.mode}", config)
            val = self.split_features(run, spec.calibration_split) if run.mode == "val" else None
            calibrate(
                text,
                sup_path,
                cal_path,
                mode=run.mode,
                val_path=val,
                method=run.method,
                logit_scale=cfg.logit_scale,
                device=cfg.device,
                **self._search_options(run),
            )
            cal = cal_io.read_calibration(cal_path)
            scale_source = cal.logit_scale_source
            cal_record = res_io.calibration_record(
                cal, cal_path, spec.calibration_split if run.mode == "val" else None
            )
            sup_record = res_io.support_record(
                config["support"], support.read_support(self.support_folder(run.support, run.seed))
            )
        pred_path = wd.predictions(run.arch, run.pretrained, f"{run.method}-{run.mode or 'none'}", config)
        predict(
            text,
            query,
            pred_path,
            support_path=sup_path,
            calibration_path=cal_path,
            method=run.method,
            device=cfg.device,
            stream=self.stream_options(run),
        )
        prompt_opts = self.prompts.provenance.get("options") or {}
        record = res_io.run_record(
            config,
            seed=run.seed,
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
        return record


def _metric_text(row: dict[str, Any]) -> str:
    """A finished run's result in one line of the log: 'top-1 71.23, mean recall 70.10'."""
    return f"top-1 {row['top1']:.2f}, mean recall {row['mean_per_class_recall']:.2f}"


def _metric_row(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        "top1": float(metrics.get("top1", float("nan"))),
        "mean_per_class_recall": float(metrics.get("mean_per_class_recall", float("nan"))),
    }
