"""Where susx keeps files between runs (no heavy imports: used by fetch, the pool source and the CLI)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder: ``$SUSX_CACHE_DIR``, else ``$XDG_CACHE_HOME/susx``, else ``~/.cache/susx``.

    ``~`` is expanded in both variables, so a value written in a config file works as in a shell.
    """
    if os.environ.get("SUSX_CACHE_DIR"):
        return Path(os.environ["SUSX_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "susx"
    return Path.home() / ".cache" / "susx"
