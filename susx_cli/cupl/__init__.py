"""CuPL-style sentences from an LLM: questions per class, answers cleaned, cached on disk, resumable.

For every class, question and sample index one chat-completions request is made (n=1, with a seed
derived from the question and the sample index, so local servers reproduce their answers). Raw answers
go to an append-only JSONL cache (``artifacts.llm_cache``) keyed by (model, endpoint, question,
sample index, options); a rerun or a resumed run asks only for what the cache lacks. Cleaning is applied when the
sentences are read from the cache, so it never costs a request.

Modules: ``settings`` (options, the question set of a dataset, the plan), ``plan`` (requests and
their keys), ``run`` (the request loop and assembly), ``clean`` (answers to sentences).
"""

from susx_cli.artifacts.llm_cache import AnswerCache, default_cache_path
from susx_cli.cupl.clean import CLEANING_VERSION, MIN_CHARS, clean_answer, clean_answers
from susx_cli.cupl.plan import Request, plan_requests, request_key, request_options, request_seed
from susx_cli.cupl.run import Generation, generate
from susx_cli.cupl.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_TOKENS,
    DEFAULT_RETRIES,
    DEFAULT_SAMPLES,
    DEFAULT_SYSTEM,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT,
    LLMPlan,
    LLMSettings,
    default_retry_policy,
    prepare,
)
from susx_cli.errors import EXIT_INCOMPLETE, IncompleteRunError

__all__ = [
    "CLEANING_VERSION",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_RETRIES",
    "DEFAULT_SAMPLES",
    "DEFAULT_SYSTEM",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TIMEOUT",
    "EXIT_INCOMPLETE",
    "MIN_CHARS",
    "AnswerCache",
    "Generation",
    "IncompleteRunError",
    "LLMPlan",
    "LLMSettings",
    "Request",
    "clean_answer",
    "clean_answers",
    "default_cache_path",
    "default_retry_policy",
    "generate",
    "plan_requests",
    "prepare",
    "request_key",
    "request_options",
    "request_seed",
]
