"""Every outbound client of susx, each with the body-size cap of its answers: the one list that the code
building a request and the network fault tests both read."""

from __future__ import annotations

from dataclasses import dataclass

from susx_cli.net.guarded_http import UrlPolicy, host_port

MiB = 1 << 20


@dataclass(frozen=True)
class Client:
    """One kind of outbound request; ``max_bytes`` caps the body of each answer."""

    name: str
    max_bytes: int

    def policy(
        self,
        timeout: float,
        url: str | None = None,
        *,
        max_bytes: int | None = None,
        allow_private: bool = False,
        trusted: frozenset[tuple[str, int]] = frozenset(),
    ) -> UrlPolicy:
        """``timeout`` seconds for the whole answer; the host:port of ``url`` (one the user typed) is
        trusted: it may be a local server, while its redirects are still checked."""
        return UrlPolicy(
            timeout=timeout,
            max_bytes=self.max_bytes if max_bytes is None else max_bytes,
            allow_private=allow_private,
            trusted=trusted | {host_port(url)} if url else trusted,
        )


KNN_INDEX_LIST = Client("kNN index list", 1 * MiB)
KNN_QUERY = Client("kNN query", 64 * MiB)  # ~300 bytes a row: room for 200 000 rows
LLM = Client("LLM answer", 4 * MiB)  # a chat completion of a few hundred tokens is a few kB
CUPL_FILE = Client("CuPL sentence file", 32 * MiB)  # 1000 classes x 50 sentences x 100 bytes is 5 MB
IMAGE = Client("image download", 30_000_000)  # --max-image-bytes overrides it

CLIENTS = (KNN_INDEX_LIST, KNN_QUERY, LLM, CUPL_FILE, IMAGE)
