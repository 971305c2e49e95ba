"""Helpers for the pydantic models of driver options and model tables: error messages that name the
key, the value and the rule; model tables with per-field overrides; a strict options base.

No I/O; used by the configuration loader, the drivers and the simulators alike.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from microct.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


class DriverOptions(BaseModel):
    """Base of a driver's ``Options`` model: unknown keys are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


class ModelTableOptions(DriverOptions):
    """Options that name an entry of a model table (the field ``table_key`` names, e.g. "stage" or
    "model") and may replace its fields (``overrides``). Both are checked with the options, before
    anything connects: ConfigurationError naming the key, the value and the known entries, or the
    overridden field. A subclass sets ``model_table`` and ``table_key`` and declares the key's field."""

    model_table: ClassVar[Mapping[str, BaseModel]]
    table_key: ClassVar[str]
    overrides: dict[str, Any] = Field(default_factory=dict, description="fields of the model-table entry to "
                                                                        "replace, field by field")

    @model_validator(mode="after")
    def _table_entry_resolves(self):
        self.table_entry()
        return self

    def table_entry(self) -> Any:
        """The model-table entry the options name, with the overrides applied."""
        return model_from_table(self.model_table, self.table_key, getattr(self, self.table_key), self.overrides)


def _key_part(part: Any) -> str:
    """A part of a key path as written, quoted if it is empty or holds a newline or other control character."""
    text = str(part)
    return text if text.isprintable() and text.strip() else repr(text)


def _describe(error: Any, prefix: str) -> str:
    if not error["loc"]:  # a check of the whole table (a model validator): its message names the keys itself
        where = prefix.rstrip(" .") or "(top level)"
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    key = prefix + ".".join(_key_part(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f"={value!r}"
    return f"{key}{shown}: {error['msg']}"


def validation_message(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming its key (with ``prefix``), value and rule."""
    return "; ".join(_describe(e, prefix) for e in error.errors())


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
