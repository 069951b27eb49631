"""Generated network fault cases: every outbound client of ``susx_cli.net.clients.CLIENTS`` against

- a loopback server that trickles its answer (one byte every 0.5 s, for at most ``TRICKLE_LIMIT`` s):
  the command must end with one ``error:`` line within its deadline plus a small margin;
- a name that resolves to a public and a private address (a patched resolver, also in img2dataset's
  spawned workers through a ``sitecustomize`` on PYTHONPATH): refused before connecting.

A guard on ``socket.connect`` refuses (and records) any connection to an address other than loopback,
so no traffic ever leaves the machine. Each case runs through the fault harness: no traceback, the
expected exit code, and no file that was there before is changed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from susx_cli.net import clients, fetch
from tests.faults.harness import Case, run_case
from tests.helpers import invoke
from tests.loopback import Server

pytestmark = pytest.mark.slow

DEADLINE = 2
MARGIN = 8  # lookups, connects and the CLI around one request
WORKER_MARGIN = 60  # img2dataset starts its worker processes (spawned, importing img2dataset) first
PUBLIC, PRIVATE = "93.184.216.34", "10.0.0.1"

# Installed in this process by the ``fake_dns`` fixture, and in spawned workers as ``sitecustomize``.
FAKE_DNS = r"""
import json, os, socket

PLAN = json.loads(os.environ.get("SUSX_TEST_DNS", "{}"))  # host -> one address list per lookup, last repeats
BLOCKED = []
_lookups = {}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def fake_getaddrinfo(host, port, *args, **kwargs):
    answers = PLAN.get(str(host).lower())
    if answers is None:
        return _real_getaddrinfo(host, port, *args, **kwargs)
    n = _lookups[host] = _lookups.get(host, -1) + 1
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port))) for ip in answers[min(n, len(answers) - 1)]]


def guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
        BLOCKED.append(address[0])
        raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
    return _real_connect(self, address)


def install():
    socket.getaddrinfo = fake_getaddrinfo
    socket.socket.connect = guarded_connect
"""


@dataclass(frozen=True)
class NetCase:
    """How one client is driven: a server, the command, the expected message."""

    server: Callable[[], Server]
    args: Callable[[str], tuple]  # the server's base URL (or the multi-address one) -> command arguments
    trickle_message: str
    margin: float = MARGIN


def _laion(knn_url: str, *extra) -> tuple:
    return (
        "curate", "p.json", "-o", "out", "--source", "laion", "--knn-url", knn_url, "--index-name", "idx",
        "-k", "1", "--candidates", "3", "--knn-timeout", str(DEADLINE), "--download-timeout", str(DEADLINE),
        "--download-retries", "0", *extra,
    )  # fmt: skip


def _llm(base: str) -> tuple:
    return (
        "prompts", "-c", "classes.txt", "-o", "out.json", "--llm", "--llm-base-url", f"{base}/v1",
        "--llm-model", "m", "--llm-questions", "generic", "--llm-samples", "1", "--llm-concurrency", "1",
        "--llm-retries", "0", "--llm-timeout", str(DEADLINE),
    )  # fmt: skip


NET_CASES: dict[str, NetCase] = {
    clients.KNN_INDEX_LIST.name: NetCase(
        lambda: Server(trickle=frozenset({"/indices-list"})), _laion, f"did not answer within {DEADLINE} s"
    ),
    clients.KNN_QUERY.name: NetCase(
        lambda: Server(trickle=frozenset({"/knn-service"})), _laion, "did not answer the query"
    ),
    clients.LLM.name: NetCase(
        lambda: Server(trickle=frozenset({"/v1/chat/completions"})), _llm, f"no answer within {DEADLINE} s"
    ),
    clients.CUPL_FILE.name: NetCase(
        Server,
        lambda base: ("prompts", "-c", "classes.txt", "-o", "out.json", "--cupl", f"{base}/trickle"),
        "timed out",
    ),
    clients.IMAGE.name: NetCase(
        lambda: Server(knn_target="/trickle"),
        lambda base: _laion(base, "--allow-private-urls"),
        "no image",
        WORKER_MARGIN,
    ),
}


def test_every_client_has_a_case():
    assert set(NET_CASES) == {c.name for c in clients.CLIENTS}


def _workspace(ws: Path) -> Path:
    ws.mkdir()
    (ws / "classes.txt").write_text("zebra\napple\n")
    invoke("prompts", "-c", ws / "classes.txt", "-o", ws / "p.json")
    return ws


@pytest.fixture(scope="module", autouse=True)
def _imports_loaded(tmp_path_factory):
    """Each command once against a closed port, so the timings below measure the network, not first imports."""
    ws = _workspace(tmp_path_factory.mktemp("warm") / "ws")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for args in (_laion(closed), _llm(closed)):
        run_case(Case("warm-up", args, expect_exit=2), ws)


@pytest.fixture
def workspace(tmp_path) -> Path:
    return _workspace(tmp_path / "ws")


@pytest.fixture
def fake_dns(monkeypatch, tmp_path):
    """``install(plan)``: the resolver answers ``plan`` here and in spawned workers; returns the guard's record."""

    def install(plan: dict[str, list[list[str]]]) -> list[str]:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(FAKE_DNS + "\ninstall()\n")
        monkeypatch.setenv("SUSX_TEST_DNS", json.dumps(plan))
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        )
        namespace: dict = {}
        exec(compile(FAKE_DNS, "fake_dns", "exec"), namespace)
        monkeypatch.setattr(socket, "getaddrinfo", namespace["fake_getaddrinfo"])
        monkeypatch.setattr(socket.socket, "connect", namespace["guarded_connect"])
        return namespace["BLOCKED"]

    return install


