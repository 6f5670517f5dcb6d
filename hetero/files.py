"""Reading a file the user named: its text (or the YAML data it holds), or one error that says
what is wrong with the path and what to pass instead (the CLI and the sweep spec loader both read
user files this way)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["UserFileError", "read_user_text", "PARSE_FORMATS"]

# Formats read_user_text can parse (worded once here: "is not valid YAML"). A channel
# configuration's JSON is parsed by ChannelConfig, whose one message covers syntax and fields.
PARSE_FORMATS = ("yaml",)


class UserFileError(ValueError):
    """A user-named file that cannot be read as text; the message names the fix."""


def read_user_text(path: str | os.PathLike, what: str, expected: str, *,
                   parse: str | None = None) -> Any:
    """The UTF-8 text of ``path``, or with ``parse="yaml"`` the data it holds.

    ``what`` names the file in the error (``--config``, ``sweep spec``), ``expected`` says what
    to pass (``an LW-DNA JSON file``). Every failure is a :class:`UserFileError`.
    """
    if parse is not None and parse not in PARSE_FORMATS:
        raise ValueError(f"parse must be one of {', '.join(PARSE_FORMATS)}, got {parse!r}")
    name = repr(os.fspath(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "does not exist"
    except IsADirectoryError:
        problem = "is a folder"
    except UnicodeDecodeError:
        problem = "is not a text file"
    except OSError as exc:  # not a folder on the way, no permission, an I/O error
        problem = f"cannot be read ({exc.strerror or exc})"
    else:
        return text if parse is None else _parse_yaml(text, f"{what} {name}")
    raise UserFileError(f"{what} {name} {problem}: pass the path of {expected}")


def _parse_yaml(text: str, label: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserFileError(f"{label} is not valid YAML: {exc}") from None
