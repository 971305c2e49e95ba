"""Helpers for the pydantic models of driver options and model tables: error messages that name the
key, the value and the rule; the options a model allows, with their types and defaults, for such
messages (``allowed_options``); model tables with per-field overrides; a strict options base.

No I/O; used by the configuration loader, the drivers and the simulators alike.
"""

from __future__ import annotations

import json
import tomllib
import types
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

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


_AS_WRITTEN = {"Sequence": "list", "MutableSequence": "list", "Mapping": "dict", "MutableMapping": "dict"}
"""Abstract containers named as the value is written (a TOML array, an inline table)."""


def type_text(annotation: Any) -> str:
    """A field's type as Python spells it, without module paths and without None (an option left out is
    unset): ``str``, ``list[str]``, ``dict[str, Any]``, ``str | list[dict[str, Any]]``; a Literal as the
    type of its values (``literal_values`` lists them)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_text(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_text(arg) for arg in args if arg is not type(None)))
    if origin is Literal:
        return " | ".join(dict.fromkeys(type(value).__name__ for value in args))
    if annotation is Any:
        return "Any"
    if annotation is Ellipsis:
        return "..."
    if origin is not None:
        name = _AS_WRITTEN.get(getattr(origin, "__name__", ""), getattr(origin, "__name__", str(origin)))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]" if args else name
    return getattr(annotation, "__name__", str(annotation))


def literal_values(annotation: Any) -> list[Any]:
    """The values a Literal in ``annotation`` allows (also inside a union); empty if it has none."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [value for arg in get_args(annotation) for value in literal_values(arg)]


def toml_text(value: Any, limit: int = 60) -> str:
    """``value`` as TOML writes it (as ``-O KEY=VALUE`` and configuration files take it), cut to about
    ``limit`` characters."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(toml_text(item, limit) for item in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{key} = {toml_text(item, limit)}" for key, item in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def option_line(name: str, info: FieldInfo) -> str:
    """One option as an error message lists it: ``name: type = default (one of ...)``; a default of None
    shows as ``unset``, a field without default as ``(required)``."""
    text = f"{name}: {type_text(info.annotation)}"
    if info.is_required():
        text += " (required)"
    else:
        default = info.get_default(call_default_factory=True)
        text += " = unset" if default is None else f" = {toml_text(default)}"
    choices = literal_values(info.annotation)
    if choices:
        text += f" (one of {', '.join(toml_text(choice) for choice in choices)})"
    return text


def allowed_options(model: type[BaseModel], how: str = "-O KEY=VALUE") -> str:
    """The options ``model`` allows, one per line (``option_line``), under a heading naming ``how`` they are
    given; for the end of a message about a bad option."""
    lines = [option_line(name, info) for name, info in model.model_fields.items()]
    if not lines:
        return "it takes no options"
    return f"allowed options ({how}):\n" + "\n".join(f"  {line}" for line in lines)
