"""Result files of `susx eval`: one self-describing JSON per (dataset, model, method, support,
calibration) run, in the spirit of CLIP_benchmark's result files; `susx report` joins them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError

RESULT = "susx.result"
RESULT_SCHEMA_VERSION = 1
REQUIRED = ("dataset", "model", "method", "metrics", "config", "config_key", "zero_shot_protocol")


def config_key(config: dict[str, Any]) -> str:
    """A content hash of the run's configuration: equal keys = the same run."""
    return common.sha256_bytes(common.to_json_str(config).encode("utf-8"))[:16]


def write_result(path: Path, result: dict[str, Any]) -> Path:
    record = {"kind": RESULT, "schema_version": RESULT_SCHEMA_VERSION, "tool": common.tool_info(),
              "created": common.now_iso(), **result}
    common.atomic_write_json(path, record)
    return path


def read_result(path: Path) -> dict[str, Any]:
    data = common.read_json(path, "result file")
    if not isinstance(data, dict) or data.get("kind") != RESULT:
        got = f"a {data.get('kind')} file" if isinstance(data, dict) and data.get("kind") else "not a susx result file"
        raise SusxError(f"{path} is {got}, expected {RESULT}", hint="pass result files written by susx eval")
    if data.get("schema_version") != RESULT_SCHEMA_VERSION:
        raise SusxError(
            f"{path} has result schema version {data.get('schema_version')}, this susx reads {RESULT_SCHEMA_VERSION}",
            hint="re-run susx eval with this susx version",
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise SusxError(f"{path} lacks {', '.join(missing)}", hint="the file is damaged or hand-edited; re-run susx eval")
    data["_path"] = str(path)
    return data


def existing_key(path: Path) -> str | None:
    """The config key of an existing result file, or None when there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data.get("config_key") if isinstance(data, dict) and data.get("kind") == RESULT else None


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Result files from files and folders (``*.json`` directly inside or below a folder)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            if not found:
                raise SusxError(f"{p} holds no .json result files", hint="pass the --results-dir of susx eval")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SusxError(f"{p} does not exist", hint="pass result files or folders written by susx eval")
    return [read_result(f) for f in files]