def _run(case: Case, ws: Path, limit: float):
    start = time.monotonic()
    outcome = run_case(case, ws)
    took = time.monotonic() - start
    assert outcome.kind == "clear", f"{case.id}: {outcome.kind} ({outcome.detail}); {outcome.stderr[-600:]}"
    assert took < limit, f"{case.id} took {took:.1f} s"
    return outcome


@pytest.mark.parametrize("name", list(NET_CASES))
def test_trickling_server_is_cut_at_the_deadline(name, workspace, monkeypatch):
    if name == clients.IMAGE.name:
        pytest.importorskip("img2dataset")
    monkeypatch.setattr(fetch, "DEFAULT_TIMEOUT", DEADLINE)
    net = NET_CASES[name]
    server = net.server()
    try:
        case = Case(f"trickle-{name}", net.args(server.url), message=net.trickle_message, timeout_s=120)
        _run(case, workspace, DEADLINE + net.margin)
    finally:
        server.close()


@pytest.mark.parametrize("name", list(NET_CASES))
def test_name_with_a_public_and_a_private_address_is_refused(name, workspace, fake_dns):
    net = NET_CASES[name]
    server = net.server()
    mixed = f"http://mixed.test:{server.server_port}"
    plan = {"mixed.test": [[PUBLIC, PRIVATE]]}
    message = "resolves to both public and private addresses"
    if name == clients.KNN_QUERY.name:  # the index list finds the backend; the name changes before the query
        plan["mixed.test"] = [["127.0.0.1"], [PUBLIC, PRIVATE]]
    if name == clients.IMAGE.name:  # the backend is the user's; the candidate URLs it returns are not
        pytest.importorskip("img2dataset")
        server.knn_target, mixed, message = f"{mixed}/img", server.url, "no image"
    blocked = fake_dns(plan)
    try:
        args = net.args(mixed)
        if name == clients.CUPL_FILE.name:
            args = (*args[:-1], f"{mixed}/img")
        if name == clients.IMAGE.name:
            args = _laion(mixed)  # without --allow-private-urls, which lets any address through
        _run(Case(f"mixed-{name}", args, message=message, timeout_s=120), workspace, DEADLINE + net.margin)
    finally:
        server.close()
    assert blocked == [] and server.hits["/img"] == 0  # refused before any connection
    if name == clients.IMAGE.name:  # refused inside the workers, for the address and not the guard
        reasons = {
            json.loads(line)["reason"]
            for log in (workspace / "out").rglob("attempts.jsonl")
            for line in log.read_text().splitlines()
        }
        assert reasons == {"refused: private or loopback address"}
