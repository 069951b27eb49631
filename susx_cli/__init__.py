"""susx: training-free, name-only transfer of CLIP-like models (SuS-X) as staged artifacts."""

__version__ = "0.1.0"

from susx_cli.errors import SusxError  # noqa: E402

__all__ = ["SusxError", "__version__"]
