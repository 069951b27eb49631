"""The LLM answer cache of `susx prompts --llm`: raw answers, so a rerun or a resumed run asks only for
what is missing.

Format: JSON lines (see ``jsonl``). The first line, ``{"susx": "susx.llm_cache", "schema_version": 1}``,
marks the file as susx's (``outputs.jsonl_header``): a file without it is never appended to. Then one line
per answered request: ``{"key": sha256 of (model, endpoint, prompt, sample, options), "answer": raw text, "model", "base_url",
"prompt", "sample", "options", "seed", "finish_reason", "time"}``. A later line with the same key wins.
Default place: ``<prompts output stem>.llm-cache.jsonl`` beside prompts.json (``--llm-cache`` to share
one); nothing removes it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from susx_cli.artifacts import outputs
from susx_cli.artifacts.jsonl import JsonlAppender, scan_jsonl
from susx_cli.errors import SusxError


def default_cache_path(output: Path) -> Path:
    """The cache beside a prompts file: ``prompts.json`` -> ``prompts.llm-cache.jsonl``."""
    return output.with_name(f"{output.stem}.llm-cache.jsonl")


class AnswerCache:
    """Raw answers by request key; ``put`` appends and fsyncs (thread-safe).

    Lines that are not a {key, answer} object (a line cut short by a killed run) are counted in
    ``bad_lines`` and ignored: those requests are simply made again.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._answers: dict[str, str] = {}
        self._log: JsonlAppender | None = None
        self._exists = outputs.claim_append(self.path, outputs.LLM_CACHE, option="--llm-cache")
        try:
            rows, self.bad_lines = scan_jsonl(self.path)
        except SusxError as exc:
            raise SusxError(
                f"cannot read the LLM cache {self.path} ({exc.message})",
                hint="check the path, or use --llm-cache",
            ) from exc
        for row in rows[1:] if self._exists else rows:
            if (
                isinstance(row, dict)
                and isinstance(row.get("key"), str)
                and isinstance(row.get("answer"), str)
            ):
                self._answers[row["key"]] = row["answer"]
            else:
                self.bad_lines += 1

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> str | None:
        return self._answers.get(key)

    def put(self, key: str, answer: str, meta: dict[str, Any]) -> None:
        with self._lock:
            if self._log is None:  # opened on the first answer: a run that asks nothing leaves no file
                self._log = JsonlAppender(self.path)
                if not self._exists:
                    self._log.append(outputs.jsonl_header(outputs.LLM_CACHE))
            self._log.append({"key": key, "answer": answer, **meta})
            self._answers[key] = answer

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
