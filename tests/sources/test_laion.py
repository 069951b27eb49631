"""`curate --source laion` against a real `clip-retrieval back` and a loopback image server.

Everything runs on 127.0.0.1: a ThreadingHTTPServer serves good images and the bad cases (404, an HTML
page named .jpg, a truncated JPEG, a URL slower than the timeout, an X-Robots-Tag opt-out); a real
`clip-retrieval back` serves a faiss index the tests build from those URLs with the random-weight tiny
model, loaded from a local open_clip checkpoint; downloads go through img2dataset.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import PromptEntry, Prompts, write_prompts
from tests.helpers import class_color, invoke

pytest.importorskip("img2dataset")
pytest.importorskip("duckdb")

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "susx_cli" / "data" / "susx-tiny-vit.json"
# Index order differs from alphabetical order: labels must follow prompts.json, not a sorted listing.
CLASSES = ["zebra", "golden retriever", "apple"]
CUPL = {
    "zebra": ["A zebra has black and white stripes.", "A striped horse of the savanna."],
    "golden retriever": ["A friendly dog with a golden coat.", "A retriever fetching a ball."],
    "apple": ["A round red fruit.", "An apple on a tree."],
}
N_GOOD = 12
BAD = ["404/a.jpg", "html/b.jpg", "trunc/c.jpg", "slow/d.jpg", "optout/e.jpg", "dup/0.jpg"]
# The image server is on loopback, which downloads refuse unless --allow-private-urls.
TIMEOUT_ARGS = [
    "--download-timeout",
    "1",
    "--download-retries",
    "0",
    "--download-threads",
    "16",
    "--allow-private-urls",
]


def _jpeg(seed: int, color) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


GOOD = {n: _jpeg(n, class_color(n % 3)) for n in range(N_GOOD)}


class _Handler(http.server.BaseHTTPRequestHandler):
    counts: Counter = Counter()
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.lstrip("/")
        with self.lock:
            self.counts[path] += 1
        kind, _, name = path.split("?")[0].partition("/")
        if kind == "img" and name.removesuffix(".jpg").isdigit() and int(name.removesuffix(".jpg")) in GOOD:
            self._send(200, GOOD[int(name.removesuffix(".jpg"))])
        elif kind == "dup":
            self._send(200, GOOD[0])
        elif kind == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Not found, but 200</body></html>", "image/jpeg")
        elif kind == "trunc":
            self._send(200, GOOD[1][: len(GOOD[1]) * 2 // 3])
        elif kind == "slow":
            time.sleep(3)
            self._send(200, GOOD[2])
        elif kind == "optout":
            self._send(200, GOOD[3], headers={"X-Robots-Tag": "noai"})
        else:
            self._send(404, b"not found", "text/plain")


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops img2dataset's parallel connections for a second
    daemon_threads = True


@pytest.fixture(scope="module")
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler.counts
    srv.shutdown()
    srv.server_close()


def _urls(base: str) -> list[str]:
    return [f"{base}/img/{n}.jpg" for n in range(N_GOOD)] + [f"{base}/{b}" for b in BAD]


def _write_prompts(path: Path, classes=CLASSES, cupl: bool = True) -> Path:
    entries = [
        PromptEntry(i, n, n, f"A photo of a {n}.", [f"itap of a {n}."], list(CUPL.get(n, [])) if cupl else [])
        for i, n in enumerate(classes)
    ]
    write_prompts(path, Prompts(entries, "template", None, {}, common.provenance({}, [])))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHER = (
    "import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); "
    "from clip_retrieval.cli import main; sys.argv[0] = 'clip-retrieval'; main()"
)


@pytest.fixture(scope="module")
def backend(server, tmp_path_factory):
    """A real `clip-retrieval back` over a faiss index of the server's URLs, embedded with a local checkpoint.

    clip-retrieval loads `open_clip:<arch>/<checkpoint path>`; the tiny architecture is susx's own config,
    so the launcher registers it with open_clip before handing over to clip-retrieval's CLI entry point.
    The flags keep it offline: no mclip, no jit, no aesthetic embeddings, no safety model.
    """
    pytest.importorskip("clip_retrieval")
    import faiss
    import pandas as pd
    import torch
    from PIL import Image

    from susx_cli.adapters.openclip import load_model

    base, _ = server
    root = tmp_path_factory.mktemp("knn")
    model = load_model("susx-tiny-vit", "none", device="cpu")
    ckpt = root / "tiny-vit.pt"
    torch.save(model.model.state_dict(), ckpt)
    loaded = load_model("susx-tiny-vit", str(ckpt), device="cpu")
    urls = _urls(base) + ["file:///etc/hostname", "ftp://127.0.0.1/x.jpg"]
    rng = np.random.default_rng(7)
    images = [Image.open(io.BytesIO(GOOD[n])).convert("RGB") for n in range(N_GOOD)]
    images += [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in urls[N_GOOD:]]
    with torch.no_grad():
        x = torch.stack([loaded.preprocess(im) for im in images])
        feats = (
            torch.nn.functional.normalize(loaded.model.encode_image(x).float(), dim=-1)
            .numpy()
            .astype("float32")
        )
    index_dir = root / "index"
    (index_dir / "metadata").mkdir(parents=True)
    index = faiss.IndexFlatIP(feats.shape[1])
    index.add(feats)
    faiss.write_index(index, str(index_dir / "image.index"))
    captions = [f"picture number {i}" for i in range(len(urls))]
    pd.DataFrame({"url": urls, "caption": captions}).to_parquet(index_dir / "metadata" / "0000.parquet")
    (root / "indices.json").write_text(json.dumps({"test": str(index_dir)}))
    port = _free_port()
    log = open(root / "back.log", "wb")  # noqa: SIM115
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            str(TINY_CONFIG),
            "back",
            "--indices_paths",
            str(root / "indices.json"),
            "--port",
            str(port),
            "--clip_model",
            f"open_clip:susx-tiny-vit/{ckpt}",
            "--enable_mclip_option",
            "False",
            "--use_jit",
            "False",
            "--provide_aesthetic_embeddings",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env=env,
    )
    import requests

    url = f"http://127.0.0.1:{port}/knn-service"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"clip-retrieval back exited: {(root / 'back.log').read_text()[-3000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/indices-list", timeout=2).json() == ["test"]:
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.time() > deadline:
                pytest.fail(f"clip-retrieval back did not start: {(root / 'back.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "urls": urls, "feats": feats, "loaded": loaded, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _candidates(out: Path, ci: int) -> list[dict]:
    from susx_cli.artifacts.shard_state import read_candidates

    return read_candidates(out / "parts" / "laion-00000-of-00001" / "candidates" / f"c{ci:05d}.parquet")


def _expected_kept(cands: list[dict], base: str, m: int) -> list[int]:
    """Ranks of the first m valid, distinct images in rank order (by what the server returns)."""
    kept, seen = [], set()
    for c in cands:
        url = c["url"]
        if url.startswith(f"{base}/img/"):
            ident = int(url.rsplit("/", 1)[1].removesuffix(".jpg"))
        elif url.startswith(f"{base}/dup/"):
            ident = 0
        else:
            continue
        if ident in seen:
            continue
        seen.add(ident)
        kept.append(int(c["rank"]))
        if len(kept) == m:
            break
    return kept


def _knn_args(backend, *extra):
    return [
        "--source",
        "laion",
        "--knn-url",
        backend["url"],
        "--index-name",
        "test",
        "--no-knn-dedup",
        *TIMEOUT_ARGS,
        *extra,
    ]


# ----------------------------------------------------------------------------------------- kNN backend


@pytest.mark.slow
def test_knn_end_to_end(backend, server, tmp_path):
    base, counts = server
    prompts = _write_prompts(tmp_path / "prompts.json")
    out = tmp_path / "support"
    m = N_GOOD - 1  # every candidate is tried: the 12th distinct valid image is a surplus
    result = invoke("curate", prompts, "-o", out, "-k", m, "--json", *_knn_args(backend))
    summary = json.loads(result.stdout)["summary"]
    rows = _manifest(out)
    for ci in range(len(CLASSES)):
        cands = _candidates(out, ci)
        # a real text-to-image search with our model: the backend's scores are ours, best first
        q = backend["loaded"].tokenizer([f"A photo of a {CLASSES[ci]}."])
        import torch

        with torch.no_grad():
            t = torch.nn.functional.normalize(backend["loaded"].model.encode_text(q).float(), dim=-1).numpy()[
                0
            ]
        ours = {u: float(f @ t) for u, f in zip(backend["urls"], backend["feats"], strict=True)}
        assert len(cands) == len(backend["urls"])
        assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
        assert all(abs(c["score"] - ours[c["url"]]) < 1e-4 for c in cands)
        mine = [r for r in rows if r["class_index"] == ci]
        assert [r["rank"] for r in mine] == _expected_kept(cands, base, m)
        assert all(r["class_name"] == CLASSES[ci] and r["path"].startswith(f"{ci:04d}_") for r in mine)
    assert len(rows) == m * len(CLASSES)
    for r in rows:
        assert (
            r["source"] == "laion"
            and r["query"] == f"A photo of a {r['class_name']}."
            and r["index"] == "test"
        )
        assert r["url"].startswith(f"{base}/img/") or r["url"].startswith(f"{base}/dup/")
        assert r["caption"].startswith("picture number") and isinstance(r["score"], float)
        assert r["width"] <= 256 and r["height"] <= 256
    # every bad case was tried and refused, none fetched outside http(s), each URL fetched once for 3 classes
    reasons = summary["failure_reasons"]
    assert any("HTTP 404" in k for k in reasons)
    assert any("timeout" in k for k in reasons)
    assert any("X-Robots-Tag" in k for k in reasons)
    assert any("HTML" in k for k in reasons)
    assert any("truncated" in k for k in reasons)
    assert any("not an http(s) URL" in k for k in reasons)
    assert all(
        counts[u.split("/", 3)[3]] == 1 for u in backend["urls"] if u.startswith(base) and "slow" not in u
    )
    assert summary["cross_class_duplicates"] == m  # the same index answers every class: reported
    # idempotent: a second run does nothing
    again = invoke("curate", prompts, "-o", out, "-k", m, *_knn_args(backend))
    assert "up to date" in again.output


@pytest.mark.slow
def test_knn_resume_downloads_nothing_twice(backend, server, tmp_path, monkeypatch):
    from susx_cli.artifacts import support

    base, counts = server
    prompts = _write_prompts(tmp_path / "prompts.json", classes=["zebra", "apple"])
    out = tmp_path / "support"
    real_add = support.SupportWriter.add
    calls = {"n": 0}

    def flaky_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    before = Counter(counts)
    monkeypatch.setattr(support.SupportWriter, "add", flaky_add)
    invoke("curate", prompts, "-o", out, "-k", 4, *_knn_args(backend), expect=130)
    monkeypatch.setattr(support.SupportWriter, "add", real_add)
    first = Counter(counts)
    first.subtract(before)
    assert not (out / "manifest.jsonl").exists()
    result = invoke("curate", prompts, "-o", out, "-k", 4, *_knn_args(backend))
    second = Counter(counts)
    second.subtract(before)
    second.subtract(first)
    fetched_first = {p for p, n in first.items() if n > 0}
    assert fetched_first, "the interrupted run downloaded something"
    assert not [p for p in fetched_first if second[p] > 0], "a URL was downloaded again on resume"
    assert "finishing the download round" in result.output
    rows = _manifest(out)
    assert Counter(r["class_index"] for r in rows) == {0: 4, 1: 4}
    for ci in (0, 1):
        assert [r["rank"] for r in rows if r["class_index"] == ci] == _expected_kept(
            _candidates(out, ci), base, 4
        )


@pytest.mark.slow
def test_knn_shards(backend, server, tmp_path):
    """Shards split the classes; each keeps its own candidates and download state; the set merges when both are done."""
    from susx_cli.artifacts.shard_state import read_candidates

    base, _ = server
    prompts = _write_prompts(tmp_path / "prompts.json", classes=["zebra", "apple"])
    out = tmp_path / "support"
    first = invoke(
        "curate", prompts, "-o", out, "-k", 3, "--num-shards", 2, "--shard-index", 1, *_knn_args(backend)
    )
    assert "done; the set completes when every shard has finished" in first.output
    assert not (out / "manifest.jsonl").exists()
    invoke("curate", prompts, "-o", out, "-k", 3, "--num-shards", 2, "--shard-index", 0, *_knn_args(backend))
    rows = _manifest(out)
    for ci in (0, 1):
        cands = read_candidates(
            out / "parts" / f"laion-{ci:05d}-of-00002" / "candidates" / f"c{ci:05d}.parquet"
        )
        assert [r["rank"] for r in rows if r["class_index"] == ci] == _expected_kept(cands, base, 3)


@pytest.mark.slow
def test_knn_cupl_queries_interleave(backend, tmp_path):
    """Every CuPL sentence is a query; their results are interleaved (queried again when they overlap)."""
    from susx_cli.artifacts.shard_state import ShardState, read_candidates
    from susx_cli.sources.laion import LaionSource

    src = LaionSource(
        1, query="cupl", candidates=8, knn_url=backend["url"], index_name="test", knn_dedup=False
    )
    (tmp_path / "candidates").mkdir()
    src._query_knn(ShardState(tmp_path), [0], {0: CUPL["zebra"]}, ["zebra"])
    cands = read_candidates(tmp_path / "candidates" / "c00000.parquet")
    assert len(cands) == 8 and len({c["url"] for c in cands}) == 8
    assert cands[0]["query"] == CUPL["zebra"][0]
    assert {c["query"] for c in cands} == set(CUPL["zebra"])  # both sentences contribute


def test_interleave_round_robin():
    from susx_cli.sources.ranked import interleave

    a = [{"url": u, "query": "a"} for u in ["1", "2", "3", "4"]]
    b = [{"url": u, "query": "b"} for u in ["2", "5", "6"]]
    got = interleave([a, b], limit=5)
    assert [g["url"] for g in got] == ["1", "2", "5", "3", "6"]
    assert [g["query"] for g in got] == ["a", "b", "b", "a", "b"]


@pytest.mark.slow
def test_knn_dedup_option_reaches_backend(backend):
    from susx_cli.adapters.retrieval import KnnBackend, KnnOptions

    off = KnnBackend(backend["url"], "test", KnnOptions(deduplicate=False)).query("a photo of a zebra", 50)
    on = KnnBackend(backend["url"], "test", KnnOptions(deduplicate=True)).query("a photo of a zebra", 50)
    assert len(off) == len(backend["urls"])
    assert (
        0 < len(on) < len(off)
    )  # random-weight image embeddings are near-identical: the backend merges them


@pytest.mark.slow
def test_knn_bad_backend_errors(backend, server, tmp_path):
    base, _ = server
    prompts = _write_prompts(tmp_path / "prompts.json", classes=["zebra"])
    args = ["--source", "laion", "-k", 1]
    r = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "a",
        *args,
        "--knn-url",
        backend["url"],
        "--index-name",
        "laion5B",
        expect=2,
    )
    assert "has no index 'laion5B'" in r.output and "'test'" in r.output
    r = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "b",
        *args,
        "--knn-url",
        f"http://127.0.0.1:{_free_port()}",
        expect=2,
    )
    assert "cannot reach the kNN backend" in r.output
    r = invoke("curate", prompts, "-o", tmp_path / "c", *args, "--knn-url", base + "/knn-service", expect=2)
    assert "does not answer like a clip-retrieval backend" in r.output
    r = invoke("curate", prompts, "-o", tmp_path / "d", *args, "--knn-url", "ftp://example.org/knn", expect=2)
    assert "is not an http(s) URL" in r.output
    for res in (r,):
        assert len([line for line in res.output.splitlines() if line.startswith("error:")]) == 1
    r = invoke(
        "curate", prompts, "-o", tmp_path / "f", *args, expect=2
    )  # no default: the public service is gone
    assert "needs --knn-url" in r.output and "--laion-mode captions" in r.output
    # a class without CuPL sentences cannot be queried with them
    no_cupl = _write_prompts(tmp_path / "nocupl.json", classes=["zebra"], cupl=False)
    r = invoke(
        "curate",
        no_cupl,
        "-o",
        tmp_path / "e",
        *args,
        "--prompt-mode",
        "cupl",
        "--knn-url",
        backend["url"],
        expect=2,
    )
    assert "no CuPL sentences" in r.output and not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------------------- downloads


@pytest.mark.slow
def test_fetch_round_completes_an_interrupted_round(server, tmp_path):
    """A round cut short is finished by fetching only the URLs that have no result; webdataset output too."""
    from susx_cli.adapters import download as dl

    base, counts = server
    opts = dl.DownloadOptions(timeout=1, retries=0, threads=8, output_format="webdataset", allow_private=True)
    rows = [{"cid": f"0:{i}", "url": f"{base}/img/{i}.jpg?round", "caption": f"c{i}"} for i in range(6)]
    rows.append({"cid": "1:0", "url": f"{base}/img/0.jpg?round", "caption": "same URL, other class"})
    dl.run_img2dataset(rows[:2], tmp_path / "round" / "out-0000", opts)  # what an interrupted round left
    assert counts["img/0.jpg?round"] == 1 and counts["img/2.jpg?round"] == 0
    listed, results = dl.fetch_round(tmp_path / "round", rows, opts)
    assert [r["cid"] for r in listed] == [r["cid"] for r in rows]
    assert set(results) == {r["cid"] for r in rows}
    assert all(counts[f"img/{i}.jpg?round"] == 1 for i in range(6))
    assert results["1:0"].data == results["0:0"].data == GOOD[0]
    assert results["0:3"].source_sha256 == common.sha256_bytes(GOOD[3])


def test_check_image_refuses_html_and_truncated():
    from susx_cli.adapters import download as dl

    opts = dl.DownloadOptions(image_size=16)
    data, ext = dl.check_image(GOOD[0], opts)
    assert ext == "jpg" and data[:2] == b"\xff\xd8"
    with pytest.raises(dl.InvalidImage, match="HTML"):
        dl.check_image(b"<!DOCTYPE html><html></html>", opts)
    with pytest.raises(dl.InvalidImage, match="truncated"):
        dl.check_image(GOOD[1][: len(GOOD[1]) // 2], opts)
    assert (
        not dl.is_fetchable("file:///etc/passwd")
        and not dl.is_fetchable("ftp://x/y")
        and dl.is_fetchable("HTTPS://x/y")
    )


# ----------------------------------------------------------------------------------------- caption search


CAPTIONS = [
    ("img/0.jpg", "A zebra in the wild"),
    ("img/1.jpg", "Zebras running across the plain"),
    ("img/2.jpg", "zebrafish in a tank"),  # not a zebra
    ("img/3.jpg", "My Golden-Retriever puppy at the beach"),
    ("img/4.jpg", "golden retriever"),
    ("img/5.jpg", "a retriever"),  # not the class
    ("img/6.jpg", "Apples on the table"),
    ("img/7.jpg", "pineapple slices"),  # not an apple
    ("img/8.jpg", "granny smith on a plate"),  # a synonym
    ("img/9.jpg", "an apple and a zebra"),  # both classes
    ("404/x.jpg", "apple pie"),
    ("html/y.jpg", "red apple"),
    ("trunc/z.jpg", "green apple"),
]


def _metadata(root: Path, base: str) -> Path:
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    rows = [{"url": f"{base}/{p}", "caption": c} for p, c in CAPTIONS]
    rows.append({"url": "ftp://127.0.0.1/apple.jpg", "caption": "apple"})  # never fetched
    rows.append({"url": None, "caption": "apple"})
    rows.append({"url": f"{base}/img/10.jpg", "caption": None})
    for i in range(3):
        part = pd.DataFrame(rows[i::3])
        part["similarity"] = 0.3  # an extra column, as in LAION metadata
        if i == 1:
            part = part[["caption", "similarity", "url"]]  # column order varies between files
        part.to_parquet(root / f"part-{i:05d}.parquet")
    return root


@pytest.mark.slow
def test_match_captions_terms(server, tmp_path):
    from susx_cli.sources import laion_captions as captions

    base, _ = server
    meta = _metadata(tmp_path / "meta", base)
    files = captions.resolve_files(str(meta / "*.parquet"))
    terms = captions.class_terms(CLASSES, {"apple": ["granny smith"]})
    found = captions.match_captions(files, terms, max_per_class=100, threads=2, progress=False)

    def urls(matches, ci):
        return sorted(u.split("/", 3)[3] for u in matches.of(ci).column("url").to_pylist())

    assert urls(found, 0) == ["img/0.jpg", "img/1.jpg", "img/9.jpg"]
    assert urls(found, 1) == ["img/3.jpg", "img/4.jpg"]
    assert urls(found, 2) == ["404/x.jpg", "html/y.jpg", "img/6.jpg", "img/8.jpg", "img/9.jpg", "trunc/z.jpg"]
    assert found.of(1).column("term").to_pylist() == ["golden retriever"] * 2
    assert found.of(2).column("term").to_pylist().count("granny smith") == 1
    capped = captions.match_captions(files, terms, max_per_class=2, progress=False)
    assert capped.count(2) == 2 and set(urls(capped, 2)) <= set(urls(found, 2))
    found.save(tmp_path / "m.parquet")
    assert captions.Matches.load(tmp_path / "m.parquet").table.equals(found.table)


@pytest.mark.slow
def test_captions_end_to_end(server, tmp_path):
    base, counts = server
    meta = _metadata(tmp_path / "meta", base)
    (tmp_path / "syn.json").write_text(json.dumps({"apple": ["granny smith"]}))
    prompts = _write_prompts(tmp_path / "prompts.json")
    out = tmp_path / "support"
    result = invoke(
        "curate",
        prompts,
        "-o",
        out,
        "--source",
        "laion",
        "--laion-mode",
        "captions",
        "--metadata",
        str(meta / "*.parquet"),
        "--synonyms",
        tmp_path / "syn.json",
        "--clip-model",
        "susx-tiny-vit",
        "--clip-pretrained",
        "none",
        "--device",
        "cpu",
        "-k",
        3,
        "--json",
        *TIMEOUT_ARGS,
    )
    summary = json.loads(result.stdout)["summary"]
    rows = _manifest(out)
    per = Counter(r["class_index"] for r in rows)
    assert per == {0: 3, 1: 2, 2: 3}
    assert summary["short_classes"] == {"golden retriever": 2}
    assert "'golden retriever' has 2 of 3 images" in result.output
    for ci in range(3):
        cands = _candidates(out, ci)
        assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
        mine = [r for r in rows if r["class_index"] == ci]
        assert [r["rank"] for r in mine] == _expected_kept(cands, base, 3)
        assert all(r["mode"] == "captions" and r["matched"] and r["caption"] for r in mine)
    assert counts["ftp://127.0.0.1/apple.jpg"] == 0


def test_captions_bad_metadata(tmp_path):
    import pandas as pd

    prompts = _write_prompts(tmp_path / "prompts.json", classes=["zebra"])
    pd.DataFrame({"URL": ["http://x/1.jpg"], "TEXT": ["a zebra"]}).to_parquet(tmp_path / "m.parquet")
    args = [
        "--source",
        "laion",
        "--laion-mode",
        "captions",
        "-k",
        1,
        "--clip-model",
        "susx-tiny-vit",
        "--clip-pretrained",
        "none",
    ]
    r = invoke("curate", prompts, "-o", tmp_path / "a", *args, "--metadata", tmp_path / "m.parquet", expect=2)
    assert "lacks the column(s) 'url', 'caption'" in r.output and "URL" in r.output
    r = invoke(
        "curate", prompts, "-o", tmp_path / "b", *args, "--metadata", tmp_path / "none-*.parquet", expect=2
    )
    assert "no parquet files match" in r.output
    r = invoke("curate", prompts, "-o", tmp_path / "c", *args, expect=2)
    assert "needs --metadata" in r.output
