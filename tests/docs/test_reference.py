"""The generated references of the documentation site (docs/gen/reference.py) against the code: every key of
every configuration model and of every registered driver's options is documented, with its description, and
has a description to document; every command and argument is in the CLI reference."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from microct.cli import build_parser, driver_options_schema, scan_config_schema
from microct.config import ScanConfig
from microct.registry import driver_entry_points

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("microct_docs_reference", ROOT / "docs" / "gen" / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


reference = _load_generator()
REFERENCE = reference.Reference.collect()
SECTIONS = REFERENCE.sections()
PAGE = reference.configuration_page(REFERENCE)


def _sections_of(page: str) -> dict[str, str]:
    """The page's sections by anchor: from a heading with ``{#anchor}`` to the next heading."""
    out = {}
    for chunk in re.split(r"\n(?=#{1,4} )", page):
        match = re.match(r"#{1,4} .*\{#([\w-]+)\}\n", chunk)
        if match:
            out[match.group(1)] = chunk
    return out


PAGE_SECTIONS = _sections_of(PAGE)
MODEL_IDS = [reference.qualified_name(model) for model in SECTIONS]


@pytest.mark.parametrize("model", list(SECTIONS), ids=MODEL_IDS)
def test_every_key_has_a_description(model):
    """A key a user may write (a configuration's, a driver option's, a model-table entry's that ``overrides``
    may replace) says what it is: ``Field(description=...)``."""
    missing = [name for name, info in reference.fields_of(model).items() if not (info.description or "").strip()]
    assert not missing, (f"{reference.qualified_name(model)}: no description for {', '.join(missing)} "
                         f"(give each Field(..., description=...))")


@pytest.mark.parametrize("model", list(SECTIONS), ids=MODEL_IDS)
def test_the_reference_documents_every_key_with_its_description(model):
    anchor = SECTIONS[model]
    assert anchor in PAGE_SECTIONS, f"no section #{anchor} for {reference.qualified_name(model)}"
    section = PAGE_SECTIONS[anchor]
    assert f"odel `{reference.qualified_name(model)}`" in section
    rows = {line.split(" | ")[0].removeprefix("| ").strip("`"): line
            for line in section.splitlines() if line.startswith("| `")}
    fields = reference.fields_of(model)
    assert list(rows) == list(fields), "the section's keys are the model's fields, in order"
    for name, info in fields.items():
        description = reference.prose((info.description or "").strip())
        assert rows[name].endswith(f"| {description} |"), (name, rows[name])


def test_every_table_of_a_scan_configuration_and_every_registered_driver_is_in_the_reference():
    assert ScanConfig in SECTIONS
    for name in ("source", "rotation", "detector", "sample_out", "geometry", "scan", "simulation"):
        assert f"`[{name}]`" in PAGE
    assert "`[scan.recovery]`" in PAGE and "`[[simulation.faults]]`" in PAGE
    registered = sorted(driver_entry_points())
    assert [d.name for d in REFERENCE.drivers] == registered
    for name in registered:
        assert f"driver-{name}" in PAGE_SECTIONS
    for needed in ("SerialSettings", "VisaSettings", "SpotMode"):  # nested tables, documented once
        assert PAGE.count(f"### {needed} {{#") == 1


def test_links_inside_the_page_lead_to_its_sections():
    anchors = set(re.findall(r"\{#([\w-]+)\}", PAGE))
    targets = set(re.findall(r"\]\(#([\w-]+)\)", PAGE))
    assert targets and targets <= anchors, targets - anchors


@pytest.mark.parametrize("name, description, unit", [
    ("voltage_kv", None, "kV"), ("current_ua", None, "µA"), ("exposure_s", None, "s"), ("range_deg", None, "degree"),
    ("spot_size_um", None, "µm"), ("power_limit_w", None, "W"), ("exposure_range_s", None, "s"),
    ("ramp_kv_per_s", None, "kV/s"), ("growth_um_per_w", None, "µm/W"), ("dark_current_per_s", None, "1/s"),
    ("counts_per_ua_s", None, "1/(µA·s)"), ("max_velocity", "top speed (unit/s) allowed", "axis unit/s"),
    ("acceleration", "unit/s², for estimates", "axis unit/s²"), ("low_limit", "soft limit (unit)", "axis unit"),
    ("margin", "beyond the series (s)", "s"), ("n_flats", "flat frames", ""), ("unit", None, ""),
])
def test_units_come_from_the_name_or_the_description(name, description, unit):
    assert reference.unit_of(name, description) == unit


def test_allowed_values_show_bounds_choices_patterns_and_model_table_entries():
    row = {line.split(" | ")[0]: line for line in PAGE_SECTIONS["config-scan"].splitlines()}
    assert "≥ 1, ≤ 1000000" in row["| `n_projections`"]
    assert 'one of `"start"`, `"end"`, `"both"`' in row["| `references_at`"]
    assert "**required**" in row["| `voltage_kv`"] and "`360.0`" in row["| `range_deg`"]
    zaber = PAGE_SECTIONS["driver-zaber"]
    assert 'an entry of the model table: `"X-RSW60A"`' in zaber
    assert "fields of [StageModel](#" in zaber


def test_descriptions_are_markdown_safe():
    assert reference.prose("files are <stem>_<n>.tif, ``code_x`` [[faults]] a|b") == \
        r"files are &lt;stem&gt;\_&lt;n&gt;.tif, `code_x` \[\[faults\]\] a\|b"


# -- the command line -------------------------------------------------------------------------------------------

CLI = reference.cli_page()
CLI_SECTIONS = _sections_of(CLI)


def _commands(parser: argparse.ArgumentParser, words: list[str]):
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, [*words, name])


@pytest.mark.parametrize("words, parser", list(_commands(build_parser(), ["microct"])),
                         ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_the_cli_reference_lists_every_command_and_argument(words, parser):
    section = CLI_SECTIONS["-".join(words)]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        for option in action.option_strings or [action.metavar or action.dest]:
            assert f"`{option}" in section or f"`[{option}" in section, (words, option)
        if action.help:
            assert reference.prose(action.help.split("%(")[0])[:40] in section


# -- the JSON schemas -------------------------------------------------------------------------------------------

def test_the_site_serves_the_schema_of_a_configuration_and_of_every_driver():
    files = reference.schema_files()
    assert json.loads(files[reference.SCAN_SCHEMA]) == scan_config_schema()
    for name in driver_entry_points():
        assert json.loads(files[f"{reference.SCHEMA_FOLDER}/driver-{name}.json"]) == driver_options_schema(name)
