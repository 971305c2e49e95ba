"""Helpers for the pydantic models of driver options and model tables: error messages that name the
key, the value and the rule; model tables with per-field overrides; a strict options base.

No I/O; used by the configuration loader, the drivers and the simulators alike.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from microct.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


class DriverOptions(BaseModel):
    """Base of a driver's ``Options`` model: unknown keys are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


def _key_part(part: Any) -> str:
    """A part of a key path as written, quoted if it is empty or holds a newline or other control character."""
    text = str(part)
    return text if text.isprintable() and text.strip() else repr(text)


def _describe(error: Any) -> str:
    key = ".".join(_key_part(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f"={value!r}"
    return f"{key}{shown}: {error['msg']}"


def validation_message(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming its key (with ``prefix``), value and rule."""
    return "; ".join(f"{prefix}{_describe(e)}" for e in error.errors())


def deep_merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied key by key, nested tables merged rather than replaced."""
    out = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = deep_merged(out[key], value) if nested else value
    return out


def model_from_table(table: Mapping[str, M], key: str, name: str, overrides: Mapping[str, Any] | None = None) -> M:
    """The entry ``name`` of a driver's model table (``key`` names the option, e.g. "model" or "stage")
    with ``overrides`` replacing its fields one by one; ConfigurationError naming the key and value for an
    unknown name or a bad field."""
    if name not in table:
        raise ConfigurationError(f"{key}={name!r} is not in the model table; known: {', '.join(table)}")
    entry = table[name]
    try:
        return type(entry).model_validate(deep_merged(entry.model_dump(), overrides or {}))
    except ValidationError as error:
        raise ConfigurationError(f"{key} {name!r}: {validation_message(error, 'overrides.')}") from None




def parse_option(item: str) -> tuple[str, Any]:
    """A ``KEY=VALUE`` option of the command line (``-O``), VALUE read as a TOML value (number, boolean,
    string, array, inline table), else taken as a string. ConfigurationError if there is no ``=``."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigurationError(f"--option {item!r}: expected KEY=VALUE")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value
