"""Benchmark: the offline caption search (DuckDB over parquet) against a plain pandas filter of the same files.

Both find, for the 100 CIFAR-100 class names, every caption that mentions a class (case-insensitive,
word boundaries, optional plural), keep http(s) URLs only and drop repeated (class, URL) pairs. The
pandas side does it the plain way: read the files' url and caption columns into one DataFrame, one
combined regular expression for all classes (``str.contains`` to filter, ``str.findall`` to attribute),
explode, map words to classes. Both must find the same candidates (checked). Only the matching is
measured; the CLIP ranking of the matches that follows is the same for both.

The metadata is generated once (LAION-like: url, caption, and two columns that are not read) as
parquet files of 1M rows each under ``--data`` and reused; a size of N million rows uses the first N
files. Every measurement runs in its own Python subprocess, so its peak memory (ru_maxrss) belongs to
that run alone (it includes the interpreter and the imported libraries, about 100-200 MB).

    python benchmarks/caption_search.py                       # 1M, 4M and 16M rows (about 4-5 min on 2 cores)
    python benchmarks/caption_search.py --sizes 1 4           # quicker
    python benchmarks/caption_search.py --skip-pandas-above 4 # pandas only where it fits in memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASSES = (
    "apple, aquarium fish, baby, bear, beaver, bed, bee, beetle, bicycle, bottle, bowl, boy, bridge, bus, "
    "butterfly, camel, can, castle, caterpillar, cattle, chair, chimpanzee, clock, cloud, cockroach, couch, "
    "crab, crocodile, cup, dinosaur, dolphin, elephant, flatfish, forest, fox, girl, hamster, house, kangaroo, "
    "keyboard, lamp, lawn mower, leopard, lion, lizard, lobster, man, maple tree, motorcycle, mountain, mouse, "
    "mushroom, oak tree, orange, orchid, otter, palm tree, pear, pickup truck, pine tree, plain, plate, poppy, "
    "porcupine, possum, rabbit, raccoon, ray, road, rocket, rose, sea, seal, shark, shrew, skunk, skyscraper, "
    "snail, snake, spider, squirrel, streetcar, sunflower, sweet pepper, table, tank, telephone, television, "
    "tiger, tractor, train, trout, tulip, turtle, wardrobe, whale, willow tree, wolf, woman, worm"
).split(", ")
ROWS_PER_FILE = 1_000_000


# ----------------------------------------------------------------------------------------- data


def filler_words() -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "si", "vo", "pe", "du", "go", "ba"]
    return [a + b + c for a in syllables for b in syllables for c in syllables][:1500]


def generate(data: Path, files: int) -> list[Path]:
    """``files`` parquet files of 1M LAION-like rows each (made once, then reused)."""
    import duckdb

    data.mkdir(parents=True, exist_ok=True)
    filler = filler_words()
    named = CLASSES + [c.title() for c in CLASSES[:50]] + [c + "s" for c in CLASSES[50:]]

    def literal(words: list[str]) -> str:
        return "[" + ", ".join("'" + w.replace("'", "''") + "'" for w in words) + "]"

    # 7 words per caption; each word names a class with probability 1/64 (about 10% of captions match)
    picks = ", ".join(
        f"CASE WHEN hash(i * 31 + {k + 100}) % 64 = 0 THEN n[1 + (hash(i * 13 + {k}) % {len(named)})::INT] "
        f"ELSE f[1 + (hash(i * 13 + {k}) % {len(filler)})::INT] END"
        for k in range(7)
    )
    paths = []
    con = duckdb.connect()
    for f in range(files):
        path = data / f"part-{f:05d}.parquet"
        paths.append(path)
        if path.exists():
            continue
        base = f * ROWS_PER_FILE
        tmp = path.with_suffix(".tmp")
        con.execute(
            f"""
            COPY (
                SELECT CASE WHEN i % 50 = 0 THEN 'ftp://img.example.org/' ELSE 'https://img.example.org/' END
                           || (CASE WHEN i % 50 = 1 THEN i - 1 ELSE i END) || '.jpg' AS url,
                       concat_ws(' ', {picks}) AS caption,
                       (hash(i) % 1000) / 1000.0 AS similarity,
                       'UNLIKELY' AS NSFW
                FROM (SELECT {base} + range AS i, {literal(filler)} AS f, {literal(named)} AS n FROM range({ROWS_PER_FILE}))
            ) TO '{tmp}' (FORMAT parquet, ROW_GROUP_SIZE 100000)
            """
        )
        os.replace(tmp, path)
    return paths


# ----------------------------------------------------------------------------------------- the two searches


def run_duckdb(files: list[str], threads: int, cap: int = 10**12):
    from susx_cli.sources import laion_captions as captions

    terms = captions.class_terms(CLASSES)
    found = captions.match_captions(files, terms, max_per_class=cap, threads=threads, progress=False)
    return found.table.select(["cls", "url"])


def run_pandas(files: list[str]):
    """The plain way: load the columns, filter with one regular expression, attribute the matched words.

    pandas' pyarrow string dtype runs ``str.contains`` with RE2 in C++ (Python's ``re`` is about 10 times
    slower on this pattern); ``str.findall`` on the matching rows only is Python's ``re``.
    """
    import re

    import pandas as pd

    from susx_cli.sources import laion_captions as captions

    terms = captions.class_terms(CLASSES)
    term_to_class: dict[str, list[int]] = {}
    for term, ci in terms:
        term_to_class.setdefault(term, []).append(ci)
    regex = captions.build_regex([t for t, _ in terms])
    df = pd.concat(
        [pd.read_parquet(f, columns=["url", "caption"], dtype_backend="pyarrow") for f in files],
        ignore_index=True,
    )
    keep = df["url"].str.contains(r"^https?://[^/\s]", case=False, regex=True) & df["caption"].notna()
    keep &= df["caption"].str.contains(regex, case=False, regex=True)
    df = df[keep.fillna(False)]
    words = df["caption"].astype(object).str.findall(re.compile(regex, re.IGNORECASE)).explode().dropna()
    words = words.str.lower().str.replace(r"[\s_\-]+", " ", regex=True)
    hits = pd.DataFrame(
        {"url": df["url"].astype(object).loc[words.index].to_numpy(), "term": words.to_numpy()}
    )
    hits["cls"] = hits["term"].map(term_to_class)
    return hits.explode("cls").drop_duplicates(["cls", "url"])[["cls", "url"]]


def worker(method: str, files: list[str], threads: int, cap: int) -> None:
    import hashlib

    start = time.perf_counter()
    if method == "pandas":
        found = run_pandas(files)
    else:
        found = run_duckdb(files, threads, cap if method == "duckdb-capped" else 10**12)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check below adds its own
    frame = found if method == "pandas" else found.to_pandas()
    frame = frame.astype({"cls": "int64", "url": object}).sort_values(["cls", "url"])
    digest = hashlib.sha256(
        "\n".join(f"{c}\t{u}" for c, u in zip(frame["cls"], frame["url"], strict=True)).encode()
    ).hexdigest()
    print(json.dumps({"seconds": elapsed, "candidates": len(frame), "digest": digest, "peak_mb": peak_mb}))


def measure(method: str, files: list[Path], threads: int, cap: int) -> dict:
    env = dict(os.environ)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--threads",
        str(threads),
        "--cap",
        str(cap),
        "--files",
        *map(str, files),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16], help="millions of rows")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "susx-caption-bench")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="DuckDB threads")
    parser.add_argument(
        "--cap",
        type=int,
        default=2000,
        help="matches per class of the capped run (the toolkit's --max-matches default)",
    )
    parser.add_argument(
        "--skip-pandas-above", type=int, default=None, help="no pandas run above this many millions"
    )
    parser.add_argument("--worker", choices=["duckdb", "duckdb-capped", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.files, args.threads, args.cap)
        return
    t0 = time.perf_counter()
    paths = generate(args.data, max(args.sizes))
    print(
        f"metadata: {len(paths)} parquet file(s) of {ROWS_PER_FILE:,} rows under {args.data} "
        f"({time.perf_counter() - t0:.0f} s to make or find); {len(CLASSES)} classes; DuckDB threads {args.threads}"
    )
    header = (
        f"{'rows':>6} | {'duckdb cand/s':>13} {'s':>6} {'peak MB':>8} | {'pandas cand/s':>13} {'s':>6} {'peak MB':>8} | "
        f"{'speed-up':>8} {'mem ratio':>9} | same | {'capped s':>8} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        files = paths[:size]
        d = measure("duckdb", files, args.threads, args.cap)
        skip = args.skip_pandas_above is not None and size > args.skip_pandas_above
        p = {"error": ["skipped"]} if skip else measure("pandas", files, args.threads, args.cap)
        c = measure("duckdb-capped", files, args.threads, args.cap)

        def cols(r: dict) -> str:
            if "error" in r:
                return f"{r['error'][0][:30]:>30}"
            return f"{r['candidates'] / r['seconds']:>13,.0f} {r['seconds']:>6.1f} {r['peak_mb']:>8.0f}"

        if "error" in d or "error" in p:
            ratio, mem, same = "-", "-", "-"
        else:
            ratio = f"{p['seconds'] / d['seconds']:.1f}x"
            mem = f"{p['peak_mb'] / d['peak_mb']:.1f}x"
            same = "yes" if d["digest"] == p["digest"] else "NO"
        capped = "error" if "error" in c else f"{c['seconds']:>8.1f} {c['peak_mb']:>8.0f}"
        print(f"{size:>5}M | {cols(d)} | {cols(p)} | {ratio:>8} {mem:>9} | {same:>4} | {capped}")
    print(
        f"capped: the same search keeping at most {args.cap} matches per class, as `curate` does by default"
    )


if __name__ == "__main__":
    main()
