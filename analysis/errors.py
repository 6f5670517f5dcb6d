"""The one exception the analysis raises for a user's mistake (stdlib only: the CLI imports it)."""

from __future__ import annotations


class AnalysisError(RuntimeError):
    """Bad input to the analysis (missing experiment, unreachable store, empty sweep).

    The message says what to do; the CLI prints it without a traceback.
    """
