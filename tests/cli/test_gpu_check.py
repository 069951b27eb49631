"""Benchmarks/gpu_check.sh runs end to end in its CPU mode (tiny sizes) and prints one table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=420
    )


def test_script_parses_and_refuses_unknown_arguments():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    bad = _run("--fast")
    assert bad.returncode == 2 and "unknown argument '--fast'" in bad.stderr


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_prints_one_table():
    result = _run(SUSX_GPU_CHECK_CPU="1")
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    table = out[out.index("=== susx gpu_check: results (cpu) ===") :].splitlines()[2:]
    assert len(table) == 3, table
    sd, calibrate, embed = table
    assert sd.startswith("SD throughput") and "tiny" in sd and "img/s" in sd and "x the loop" in sd
    assert calibrate.startswith("calibrate, ImageNet size") and "configs/s" in calibrate
    assert embed.startswith("embed throughput") and "susx-tiny-vit on cpu" in embed and "img/s" in embed
    assert "failed" not in "\n".join(table)


def test_a_failing_step_is_reported_and_the_rest_still_run(tmp_path: Path):
    # An interpreter that fails every step: the script goes on, says why each failed, and exits 1.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no torch here' >&2\nexit 3\n")
    fake.chmod(0o755)
    result = _run("--dry-run", PYTHON=str(fake))
    assert result.returncode == 1
    table = result.stdout[result.stdout.index("results (cpu)") :].splitlines()[2:]
    assert len(table) == 3
    assert all("failed: exit 3: no torch here" in row for row in table), table
