"""Downloads and kNN queries cannot hang, leave http(s), reach private addresses or buffer
unbounded bodies. Every server is on loopback (tests/loopback.py): the address check is exercised by
trusting only the test server's own host:port and redirecting to a second loopback port."""

from __future__ import annotations

import base64
import json

import pytest

from susx_cli.net import guarded_http as gh
from tests.helpers import invoke
from tests.loopback import BIG, Proxy, Server, elapsed

DEADLINE = 2
SLACK = 8  # generous: the trickle alone would take 5000 s


@pytest.fixture(scope="module")
def srv():
    server, other = Server(), Server()
    server.other = other
    yield server
    server.close()
    other.close()


def _policy(srv, **kw) -> gh.UrlPolicy:
    """Only the test server's own host:port is exempt from the private-address check."""
    return gh.UrlPolicy(
        timeout=kw.pop("timeout", DEADLINE),
        max_bytes=kw.pop("max_bytes", 100_000),
        trusted=frozenset({("127.0.0.1", srv.server_port)}),
        **kw,
    )


@pytest.mark.slow
def test_plain_image_is_fetched(srv):
    got = gh.get(f"{srv.url}/img", _policy(srv))
    assert got.body == srv.image and got.size == len(srv.image)


@pytest.mark.slow
def test_trickle_is_cut_at_the_total_deadline(srv):
    took, error = elapsed(pytest.raises, gh.FetchFailed, gh.get, f"{srv.url}/trickle?unit", _policy(srv))
    assert "timed out" in str(error.value)
    assert DEADLINE - 0.5 <= took < DEADLINE + SLACK
    assert srv.sent["/trickle"] < 10000  # cut long before the announced body


@pytest.mark.slow
def test_redirects_leave_neither_http_nor_public_addresses(srv):
    with pytest.raises(gh.Refused, match="not an http"):
        gh.get(f"{srv.url}/to-ftp", _policy(srv))
    before = srv.other.hits["/img"]
    other = f"{srv.url}/to/{srv.other.server_port}"
    with pytest.raises(gh.Refused, match=r"private or loopback address \(127.0.0.1\)"):
        gh.get(other, _policy(srv))
    assert srv.other.hits["/img"] == before  # refused before connecting
    # the same redirect is followed when private addresses are allowed
    assert gh.get(other, _policy(srv, allow_private=True)).body == srv.other.image
    # and an untrusted loopback URL is refused from the start
    with pytest.raises(gh.Refused, match="private"):
        gh.get(f"{srv.other.url}/img", gh.UrlPolicy(timeout=DEADLINE, max_bytes=100_000))
    assert srv.other.hits["/img"] == before + 1


@pytest.mark.slow
def test_body_over_the_cap_is_refused_while_streaming(srv):
    with pytest.raises(gh.Refused, match="larger than 100000 bytes"):
        gh.get(f"{srv.url}/big", _policy(srv))  # declared: refused before reading
    with pytest.raises(gh.Refused, match="larger than 100000 bytes"):
        gh.get(f"{srv.url}/big-stream", _policy(srv))  # undeclared: reading stops past the cap
    blocks = []
    with pytest.raises(gh.Refused):
        gh.get(f"{srv.url}/big-stream", _policy(srv), on_block=blocks.append)
    assert sum(map(len, blocks)) <= 100_000 < BIG  # nothing past the cap was handed on


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "192.168.0.1",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_non_public_addresses(addr):
    import ipaddress

    assert not gh.is_public(ipaddress.ip_address(addr))
    assert gh.is_public(ipaddress.ip_address("93.184.216.34"))


