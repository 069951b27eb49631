"""`--executor ray`: the per-shard work of `embed` (images) and `curate --source sd`, and the runs of
`eval`, as Ray tasks.

Each task calls the same stage function as a sharded run (``Shard(i, n, "ray")``, ``join=False``); the
driver joins the parts once, after every task ended, with the same join a sharded run's last shard does,
so the outputs equal a sharded (and a one-process) run's. The adapter is ``adapters/ray_executor``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError
from susx_cli.progress import info
from susx_cli.sharding import Shard
from susx_cli.stages.results import CurateResult, EmbedResult


def _gpu_tasks(device: str | None) -> bool | None:
    """None (GPUs where the cluster has them) unless --device asks for the CPU; a numbered GPU is refused."""
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return False
    if device.startswith("cuda:") and device != "cuda:0":
        raise SusxError(
            f"--device {device}: each Ray task sees only the one GPU Ray gave it (as cuda:0)",
            hint="use --device auto or cuda with --executor ray",
        )
    return None


def _in_task(call, quiet: bool, shard: Shard):
    """A task's body: the stage call under a reporter, whose plain lines Ray forwards to the driver
    (which stamps them with the time)."""
    from susx_cli.progress import RichReporter, reporting

    with reporting(RichReporter(quiet=quiet, stamps=False)):
        return call(shard=shard)


def embed_on_ray(
    input_path: Path,
    output: Path,
    *,
    num_shards: int | None,
    address: str | None,
    quiet: bool = False,
    **kwargs: Any,
) -> EmbedResult:
    """`susx embed IMAGES --executor ray`: one task per shard, then one join here (see the module doc)."""
    from susx_cli.adapters import ray_executor
    from susx_cli.artifacts.lock import output_lock
    from susx_cli.stages import merge
    from susx_cli.stages.embed import embed_images, is_prompts_file

    if is_prompts_file(input_path):
        raise SusxError(
            f"{input_path} is a prompts file: the text classifier is not sharded",
            hint="drop --executor ray (one process embeds the texts)",
        )
    kwargs.pop("pool", None)  # a text option: images ignore it, as in a local run
    call = functools.partial(embed_images, input_path, output, join=False, **kwargs)
    use_gpus = _gpu_tasks(kwargs.get("device"))
    results = ray_executor.run_shards(
        functools.partial(_in_task, call, quiet), num_shards, address=address, use_gpus=use_gpus
    )
    count = len(results)
    summary: dict[str, Any] = {"executor": "ray", "num_shards": count, "shards": [r.summary for r in results]}
    if all(r.skipped for r in results) and not merge.parts_ready(output, count):
        return EmbedResult([output], skipped=True, summary=summary)
    with output_lock(output):
        joined = merge.join_parts_locked(output, count, replace=kwargs.get("overwrite", False))
    info(f"joined {count} parts into {output}")
    return EmbedResult([output], summary={**summary, "joined": joined.summary})


def _curate_shard(
    source_name: str, options: Any, prompts_path: Path, output: Path, shard: Shard, **kwargs: Any
):
    """One task of `curate --executor ray`: the source is built here, so its device resolves on the task's
    node (its GPU), not on the driver's."""
    from susx_cli.sources.registry import make_source
    from susx_cli.stages.curate import curate_source

    return curate_source(
        prompts_path, output, make_source(source_name, options), shard=shard, join=False, **kwargs
    )


def curate_on_ray(
    prompts_path: Path,
    output: Path,
    source_name: str,
    options: Any,
    *,
    num_shards: int | None,
    address: str | None,
    min_per_class: int = 1,
    overwrite: bool = False,
    quiet: bool = False,
    exclude: Path | None = None,
) -> CurateResult:
    """`susx curate --source sd --executor ray`: one task per shard, then one merge here."""
    from susx_cli.adapters import ray_executor
    from susx_cli.stages.curate import join_shards

    if source_name != "sd":
        raise SusxError(
            f"--executor ray runs `curate --source sd` only, not --source {source_name}",
            hint="drop --executor ray (or shard the run with --num-shards/--shard-index)",
        )
    call = functools.partial(
        _curate_shard,
        source_name,
        options,
        prompts_path,
        output,
        min_per_class=min_per_class,
        overwrite=overwrite,
        exclude=exclude,
    )
    use_gpus = _gpu_tasks(getattr(options, "device", None))
    results = ray_executor.run_shards(
        functools.partial(_in_task, call, quiet), num_shards, address=address, use_gpus=use_gpus
    )
    written = [r for r in results if not r.skipped]
    if not written:  # every task found the set complete and up to date
        return CurateResult([output], skipped=True, summary={"executor": "ray", "num_shards": len(results)})
    targets = {Path(r.outputs[0]) for r in written}
    if len(targets) != 1:
        raise SusxError(
            f"the Ray tasks wrote into different folders: {sorted(map(str, targets))}", hint="re-run"
        )
    result = join_shards(targets.pop(), output, len(results), options.per_class)
    result.summary |= {"executor": "ray", "shards": [r.summary for r in results]}
    return result


def _eval_run(spec, cfg, local, tasks: list, shard: Shard) -> tuple[dict[str, Any] | None, tuple | None]:
    """One task of `eval --executor ray`: run ``tasks[shard.index]`` (calibrate, predict) over the artifacts
    the driver made; (its result record, None) or (None, (error line, hint, exit code))."""
    from susx_cli.stages.eval import DatasetEval, error_line

    run, config = tasks[shard.index]
    try:
        return DatasetEval(spec, cfg, local).compute(run, config), None
    except SusxError as exc:
        return None, (exc.message, exc.hint, exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the driver records it (--keep-going) or raises it
        return None, (error_line(exc), None, 2)


def eval_runs_on_ray(spec, cfg, local, tasks: list) -> list[tuple[dict[str, Any] | None, SusxError | None]]:
    """Every (run, config) of one dataset as a Ray task; per run its record or its failure, in order."""
    from susx_cli.adapters import ray_executor

    call = functools.partial(_eval_run, spec, cfg, local, tasks)
    outcomes = ray_executor.run_shards(
        functools.partial(_in_task, call, True),
        len(tasks),
        address=cfg.ray_address,
        use_gpus=_gpu_tasks(None if cfg.device == "auto" else cfg.device),
    )
    return [
        (record, None if failure is None else SusxError(failure[0], hint=failure[1], exit_code=failure[2]))
        for record, failure in outcomes
    ]
