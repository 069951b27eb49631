"""The one exception type every stage raises for bad input; the CLI turns it into a one-line error."""

from __future__ import annotations


class SusxError(Exception):
    """A user-facing error: what went wrong and what to do about it.

    The CLI prints ``error: <message> (hint: <hint>)`` on one line and exits with ``exit_code``.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} (hint: {self.hint})"
        return " ".join(text.split())


def require_range(flag: str, value: int, low: int, high: int | None = None, hint: str | None = None) -> None:
    """Refuse ``value`` of option ``flag`` outside ``low..high`` (no upper end when ``high`` is None),
    naming the bound it crossed: upper bounds catch typos before they become billions of work items."""
    if value < low:
        raise SusxError(f"{flag} must be at least {low:,}, got {value:,}", hint=hint)
    if high is not None and value > high:
        raise SusxError(f"{flag} must be at most {high:,}, got {value:,}", hint=hint)


EXIT_INCOMPLETE = 3


class IncompleteRunError(SusxError):
    """A run that stopped before finishing (requests failed or a budget ran out) but kept its work:
    nothing final was written, and the same command resumes. Exit code 3."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, exit_code=EXIT_INCOMPLETE)


def missing_extra(package: str, extra: str) -> SusxError:
    """Error for an optional dependency that is not installed."""
    return SusxError(
        f"this needs the optional package '{package}', which is not installed",
        hint=f"pip install 'susx[{extra}]'",
    )
