"""Ray as the cluster engine: one Ray task per shard, each calling a plain stage function (lazy import).

The adapter knows nothing about stages: ``run_shards(call, ...)`` runs ``call(shard)`` for every shard of
``num_shards`` as a Ray task and returns the results in shard order. ``call`` must pickle (a module-level
function or a ``functools.partial`` of one) and write where every node sees it (a shared file system).

Where the tasks run:

- ``address`` given (``--ray-address``, else ``RAY_ADDRESS``): an existing cluster; a ``host:port`` that
  does not answer within ``CONNECT_TIMEOUT_S`` is a one-line error before anything is written.
- no address, and Ray already initialised in this process (a Python caller, the tests): that instance.
- no address otherwise: a local instance started for the run (no dashboard, no usage stats) and shut
  down after it. Ray 2.x binds its gRPC servers to every interface whatever node address it is given;
  its token authentication (on by default since Ray 2.5x) is what keeps other hosts out.

Resources: one GPU per task where the cluster has GPUs (Ray sets ``CUDA_VISIBLE_DEVICES`` to that GPU,
so ``--device auto`` resolves to ``cuda``), else one CPU per task. Each task runs in a fresh worker
process (``max_calls=1``): CUDA state and the launcher variables of one shard never leak into the next.
Tasks run in the driver's working folder, so relative paths (and the provenance that records them) mean
the same as in a local run; on a cluster every node must mount it at the same path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from susx_cli.errors import SusxError, missing_extra
from susx_cli.sharding import Shard

CONNECT_TIMEOUT_S = 10.0
# Launcher variables that name a GPU of the driver's node: meaningless inside a Ray task.
_LAUNCHER_GPU_VARS = ("LOCAL_RANK", "SLURM_LOCALID")


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for Ray's own words (``auto``, ``local``)."""
    bare = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, in one line, a ``host:port`` address that does not accept a TCP connection in ``timeout``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        raise SusxError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc.__class__.__name__}, {timeout:g} s timeout)",
            hint="start it with `ray start --head`, check the address, or drop --ray-address to run a local one",
        ) from None


# Ray's switch between a single-machine instance on loopback ("0") and a cluster node on the network.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected as the module docstring says, for the block."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        # A run's own instance serves only this machine: Ray then binds every service to loopback (it reads
        # this once, when it is first imported) instead of the machine's network address.
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    if not sys.stderr.isatty():  # forwarded worker lines without colour codes in a batch log
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    ray = import_ray()
    if address is None and ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or its own types here
            raise SusxError(
                f"could not join the Ray cluster at {address}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                hint="check the address and that this machine runs the cluster's Ray and Python versions",
            ) from None
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports sent from a run's own instance
        ray.init(address="local", include_dashboard=False, logging_level="WARNING", num_cpus=os.cpu_count())
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_gpus(ray: Any) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def default_shard_count(ray: Any, use_gpus: bool) -> int:
    """One shard per GPU of the cluster, else one per CPU: every task runs at once, none waits."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU" if use_gpus else "CPU", 1)))


def _run_shard(call: Callable[[Shard], Any], shard: Shard, cwd: str | None = None) -> tuple[str, Any]:
    """The task body, in the driver's working folder (relative paths mean the same there):
    ``("ok", result)`` or ``("error", (message, hint, exit code))`` for a SusxError."""
    for var in _LAUNCHER_GPU_VARS:
        os.environ.pop(var, None)
    try:
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError:
                raise SusxError(
                    f"the Ray task on {socket.gethostname()} cannot enter the working folder {cwd}",
                    hint="run from a folder every node mounts at the same path (a shared file system)",
                ) from None
        return "ok", call(shard)
    except SusxError as exc:  # travels as plain values: the driver raises it as its own one-line error
        return "error", (exc.message, exc.hint, exc.exit_code)


def run_shards(
    call: Callable[[Shard], Any],
    num_shards: int | None,
    *,
    address: str | None = None,
    use_gpus: bool | None = None,
) -> list[Any]:
    """``call(Shard(i, n, "ray"))`` for every shard as Ray tasks; results in shard order.

    ``use_gpus`` None: one GPU per task when the cluster has GPUs. A shard's SusxError is raised here
    once every task has ended (the first in shard order), so no task is left writing behind the error.
    """
    if num_shards is not None and num_shards < 1:
        raise SusxError(f"--num-shards must be at least 1, got {num_shards}", hint="e.g. --num-shards 4")
    with connected(address) as ray:
        gpus = cluster_gpus(ray) > 0 if use_gpus is None else use_gpus
        count = num_shards or default_shard_count(ray, gpus)
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_calls=1)(_run_shard)
        cwd = os.getcwd()
        outcomes = ray.get([task.remote(call, Shard(i, count, "ray"), cwd) for i in range(count)])
    errors = [value for status, value in outcomes if status == "error"]
    if errors:
        message, hint, code = errors[0]
        raise SusxError(message, hint=hint, exit_code=code)
    return [value for _, value in outcomes]
