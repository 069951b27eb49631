"""susx: training-free, name-only transfer of CLIP-like models (SuS-X) as staged artifacts.

As a library, ``import susx_cli as susx``: the stages ``susx.prompts``, ``susx.curate``, ``susx.embed``,
``susx.merge``, ``susx.calibrate``, ``susx.predict``, ``susx.eval``, ``susx.report``, ``susx.export``,
``susx.inspect``, ``susx.demo``, the reader ``susx.load`` and ``susx.verbose``; in
memory ``susx.methods`` (the method registry), ``susx.search``, ``susx.load_encoder`` (see ``susx_cli.api``). They are imported on first use, so importing the package (and `susx --help`) stays light.
"""

from typing import Any

from susx_cli._version import __version__
from susx_cli.errors import SusxError

# Names served by susx_cli.api, imported when first asked for.
_API = (
    "prompts",
    "curate",
    "embed",
    "merge",
    "export",
    "inspect",
    "demo",
    "report",
    "calibrate",
    "predict",
    "eval",
    "load",
    "verbose",
    "reporting",
    "methods",
    "search",
    "load_encoder",
    "tensor",
    "support",
)

__all__ = ["SusxError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from susx_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'susx_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
