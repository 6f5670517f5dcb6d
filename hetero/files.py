"""Reading a file the user named: its text (or the YAML data it holds), or one error that says
what is wrong with the path and what to pass instead (the CLI and the sweep spec loader both read
user files this way)."""

from __future__ import annotations

import functools
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
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 (a SafeLoader, see below)
    except _Refused as exc:
        raise UserFileError(f"{label}: {exc}") from None
    except RecursionError:
        raise UserFileError(f"{label} is nested too deeply to be a spec") from None
    except yaml.YAMLError as exc:
        raise UserFileError(f"{label} is not valid YAML: {exc}") from None


# Values a document may hold once its aliases (*name) are expanded: a spec holds about a hundred,
# and a "billion laughs" document of a few hundred bytes would expand to billions (every error
# message or check that walks it would never end).
MAX_YAML_VALUES = 10_000
YAML_FLOAT = r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"


class _Refused(ValueError):
    """A YAML document that parses but that hetero refuses (its message names the fix)."""


@functools.cache
def _strict_loader() -> type:
    """PyYAML's SafeLoader, stricter: a repeated key is an error (not "the last one wins"),
    aliases may expand to at most MAX_YAML_VALUES values, and ``1e6`` is a number (YAML 1.2;
    YAML 1.1 wants ``1.0e+6``)."""
    import re

    import yaml

    class StrictLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
            return super().compose_node(parent, index)

        def compose_document(self):
            node = super().compose_document()
            if self.aliases:   # a document without aliases is as big as its text
                _expanded_size(node, {})
            return node

        def construct_mapping(self, node, deep=False):
            seen: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in seen:
                        raise _Refused(f"key {key.value!r} appears twice (lines "
                                       f"{seen[key.tag, key.value]} and {line}): keep one")
                    seen[key.tag, key.value] = line
            return super().construct_mapping(node, deep=deep)

    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(YAML_FLOAT),
                                       list("-+0123456789"))
    return StrictLoader


def _expanded_size(node, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias expanded (shared nodes counted once per
    use, computed once each); :class:`_Refused` past MAX_YAML_VALUES."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1   # a recursive alias counts once
    children = node.value if isinstance(node.value, list) else []
    flat = [n for child in children for n in (child if isinstance(child, tuple) else (child,))]
    total = 1 + sum(_expanded_size(child, sizes) for child in flat)
    if total > MAX_YAML_VALUES:
        raise _Refused(f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values "
                       f"(line {node.start_mark.line + 1}): write the values out")
    sizes[id(node)] = total
    return total
