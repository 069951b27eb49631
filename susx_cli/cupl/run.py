"""The run loop: ask the endpoint for every answer the cache lacks (the first request alone, then the
rest concurrently, with retries and a request budget), then assemble the cleaned sentences.

Exceptions: ``SusxError`` for a fatal endpoint error (nothing more is sent); ``IncompleteRunError``
(exit code 3) when requests failed after their retries or ``max_requests`` stopped the run: the
cache keeps what was done, and the same command resumes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from rich.markup import escape

from susx_cli.adapters.llm import (
    DEFAULT_BASE_URL,
    BudgetExhausted,
    ChatClient,
    Completion,
    LLMFatal,
    LLMTransient,
    with_retries,
)
from susx_cli.artifacts import common
from susx_cli.artifacts.llm_cache import AnswerCache
from susx_cli.cupl.clean import clean_answers
from susx_cli.cupl.plan import Request, plan_requests, request_options
from susx_cli.cupl.settings import LLMPlan, LLMSettings
from susx_cli.errors import IncompleteRunError, SusxError
from susx_cli.progress import bar, info, warn


@dataclass
class Generation:
    sentences: dict[str, list[str]]
    record: dict[str, Any]  # provenance of the run: model, base URL, date, counts


class _Budget:
    def __init__(self, limit: int | None):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted()
            self.used += 1


def _make_client(settings: LLMSettings) -> ChatClient:
    key = os.environ.get(settings.key_env) or None
    if key is None:
        if settings.base_url.rstrip("/") == DEFAULT_BASE_URL:
            raise SusxError(
                f"no API key: ${settings.key_env} is not set",
                hint=f"export {settings.key_env}=..., name another variable with --llm-key-env, "
                "or point --llm-base-url at a local server",
            )
        info(f"${settings.key_env} is not set; sending no API key to {settings.base_url}")
    return ChatClient(
        settings.base_url, key, settings.model, timeout=settings.timeout, key_env=settings.key_env
    )


def generate(
    plan: LLMPlan,
    classes: list[str],
    *,
    client: Any | None = None,
) -> Generation:
    """Ask the endpoint for every (class, question, sample) the cache lacks; return cleaned sentences.

    Raises ``SusxError`` for a fatal endpoint error (nothing more is sent), and with exit code 3 when
    requests failed after their retries or ``max_requests`` stopped the run: the cache keeps what was
    done, and the same command resumes.
    """
    s = plan.settings
    started = common.now_iso()
    opts = request_options(s.temperature, s.max_tokens, s.system)
    requests = plan_requests(classes, plan.questions, s.samples, s.model, s.base_url, opts)
    cache = AnswerCache(plan.cache_path)
    if cache.bad_lines:
        warn(
            f"{plan.cache_path}: ignored {cache.bad_lines} unreadable line(s) (a run cut short?); they are asked again"
        )
    todo_by_key: dict[str, Request] = {}
    for r in requests:
        if cache.get(r.key) is None:
            todo_by_key.setdefault(r.key, r)
    todo = list(todo_by_key.values())
    hits = len(requests) - sum(1 for r in requests if r.key in todo_by_key)
    info(
        f"LLM sentences: {len(classes)} classes x {len(plan.questions)} questions x {s.samples} samples = "
        f"{len(requests)} answers; {hits} in the cache {plan.cache_path}, "
        + (f"{len(todo)} to ask {s.model} at {s.base_url}" if todo else "nothing to ask")
    )
    stats = {"requests": 0, "retries": 0, "answers": 0, "failed": 0, "undone": 0}
    if todo:
        if client is None:
            client = _make_client(s)
        try:
            stats = _run_requests(plan, client, cache, todo, opts)
        finally:
            cache.close()
    return _assemble(plan, classes, requests, cache, hits, stats, started)


def _run_requests(
    plan: LLMPlan, client: Any, cache: AnswerCache, todo: list[Request], opts: dict[str, Any]
) -> dict[str, int]:
    s = plan.settings
    budget = _Budget(s.max_requests)
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"requests": 0, "retries": 0, "answers": 0, "failed": 0, "undone": 0}
    last_failure: list[str] = []
    fatal: list[BaseException] = []
    messages_for = _messages_builder(s.system)
    sleep = s.sleep or stop.wait

    def attempt_hook() -> None:
        budget.take()
        with lock:
            counts["requests"] += 1

    def on_retry(exc: LLMTransient, wait_s: float) -> None:
        with lock:
            counts["retries"] += 1

    def ask(req: Request, first: bool) -> tuple[str, Any]:
        if stop.is_set():
            return "undone", None

        def call() -> Completion:
            try:
                return client.complete(
                    messages_for(req.prompt),
                    temperature=s.temperature,
                    max_tokens=s.max_tokens,
                    seed=req.seed,
                )
            except LLMTransient as exc:
                if first and exc.connection:  # the endpoint is not there: say so at once
                    raise LLMFatal(
                        f"cannot reach the LLM endpoint {s.base_url}: {exc.message}",
                        hint="check --llm-base-url and that the server is running",
                    ) from exc
                raise

        try:
            completion = with_retries(
                call,
                s.retry,
                key=req.key,
                sleep=sleep,
                before_attempt=attempt_hook,
                on_retry=on_retry,
                stop=stop,
            )
        except BudgetExhausted:
            return "undone", None
        except LLMTransient as exc:
            return "failed", exc
        except SusxError as exc:
            stop.set()
            return "fatal", exc
        cache.put(
            req.key,
            completion.text,
            {
                "model": s.model,
                "base_url": s.base_url,
                "prompt": req.prompt,
                "sample": req.sample,
                "options": opts,
                "seed": req.seed,
                "finish_reason": completion.finish_reason,
                "time": common.now_iso(),
            },
        )
        return "ok", None

    def tally(outcome: str, detail: Any, progress) -> None:
        if outcome == "ok":
            counts["answers"] += 1
        elif outcome == "failed":
            counts["failed"] += 1
            last_failure[:] = [detail.message]
        elif outcome == "fatal":
            fatal.append(detail)
        else:
            counts["undone"] += 1
            return  # the bar shows what was done; undone requests stay open
        progress.advance(1)
        progress.update(description=_bar_text(counts))

    with bar(_bar_text(counts), total=len(todo), unit="req") as progress:
        # The first request alone: a wrong URL, key or model fails once, with one clear error.
        outcome, detail = ask(todo[0], True)
        tally(outcome, detail, progress)
        rest = todo[1:] if not fatal and outcome != "failed" else []
        if outcome == "failed":
            fatal.append(
                SusxError(
                    f"the LLM endpoint {s.base_url} failed the first request after {s.retry.retries} retries: "
                    f"{detail.message}",
                    hint="check the server, raise --llm-timeout, or try again later",
                )
            )
        pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="susx-llm")
        try:
            pending = {pool.submit(ask, r, False) for r in rest}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    tally(*fut.result(), progress)
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if fatal:
        undone = len(todo) - counts["answers"] - counts["failed"]
        err = fatal[0]
        if counts["answers"] and isinstance(err, SusxError):
            err.message += (
                f" ({counts['answers']} answers from this run are in the cache; {undone} requests not made)"
            )
        raise err
    if counts["failed"] or counts["undone"]:
        _raise_incomplete(plan, counts, last_failure)
    return counts


def _raise_incomplete(plan: LLMPlan, counts: dict[str, int], last_failure: list[str]) -> None:
    s = plan.settings
    kept = f"the cache {plan.cache_path} keeps the {counts['answers']} answers of this run"
    if counts["failed"]:
        extra = f", and {counts['undone']} were not made" if counts["undone"] else ""
        raise IncompleteRunError(
            f"{counts['failed']} LLM request(s) failed after {s.retry.retries} retries "
            f"(last: {last_failure[0] if last_failure else '?'}){extra}; {kept}; prompts not written",
            hint="re-run the same command to ask only for what is missing",
        )
    raise IncompleteRunError(
        f"stopped at --max-requests {s.max_requests}: {counts['undone']} request(s) left undone; {kept}; "
        "prompts not written",
        hint="re-run with a higher --max-requests (or without it) to resume",
    )


def _bar_text(counts: dict[str, int]) -> str:
    text = f"LLM requests ({counts['answers']} ok"
    if counts["retries"]:
        text += f", {counts['retries']} retries"
    if counts["failed"]:
        text += f", [red]{counts['failed']} failed[/red]"
    return text + ")"


def _messages_builder(system: str | None) -> Callable[[str], list[dict[str, str]]]:
    def build(prompt: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": system}] if system else []
        return msgs + [{"role": "user", "content": prompt}]

    return build


def _assemble(
    plan: LLMPlan,
    classes: list[str],
    requests: list[Request],
    cache: AnswerCache,
    hits: int,
    stats: dict[str, int],
    started: str,
) -> Generation:
    s = plan.settings
    raw: list[list[str]] = [[] for _ in classes]
    for r in requests:  # class, question, sample order: the same on every run
        answer = cache.get(r.key)
        if answer is not None:
            raw[r.class_index].append(answer)
    sentences: dict[str, list[str]] = {}
    dropped_total = {"empty": 0, "markup": 0, "short": 0, "duplicate": 0}
    for name, answers in zip(classes, raw, strict=True):
        kept, dropped = clean_answers(answers)
        sentences[name] = kept
        for k, v in dropped.items():
            dropped_total[k] += v
    empty = [n for n in classes if not sentences[n]]
    if empty:
        shown = ", ".join(repr(n) for n in empty[:5]) + (" ..." if len(empty) > 5 else "")
        warn(f"LLM sentences: no usable sentence for {len(empty)} class(es): {escape(shown)}")
    record = {
        "model": s.model,
        "base_url": s.base_url,
        "date": started,
        "finished": common.now_iso(),
        "questions_source": plan.questions_source,
        "options": {
            "samples": s.samples,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "system": s.system or None,
            "concurrency": s.concurrency,
            "timeout": s.timeout,
            "retries": s.retry.retries,
            "max_requests": s.max_requests,
        },
        "cache": str(plan.cache_path),
        "answers_needed": len(requests),
        "cache_hits": hits,
        "requests_made": stats["requests"],
        "retries": stats["retries"],
        "new_answers": stats["answers"],
        "dropped": dropped_total,
        "sentences": sum(len(v) for v in sentences.values()),
        "sentences_per_class": {n: len(sentences[n]) for n in classes},
        "classes_without_sentences": empty,
    }
    return Generation(sentences, record)
