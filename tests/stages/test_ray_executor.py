"""`--executor ray`: the per-shard work of `embed` and `curate --source sd` as Ray tasks
on a local Ray instance (2 CPU workers, started once for the module), with the outputs of a one-process
(embed) or sharded (curate) run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from susx_cli.adapters import ray_executor
from susx_cli.errors import SusxError
from susx_cli.sharding import Shard
from tests.helpers import invoke
from tests.stages.test_embed_shards import assert_same_features, embed_args, shard_test_images

REPO = Path(__file__).resolve().parents[2]


def _one_line_error(result, *needles: str) -> None:
    text = result.output.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance in this process with 2 CPUs; its workers import this checkout's susx."""
    ray = pytest.importorskip("ray")
    worker_env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in worker_env}
    os.environ.update(worker_env)  # the Ray processes started here inherit this environment
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture()
def images(tmp_path, monkeypatch) -> Path:
    return shard_test_images(tmp_path, monkeypatch)


@pytest.mark.slow
def test_embed_on_ray_equals_one_process(ray_address, images, tmp_path):
    invoke(*embed_args(images, "whole.h5"))
    result = json.loads(
        invoke(*embed_args(images, "out.h5"), "--executor", "ray", "--num-shards", "2", "--json").stdout
    )
    assert result["summary"]["num_shards"] == 2 and [s["shard"] for s in result["summary"]["shards"]] == [
        0,
        1,
    ]
    assert result["summary"]["joined"]["parts"] == 2
    assert not (tmp_path / "out.h5.parts").exists()
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")
    again = json.loads(
        invoke(*embed_args(images, "out.h5"), "--executor", "ray", "--num-shards", "2", "--json").stdout
    )
    assert again["skipped"]
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")


@pytest.mark.slow
def test_embed_through_a_ray_address_defaults_to_one_shard_per_cpu(ray_address, images, tmp_path):
    """A separate driver process joins the module's cluster by address; 2 CPUs, no GPU: 2 shards."""
    invoke(*embed_args(images, "whole.h5"))
    # RAY_AUTH_MODE=token: how a driver joins a cluster with Ray's token authentication (its default for
    # a local instance); the token is the one ray.init saved under ~/.ray.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token"}
    args = [*embed_args(images, "out.h5"), "--executor", "ray", "--ray-address", ray_address, "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "susx_cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["num_shards"] == 2
    # stderr is a pipe, so a log: the tasks' forwarded lines come stamped by the driver, without colour
    forwarded = [line for line in proc.stderr.splitlines() if "(_run_shard pid=" in line]
    assert forwarded and all(re.match(r"\d{4}-\d\d-\d\dT\S+ \(_run_shard pid=", x) for x in forwarded)
    assert "\x1b" not in proc.stderr
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")


def test_unreachable_address_is_a_one_line_error_and_writes_nothing(images, tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke(
        *embed_args(images, "out.h5"), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", expect=2
    )
    _one_line_error(result, f"127.0.0.1:{port}", "no Ray cluster answers")
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "out.h5.parts").exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--executor", "ray", "--num-shards", "2", "--shard-index", "0"], "--shard-index does not go"),
        (["--ray-address", "127.0.0.1:1"], "needs --executor ray"),
        (["--executor", "spark"], "'spark' is not one of"),  # the parser knows the executors
        (["--executor", "ray", "--num-shards", "0", "--ray-address", "127.0.0.1:1"], "at least 1"),
        (["--executor", "ray", "--device", "cuda:1"], "only the one GPU"),
    ],
)
def test_bad_executor_options_are_refused(images, tmp_path, extra, needle):
    _one_line_error(invoke(*embed_args(images, "out.h5"), *extra, expect=2), needle)
    assert not (tmp_path / "out.h5").exists()


