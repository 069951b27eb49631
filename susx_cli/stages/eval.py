"""`eval`: run prompts -> curate -> embed -> calibrate -> predict over datasets x models x support sets x
methods x calibration modes, reusing every artifact that exists and matches, and write one result JSON
per run (skipped when a result with the same configuration exists)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts import results as res_io
from susx_cli.classnames import folder_key, slug
from susx_cli.errors import SusxError
from susx_cli.progress import info
from susx_cli.stages.results import StageResult

METHODS = ("zero-shot", "tip-adapter", "tip-x")
CALIBRATIONS = ("val", "loo", "fixed")


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
        raise SusxError(f"--support {spec!r} is neither folder-shots:K nor an existing folder", hint="check the path")
    if not support.is_support_dir(path):
        raise SusxError(f"--support {path} is not a complete support folder", hint="make one with susx curate")
    return SupportChoice(spec, "folder", slug(path.name, 32), path=path)


def parse_models(models: list[str], pretrained: list[str]) -> list[tuple[str, str]]:
    """Pairs of (architecture, weights): ``--model A --pretrained T`` by position, or ``A:T`` strings."""
    if not models:
        raise SusxError("give at least one --model", hint="e.g. --model RN50 --pretrained openai, or --model RN50:openai")
    plain, pairs = [], []
    for m in models:
        head = "hf-hub:" if m.startswith("hf-hub:") else ""
        rest = m[len(head):]
        if ":" in rest:
            arch, tag = rest.rsplit(":", 1)
            pairs.append((head + arch, tag or "none"))
        else:
            plain.append(m)
            pairs.append((m, None))
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


@dataclass
class EvalResult(StageResult):
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def table(self):
        if not self.rows:
            return None
        from rich.table import Table

        table = Table(title="susx eval")
        for col in ("dataset", "model", "method", "support", "calibration", "top1", "mean recall", "status"):
            table.add_column(col, justify="right" if col in ("top1", "mean recall") else "left")
        for r in self.rows:
            table.add_row(r["dataset"], r["model"], r["method"], r["support"], r["calibration"],
                          f"{r['top1']:.2f}", f"{r['mean_per_class_recall']:.2f}", r["status"])
        return table

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "results": self.rows}


def _split_path(local, work: Path) -> Path:
    """The split JSON the stages read: the dataset's own file, or one derived from its layout."""
    if local.source_file is not None and local.spec.layout in ("coop-split", "split-file"):
        return local.source_file
    path = work / "split.json"
    text = json.dumps(local.splits, ensure_ascii=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        common.atomic_write_bytes(path, text.encode("utf-8"))
    return path


def _calibration_options(mode: str, method: str, grids: dict[str, str | None], fixed: dict[str, float | None],
                         tau: float, logit_scale: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode, "tau": tau, "logit_scale": logit_scale}
    if mode == "fixed":
        missing = [f"--{k}" for k in ("alpha", "beta") if fixed.get(k) is None]
        if method == "tip-x" and fixed.get("gamma") is None:
            missing.append("--gamma")
        if missing:
            raise SusxError(f"--calibration fixed needs {', '.join(missing)}", hint="give every hyperparameter of the method")
        out["fixed"] = {k: fixed.get(k) for k in ("alpha", "beta", "gamma")}
    else:
        out["grid"] = {k: grids.get(k) or "reference" for k in ("alpha", "beta", "gamma")}
    return out


def run_eval(
    datasets: list[str],
    *,
    data_root: Path,
    work_dir: Path,
    results_dir: Path,
    models: list[str],
    pretrained: list[str] = (),
    supports: list[str] = (),
    methods: list[str] = METHODS,
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
    seed: int = 0,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
) -> EvalResult:
    from susx_cli import runtime
    from susx_cli.datasets import registry

    runtime.resolve_device(device)  # a bad --device fails before any work
    if not datasets:
        raise SusxError("give at least one --dataset", hint="see susx datasets list")
    specs = [registry.get(d) for d in datasets]
    pairs = parse_models(list(models), list(pretrained))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise SusxError(f"unknown method(s) {', '.join(bad) or '(none)'}", hint=f"use {', '.join(METHODS)}")
    bad = [c for c in calibrations if c not in CALIBRATIONS]
    if bad or not calibrations:
        raise SusxError(f"unknown calibration mode(s) {', '.join(bad) or '(none)'}", hint=f"use {', '.join(CALIBRATIONS)}")
    choices = [parse_support(s) for s in supports]
    if any(m != "zero-shot" for m in methods) and not choices:
        raise SusxError("tip-adapter and tip-x need --support", hint="e.g. --support folder-shots:16 or --support SUPPORT_DIR")
    if prompts_path is not None and len(specs) > 1:
        raise SusxError("--prompts holds one dataset's classes; give one --dataset with it", hint="or use --cupl-dir DIR")
    grids = {"alpha": alpha_grid, "beta": beta_grid, "gamma": gamma_grid}
    fixed = {"alpha": alpha, "beta": beta, "gamma": gamma}
    for method in methods:
        if method != "zero-shot":
            for mode in calibrations:
                _calibration_options(mode, method, grids, fixed, tau, logit_scale)  # refuse early
    ctx = dict(work_dir=work_dir, results_dir=results_dir, choices=choices, methods=methods, calibrations=calibrations,
               templates=templates, cupl_dir=cupl_dir, prompts_path=prompts_path, pool=pool, logit_scale=logit_scale,
               tau=tau, grids=grids, fixed=fixed, seed=seed, batch_size=batch_size, workers=workers, device=device,
               precision=precision, overwrite=overwrite)
    result = EvalResult("eval", [])
    for spec in specs:
        _eval_dataset(spec, Path(data_root), pairs, result, **ctx)
    result.summary = {"runs": len(result.rows), "skipped": sum(r["status"] == "skipped" for r in result.rows)}
    return result


def _eval_dataset(spec, data_root: Path, pairs, result: EvalResult, *, work_dir: Path, results_dir: Path, choices,
                  methods, calibrations, templates, cupl_dir, prompts_path, pool, logit_scale, tau, grids, fixed, seed,
                  batch_size, workers, device, precision, overwrite) -> None:
    from susx_cli.artifacts import calibration as cal_io
    from susx_cli.artifacts import hdf5, support
    from susx_cli.artifacts.prompts import read_prompts
    from susx_cli.datasets import registry
    from susx_cli.sources.folder import FolderSource
    from susx_cli.stages.calibrate import calibrate
    from susx_cli.stages.curate import curate
    from susx_cli.stages.embed import embed_images, embed_texts
    from susx_cli.stages.predict import predict
    from susx_cli.stages.prompts import build_prompts

    info(f"[bold cyan]== {spec.name}[/bold cyan]")
    local = registry.check_local(spec, data_root)
    if local.problems:
        raise SusxError(f"{spec.id}: the local copy under {local.root} is incomplete: {local.problems[0]}",
                        hint=f"run `susx datasets check {data_root} {spec.id}`; {spec.name} needs {spec.needs()}")
    work = work_dir / spec.id
    work.mkdir(parents=True, exist_ok=True)
    split_path = _split_path(local, work)
    split_sha = common.sha256_file(split_path)

    # Prompts: the given file (classes must match the split's), or made here from the split's classes.
    if prompts_path is not None:
        prompts_file = prompts_path
        given = read_prompts(prompts_path).classes
        if [folder_key(c) for c in given] != [folder_key(c) for c in local.classes]:
            from susx_cli.classnames import check_same_classes

            check_same_classes(local.classes, given, f"{spec.id}'s split", str(prompts_path))
        prompts_cfg: dict[str, Any] = {"file_sha256": common.sha256_file(prompts_path)}
    else:
        prompts_file = work / "prompts.json"
        cupl = [cupl_dir / f"{spec.id}.json"] if cupl_dir is not None and (cupl_dir / f"{spec.id}.json").is_file() else []
        if cupl_dir is not None and not cupl:
            info(f"   no CuPL sentences for {spec.id} in {cupl_dir} ({spec.id}.json): templates only")
        prompts_cfg = {"templates": templates, "photo_template": spec.photo_template, "pool": pool,
                       "cupl_sha256": common.sha256_file(cupl[0]) if cupl else None}
        build_prompts(prompts_file, classes_path=split_path, template_set=templates, photo=spec.photo_template,
                      cupl_paths=cupl, pool=pool)
    prompts = read_prompts(prompts_file)
    text_pool = pool or prompts.default_pool

    embed_kw = dict(batch_size=batch_size, workers=workers, device=None if device == "auto" else device, precision=precision)
    for arch, tag in pairs:
        m = {"model": arch, "pretrained": tag}
        mdir = work / f"{slug(arch, 40)}__{slug(tag, 40)}"
        memo: dict[str, Any] = {}

        def once(key, make, memo=memo):
            if key not in memo:
                memo[key] = make()
            return memo[key]

        def text_h5(mdir=mdir, m=m):
            return once("text", lambda: (embed_texts(prompts_file, mdir / "text.h5", pool=text_pool, device=embed_kw["device"],
                                                     precision=precision, **m), mdir / "text.h5")[1])

        def split_h5(name: str, mdir=mdir, m=m):
            out = mdir / f"{name}.h5"
            return once(f"split:{name}", lambda: (embed_images(split_path, out, split=name, image_root=local.image_root,
                                                               classes_path=prompts_file, **embed_kw, **m), out)[1])

        def support_dir(choice: SupportChoice):
            if choice.path is not None:
                return choice.path
            out = work / "support" / f"{choice.tag}-seed{seed}"
            return once(f"curate:{choice.tag}", lambda: (curate(prompts_file, out, FolderSource(
                split_path, split="train", image_root=local.image_root, shots=choice.shots, seed=seed)), out)[1])

        def support_h5(choice: SupportChoice, mdir=mdir, m=m):
            out = mdir / f"support-{choice.tag}.h5"
            return once(f"support:{choice.tag}", lambda: (embed_images(support_dir(choice), out, classes_path=prompts_file,
                                                                       **embed_kw, **m), out)[1])

        runs: list[tuple[str, SupportChoice | None, str | None]] = []
        if "zero-shot" in methods:
            runs.append(("zero-shot", None, None))
        for choice in choices:
            for method in methods:
                if method != "zero-shot":
                    runs += [(method, choice, mode) for mode in calibrations]
        for method, choice, mode in runs:
            sup_cfg = None
            if choice is not None:
                sup_cfg = {"spec": choice.spec if choice.kind != "folder" else "folder", "kind": choice.kind,
                           "shots": choice.shots, "seed": seed if choice.kind == "folder-shots" else None,
                           "manifest_sha256": common.identity(choice.path)["sha256"] if choice.path else None}
            cal_cfg = None if mode is None else _calibration_options(mode, method, grids, fixed, tau, logit_scale)
            if cal_cfg is not None and mode == "val":
                cal_cfg["split"] = spec.calibration_split
            config = {"dataset": spec.id, "split_sha256": split_sha, "test_split": spec.test_split, "model": arch,
                      "pretrained": tag, "precision": precision, "method": method, "support": sup_cfg,
                      "calibration": cal_cfg, "prompts": prompts_cfg}
            key = res_io.config_key(config)
            name = f"{spec.id}__{slug(arch, 40)}-{slug(tag, 40)}__{method}__{choice.tag if choice else 'none'}__{mode or 'none'}"
            out_json = results_dir / f"{name}.json"
            row = {"dataset": spec.id, "model": f"{arch}/{tag}", "method": method,
                   "support": choice.tag if choice else "-", "calibration": mode or "-", "path": str(out_json)}
            old = res_io.existing_key(out_json)
            if old == key and not overwrite:
                info(f"   {out_json.name}: a result with the same configuration exists; skipped")
                done = res_io.read_result(out_json)
                result.rows.append({**row, **_metric_row(done["metrics"]), "status": "skipped"})
                result.outputs.append(out_json)
                continue
            if out_json.exists() and not overwrite:
                raise SusxError(f"{out_json} exists and was made with another configuration",
                                hint="pass --overwrite to replace it, or another --results-dir")
            info(f"   run {name}")
            text = text_h5()
            query = split_h5(spec.test_split)
            cal_path = sup_path = None
            cal_record = None
            if choice is not None:
                sup_path = support_h5(choice)
                cal_path = mdir / f"calibration-{choice.tag}-{method}-{mode}.json"
                val = split_h5(spec.calibration_split) if mode == "val" else None
                calibrate(text, sup_path, cal_path, mode=mode, val_path=val, method=method, tau=tau,
                          logit_scale=logit_scale, device=device, **{f"{k}_grid": v for k, v in grids.items()},
                          **(fixed if mode == "fixed" else {}))
                cal = cal_io.read_calibration(cal_path)
                cal_record = {"mode": cal.mode, "split": spec.calibration_split if mode == "val" else None,
                              "alpha": cal.alpha, "beta": cal.beta, "gamma": cal.gamma, "tau": cal.tau,
                              "normalize_per_class": cal.normalize_per_class, "objective": cal.objective,
                              "grid_size": (cal.grid or {}).get("size"), "path": str(cal_path)}
            pred_path = mdir / f"predictions-{choice.tag if choice else 'none'}-{method}-{mode or 'none'}.h5"
            predict(text, query, pred_path, support_path=sup_path, calibration_path=cal_path, method=method, device=device)
            preds = hdf5.read_predictions(pred_path)
            tc = hdf5.read_text_classifier(text)
            metrics = {k: v for k, v in preds.metrics.items() if k in ("top1", "top5", "mean_per_class_recall", "n")
                       or (k.startswith("top") and isinstance(v, float))}
            sup_record = None
            if choice is not None:
                s = support.read_support(support_dir(choice))
                counts = s.counts()
                source = (s.provenance.get("options") or {}).get("source")
                sup_record = {**sup_cfg, "path": str(support_dir(choice)), "source": source, "size": len(s.rows),
                              "per_class_min": min(counts), "per_class_max": max(counts)}
            record = {
                "config_key": key,
                "config": config,
                "dataset": {"id": spec.id, "name": spec.name, "split": spec.test_split, "num_classes": len(tc.classes),
                            "n_queries": int(preds.labels.shape[0]), "data_root": str(data_root),
                            "split_file": str(split_path)},
                "model": {"arch": arch, "pretrained": tag, "random_weights": tc.model.random_weights,
                          "identity": tc.model.to_dict()},
                "method": method,
                "support": sup_record,
                "calibration": cal_record,
                "zero_shot_protocol": {
                    "logit_scale": preds.metrics.get("logit_scale", 100.0),
                    "logit_scale_source": "reference (100)" if cal_path is None else cal_io.read_calibration(cal_path).logit_scale_source,
                    "text_pool": tc.pool,
                    "templates": (prompts.provenance.get("options") or {}).get("template_set", templates),
                    "photo_template": (prompts.provenance.get("options") or {}).get("photo_template", spec.photo_template),
                    "texts_per_class_mean": float(tc.num_texts.mean()),
                },
                "metrics": metrics,
                "artifacts": {"prompts": str(prompts_file), "text": str(text), "query": str(query),
                              "support": str(sup_path) if sup_path else None, "calibration": str(cal_path) if cal_path else None,
                              "predictions": str(pred_path)},
            }
            res_io.write_result(out_json, record)
            result.rows.append({**row, **_metric_row(metrics), "status": "done"})
            result.outputs.append(out_json)


def _metric_row(metrics: dict[str, Any]) -> dict[str, float]:
    return {"top1": float(metrics.get("top1", float("nan"))),
            "mean_per_class_recall": float(metrics.get("mean_per_class_recall", float("nan")))}
