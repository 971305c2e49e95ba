"""What ``microct sim serve`` asks of every simulator: its ``-O`` options as a pydantic model (checked before
anything starts; a bad one is named with its value, and the allowed options are listed with their types
and defaults), and the port it is to serve on (out of range, in use, privileged: said in words).

A ``WireSimulator`` derives its model from its factory's signature (``options_model``); a simulator may
give its own (``WireSimulator(..., options=MyOptions)``).
"""

from __future__ import annotations

import errno
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from microct.errors import ConfigurationError
from microct.options import allowed_options, toml_text, type_text

LOOPBACK = "127.0.0.1"
PORTS = range(0, 65536)
"""TCP and UDP port numbers; 0 asks for a free one."""

NOT_OPTIONS = frozenset({"self", "faults", "clock", "devices"})
"""Keyword arguments of a simulator's factory that tests and ``sim serve`` pass, never the command line."""


def options_model(factory: Callable[..., Any], forwarded: type[BaseModel] | None = None, exclude: Iterable[str] = (),
                  choices: Mapping[str, Iterable[Any]] | None = None) -> type[BaseModel]:
    """The ``-O`` options of ``factory`` (a class or function) as a strict pydantic model: one field per
    keyword parameter, with its annotation and default, except ``NOT_OPTIONS``; ``choices`` makes a field a
    Literal of those values (listed in messages, checked). ``forwarded``: the model that the factory's
    ``**kwargs`` go to; its fields are options too, except ``exclude`` (those the factory sets itself). A
    factory with ``**kwargs`` and no ``forwarded`` model lets any further key through, for it to check."""
    skip = set(exclude)
    choices = dict(choices or {})
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: take that option as Any
        hints = {}
    fields: dict[str, Any] = {}
    open_ended = False
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = forwarded is None
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY) or \
                parameter.name in NOT_OPTIONS:
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        if parameter.name in choices:
            values = Literal[tuple(choices[parameter.name])]  # type: ignore[valid-type]
            annotation = values | None if default is None else values
        fields[parameter.name] = (annotation, Field(default))
    for name, info in (forwarded.model_fields.items() if forwarded is not None else ()):
        if name not in skip | NOT_OPTIONS and name not in fields:
            fields[name] = (info.annotation, info)
    config = ConfigDict(extra="allow" if open_ended else "forbid", arbitrary_types_allowed=True)
    name = getattr(factory, "__name__", "Simulator")
    return create_model(f"{name}ServeOptions", __config__=config, **fields)


def check_options(model: type[BaseModel], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (``-O KEY=VALUE`` of the command line) checked against ``model``: the keyword arguments
    given, validated (an inline table becomes the model it stands for, ...). ConfigurationError naming each
    bad option and its value, and listing the allowed options with their types and defaults."""
    try:
        checked = model.model_validate(dict(options))
    except ValidationError as error:
        raise ConfigurationError(bad_options(error, model)) from None
    given = {key: getattr(checked, key) for key in checked.model_fields_set if key in model.model_fields}
    given.update(checked.model_extra or {})
    return given


def bad_options(error: ValidationError | str, model: type[BaseModel]) -> str:
    """The message for bad ``-O`` options: each problem (``-O KEY=VALUE: why``; or ``error`` as given, if
    text), then the options ``model`` allows."""
    listing = allowed_options(model)
    if model.model_config.get("extra") == "allow":  # derived from a factory taking **kwargs: it checks those
        listing += "\n  and the further options its documentation names"
    return f"{error if isinstance(error, str) else _problems(error, model)}\n{listing}"


def _problems(error: ValidationError, model: type[BaseModel]) -> str:
    by_option: dict[str, list[Any]] = {}
    for problem in error.errors():
        by_option.setdefault(str(problem["loc"][0]) if problem["loc"] else "", []).append(problem)
    lines = []
    for option, problems in by_option.items():
        info = model.model_fields.get(option)
        if info is not None and len(problems) > 1 and _is_union(info.annotation):  # every member refused it
            lines.append(f"-O {option}={toml_text(problems[0]['input'])}: expected {type_text(info.annotation)}")
            continue
        for problem in problems:
            message = problem["msg"].removeprefix("Value error, ")
            key = ".".join(str(part) for part in problem["loc"])
            if not key:  # a check of the options together (a model validator): its message names them
                lines.append(message)
            elif problem["type"] == "extra_forbidden":
                lines.append(f"-O {key}={toml_text(problem['input'])}: unknown option")
            elif problem["type"] == "missing":
                lines.append(f"-O {key}: required, not given")
            else:
                lines.append(f"-O {key}={toml_text(problem['input'])}: {message}")
    return "; ".join(lines)


def _is_union(annotation: Any) -> bool:
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(members) > 1


def check_port(port: int | None, flag: str = "--tcp") -> None:
    """ConfigurationError naming ``port`` if it is not a port number (0, a free one, to 65535)."""
    if port is not None and port not in PORTS:
        raise ConfigurationError(f"{flag} {port}: not a port number; give 0 (a free port) to 65535")


def port_problem(port: int, error: OSError) -> str:
    """Why ``port`` of 127.0.0.1 cannot be served, in words, from the OSError its bind raised."""
    if error.errno == errno.EADDRINUSE:
        reason = "is in use (another program is serving on it)"
    elif error.errno == errno.EACCES:
        reason = "needs administrator rights (ports below 1024 are privileged); use 1024 to 65535"
    else:
        reason = f"cannot be served: {error.strerror or error}"
    return f"port {port} of {LOOPBACK} {reason}; choose another, or 0 for a free one"
