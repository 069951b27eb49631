"""`prompts`: class names + templates + CuPL sentences -> prompts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from susx_cli import cupl as cupl_llm
from susx_cli import templates as tpl
from susx_cli.artifacts import common, outputs
from susx_cli.artifacts.prompts import (
    POOLS,
    PromptEntry,
    Prompts,
    existing_provenance,
    read_prompts,
    write_prompts,
)
from susx_cli.classnames import NO_CLEANING, Cleaning, folder_key, read_class_file, validate_classes
from susx_cli.cupl import LLMSettings
from susx_cli.errors import SusxError
from susx_cli.progress import info, warn
from susx_cli.stages.options import PromptsOptions
from susx_cli.stages.results import PromptsResult


def builtin_classes(dataset: str) -> list[str]:
    """Class names that ship with susx or open_clip, by dataset name."""
    from susx_cli.datasets import registry

    return registry.class_names(dataset)


def read_cupl_file(path: Path) -> dict[str, list[str]]:
    data = common.read_json(path, "CuPL sentence file")
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise SusxError(
            f"{path} must be a JSON object {{classname: [sentences]}}", hint="check the CuPL file"
        )
    return data


def resolve_cupl_sources(
    values: list[str | Path], checksums: list[str] = ()
) -> list[tuple[Path, str, dict[str, Any]]]:
    """Local CuPL files as given; http(s) URLs fetched into the user cache, checked against the
    ``checksums`` (one per URL, in order). Returns (local path, label, identity) per value."""
    from susx_cli.net import fetch

    urls = [v for v in values if fetch.is_url(str(v))]
    if checksums and len(checksums) != len(urls):
        raise SusxError(
            f"{len(checksums)} --cupl-sha256 value(s) for {len(urls)} --cupl URL(s)",
            hint="give one --cupl-sha256 per --cupl URL, in the same order",
        )
    sums = iter(checksums)
    out = []
    for value in values:
        if fetch.is_url(str(value)):
            url = str(value)
            local = fetch.fetch_url(url, next(sums, None), what="CuPL sentence file", suffix=".json")
            ident = {**common.identity(local, "cupl-sentences"), "path": url, "cached_copy": str(local)}
            out.append((local, url, ident))
        else:
            out.append((Path(value), str(value), common.identity(Path(value), "cupl-sentences")))
    return out


def match_cupl(
    classes: list[str], raw: list[str], cupl: dict[str, list[str]], source: str
) -> list[list[str]]:
    """Sentences per class, matched by exact, raw or normalised name; mismatches are reported by name."""
    by_key = {folder_key(k): k for k in cupl}
    result, missing = [], []
    used = set()
    for name, raw_name in zip(classes, raw, strict=True):
        key = name if name in cupl else raw_name if raw_name in cupl else by_key.get(folder_key(name))
        if key is None:
            missing.append(name)
            result.append([])
        else:
            used.add(key)
            result.append([" ".join(s.split()) for s in cupl[key] if s.strip()])
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        warn(f"{source}: no sentences for {len(missing)} class(es): {shown}")
    extra = sorted(set(cupl) - used)
    if extra:
        shown = ", ".join(repr(m) for m in extra[:5]) + (" ..." if len(extra) > 5 else "")
        warn(f"{source}: {len(extra)} name(s) in the file match no class: {shown}")
    return result


def build_prompts(
    output: Path,
    *,
    classes_path: Path | None = None,
    dataset: str | None = None,
    template_set: str = "ensemble",
    photo: str | None = None,
    cupl_paths: list[Path | str] = (),
    cupl_sha256: list[str] = (),
    pool: str | None = None,
    clean: bool = True,
    overwrite: bool = False,
    extra_cupl: dict[str, list[str]] | None = None,
    extra_options: dict[str, Any] | None = None,
    llm: LLMSettings | None = None,
) -> PromptsResult:
    """Write prompts.json for the classes of ``classes_path`` or the built-in ``dataset``.

    ``cupl_paths`` may hold http(s) URLs (fetched, checked against ``cupl_sha256``, cached);
    ``llm`` asks an OpenAI-compatible endpoint for CuPL sentences (cached beside the output).
    """
    if classes_path is None and dataset is None:
        raise SusxError(
            "give --classes FILE, or --dataset NAME for a built-in class list",
            hint="with both, the names come from FILE and the photo template and questions from NAME",
        )
    cleaning = Cleaning() if clean else NO_CLEANING
    raw, names, fmt, inputs = _class_names(classes_path, dataset, cleaning)

    photo_template = photo or tpl.photo_template(dataset)
    if photo_template.count("{}") != 1:
        raise SusxError(
            f"photo template {photo_template!r} must contain '{{}}' once", hint="e.g. 'A photo of a {}.'"
        )
    templates = tpl.resolve_templates(template_set, photo_template)

    cupl, cupl_inputs = _cupl_sentences(names, raw, cupl_paths, cupl_sha256, extra_cupl)
    inputs += cupl_inputs
    plan = cupl_llm.prepare(llm, dataset, output) if llm is not None else None
    local_inputs = [Path(i["path"]) for i in inputs if i.get("path") and "://" not in str(i["path"])]
    outputs.check_paths(
        [classes_path, *local_inputs], [("-o/--output", output), ("--llm-cache", plan and plan.cache_path)]
    )
    has_cupl = any(cupl) or plan is not None
    pool = pool or ("combined" if has_cupl else "template")
    if pool not in POOLS:
        raise SusxError(f"unknown pool {pool!r}", hint=f"use one of {', '.join(POOLS)}")
    if pool in ("cupl", "combined") and not has_cupl:
        raise SusxError(
            f"pool '{pool}' needs CuPL sentences and none were given",
            hint="add --cupl FILE or --llm, or use --pool template",
        )

    options = {
        "classes_format": fmt,
        "dataset": dataset,
        "template_set": template_set,
        "photo_template": photo_template,
        "pool": pool,
        "cleaning": cleaning.to_dict(),
        **(extra_options or {}),
    }
    if plan is not None:
        options["llm"] = plan.options()
    prov = common.provenance(options, inputs)
    if common.decide_existing(output, existing_provenance(output), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return PromptsResult([output], skipped=True, summary=prompts_summary(read_prompts(output)))
    extra: dict[str, Any] = {}
    if plan is not None:
        generated = cupl_llm.generate(plan, names)
        matched = match_cupl(names, raw, generated.sentences, "LLM sentences")
        cupl = [a + b for a, b in zip(cupl, matched, strict=True)]
        extra["llm"] = generated.record
        if pool == "cupl" and not any(cupl):
            raise SusxError(
                "pool 'cupl' needs CuPL sentences and the LLM gave none", hint="use --pool combined"
            )
    entries = [
        PromptEntry(
            i, name, raw_name, photo_template.format(name), [t.format(name) for t in templates], cupl[i]
        )
        for i, (name, raw_name) in enumerate(zip(names, raw, strict=True))
    ]
    prompts = Prompts(entries, pool, dataset, cleaning.to_dict(), prov, extra=extra)
    write_prompts(output, prompts)
    return PromptsResult([output], summary=prompts_summary(prompts))


def _class_names(
    classes_path: Path | None, dataset: str | None, cleaning: Cleaning
) -> tuple[list[str], list[str], str, list[dict[str, Any]]]:
    """(raw names, cleaned names, class file format, the class file's identity) from the file or the
    built-in ``dataset``."""
    inputs: list[dict[str, Any]] = []
    if classes_path is not None:
        raw, fmt = read_class_file(classes_path)
        source = str(classes_path)
        inputs.append(common.identity(classes_path, f"classes-{fmt}"))
    else:
        raw, fmt, source = builtin_classes(dataset), "builtin", f"dataset {dataset}"
    validate_classes(raw, source)
    names = validate_classes([cleaning.apply(n) for n in raw], f"{source} (after cleaning)")
    return raw, names, fmt, inputs


def _cupl_sentences(
    names: list[str],
    raw: list[str],
    cupl_paths: list[Path | str],
    cupl_sha256: list[str],
    extra_cupl: dict[str, list[str]] | None,
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """CuPL sentences per class from the files or URLs (and ``extra_cupl``), with the files' identities."""
    cupl: list[list[str]] = [[] for _ in names]
    inputs = []
    for path, label, ident in resolve_cupl_sources(list(cupl_paths), list(cupl_sha256)):
        matched = match_cupl(names, raw, read_cupl_file(path), label)
        cupl = [a + b for a, b in zip(cupl, matched, strict=True)]
        inputs.append(ident)
    if extra_cupl:
        matched = match_cupl(names, raw, extra_cupl, "LLM sentences")
        cupl = [a + b for a, b in zip(cupl, matched, strict=True)]
    return cupl, inputs


def prompts_summary(prompts: Prompts) -> dict[str, Any]:
    """The `prompts` summary, from the prompts themselves: the same keys whether they were just written or read back.

    CuPL was in play when any class has sentences or an LLM was asked (its record is in ``extra``).
    """
    entries = prompts.entries
    llm = prompts.extra.get("llm")
    has_cupl = any(e.cupl for e in entries) or llm is not None
    summary = {
        "classes": len(entries),
        "templates": len(entries[0].template) if entries else 0,
        "cupl_sentences": sum(len(e.cupl) for e in entries),
        "classes_without_cupl": sum(1 for e in entries if not e.cupl) if has_cupl else None,
        "pool": prompts.default_pool,
    }
    if llm is not None:
        summary["llm_requests"] = llm["requests_made"]
        summary["llm_cache_hits"] = llm["cache_hits"]
    return summary


def prompts(options: PromptsOptions) -> PromptsResult:
    """`susx prompts`: write prompts.json as ``options`` say (with ``llm``, CuPL sentences from an LLM)."""
    return build_prompts(
        options.output,
        classes_path=options.classes,
        dataset=options.dataset,
        template_set=options.templates,
        photo=options.photo,
        cupl_paths=list(options.cupl),
        cupl_sha256=list(options.cupl_sha256),
        pool=options.pool,
        clean=options.clean,
        overwrite=options.overwrite,
        llm=_llm_settings(options) if options.llm else None,
    )


def _llm_settings(options: PromptsOptions) -> LLMSettings:
    return LLMSettings(
        model=options.llm_model,
        base_url=options.llm_base_url,
        key_env=options.llm_key_env,
        questions=options.llm_questions,
        samples=options.llm_samples,
        temperature=options.llm_temperature,
        max_tokens=options.llm_max_tokens,
        system=cupl_llm.DEFAULT_SYSTEM if options.llm_system is None else options.llm_system,
        concurrency=options.llm_concurrency,
        timeout=options.llm_timeout,
        retry=cupl_llm.default_retry_policy(options.llm_retries),
        cache=options.llm_cache,
        max_requests=options.max_requests,
    )
