"""The configuration loader against arbitrary files and mutated configurations: ``load_config`` and
``parse_config`` return a ScanConfig or raise one ConfigurationError whose message is one line naming
the file or key (never a pydantic dump, never another exception); ``build_instruments`` of a
configuration that parses constructs the drivers (no I/O) or raises ConfigurationError / LimitError.

Inputs: random bytes; random TOML documents (nested tables and arrays of strings, booleans, integers
up to 10^300, floats with NaN and infinities); the shipped configurations with nasty TOML added (an
integer of 5000 digits, nesting thousands deep) or mutated as data (keys dropped, values replaced
by wrong types or out-of-range values, unknown keys added).

Bugs these found are pinned by the regression tests at the end."""

from __future__ import annotations

import copy
import math
import tomllib
from importlib.resources import files
from typing import Any

import pytest
from fuzz_helpers import toml_document
from hypothesis import event, given, settings
from hypothesis import strategies as st

from microct.config import ScanConfig, load_config, parse_config
from microct.errors import ConfigurationError, LimitError
from microct.instruments import Instruments, build_instruments

SHIPPED: dict[str, dict[str, Any]] = {
    entry.name: tomllib.loads(entry.read_text("utf-8"))
    for entry in files("microct.configs").iterdir() if entry.name.endswith(".toml")}
SHIPPED_TEXT = {entry.name: entry.read_text("utf-8")
                for entry in files("microct.configs").iterdir() if entry.name.endswith(".toml")}
CONFIG = settings(max_examples=max(10, settings.default.max_examples // 2), deadline=None)
"""Fewer examples, no deadline: a file per example, and build_instruments builds simulators."""


def check_message(error: ConfigurationError, origin: str) -> None:
    """One readable line naming ``origin``: no pydantic dump (its "N validation errors for ..." header,
    its URLs, reprs of its objects), no traceback text."""
    message = str(error)
    assert message.startswith((origin, f"cannot read configuration {origin}")), message
    assert "\n" not in message, message
    for dump in ("validation error", "errors.pydantic.dev", "ValidationError", "Traceback", "object at 0x"):
        assert dump not in message, message


def loads_or_configuration_error(path) -> ScanConfig | None:
    try:
        config, _ = load_config(path)
    except ConfigurationError as error:
        check_message(error, str(path))
        return None
    return config


def parses_or_configuration_error(data: dict[str, Any]) -> ScanConfig | None:
    try:
        return parse_config(data, "fuzzed.toml")
    except ConfigurationError as error:
        check_message(error, "fuzzed.toml")
        event("refused by parse_config")
        return None


def builds_or_configuration_error(config: ScanConfig) -> None:
    """build_instruments: Instruments, or ConfigurationError / LimitError with a message."""
    try:
        assert isinstance(build_instruments(config), Instruments)
    except (ConfigurationError, LimitError) as error:
        assert str(error) and "\n" not in str(error), str(error)
        event("parses, but the instruments refuse it")
    else:
        event("parses and builds")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    return tmp_path_factory.mktemp("configs") / "fuzzed.toml"


# -- strategies ---------------------------------------------------------------------------------------------
FIELD_NAMES = sorted({key for data in SHIPPED.values() for table in data.values() if isinstance(table, dict)
                      for key in table} | {"options", "driver", "connection"})
keys = st.one_of(st.sampled_from(sorted({*SHIPPED["sim.toml"], "sample_out"})), st.sampled_from(FIELD_NAMES),
                 st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_characters="\x7f"),
                         min_size=1, max_size=8))
"""Table and field names of the shipped configurations, and other printable keys."""
EXTREMES = [math.nan, math.inf, -math.inf, 0, -1, 0.0, -0.0, 5e-324, 1e308, -1e308, 2**31, 2**63, 2**64, -2**64,
            10**300, True, False, "", "x", "1e3", "∞", "sim-source", [], {}]
scalars = st.one_of(st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=12),
                    st.sampled_from(EXTREMES))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)
"""Any TOML value: scalars (NaN, infinities, integers up to 10^300, odd strings), arrays and tables."""


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into ``value`` (dict keys and list indices)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path for key, child in children for path in [prefix + (key,), *_paths(child, prefix + (key,))]]


