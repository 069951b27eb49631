"""Files fetched by http(s) URL, checked against a sha256 and kept in the user cache directory.

The cache directory is ``susx_cli.paths.cache_dir()``: ``$SUSX_CACHE_DIR``, else ``$XDG_CACHE_HOME/susx``,
else ``~/.cache/susx``.
Downloads are content-addressed (``downloads/<sha256><suffix>``): a file whose checksum was given and
is already there is not downloaded again; a file whose checksum does not match is never kept.
The fetch is ``guarded_http.get``: ``timeout`` seconds in all, at most ``max_bytes`` (kept in memory: a
sentence file is small), redirects only to http(s) and only to public addresses (the host the user typed
is trusted, whatever its address); the file is written with the artifacts' atomic writer.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

from rich.markup import escape

from susx_cli._version import __version__
from susx_cli.artifacts import common
from susx_cli.errors import SusxError
from susx_cli.net import clients, guarded_http
from susx_cli.paths import cache_dir
from susx_cli.progress import info, warn

DEFAULT_TIMEOUT = 60.0  # seconds for the whole file
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_url(value: str | os.PathLike) -> bool:
    """Whether a command-line value is meant as a URL (it has a scheme) rather than a path."""
    return isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def check_url(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise SusxError(
            f"only http(s) URLs can be fetched, not {scheme}:// ({url})",
            hint="download it yourself and pass the path",
        )
    return url


def check_sha256(value: str) -> str:
    hexdigest = value.strip().lower()
    if hexdigest.startswith("sha256:"):
        hexdigest = hexdigest[len("sha256:") :]
    if not _HEX64.match(hexdigest):
        raise SusxError(
            f"{value!r} is not a sha256 checksum", hint="64 hexadecimal digits, e.g. from `sha256sum FILE`"
        )
    return hexdigest


def fetch_url(
    url: str,
    sha256: str | None = None,
    *,
    what: str = "file",
    suffix: str = "",
    timeout: float | None = None,
    max_bytes: int = clients.CUPL_FILE.max_bytes,
) -> Path:
    """A local copy of ``url`` in the cache, checked against ``sha256`` when given.

    Without a checksum the URL is downloaded again every time and its checksum is printed, so the
    user can pin it.
    """
    check_url(url)
    expected = check_sha256(sha256) if sha256 else None
    folder = cache_dir() / "downloads"
    if expected is not None:
        cached = folder / f"{expected}{suffix}"
        if cached.is_file() and common.sha256_file(cached) == expected:
            info(f"{what} {escape(url)}: using the cached copy {cached}")
            return cached
    policy = clients.CUPL_FILE.policy(timeout or DEFAULT_TIMEOUT, url, max_bytes=max_bytes)
    try:
        answer = guarded_http.get(url, policy, {"User-Agent": f"susx/{__version__}"})
    except guarded_http.Refused as exc:
        raise SusxError(
            f"{what} {url}: {exc}", hint="check the URL, or download it yourself and pass the path"
        ) from None
    except guarded_http.FetchFailed as exc:
        raise SusxError(
            f"could not fetch {what} {url}: {exc}", hint="check the URL and the network"
        ) from None
    got = common.sha256_bytes(answer.body)
    if expected is not None and got != expected:
        raise SusxError(
            f"checksum mismatch for {url}: expected sha256 {expected}, got {got}",
            hint="the file changed or the checksum is wrong; nothing was kept",
        )
    final = folder / f"{got}{suffix}"
    common.atomic_write_bytes(final, answer.body)
    if expected is None:
        warn(
            f"{what} {escape(url)} has sha256 {got}; pass it as a checksum to pin the file (and reuse the cached copy)"
        )
    info(f"{what} {escape(url)}: {answer.size} bytes, sha256 {got}, cached at {final}")
    return final
