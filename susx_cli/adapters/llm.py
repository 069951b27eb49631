"""An OpenAI-compatible chat-completions client (hosted OpenAI, vLLM, llama.cpp server, Ollama, ...).

Each request is one JSON POST to ``<base URL>/chat/completions`` through ``net.guarded_http``: the whole
answer within ``timeout`` seconds (a trickling server is cut), at most ``clients.LLM.max_bytes``, proxies
honoured. ``with_retries`` retries 429, 5xx, timeouts and dropped connections with a
deterministic exponential backoff that honours ``Retry-After``, so the behaviour is testable.
Every failure becomes one of two exceptions:

- ``LLMFatal`` (a ``SusxError``): retrying cannot help (wrong key, unknown model, bad request, an
  answer that is not a chat completion); the run stops with a one-line error.
- ``LLMTransient``: worth retrying; after the last retry the request counts as failed.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from susx_cli.errors import SusxError
from susx_cli.net import clients, guarded_http

DEFAULT_BASE_URL = "https://api.openai.com/v1"
T = TypeVar("T")


class LLMFatal(SusxError):
    """An error that retrying cannot fix."""


class LLMTransient(Exception):
    """A failure worth retrying (429, 5xx, timeout, connection)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        connection: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.connection = connection


class BudgetExhausted(Exception):
    """Raised by a budget before a request that would exceed it; nothing was sent."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after the first attempt, exponential backoff ``base * 2**k`` capped at ``cap`` seconds.

    The wait is stretched by a factor in [1, 1.5) derived from the request key and attempt (not a
    random number), so parallel requests do not retry in lockstep and a rerun waits the same.
    A server's Retry-After (seconds or an HTTP date) replaces the backoff, up to ``max_retry_after``.
    """

    retries: int = 5
    base: float = 1.0
    cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, key: str = "", retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        spread = int.from_bytes(hashlib.sha256(f"{key}:{attempt}".encode()).digest()[:2], "big") / 65536
        return min(self.cap, self.base * (2**attempt)) * (1.0 + 0.5 * spread)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date); None if absent."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    key: str = "",
    sleep: Callable[[float], None] = time.sleep,
    before_attempt: Callable[[], None] | None = None,
    on_retry: Callable[[LLMTransient, float], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """``call()`` with retries on ``LLMTransient``; the last transient error is re-raised.

    ``before_attempt`` runs before every attempt (a budget raises ``BudgetExhausted`` there);
    ``stop`` set by another thread ends the retrying with the last error (pass ``stop.wait`` as
    ``sleep`` to end the wait itself early).
    """
    attempt = 0
    while True:
        if before_attempt is not None:
            before_attempt()
        try:
            return call()
        except LLMTransient as exc:
            if attempt >= policy.retries or (stop is not None and stop.is_set()):
                raise
            wait = policy.delay(attempt, key, exc.retry_after)
            if on_retry is not None:
                on_retry(exc, wait)
            sleep(wait)
            if stop is not None and stop.is_set():
                raise
            attempt += 1


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_message(response: guarded_http.Response) -> str:
    """The error message of an OpenAI-style error body (``{"error": {"message": ...}}``), else its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return _short(err["message"])
        if isinstance(err, str):
            return _short(err)
    return _short((response.body or b"").decode("utf-8", "replace") or f"HTTP {response.status}")


class ChatClient:
    """One chat-completions endpoint. Thread-safe: one client serves the whole thread pool."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 60.0,
        key_env: str = "OPENAI_API_KEY",
    ):
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout = timeout
        self.key_env = key_env
        self.completion_tokens = False  # send max_completion_tokens instead of max_tokens
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._policy = clients.LLM.policy(timeout, self.url)

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None = None
    ) -> Completion:
        """One chat completion (n=1). Raises ``LLMFatal`` or ``LLMTransient``."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature, "n": 1}
        body["max_completion_tokens" if self.completion_tokens else "max_tokens"] = max_tokens
        if seed is not None:
            body["seed"] = seed
        try:
            response = guarded_http.post_json(self.url, body, self._policy, self._headers)
        except guarded_http.TimedOut as exc:
            raise LLMTransient(f"no answer within {self.timeout:g} s (timeout)") from exc
        except guarded_http.Unreachable as exc:
            raise LLMTransient(_short(str(exc)), connection=True) from exc  # "cannot connect (...)"
        except guarded_http.FetchFailed as exc:  # the connection broke during the answer
            raise LLMTransient(_short(str(exc))) from exc
        except guarded_http.Refused as exc:  # an address or an answer size the guard forbids
            raise LLMFatal(
                f"the LLM endpoint {self.base_url}: {exc}",
                hint="check --llm-base-url and the server behind it",
            ) from exc
        if response.status == 400 and not self.completion_tokens:
            # Newer OpenAI models refuse max_tokens and want max_completion_tokens: switch once.
            if "max_completion_tokens" in _server_message(response):
                self.completion_tokens = True
                return self.complete(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        if response.status != 200:
            raise self._status_error(response)
        try:
            answer = response.json()
        except ValueError:
            text = (response.body or b"").decode("utf-8", "replace")
            raise self._malformed(f"a body that is not JSON ({_short(text, 60)!r})") from None
        return self._parse(answer)

    def _status_error(self, response: guarded_http.Response) -> Exception:
        status = response.status
        detail = _server_message(response)
        where = f"{self.base_url}"
        if status == 429 or status >= 500 or status in (408, 409):
            return LLMTransient(
                f"HTTP {status}: {detail}", status=status, retry_after=parse_retry_after(response.headers)
            )
        if status == 401:
            return LLMFatal(
                f"the LLM endpoint {where} refused the API key (HTTP 401: {detail})",
                hint=f"set a valid key in ${self.key_env}, or name another variable with --llm-key-env",
            )
        if status == 403:
            return LLMFatal(
                f"the LLM endpoint {where} denied access (HTTP 403: {detail})",
                hint=f"check the permissions of the key in ${self.key_env} for model {self.model!r}",
            )
        if status == 404:
            return LLMFatal(
                f"the LLM endpoint {where} has no model {self.model!r} or no chat-completions route "
                f"(HTTP 404: {detail})",
                hint="check --llm-model (GET <base-url>/models lists them) and that --llm-base-url ends in /v1",
            )
        return LLMFatal(
            f"the LLM endpoint {where} rejected the request (HTTP {status}: {detail})",
            hint="check --llm-model, --llm-max-tokens and --llm-temperature for this endpoint",
        )

    def _malformed(self, what: str) -> LLMFatal:
        return LLMFatal(
            f"the LLM endpoint {self.base_url} answered with {what}, not a chat completion",
            hint="check that --llm-base-url points at an OpenAI-compatible API (usually ending in /v1)",
        )

    def _parse(self, answer: Any) -> Completion:
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices:
            raise self._malformed("JSON without choices")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise self._malformed("a choice without a message")
        content = message.get("content")
        if content is None:  # e.g. a reasoning model that spent max_tokens before answering
            content = ""
        if not isinstance(content, str):
            raise self._malformed("a choice whose message content is not text")
        finish = choices[0].get("finish_reason")
        return Completion(content, finish if isinstance(finish, str) else None)