@pytest.mark.slow
def test_every_address_of_a_name_is_checked_before_connecting(srv, monkeypatch):
    """A name with a public and a private address is refused, trusted or not, and nothing is connected."""
    import socket

    def resolve(host, port, *args, **kwargs):
        addresses = ["93.184.216.34", "10.0.0.1"] if host == "mixed.test" else ["127.0.0.1"]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in addresses]

    connected = []
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(gh, "_connect_checked", lambda addresses, timeout: connected.append(addresses))
    url = f"http://mixed.test:{srv.server_port}/img"
    with pytest.raises(gh.Refused, match=r"private or loopback address \(10.0.0.1\)"):
        gh.get(url, gh.UrlPolicy(timeout=DEADLINE, max_bytes=100))
    trusted = gh.UrlPolicy(
        timeout=DEADLINE, max_bytes=100, trusted=frozenset({("mixed.test", srv.server_port)})
    )
    with pytest.raises(gh.Refused, match=r"both public and private addresses \(93.184.216.34, 10.0.0.1\)"):
        gh.get(url, trusted)
    assert connected == []


@pytest.mark.slow
def test_post_json_is_cut_at_the_total_deadline():
    server = Server(trickle=frozenset({"/slow"}))
    try:
        took, error = elapsed(
            pytest.raises, gh.TimedOut, gh.post_json, f"{server.url}/slow", {"q": 1}, _policy(server)
        )
        assert DEADLINE - 0.5 <= took < DEADLINE + SLACK and server.hits["/slow"] == 1
        answer = gh.post_json(f"{server.url}/knn-service", {"text": "x", "num_images": 2}, _policy(server))
        assert answer.status == 200 and len(answer.json()) == 2
    finally:
        server.close()


# ------------------------------------------------------------------ proxies


@pytest.fixture
def proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    server = Proxy()
    yield server
    server.close()


