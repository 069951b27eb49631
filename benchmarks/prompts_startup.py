"""Benchmark: wall time of `susx prompts -d imagenet -t openai` (names and templates read from shipped
data) beside what the same command cost when it imported open_clip for them (`import open_clip` alone,
measured in the same way), and `susx --help` as the floor of any command.

Each figure is the median of ``--repeats`` fresh Python processes, run interleaved so that load on a
shared machine hits every variant alike.

    python benchmarks/prompts_startup.py               # 5 repeats
    python benchmarks/prompts_startup.py --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "susx --help": ["-m", "susx_cli", "--help"],
    "susx prompts -d imagenet -t openai": [
        "-m",
        "susx_cli",
        "prompts",
        "-d",
        "imagenet",
        "-t",
        "openai",
        "-o",
        "p.json",
        "-q",
        "--overwrite",
    ],
    "import open_clip (the old path's extra cost)": ["-c", "import open_clip"],
}


def time_once(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, cmd in VARIANTS.items():
                times[name].append(time_once(cmd, Path(tmp)))
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians["susx --help"]
    for name, median in medians.items():
        print(f"{name:48s} median {median:6.2f} s  ({median / floor:4.1f} x --help)  runs {len(times[name])}")
    prompts = medians["susx prompts -d imagenet -t openai"]
    print(f"target under 2 s: {'met' if prompts < 2 else 'missed'} ({prompts:.2f} s)")


if __name__ == "__main__":
    main()
