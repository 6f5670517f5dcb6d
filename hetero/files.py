"""Reading a file the user named: its text, or one error that says what is wrong with the path
and what to pass instead (the CLI and the sweep spec loader both read user files this way)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["UserFileError", "read_user_text"]


class UserFileError(ValueError):
    """A user-named file that cannot be read as text; the message names the fix."""


def read_user_text(path: str | os.PathLike, what: str, expected: str) -> str:
    """The UTF-8 text of ``path``. ``what`` names the file in the error (``--config``, ``sweep
    spec``), ``expected`` says what to pass (``an LW-DNA JSON file``)."""
    name = repr(os.fspath(path))
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a folder"
    except UnicodeDecodeError:
        problem = "is not a text file"
    raise UserFileError(f"{what} {name} {problem}: pass the path of {expected}")