def test_missing_ray_names_the_extra(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    _one_line_error(
        invoke(*embed_args(images, "out.h5"), "--executor", "ray", expect=2), "pip install 'susx[ray]'"
    )


def test_a_task_clears_launcher_gpu_variables_and_returns_errors_as_values(monkeypatch):
    """Inside a Ray task the GPU is the one Ray made visible: LOCAL_RANK of the driver's launcher is dropped,
    so `auto` resolves to `cuda` (= that GPU), and a SusxError travels back as plain values."""
    from susx_cli import runtime

    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(runtime, "_cuda_count", lambda: 1)
    assert ray_executor._run_shard(lambda shard: runtime.resolve_device("auto"), Shard(0, 2, "ray")) == (
        "ok",
        "cuda",
    )

    def refuse(shard):
        raise SusxError("bad", hint="fix it", exit_code=3)

    assert ray_executor._run_shard(refuse, Shard(1, 2, "ray")) == ("error", ("bad", "fix it", 3))


def test_ray_address_forms():
    assert ray_executor._host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert ray_executor._host_port("ray://head:10001") == ("head", 10001)
    assert ray_executor._host_port("auto") is None


# ------------------------------------------------------------------------------------- curate --source sd


@pytest.fixture(scope="module")
def sd_setup(tmp_path_factory):
    pytest.importorskip("diffusers")
    from susx_cli.adapters.tiny_sd import build_tiny_pipeline
    from tests.sources.test_sd import _write_prompts

    root = tmp_path_factory.mktemp("ray-sd")
    pipe = build_tiny_pipeline(root / "tiny-sd")
    args = [
        "--source",
        "sd",
        "--sd-model",
        pipe,
        "--size",
        "32",
        "--steps",
        "2",
        "--device",
        "cpu",
        "-k",
        2,
        "-q",
        "--batch-size",
        "1",
    ]
    return {"root": root, "prompts": _write_prompts(root / "prompts.json"), "args": args}


@pytest.mark.slow
def test_curate_sd_on_ray_equals_the_sharded_run(ray_address, sd_setup, monkeypatch):
    from tests.sources.test_sd import _same_images

    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    import torch

    root, prompts, args = sd_setup["root"], sd_setup["prompts"], sd_setup["args"]
    # The Ray workers run on one thread (OMP_NUM_THREADS=1): so must the reference, since CPU kernels reduce
    # in another order on more threads and a pixel can then differ by one grey level.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(2):
            invoke("curate", prompts, "-o", root / "sharded", *args, "--num-shards", "2", "--shard-index", i)
    finally:
        torch.set_num_threads(threads)
    out = root / "on-ray"
    result = json.loads(
        invoke("curate", prompts, "-o", out, *args, "--executor", "ray", "--num-shards", "2", "--json").stdout
    )
    assert result["summary"]["complete"] is True and result["summary"]["images"] == 6
    assert [s["shard"] for s in result["summary"]["shards"]] == [0, 1]
    _same_images(out, root / "sharded")
    marker = json.loads((out / "_SUCCESS.json").read_text())
    assert marker["num_shards"] == 2 and [s["rows"] for s in marker["shards"]] == [3, 3]
    classes = [json.loads((p / "classes.json").read_text()) for p in (out, root / "sharded")]
    assert classes[0]["options"] == classes[1]["options"] and classes[0]["inputs"] == classes[1]["inputs"]
    again = json.loads(
        invoke("curate", prompts, "-o", out, *args, "--executor", "ray", "--num-shards", "2", "--json").stdout
    )
    assert again["skipped"]


def test_curate_on_ray_is_for_the_sd_source_only(tmp_path):
    from tests.sources.test_sd import _write_prompts

    prompts = _write_prompts(tmp_path / "prompts.json")
    (tmp_path / "imgs").mkdir()
    result = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "s",
        "--source",
        "folder",
        "--images",
        tmp_path / "imgs",
        "--executor",
        "ray",
        expect=2,
    )
    _one_line_error(result, "`curate --source sd` only")


@pytest.mark.slow
def test_the_local_instance_listens_on_loopback_only(ray_address):
    """Every socket Ray's processes listen on is a loopback address (the tests' services stay on this machine)."""
    import subprocess

    assert ray_address.startswith("127.0.0.1:"), ray_address

    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss is not available to list listening sockets")
    ray_lines = [
        line for line in out.stdout.splitlines() if any(p in line for p in ("raylet", "gcs_server", "ray::"))
    ]
    assert ray_lines, "no Ray process is listening"
    assert all(("127.0.0.1" in line or "[::1]" in line) for line in ray_lines), "\n".join(ray_lines)