@pytest.mark.slow
def test_http_proxy_carries_the_request_and_the_target_is_checked(srv, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://me:s%40cret@"))
    got = gh.get(f"{srv.url}/img?via-proxy", _policy(srv))
    assert got.body == srv.image
    assert proxy.seen == [f"GET {srv.url}/img?via-proxy HTTP/1.1"]
    assert proxy.auth == ["Basic " + base64.b64encode(b"me:s@cret").decode()]
    # the loopback proxy itself is fine; an untrusted loopback target is refused before the proxy is asked
    with pytest.raises(gh.Refused, match="private or loopback"):
        gh.get(f"{srv.other.url}/img", gh.UrlPolicy(timeout=DEADLINE, max_bytes=100_000))
    assert len(proxy.seen) == 1
    # a trickle through the proxy is still cut at the deadline
    took, _ = elapsed(pytest.raises, gh.TimedOut, gh.get, f"{srv.url}/trickle?proxy", _policy(srv))
    assert took < DEADLINE + SLACK and proxy.seen[-1].startswith("GET ")


@pytest.mark.slow
def test_lowercase_proxy_and_no_proxy_bypass(srv, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", proxy.url)
    gh.get(f"{srv.url}/img?lower", _policy(srv))
    assert proxy.seen == [f"GET {srv.url}/img?lower HTTP/1.1"]
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert gh.get(f"{srv.url}/img?direct", _policy(srv)).body == srv.image
    assert len(proxy.seen) == 1  # went direct


@pytest.mark.slow
def test_https_through_a_connect_tunnel(proxy, monkeypatch, tmp_path):
    """TLS to a loopback server whose self-signed certificate is trusted through SSL_CERT_FILE."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key, "-out", cert,
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = Server(tls=tls)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        got = gh.get(f"{server.url}/img", _policy(server))
        assert got.body == server.image
        assert len(proxy.seen) == 1 and proxy.seen[0].startswith(f"CONNECT 127.0.0.1:{server.server_port} ")
    finally:
        server.close()


# ------------------------------------------------------------------ through img2dataset and the CLI


@pytest.mark.slow
def test_img2dataset_workers_use_the_guard(srv, tmp_path):
    """The refusals happen inside img2dataset's spawned worker, for every candidate of a round."""
    pytest.importorskip("img2dataset")
    from susx_cli.adapters import download as dl

    opts = dl.DownloadOptions(
        timeout=DEADLINE,
        retries=1,
        threads=8,
        max_bytes=100_000,
        trusted=frozenset({("127.0.0.1", srv.server_port)}),
    )
    urls = {
        "img": "/img?w",
        "trickle": "/trickle?w",
        "ftp": "/to-ftp?w",
        "other": f"/to/{srv.other.server_port}?w",
        "big": "/big-stream?w",
    }
    rows = [{"cid": name, "url": srv.url + path, "caption": ""} for name, path in urls.items()]
    took, (_, results) = elapsed(dl.fetch_round, tmp_path / "round", rows, opts)
    assert results["img"].data == srv.image
    errors = {name: results[name].error for name in urls if name != "img"}
    assert "timed out" in errors["trickle"]
    assert errors["ftp"].startswith("refused: not an http(s) URL")
    assert errors["other"].startswith("refused: private or loopback address")
    assert errors["big"] == "refused: larger than 100000 bytes"
    assert took < DEADLINE + 60  # one deadline for the trickle (no retry past it) plus the workers' start


def _prompts(tmp_path):
    invoke("prompts", "-c", _classes(tmp_path), "-o", tmp_path / "p.json")
    return tmp_path / "p.json"


def _classes(tmp_path):
    (tmp_path / "classes.txt").write_text("zebra\napple\n")
    return tmp_path / "classes.txt"


def _curate(prompts, out, knn, *extra, expect=0):
    return invoke(
        "curate",
        prompts,
        "-o",
        out,
        "--source",
        "laion",
        "--knn-url",
        knn.url,
        "--index-name",
        "idx",
        "-k",
        1,
        "--candidates",
        3,
        "--download-timeout",
        DEADLINE,
        "--download-retries",
        0,
        *extra,
        expect=expect,
    )


@pytest.mark.slow
def test_curate_counts_trickles_as_timeouts_and_refuses_loopback_by_default(tmp_path):
    pytest.importorskip("img2dataset")
    knn = Server(knn_target="/trickle")
    try:
        prompts = _prompts(tmp_path)
        took, r = elapsed(_curate, prompts, tmp_path / "a", knn, "--allow-private-urls", "--json", expect=2)
        assert "no image" in r.stderr and took < DEADLINE + 60
        attempts = [
            json.loads(line)
            for line in next((tmp_path / "a").rglob("attempts.jsonl")).read_text().splitlines()
        ]
        assert attempts and {a["reason"] for a in attempts} == {"timeout"}
        # without --allow-private-urls the loopback candidates are refused and never asked for
        knn.knn_target, hits = "/img", knn.hits["/img"]
        _curate(prompts, tmp_path / "b", knn, expect=2)
        attempts = [
            json.loads(line)
            for line in next((tmp_path / "b").rglob("attempts.jsonl")).read_text().splitlines()
        ]
        assert {a["reason"] for a in attempts} == {"refused: private or loopback address"}
        assert knn.hits["/img"] == hits
        # with it, the same candidates are kept
        _curate(prompts, tmp_path / "c", knn, "--allow-private-urls")
        assert len(list((tmp_path / "c").rglob("*.jpg"))) == 2
    finally:
        knn.close()


@pytest.mark.slow
def test_knn_backend_that_never_answers_fails_within_the_timeout(tmp_path):
    knn = Server(knn_target="hang")
    try:
        took, r = elapsed(_curate, _prompts(tmp_path), tmp_path / "a", knn, "--knn-timeout", 1, expect=2)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "did not answer the query" in lines[0] and "within 1 s" in lines[0]
        assert took < 1 + SLACK
    finally:
        knn.close()
    bad = invoke(
        "curate",
        tmp_path / "p.json",
        "-o",
        tmp_path / "b",
        "--source",
        "laion",
        "-k",
        1,
        "--knn-timeout",
        0,
        expect=2,
    )
    assert "--knn-timeout" in bad.stderr
