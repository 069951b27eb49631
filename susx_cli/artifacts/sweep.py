"""Sweep files: `susx eval --config sweep.toml` reads the plan of an eval from TOML.

Keys are eval's options by their parameter names, lists where the option repeats::

    datasets = ["coop11"]             # ids, groups (coop11, paper19) or dataset files
    models = ["RN50:openai"]
    methods = ["tip-x", "gda"]
    modes = ["loo", "kfold"]          # calibration modes
    shots = [1, 2, 4, 8, 16]          # each one folder-shots:K support set
    supports = ["support-sd"]         # support folders (besides shots)
    seeds = [0, 1, 2]
    templates = "ensemble"
    data_root = "data"                # paths are relative to the sweep file's folder
    [hyperparameters]
    alpha_grid = "0.5,1,2"

Only the file is read here; `stages/eval.sweep_options` merges it with the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError

LISTS = ("datasets", "models", "pretrained", "methods", "modes", "shots", "supports", "seeds")
PATHS = ("data_root", "work_dir", "results_dir", "cupl_dir", "prompts_path", "templates_file")


def read_sweep(path: Path) -> dict[str, Any]:
    """The options a sweep file sets: lists as lists, paths resolved against the file's folder."""
    if sys.version_info >= (3, 11):
        import tomllib  # novermin: the 3.10 branch below imports tomli
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SusxError(f"cannot read sweep file {path}: {exc.strerror}", hint="check the path") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SusxError(f"{path} is not a valid TOML file: {exc}", hint="check its syntax") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in LISTS:
            value = value if isinstance(value, list) else [value]
            if key == "supports":  # folders relative to the file; folder-shots:K as is
                value = [
                    v if str(v).startswith("folder-shots:") else Path(path).parent / str(v) for v in value
                ]
        elif key in PATHS and isinstance(value, str):
            value = Path(path).parent / value
        elif key == "hyperparameters" and not isinstance(value, dict):
            raise SusxError(
                f"{path}: hyperparameters must be a table", hint="[hyperparameters] alpha_grid = ..."
            )
        out[key] = value
    return out