def _at(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


STRINGS = sorted({value for data in SHIPPED.values() for path in _paths(data)
                  if isinstance(value := _at(data, path), str)} | {""})
"""Every string of the shipped configurations (driver and model names, resources, paths ...)."""


def _perturbed(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same kind as ``value``, often still valid: numbers scaled, negated, zeroed or made
    extreme; strings swapped for another string of the shipped configurations."""
    if isinstance(value, bool):
        return st.sampled_from([not value, 0, "true"])
    if isinstance(value, (int, float)):
        kind = type(value)
        return st.sampled_from([kind(-value), kind(0), kind(value * 10), kind(value * 10**6), value + 0.5,
                                kind(value) // 2 if kind is int else value / 2, math.nan, math.inf, 2**63])
    if isinstance(value, str):
        return st.sampled_from(STRINGS)
    return values


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped configuration after one to three edits: a key dropped, a value replaced (by any value,
    or perturbed: see _perturbed), a key added (unknown, or a known field where it does not belong).
    Half the edits go into driver options, which parse_config passes on to build_instruments."""
    data = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        in_options = [path for path in paths if "options" in path[:-1]]
        path = draw(st.sampled_from(in_options if in_options and draw(st.booleans()) else paths))
        parent, key = _at(data, path[:-1]), path[-1]
        edit = draw(st.sampled_from(["drop", "replace", "perturb", "perturb", "add"]))
        if isinstance(parent, list) and key >= len(parent):
            continue  # an earlier edit shortened the list
        if edit == "drop":
            del parent[key]
        elif edit == "replace":
            parent[key] = draw(values)
        elif edit == "perturb":
            parent[key] = draw(_perturbed(parent[key]))
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
    return data


NASTY_TOML = ["x = " + "1" * 5000,                          # int() refuses it (tomllib lets it through)
              "x = -" + "9" * 4301,
              "x = 0x" + "f" * 5000,                         # power-of-two bases have no digit limit
              "x = " + "[" * 3000 + "]" * 3000,             # tomllib recurses per level
              "x = " + "[" * 200 + "]" * 200,
              "x = " + "{a = " * 1000 + "1" + "}" * 1000,
              "x" + ".y" * 2000 + " = 1",                   # dotted keys: nested tables, no recursion
              "x = 1979-05-27T07:32:00Z", "x = 07:32:00", "x = 1e99999", "x = nan", "x = -inf",
              "x = '''\n\n'''", 'x = "\\u0000\\t\\"\\\\"', "x = 0o777", "x = +0", "'' = 1", '"\\n" = 1']
"""TOML that is valid, or nearly, and hard on the parser."""


@st.composite
def nasty_documents(draw: st.DrawFn) -> str:
    """A shipped configuration with a NASTY_TOML line at its top, at the end of its last table, or
    under a new table; or the line as the whole document."""
    line = draw(st.sampled_from(NASTY_TOML))
    text = SHIPPED_TEXT[draw(st.sampled_from(sorted(SHIPPED_TEXT)))]
    return draw(st.sampled_from([line + "\n" + text, text + "\n" + line + "\n", text + "\n[extra]\n" + line + "\n",
                                 line + "\n"]))


# -- properties ---------------------------------------------------------------------------------------------
@CONFIG
@given(content=st.binary(max_size=200) | st.sampled_from(sorted(SHIPPED_TEXT)).map(
    lambda name: SHIPPED_TEXT[name].encode("latin-1", errors="replace")))
def test_files_of_any_bytes_load_or_are_configuration_errors(config_file, content):
    config_file.write_bytes(content)
    loads_or_configuration_error(config_file)


@CONFIG
@given(data=st.dictionaries(keys, values, max_size=8))
def test_random_toml_documents_load_or_are_configuration_errors(config_file, data):
    document = toml_document(data)
    tomllib.loads(document)  # the writer's TOML is valid: the fuzzing reaches the validation
    config_file.write_text(document, "utf-8")
    loads_or_configuration_error(config_file)


@CONFIG
@given(text=nasty_documents())
def test_nasty_toml_loads_or_is_a_configuration_error(config_file, text):
    config_file.write_text(text, "utf-8")
    config = loads_or_configuration_error(config_file)
    if config is not None:
        builds_or_configuration_error(config)


@CONFIG
@given(data=mutated_configs())
def test_mutated_configurations_parse_and_build_or_are_configuration_errors(config_file, data):
    config = parses_or_configuration_error(data)
    if config is not None:
        builds_or_configuration_error(config)
    config_file.write_text(toml_document(data), "utf-8")  # the same through the file loader
    loaded = loads_or_configuration_error(config_file)
    assert (loaded is None) == (config is None)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_configurations_survive_the_toml_writer(config_file, name):
    """The writer the mutation test uses loses nothing: a shipped file rewritten loads to the same config."""
    config_file.write_text(toml_document(SHIPPED[name]), "utf-8")
    assert load_config(config_file)[0] == parse_config(SHIPPED[name])


# -- regressions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "message"), [
    ("µA".encode("latin-1"), r"not valid TOML: byte 0xb5 at offset 0 is not UTF-8"),  # UnicodeDecodeError
    (f"x = {'1' * 5000}".encode(), r"not valid TOML: an integer has thousands of digits"),  # ValueError
    (f"x = {'[' * 3000}{']' * 3000}".encode(), r"not valid TOML: arrays or inline tables nested too deeply"),
], ids=["latin-1", "5000-digits", "nested-3000-deep"])
def test_unreadable_toml_is_a_configuration_error_naming_the_file(config_file, content, message):
    # found by fuzzing: these escaped load_config as UnicodeDecodeError, ValueError and RecursionError
    config_file.write_bytes(content)
    with pytest.raises(ConfigurationError, match=f"^{config_file}: {message}"):
        load_config(config_file)


def test_a_negative_simulation_seed_is_a_configuration_error():
    # found by fuzzing: seed = -1 passed the configuration, then numpy's default_rng raised ValueError
    # in build_instruments
    data = copy.deepcopy(SHIPPED["sim.toml"])
    data["simulation"]["seed"] = -1
    with pytest.raises(ConfigurationError, match=r"^fuzzed.toml: simulation.seed=-1: Input should be greater than "
                                                 r"or equal to 0$"):
        parse_config(data, "fuzzed.toml")
