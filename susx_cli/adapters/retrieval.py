"""A text-to-image kNN query against a `clip-retrieval back`, in one class.

The public LAION service the paper used (knn.laion.ai) has been offline since early 2024; the same
queries go to any self-hosted `clip-retrieval back` over any index. Before the first query the
backend is checked once (reachable, answers like clip-retrieval, holds the index), so a wrong URL or
index name fails with one clear line instead of a stack trace.

The query is the JSON POST to ``/knn-service`` that clip-retrieval's ``ClipClient`` sends, made here
through ``net.guarded_http``, because ClipClient waits up to an hour for an answer and has no timeout
parameter: every answer here (the index list, each query) must be complete within ``timeout`` seconds
(``--knn-timeout``) and within its size cap (``net.clients``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from susx_cli.errors import SusxError
from susx_cli.net import clients, guarded_http

PUBLIC_INDEX = "laion5B-L-14"
KNN_PATH = "/knn-service"
OFFLINE_HINT = (
    "the public LAION kNN service has been offline since early 2024: run `clip-retrieval back` over your own "
    "index and pass its --knn-url, or use --laion-mode captions (offline caption search) or --source pool"
)


def endpoints(url: str) -> tuple[str, str]:
    """(base URL, kNN endpoint) for a URL given either way: ``http://host:1234`` or ``.../knn-service``."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SusxError(
            f"--knn-url {url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:1234/knn-service"
        )
    base = url.rstrip("/")
    if base.endswith(KNN_PATH):
        base = base[: -len(KNN_PATH)]
    return base, base + KNN_PATH


@dataclass
class KnnOptions:
    """What the backend is asked to do besides the search itself (ClipClient's options)."""

    deduplicate: bool = True
    use_safety_model: bool = True
    use_violence_detector: bool = True
    aesthetic_score: int = 9
    aesthetic_weight: float = 0.5
    modality: str = "image"  # search the image index (text-to-image); "text" searches the caption index


class KnnBackend:
    """A checked connection to a clip-retrieval backend and one of its indices."""

    def __init__(
        self,
        url: str,
        index_name: str,
        options: KnnOptions | None = None,
        *,
        timeout: float = 60,
        check_timeout: float = 20,
    ):
        self.url = url
        self.base, self.knn_url = endpoints(url)
        self.index_name = index_name
        self.options = options or KnnOptions()
        self.timeout = timeout
        if self.options.modality not in ("image", "text"):
            raise SusxError(f"unknown kNN modality {self.options.modality!r}", hint="use image or text")
        self.indices = self._check(min(check_timeout, timeout))

    def _check(self, timeout: float) -> list[str] | None:
        hint = (
            OFFLINE_HINT
            if self.base.startswith("https://knn.laion.ai")
            else (
                "start `clip-retrieval back` (see the README) and pass its address, e.g. http://127.0.0.1:1234/knn-service"
            )
        )
        where = f"{self.base}/indices-list"
        policy = clients.KNN_INDEX_LIST.policy(timeout, where)
        try:
            response = guarded_http.get(where, policy, any_status=True)
        except guarded_http.TimedOut:
            raise SusxError(
                f"the kNN backend at {self.url} did not answer within {timeout:g} s", hint=hint
            ) from None
        except (guarded_http.Refused, guarded_http.FetchFailed) as exc:
            raise SusxError(f"cannot reach the kNN backend at {self.url} ({exc})", hint=hint) from None
        try:
            indices = response.json()
        except ValueError:
            indices = None
        if response.status != 200 or not isinstance(indices, list):
            raise SusxError(
                f"{self.url} does not answer like a clip-retrieval backend "
                f"(GET /indices-list gave HTTP {response.status}, {response.headers.get('content-type', '?')})",
                hint="pass the URL of a running `clip-retrieval back`, e.g. http://127.0.0.1:1234/knn-service",
            )
        if self.index_name not in indices:
            have = ", ".join(repr(i) for i in indices) or "none"
            raise SusxError(
                f"the kNN backend at {self.url} has no index {self.index_name!r} (it has: {have})",
                hint="pass --index-name with one of the names above",
            )
        return indices

    def query(self, text: str, num: int) -> list[dict[str, Any]]:
        """The backend's answer to one text query: rows with url, caption, similarity, id, best first."""
        opts = self.options
        request = {
            "text": text,
            "image": None,
            "image_url": None,
            "embedding_input": None,
            "deduplicate": opts.deduplicate,
            "use_safety_model": opts.use_safety_model,
            "use_violence_detector": opts.use_violence_detector,
            "indice_name": self.index_name,
            "use_mclip": False,
            "aesthetic_score": opts.aesthetic_score,
            "aesthetic_weight": opts.aesthetic_weight,
            "modality": opts.modality,
            "num_images": int(num),
            "num_result_ids": int(num),
        }
        policy = clients.KNN_QUERY.policy(self.timeout, self.knn_url)
        try:
            response = guarded_http.post_json(self.knn_url, request, policy)
        except guarded_http.TimedOut:
            raise SusxError(
                f"the kNN backend at {self.url} did not answer the query {text!r} within {self.timeout:g} s",
                hint="check the backend (its log, its load), or raise --knn-timeout",
            ) from None
        except (guarded_http.Refused, guarded_http.FetchFailed) as exc:
            raise SusxError(
                f"the kNN backend at {self.url} failed on the query {text!r} ({exc})",
                hint="check that the backend is still running",
            ) from None
        try:
            rows = response.json()
        except ValueError:  # the answer was not JSON
            rows = None
        if not isinstance(rows, list):
            detail = rows.get("message") if isinstance(rows, dict) else "an answer that is not a result list"
            raise SusxError(
                f"the kNN backend at {self.url} failed on the query {text!r} with index {self.index_name!r}: {detail}",
                hint="check the backend's log (a wrong --index-name or a broken index are the usual causes)",
            )
        out = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            out.append(
                {
                    "url": row.get("url"),
                    "caption": row.get("caption"),
                    "score": row.get("similarity"),  # as sent: ranked.usable_candidates checks it
                    "id": row.get("id"),
                }
            )
        return out
