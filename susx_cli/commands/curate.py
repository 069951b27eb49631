"""susx curate: build a support set (image folder + manifest) from prompts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import (
    JsonOpt,
    NumShardsOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    ShardIndexOpt,
    run,
)

SOURCES = ("folder", "sd", "laion", "pool")


def curate(
    prompts_path: Annotated[Path, typer.Argument(help="prompts.json (its class list orders the support set).")],
    output: OutputOpt,
    source: Annotated[str, typer.Option("--source", "-s", help="folder | sd | laion | pool")] = "folder",
    per_class: Annotated[int | None, typer.Option("--per-class", "-k", help="Images per class (sd, laion, pool).")] = None,
    # --- folder: existing images, e.g. k real labelled shots per class
    images: Annotated[Path | None, typer.Option("--images", help="folder: class folders or a CoOp split JSON.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="folder: split of a split file (train | val | test).")] = None,
    image_root: Annotated[Path | None, typer.Option("--image-root", help="folder: root of the split's relative paths.")] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="folder: K random images per class.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed: shot sampling, generation and prompt sampling.")] = 0,
    link: Annotated[bool, typer.Option("--link", help="folder: symlink the images instead of copying them.")] = False,
    # --- sd: text-to-image generation with diffusers (SuS-SD)
    preset: Annotated[str | None, typer.Option("--preset", help="sd: paper (default) | fast | sd15 | sdxl | sd-turbo | sdxl-turbo.")] = None,
    sd_model: Annotated[str | None, typer.Option("--sd-model", help="sd: diffusers model id or local pipeline folder (overrides the preset's).")] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="sd: model revision (branch, tag or commit) of a hub model id.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="sd: denoising steps (paper: 85).")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="sd: classifier-free guidance scale (paper: 9.5; 0 for turbo).")] = None,
    size: Annotated[str | None, typer.Option("--size", help="sd: image size, N or WIDTHxHEIGHT, multiples of 8 (paper: 512).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="sd: default | dpm++ | dpm++-karras | ddim | pndm | euler | euler-a | unipc | lcm | a diffusers class.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="sd, pool: auto (fp16 on a GPU, fp32 on a CPU) | fp32 | fp16 | bf16.")] = "auto",
    device: Annotated[str, typer.Option("--device", help="sd, laion, pool: auto (cuda:LOCAL_RANK under torchrun), cpu, cuda, cuda:1, mps.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="sd: images per pipeline call (does not change the images).")] = 4,
    prompt_mode: Annotated[str, typer.Option("--prompt-mode", help="sd, laion: photo (the class's photo prompt) | cupl (a seeded draw of its CuPL sentences).")] = "photo",
    black_retries: Annotated[int, typer.Option("--black-retries", help="sd: regenerate a black (safety-flagged) image from the next seed this often, then drop it.")] = 2,
    attention_slicing: Annotated[bool, typer.Option("--attention-slicing", help="sd: compute attention in slices (less GPU memory).")] = False,
    vae_slicing: Annotated[bool, typer.Option("--vae-slicing", help="sd: decode the batch one image at a time (less GPU memory).")] = False,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="sd: decode in tiles (large images on small GPUs).")] = False,
    compile_unet: Annotated[bool, typer.Option("--compile", help="sd: torch.compile the denoiser (slow start, faster steps).")] = False,
    cpu_offload: Annotated[bool, typer.Option("--cpu-offload", help="sd: keep idle sub-models in CPU memory (small GPUs; needs accelerate).")] = False,
    # --- laion (SuS-LC: kNN backend or offline caption search, downloads by img2dataset) and pool (local collection)
    laion_mode: Annotated[str, typer.Option("--laion-mode", help="laion: knn (a clip-retrieval backend) | captions (offline search of caption metadata).")] = "knn",
    knn_url: Annotated[str | None, typer.Option("--knn-url", help="laion: URL of a `clip-retrieval back` (default: the public LAION service, offline since 2024).")] = None,
    index_name: Annotated[str | None, typer.Option("--index-name", help="laion: index of the backend to search (default: laion5B-L-14).")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="laion/pool: ranked candidates per class (laion default 5000; pool 4*M+16).")] = None,
    knn_dedup: Annotated[bool, typer.Option("--knn-dedup/--no-knn-dedup", help="laion: let the backend drop near-duplicate results.")] = True,
    knn_safety: Annotated[bool, typer.Option("--knn-safety/--no-knn-safety", help="laion: let the backend drop unsafe results (its safety model).")] = True,
    knn_violence: Annotated[bool, typer.Option("--knn-violence/--no-knn-violence", help="laion: let the backend drop violent results.")] = True,
    knn_aesthetic_weight: Annotated[float, typer.Option("--knn-aesthetic-weight", help="laion: weight of the backend's aesthetic embedding in the query (0 = none).")] = 0.5,
    metadata: Annotated[str | None, typer.Option("--metadata", help="laion captions: parquet files with url and caption columns (a glob, file or folder).")] = None,
    url_col: Annotated[str, typer.Option("--url-col", help="laion captions: URL column of the metadata.")] = "url",
    caption_col: Annotated[str, typer.Option("--caption-col", help="laion captions: caption column of the metadata.")] = "caption",
    synonyms: Annotated[Path | None, typer.Option("--synonyms", help='laion captions: JSON {"class name": ["synonym", ...]} also matched in captions.')] = None,
    max_matches: Annotated[int, typer.Option("--max-matches", help="laion captions: caption matches per class to rank (a hash-ordered sample beyond).")] = 2000,
    duckdb_threads: Annotated[int | None, typer.Option("--duckdb-threads", help="laion captions: DuckDB threads (default: all cores).")] = None,
    duckdb_memory: Annotated[str | None, typer.Option("--duckdb-memory", help="laion captions: DuckDB memory limit, e.g. 8GB (it spills to disk beyond).")] = None,
    clip_model: Annotated[str, typer.Option("--clip-model", help="laion captions/pool: open_clip model that ranks captions / embeds the pool.")] = "ViT-B-32",
    clip_pretrained: Annotated[str, typer.Option("--clip-pretrained", help="laion captions/pool: its weights (tag, checkpoint path, or 'none').")] = "openai",
    image_size: Annotated[int, typer.Option("--image-size", help="laion: resize downloads to this size (img2dataset resizer).")] = 256,
    resize_mode: Annotated[str, typer.Option("--resize-mode", help="laion: keep_ratio | center_crop | border | keep_ratio_largest | no.")] = "keep_ratio",
    download_timeout: Annotated[int, typer.Option("--download-timeout", help="laion: seconds before a download is given up.")] = 10,
    download_retries: Annotated[int, typer.Option("--download-retries", help="laion: retries of a failed download.")] = 2,
    download_processes: Annotated[int, typer.Option("--download-processes", help="laion: img2dataset processes.")] = 1,
    download_threads: Annotated[int, typer.Option("--download-threads", help="laion: img2dataset threads per process.")] = 64,
    distributor: Annotated[str, typer.Option("--distributor", help="laion: img2dataset distributor: multiprocessing | pyspark | ray.")] = "multiprocessing",
    download_format: Annotated[str, typer.Option("--download-format", help="laion: img2dataset output while downloading: files | webdataset.")] = "files",
    pool: Annotated[str | None, typer.Option("--pool", help="pool: image folder, .tar file, folder of .tar files or a tar glob.")] = None,
    pool_features: Annotated[Path | None, typer.Option("--pool-features", help="pool: feature file of the pool, made once and reused (default: one per pool and model under ~/.cache/susx).")] = None,
    pool_search: Annotated[str, typer.Option("--pool-search", help="pool: auto | faiss | matmul.")] = "auto",
    num_shards: NumShardsOpt = None,
    shard_index: ShardIndexOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a support set with one sub-folder per class index and a manifest."""

    def stage():
        from susx_cli.errors import SusxError
        from susx_cli.sharding import resolve_shard
        from susx_cli.stages.curate import curate as curate_stage

        if source not in SOURCES:
            raise SusxError(f"unknown source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
        if per_class is not None and per_class < 1:
            raise SusxError(f"--per-class must be at least 1, got {per_class}", hint="e.g. --per-class 16")
        if source == "folder":
            from susx_cli.sources.folder import FolderSource

            if images is None:
                raise SusxError("--source folder needs --images DIR_OR_SPLIT", hint="point it at class folders or a split JSON")
            src = FolderSource(images, split=split, image_root=image_root, shots=shots, seed=seed, link=link)
        elif source == "sd":
            from susx_cli.sources.sd import SDSource

            src = SDSource(
                per_class, preset=preset, model=sd_model, revision=revision, steps=steps, guidance=guidance,
                size=size, scheduler=scheduler, precision=precision, prompt_mode=prompt_mode, seed=seed,
                batch_size=batch_size, black_retries=black_retries, device=device,
                attention_slicing=attention_slicing, vae_slicing=vae_slicing, vae_tiling=vae_tiling,
                compile=compile_unet, cpu_offload=cpu_offload,
            )
        elif source == "laion":
            from susx_cli.adapters.download import DownloadOptions
            from susx_cli.adapters.retrieval import PUBLIC_INDEX, PUBLIC_KNN_URL, KnnOptions
            from susx_cli.sources.laion import LaionSource

            src = LaionSource(
                per_class, mode=laion_mode, query=prompt_mode, candidates=candidates or 5000,
                knn_url=knn_url or PUBLIC_KNN_URL, index_name=index_name or PUBLIC_INDEX,
                knn=KnnOptions(deduplicate=knn_dedup, use_safety_model=knn_safety, use_violence_detector=knn_violence,
                               aesthetic_weight=knn_aesthetic_weight),
                metadata=metadata, url_col=url_col, caption_col=caption_col, synonyms=synonyms, max_matches=max_matches,
                model=clip_model, pretrained=clip_pretrained, device=device, duckdb_threads=duckdb_threads,
                duckdb_memory=duckdb_memory,
                download=DownloadOptions(
                    timeout=download_timeout, retries=download_retries, processes=download_processes,
                    threads=download_threads, distributor=distributor, output_format=download_format,
                    image_size=image_size, resize_mode=resize_mode,
                ),
            )
        elif source == "pool":
            from susx_cli.sources.pool import PoolSource

            if pool is None:
                raise SusxError("--source pool needs --pool (an image folder or webdataset tars)", hint="e.g. --pool ~/images")
            src = PoolSource(
                pool, per_class, query=prompt_mode, candidates=candidates, features=pool_features, model=clip_model,
                pretrained=clip_pretrained, device=device, precision="fp32" if precision == "auto" else precision,
                search=pool_search,
            )
        else:
            raise SusxError(f"source {source!r} is not available in this version", hint="use --source folder")
        return curate_stage(prompts_path, output, src, shard=resolve_shard(num_shards, shard_index), overwrite=overwrite)

    run(stage, quiet=quiet, as_json=as_json)
