"""CuPL-style sentences from an LLM: questions per class, answers cleaned, cached on disk, resumable.

For every class, question and sample index one chat-completions request is made (n=1, with a seed
derived from the question and the sample index, so local servers reproduce their answers). Raw answers
go to an append-only JSONL cache keyed by (model, question, sample index, options); a rerun or a
resumed run asks only for what the cache lacks. Cleaning is applied when the sentences are read from
the cache, so it never costs a request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from susx_cli.adapters.llm import (
    DEFAULT_BASE_URL,
    BudgetExhausted,
    ChatClient,
    Completion,
    LLMFatal,
    LLMTransient,
    RetryPolicy,
    with_retries,
)
from susx_cli.artifacts import common
from susx_cli.cupl_questions import format_question, resolve_questions
from susx_cli.errors import SusxError
from susx_cli.progress import bar, info, warn

# The paper's settings (METHOD.md): temperature 0.99, at most 50 tokens, 10 answers per question.
DEFAULT_SAMPLES = 10
DEFAULT_TEMPERATURE = 0.99
DEFAULT_MAX_TOKENS = 50
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 5
# Backoff of the first retry in seconds (doubles per retry, capped); tests lower it.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
MIN_CHARS = 5
CLEANING_VERSION = 1
# The paper sent bare questions to a completion model; chat models need to be told to be brief.
DEFAULT_SYSTEM = "You write short visual descriptions for image captions. Reply with one plain sentence, no lists or markup."
EXIT_INCOMPLETE = 3


def default_retry_policy(retries: int = DEFAULT_RETRIES) -> RetryPolicy:
    return RetryPolicy(retries=retries, base=BACKOFF_BASE, cap=BACKOFF_CAP)


# ---------------------------------------------------------------------------------------------------
# Cleaning (pure)

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*")
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022>#]+|\d{1,3}[.)])\s+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def clean_answer(text: str | None, min_chars: int = MIN_CHARS) -> tuple[str | None, str]:
    """One answer as a sentence, or None with the reason (``empty``, ``markup``, ``short``).

    Markup (code fences, HTML tags, list markers, emphasis) is removed; a first line that only
    introduces the answer ("Here is a caption:") is dropped; whitespace is collapsed; the text is cut at
    its first full stop that ends a sentence (the paper stopped generation at the first '.'); it ends
    with exactly one full stop (or its own '!' / '?'). Answers under ``min_chars`` characters are dropped.
    """
    if text is None or not text.strip():
        return None, "empty"
    text = _TAG.sub(" ", _FENCE.sub(" ", text))
    lines = [_LIST_MARKER.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    text = " ".join(" ".join(lines).split())
    text = _EMPHASIS.sub("", text).strip()
    text = text.strip(_QUOTES + " ")
    if not re.search(r"\w", text):
        return None, "markup"
    match = _SENTENCE_END.search(text)
    if match:
        text = text[: match.start()]
    text = " ".join(text.split()).strip(_QUOTES + " ").rstrip(" .,;:").strip(_QUOTES + " ")
    if len(text) < min_chars:
        return None, "short"
    if not text.endswith(("!", "?")):
        text += "."
    return text, "ok"


def clean_answers(answers: list[str], min_chars: int = MIN_CHARS) -> tuple[list[str], dict[str, int]]:
    """Cleaned sentences in order, exact duplicates dropped; counts of what was dropped and why."""
    kept: list[str] = []
    seen: set[str] = set()
    dropped = {"empty": 0, "markup": 0, "short": 0, "duplicate": 0}
    for answer in answers:
        sentence, why = clean_answer(answer, min_chars)
        if sentence is None:
            dropped[why] += 1
        elif sentence in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(sentence)
            kept.append(sentence)
    return kept, dropped


# ---------------------------------------------------------------------------------------------------
# Requests and their cache keys (pure)


@dataclass(frozen=True)
class Request:
    class_index: int
    question_index: int
    sample: int
    prompt: str  # the question with the class filled in
    key: str
    seed: int


def request_options(temperature: float, max_tokens: int, system: str | None) -> dict[str, Any]:
    """The options that change an answer, part of every cache key."""
    return {"temperature": temperature, "max_tokens": max_tokens, "system": system or None, "seeded": True}


def request_key(model: str, prompt: str, sample: int, options: dict[str, Any]) -> str:
    blob = json.dumps({"model": model, "prompt": prompt, "sample": sample, "options": options},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_seed(prompt: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{prompt}\x00{sample}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def plan_requests(classes: list[str], questions: list[str], samples: int, model: str,
                  options: dict[str, Any]) -> list[Request]:
    """Every (class, question, sample) request, in class, question, sample order."""
    out = []
    for ci, name in enumerate(classes):
        for qi, question in enumerate(questions):
            prompt = format_question(question, name)
            for s in range(samples):
                out.append(Request(ci, qi, s, prompt, request_key(model, prompt, s, options), request_seed(prompt, s)))
    return out


# ---------------------------------------------------------------------------------------------------
# The answer cache


class AnswerCache:
    """Append-only JSONL of raw answers, one line per successful request, keyed by ``request_key``.

    A line cut short by a killed run is ignored on reading (that request is simply made again).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answers: dict[str, str] = {}
        self.bad_lines = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise SusxError(f"cannot read the LLM cache {self.path} ({exc})", hint="check the path, or use --llm-cache") from exc
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                self._answers[row["key"]] = row["answer"]
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            if not isinstance(self._answers[row["key"]], str):
                del self._answers[row["key"]]
                self.bad_lines += 1

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        return self._answers.get(key)

    def put(self, key: str, answer: str, meta: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "answer": answer, **meta}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                if handle.tell() > 0:
                    with open(self.path, "rb") as check:
                        check.seek(-1, os.SEEK_END)
                        if check.read(1) != b"\n":  # a torn line from a killed run: start afresh
                            handle.write(b"\n")
                handle.write(line.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            self._answers[key] = answer


# ---------------------------------------------------------------------------------------------------
# Settings and generation


@dataclass
class LLMSettings:
    """Everything ``susx prompts --llm`` needs; the CLI fills it from its options."""

    model: str
    base_url: str = DEFAULT_BASE_URL
    key_env: str = "OPENAI_API_KEY"
    questions: str | None = None  # dataset | generic | a dataset name | a file
    samples: int = DEFAULT_SAMPLES
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    system: str | None = DEFAULT_SYSTEM
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    cache: Path | None = None
    max_requests: int | None = None
    retry: RetryPolicy = field(default_factory=default_retry_policy)
    sleep: Callable[[float], None] | None = None  # None: an interruptible wait

    def validate(self) -> None:
        if not self.model or not self.model.strip():
            raise SusxError("--llm needs --llm-model NAME", hint="e.g. --llm-model gpt-4o-mini, or the model a vLLM/Ollama server serves")
        if not self.base_url.startswith(("http://", "https://")):
            raise SusxError(f"--llm-base-url {self.base_url!r} is not an http(s) URL", hint="e.g. http://localhost:8000/v1")
        checks = [
            (self.samples >= 1, "--llm-samples must be at least 1"),
            (0.0 <= self.temperature <= 2.0, "--llm-temperature must be between 0 and 2"),
            (self.max_tokens >= 1, "--llm-max-tokens must be at least 1"),
            (self.concurrency >= 1, "--llm-concurrency must be at least 1"),
            (self.timeout > 0, "--llm-timeout must be positive"),
            (self.max_requests is None or self.max_requests >= 0, "--max-requests must be 0 or more"),
            (self.retry.retries >= 0, "--llm-retries must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise SusxError(message, hint="see susx prompts --help")


@dataclass
class LLMPlan:
    """Settings resolved against the class list's dataset: the question set and the recorded options."""

    settings: LLMSettings
    questions: list[str]
    questions_source: str
    cache_path: Path

    def options(self) -> dict[str, Any]:
        """What decides the sentences; recorded in prompts.json's options (and its fingerprint)."""
        s = self.settings
        return {
            "model": s.model,
            "questions_source": self.questions_source,
            "questions": self.questions,
            "samples": s.samples,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "system": s.system or None,
            "seeded": True,
            "cleaning": {"version": CLEANING_VERSION, "min_chars": MIN_CHARS, "cut_at_first_full_stop": True,
                         "dedupe": True},
        }


def default_cache_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.llm-cache.jsonl")


def prepare(settings: LLMSettings, dataset: str | None, output: Path) -> LLMPlan:
    settings.validate()
    questions, source = resolve_questions(settings.questions, dataset)
    cache_path = Path(settings.cache) if settings.cache is not None else default_cache_path(output)
    return LLMPlan(settings, questions, source, cache_path)


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
    return ChatClient(settings.base_url, key, settings.model, timeout=settings.timeout, key_env=settings.key_env)


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
    requests = plan_requests(classes, plan.questions, s.samples, s.model, opts)
    cache = AnswerCache(plan.cache_path)
    if cache.bad_lines:
        warn(f"{plan.cache_path}: ignored {cache.bad_lines} unreadable line(s) (a run cut short?); they are asked again")
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
        stats = _run_requests(plan, client, cache, todo, opts)
    return _assemble(plan, classes, requests, cache, hits, stats, started)


def _run_requests(plan: LLMPlan, client: Any, cache: AnswerCache, todo: list[Request],
                  opts: dict[str, Any]) -> dict[str, int]:
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
                return client.complete(messages_for(req.prompt), temperature=s.temperature,
                                       max_tokens=s.max_tokens, seed=req.seed)
            except LLMTransient as exc:
                if first and exc.connection:  # the endpoint is not there: say so at once
                    raise LLMFatal(
                        f"cannot reach the LLM endpoint {s.base_url}: {exc.message}",
                        hint="check --llm-base-url and that the server is running",
                    ) from exc
                raise

        try:
            completion = with_retries(call, s.retry, key=req.key, sleep=sleep, before_attempt=attempt_hook,
                                      on_retry=on_retry, stop=stop)
        except BudgetExhausted:
            return "undone", None
        except LLMTransient as exc:
            return "failed", exc
        except SusxError as exc:
            stop.set()
            return "fatal", exc
        cache.put(req.key, completion.text, {
            "model": s.model, "base_url": s.base_url, "prompt": req.prompt, "sample": req.sample,
            "options": opts, "seed": req.seed, "finish_reason": completion.finish_reason, "time": common.now_iso(),
        })
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
            fatal.append(SusxError(
                f"the LLM endpoint {s.base_url} failed the first request after {s.retry.retries} retries: "
                f"{detail.message}",
                hint="check the server, raise --llm-timeout, or try again later",
            ))
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
            err.message += f" ({counts['answers']} answers from this run are in the cache; {undone} requests not made)"
        raise err
    if counts["failed"] or counts["undone"]:
        _raise_incomplete(plan, counts, last_failure)
    return counts


def _raise_incomplete(plan: LLMPlan, counts: dict[str, int], last_failure: list[str]) -> None:
    s = plan.settings
    kept = f"the cache {plan.cache_path} keeps the {counts['answers']} answers of this run"
    if counts["failed"]:
        extra = f", and {counts['undone']} were not made" if counts["undone"] else ""
        raise SusxError(
            f"{counts['failed']} LLM request(s) failed after {s.retry.retries} retries "
            f"(last: {last_failure[0] if last_failure else '?'}){extra}; {kept}; prompts not written",
            hint="re-run the same command to ask only for what is missing",
            exit_code=EXIT_INCOMPLETE,
        )
    raise SusxError(
        f"stopped at --max-requests {s.max_requests}: {counts['undone']} request(s) left undone; {kept}; "
        "prompts not written",
        hint="re-run with a higher --max-requests (or without it) to resume",
        exit_code=EXIT_INCOMPLETE,
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


def _assemble(plan: LLMPlan, classes: list[str], requests: list[Request], cache: AnswerCache, hits: int,
              stats: dict[str, int], started: str) -> Generation:
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
        "options": {"samples": s.samples, "temperature": s.temperature, "max_tokens": s.max_tokens,
                    "system": s.system or None, "concurrency": s.concurrency, "timeout": s.timeout,
                    "retries": s.retry.retries, "max_requests": s.max_requests},
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
