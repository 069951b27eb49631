"""What `susx prompts --llm` is asked to do: the settings (checked), and the plan they resolve to
against the dataset: its question set, the cache file and the options recorded in prompts.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.adapters.llm import DEFAULT_BASE_URL, RetryPolicy
from susx_cli.artifacts.llm_cache import default_cache_path
from susx_cli.cupl.clean import CLEANING_VERSION, MIN_CHARS
from susx_cli.cupl.questions import resolve_questions
from susx_cli.errors import SusxError

# The paper's settings (docs/METHOD.md): temperature 0.99, at most 50 tokens, 10 answers per question.
DEFAULT_SAMPLES = 10
DEFAULT_TEMPERATURE = 0.99
DEFAULT_MAX_TOKENS = 50
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 5
# Backoff of the first retry in seconds (doubles per retry, capped); tests lower it.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
# The paper sent bare questions to a completion model; chat models need to be told to be brief.
DEFAULT_SYSTEM = "You write short visual descriptions for image captions. Reply with one plain sentence, no lists or markup."


def default_retry_policy(retries: int = DEFAULT_RETRIES) -> RetryPolicy:
    return RetryPolicy(retries=retries, base=BACKOFF_BASE, cap=BACKOFF_CAP)


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
            raise SusxError(
                "--llm needs --llm-model NAME",
                hint="e.g. --llm-model gpt-4o-mini, or the model a vLLM/Ollama server serves",
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise SusxError(
                f"--llm-base-url {self.base_url!r} is not an http(s) URL",
                hint="e.g. http://localhost:8000/v1",
            )
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
            "cleaning": {
                "version": CLEANING_VERSION,
                "min_chars": MIN_CHARS,
                "cut_at_first_full_stop": True,
                "dedupe": True,
            },
        }


def prepare(settings: LLMSettings, dataset: str | None, output: Path) -> LLMPlan:
    settings.validate()
    questions, source = resolve_questions(settings.questions, dataset)
    cache_path = Path(settings.cache) if settings.cache is not None else default_cache_path(output)
    return LLMPlan(settings, questions, source, cache_path)
