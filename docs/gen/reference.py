"""The generated pages of the documentation site: the configuration reference (every key of a scan
configuration and of every registered driver's options), the JSON schemas, and the command-line reference.

Nothing generated is committed: MkDocs runs this file as a hook (``hooks:`` in mkdocs.yml) and adds the
pages to the site as it builds, so they always match the code. ``tests/docs/test_reference.py`` runs the
same functions. To look at the pages without MkDocs: ``python docs/gen/reference.py OUTPUT_FOLDER``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from microct import cli
from microct.config import ScanConfig
from microct.registry import driver_entry_points

CONFIGURATION_PAGE = "configuration.md"
CLI_PAGE = "cli.md"
SCHEMA_PAGE = "config-schema.md"  # written by hand; links to the schema files
SCHEMA_FOLDER = "schema"
SCAN_SCHEMA = f"{SCHEMA_FOLDER}/scan-config.json"

# -- models and their fields ----------------------------------------------------------------------------------


def is_model(thing: Any) -> bool:
    """A pydantic model class or pydantic dataclass (``Geometry`` is one)."""
    return isinstance(thing, type) and (issubclass(thing, BaseModel) or
                                        (dataclasses.is_dataclass(thing) and hasattr(thing, "__pydantic_fields__")))


def fields_of(model: type) -> dict[str, FieldInfo]:
    """The fields of a pydantic model or pydantic dataclass, in declaration order."""
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    return dict(model.__pydantic_fields__)  # type: ignore[attr-defined]


def qualified_name(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def models_in(annotation: Any) -> Iterator[type]:
    """Every model class an annotation names (``SerialSettings``, ``list[Fault]``, ``dict[str, SpotMode]``)."""
    if is_model(annotation):
        yield annotation
    for arg in get_args(annotation):
        yield from models_in(arg)


def table_entry_model(options: type) -> type | None:
    """The model of a model-table entry, for options built on the kit's ``ModelTableOptions``."""
    table = getattr(options, "model_table", None)
    if not isinstance(table, dict) or not table or not isinstance(getattr(options, "table_key", None), str):
        return None
    entry = type(next(iter(table.values())))
    return entry if is_model(entry) else None


@dataclasses.dataclass
class Section:
    """One documented model: where it appears in a configuration (``[scan]``, ``[source.options]``...)."""

    model: type
    anchor: str
    places: list[str] = dataclasses.field(default_factory=list)


def _toml_place(path: str, annotation: Any) -> str:
    """How a table of a model reached through ``path`` is written in TOML: ``[path]``, ``[[path]]`` (an
    array of tables) or ``[path.NAME]`` (a table of tables)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) in (list, tuple):
        return f"[[{path}]]"
    if get_origin(annotation) is dict:
        return f"[{path}.NAME]"
    return f"[{path}]"


def configuration_sections() -> list[Section]:
    """The tables of a scan configuration, each model once, in the order a reader meets them."""
    sections: dict[type, Section] = {}
    queue: list[tuple[type, str]] = [(ScanConfig, "")]
    while queue:
        model, path = queue.pop(0)
        for name, info in fields_of(model).items():
            key = f"{path}.{name}" if path else name
            for nested in models_in(info.annotation):
                place = _toml_place(key, info.annotation)
                if nested not in sections:
                    sections[nested] = Section(nested, "config-" + re.sub(r"[^a-z0-9]+", "-", key.lower()))
                    queue.append((nested, key))
                elif len(sections[nested].places) == 1:  # a model of several tables: named after the model
                    sections[nested].anchor = "config-" + nested.__name__.lower()
                if place not in sections[nested].places:
                    sections[nested].places.append(place)
    return list(sections.values())


@dataclasses.dataclass
class Driver:
    name: str
    cls: type
    distribution: str

    @property
    def options(self) -> type:
        return self.cls.Options  # type: ignore[attr-defined, no-any-return]


def registered_drivers() -> list[Driver]:
    """Every driver of the entry-point group ``microct.drivers``, by name."""
    drivers = []
    for name, ep in sorted(driver_entry_points().items()):
        cls = ep.load()  # a driver that cannot be loaded fails the build: its options could not be documented
        drivers.append(Driver(name, cls, getattr(ep.dist, "name", None) or "?"))
    return drivers


def nested_sections(drivers: list[Driver], taken: set[type]) -> list[Section]:
    """The models inside driver options (link settings, spot modes, model-table entries ...), each once."""
    found: dict[type, Section] = {}

    def visit(model: type, where: str) -> None:
        for name, info in fields_of(model).items():
            for nested in models_in(info.annotation):
                if nested in taken:
                    continue
                if nested not in found:
                    found[nested] = Section(nested, "")
                    visit(nested, f"{where}.{name}")
                found[nested].places.append(f"{where}.{name}")

    for driver in drivers:
        visit(driver.options, f"{driver.name}: options")
        entry = table_entry_model(driver.options)
        if entry is not None and entry not in taken:
            if entry not in found:
                found[entry] = Section(entry, "")
                visit(entry, f"{driver.name}: overrides")
            found[entry].places.append(f"{driver.name}: overrides")
    sections = sorted(found.values(), key=lambda s: s.model.__name__.lower())
    names = [s.model.__name__.lower() for s in sections]
    for section in sections:
        simple = section.model.__name__.lower()
        unique = names.count(simple) == 1
        section.anchor = simple if unique else re.sub(r"[^a-z0-9]+", "-", qualified_name(section.model).lower())
    return sections


SCAN_CONFIGURATION = "scan-configuration"
"""The anchor of the top-level tables' section."""


@dataclasses.dataclass
class Reference:
    """Everything the configuration reference documents, each model in one section."""

    config: list[Section]
    drivers: list[Driver]
    nested: list[Section]

    @classmethod
    def collect(cls) -> Reference:
        config = configuration_sections()
        drivers = registered_drivers()
        return cls(config, drivers, nested_sections(drivers, {s.model for s in config} | {d.options for d in drivers}))

    def sections(self) -> dict[type, str]:
        """Every documented model and the anchor of its section: the top-level tables, the tables of a scan
        configuration, each registered driver's Options, and the models nested in those."""
        out: dict[type, str] = {ScanConfig: SCAN_CONFIGURATION}
        out.update({s.model: s.anchor for s in self.config})
        for d in self.drivers:
            out.setdefault(d.options, f"driver-{d.name}")
        out.update({s.model: s.anchor for s in self.nested})
        return out


def missing_descriptions(reference: Reference | None = None) -> dict[str, list[str]]:
    """Fields without a description, by the model that declares them (qualified name)."""
    missing: dict[str, list[str]] = {}
    for model in (reference or Reference.collect()).sections():
        names = [name for name, info in fields_of(model).items() if not (info.description or "").strip()]
        if names:
            missing[qualified_name(model)] = names
    return missing


# -- one field as a row -----------------------------------------------------------------------------------------

UNITS = {"kv": "kV", "ua": "µA", "ma": "mA", "s": "s", "ms": "ms", "mm": "mm", "deg": "degree", "um": "µm",
         "w": "W", "hz": "Hz"}
"""Units by the suffix of a key's name (``voltage_kv``, ``ramp_kv_per_s``, ``counts_per_ua_s``)."""
_TEXT_UNITS = {"s": "s", "ms": "ms", "mm": "mm", "µm": "µm", "um": "µm", "deg": "degree", "degree": "degree",
               "degrees": "degree", "kV": "kV", "µA": "µA", "uA": "µA", "mA": "mA", "W": "W", "Hz": "Hz",
               "unit": "axis unit", "unit/s": "axis unit/s", "unit/s²": "axis unit/s²"}
"""Units a description may give, in parentheses ("for a whole reply (s)") or first ("unit/s², for ...")."""
_UNIT_IN_TEXT = re.compile(r"\((" + "|".join(re.escape(u) for u in sorted(_TEXT_UNITS, key=len, reverse=True))
                           + r")\)")
_UNIT_FIRST = re.compile(r"^(unit/s²|unit/s|unit)(?![\w/])")


def unit_of(name: str, description: str | None) -> str:
    """The unit of a key: from its name's suffix, else a unit the description gives."""
    parts = name.lower().split("_")
    if "per" in parts[1:-1]:
        at = len(parts) - 1 - parts[::-1].index("per")
        below = parts[at + 1:]
        if all(part in UNITS for part in below):
            denominator = "·".join(UNITS[part] for part in below)
            denominator = f"({denominator})" if len(below) > 1 else denominator
            above = UNITS.get(parts[at - 1], "1")
            return f"{above}/{denominator}"
    elif len(parts) >= 2 and parts[-1] in UNITS:
        return UNITS[parts[-1]]
    text = (description or "").strip()
    match = _UNIT_FIRST.match(text) or _UNIT_IN_TEXT.search(text)
    return _TEXT_UNITS[match.group(1)] if match else ""


def toml_value(value: Any) -> str:
    """A value as it is written in TOML (for defaults and allowed values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, BaseModel):
        return toml_value(value.model_dump(exclude_defaults=True))
    if isinstance(value, float):
        return repr(value)
    return str(value)


Link = Callable[[type], str]


def type_text(annotation: Any, link: Link) -> str:
    """A TOML-minded type name, nested models linked (``table`` → their section)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return ""
    if origin is typing.Annotated:
        return type_text(args[0], link)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(arg, link) for arg in args if arg is not type(None)]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if origin is Literal:
        return " or ".join(dict.fromkeys(type_text(type(v), link) for v in args))
    if is_model(annotation):
        return f"table ({link(annotation)})"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "float"
    if annotation is str:
        return "string"
    if annotation is Any:
        return "any"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"array of {type_text(args[0], link)}"
        return "array [" + ", ".join(type_text(arg, link) for arg in args) + "]"
    if origin is list:
        inner = args[0] if args else Any
        return f"array of tables ({link(inner)})" if is_model(inner) else f"array of {type_text(inner, link)}"
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        if value is Any:
            return "table"
        if is_model(value):
            return f"table of tables ({link(value)}), by name"
        return f"table of {type_text(value, link)}"
    return getattr(annotation, "__name__", str(annotation))


def _literal_values(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [v for arg in get_args(annotation) for v in _literal_values(arg)]


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:.12g}"


def _count(n: int, stem: str) -> str:
    """``1 character``, ``31 characters``, ``1 entry``, ``2 entries``."""
    if stem == "entr":
        return f"{n} {'entry' if n == 1 else 'entries'}"
    return f"{n} {stem}{'' if n == 1 else 's'}"


def _is_text(annotation: Any) -> bool:
    return annotation is str or any(_is_text(arg) for arg in get_args(annotation))


def allowed_text(model: type, name: str, info: FieldInfo, link: Link) -> str:
    """Bounds, choices and patterns of a field."""
    rules = []
    for rule in info.metadata:
        for attribute, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if isinstance(rule, getattr(annotated_types, attribute.title())):
                rules.append(f"{sign} {_number(getattr(rule, attribute))}")
        what = "character" if _is_text(info.annotation) else "entr"
        if isinstance(rule, annotated_types.MinLen) and rule.min_length:
            rules.append(f"at least {_count(rule.min_length, what)}")
        if isinstance(rule, annotated_types.MaxLen):
            rules.append(f"at most {_count(rule.max_length, what)}")
        pattern = getattr(rule, "pattern", None)
        if isinstance(pattern, str):
            rules.append(f"matches `{pattern}`")
    choices = _literal_values(info.annotation)
    if choices:
        rules.append("one of " + ", ".join(f"`{toml_value(v)}`" for v in choices))
    table = getattr(model, "model_table", None)
    if isinstance(table, dict) and name == getattr(model, "table_key", None):
        rules.append("an entry of the model table: " + ", ".join(f"`{toml_value(k)}`" for k in table))
    entry = table_entry_model(model)
    if name == "overrides" and entry is not None:
        rules.append(f"fields of {link(entry)}")
    return ", ".join(rules)


def default_text(info: FieldInfo, link: Link) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if is_model(type(value)):
            shown = toml_value(value)
            return f"its own defaults ({link(type(value))})" if shown == "{}" else f"`{shown}`"
        return f"`{toml_value(value)}`"
    if info.default is PydanticUndefined:
        return "**required**"
    if info.default is None:
        return "unset"
    return f"`{toml_value(info.default)}`"


def _cell(text: str) -> str:
    """Markdown for a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose(text: str) -> str:
    """Text written in the code (a description, a docstring) as Markdown: one line, reStructuredText's double
    backquotes as Markdown's, and outside code spans the characters Markdown would read as markup (``<tag>``,
    ``[link]``, ``*emphasis*``) escaped."""
    text = " ".join(text.replace("``", "`").split())
    out, at = [], 0
    for span in _CODE_SPAN.finditer(text):
        out += [_escape(text[at:span.start()]), span.group(0)]
        at = span.end()
    out.append(_escape(text[at:]))
    return _cell("".join(out))


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]])", r"\\\1", text)


def field_rows(model: type, link: Link) -> list[str]:
    rows = ["| key | type (unit) | default | allowed | description |", "|---|---|---|---|---|"]
    for name, info in fields_of(model).items():
        description = (info.description or "").strip()
        unit = unit_of(name, description)
        cells = [f"`{name}`", type_text(info.annotation, link) + (f" ({unit})" if unit else ""),
                 default_text(info, link), allowed_text(model, name, info, link)]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + f" | {prose(description)} |")
    return rows


def docstring_summary(model: type) -> str:
    """The first paragraph of a model's own docstring (none for pydantic's inherited one)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return prose(inspect.cleandoc(doc).split("\n\n")[0])


# -- the configuration page ---------------------------------------------------------------------------------------

KINDS = {"source": "X-ray source", "axis": "axis", "detector": "detector"}


def configuration_page(reference: Reference | None = None) -> str:
    reference = reference or Reference.collect()
    config, drivers, nested = reference.config, reference.drivers, reference.nested
    anchors = reference.sections()

    def link(model: type) -> str:
        return f"[{model.__name__}](#{anchors[model]})"

    out = [
        "# Configuration reference",
        "",
        "Every key of a scan configuration (one TOML file per scan) and of the `options` table of every "
        "registered driver, generated from the models that validate them when the site is built. Unknown keys "
        "are errors, so a typo never passes silently. Units come from the key's name (`_kv` kV, `_ua` µA, "
        "`_s` seconds, `_mm` mm, `_deg` degrees, `_um` µm, `_w` W) or its description; *unset* means the key "
        "may be left out and has no value. `microct config schema` prints the same rules as a JSON schema "
        f"for editors ([JSON schema]({SCHEMA_PAGE})).",
        "",
        f"## Scan configuration {{#{SCAN_CONFIGURATION}}}",
        "",
        f"Model `{qualified_name(ScanConfig)}`: the top-level tables.",
        "",
        *field_rows(ScanConfig, link),
        "",
    ]
    for section in config:
        places = ", ".join(f"`{p}`" for p in section.places)
        out += [f"### {places} {{#{section.anchor}}}", "", f"Model `{qualified_name(section.model)}`."]
        summary = docstring_summary(section.model)
        if summary:
            out += ["", summary]
        out += ["", *field_rows(section.model, link), ""]

    out += [
        "## Driver options",
        "",
        "An instrument table names its `driver`; its `options` table (`[source.options]`, "
        "`[rotation.options]` ...) is checked against that driver's own `Options` model when the "
        "instruments are built, before anything connects. The drivers below are those registered in the "
        "entry-point group `microct.drivers` by the packages installed where the site was built (`microct "
        "drivers` lists yours). Each driver's options as a JSON schema: `microct config schema --driver "
        "NAME`, or the file linked in its section.",
        "",
        "| driver | kind | link | package |",
        "|---|---|---|---|",
        *(f"| [`{d.name}`](#driver-{d.name}) | {KINDS.get(d.cls.kind, d.cls.kind)} | {d.cls.backend} | "  # type: ignore[attr-defined]
          f"{d.distribution} |" for d in drivers),
        "",
    ]
    for d in drivers:
        kind = KINDS.get(d.cls.kind, d.cls.kind)  # type: ignore[attr-defined]
        out += [f"### `{d.name}` {{#driver-{d.name}}}", "",
                f"{kind}, {d.cls.backend} (`{qualified_name(d.cls)}`, package {d.distribution}); "  # type: ignore[attr-defined]
                f"options model `{qualified_name(d.options)}`; "
                f"[JSON schema]({SCHEMA_FOLDER}/driver-{d.name}.json)."]
        summary = docstring_summary(d.options)
        if summary:
            out += ["", summary]
        out += ["", *field_rows(d.options, link), ""]

    out += [
        "## Tables inside driver options",
        "",
        "Link settings, spot modes, model-table entries (the fields an `overrides` table may replace) and "
        "other tables that driver options hold, each documented once.",
        "",
    ]
    for section in nested:
        used = ", ".join(f"`{driver}` (`{path}`)" for driver, _, path in
                         (place.partition(": ") for place in dict.fromkeys(section.places)))
        title = section.model.__name__
        if section.anchor != title.lower():  # models of the same name: say whose
            title += f" ({section.model.__module__})"
        out += [f"### {title} {{#{section.anchor}}}", "",
                f"Model `{qualified_name(section.model)}`; used by {used}."]
        if any(place.endswith(": overrides") for place in section.places):
            out += ["", "In an `overrides` table every key is optional: it replaces that field of the named "
                        "model-table entry."]
        summary = docstring_summary(section.model)
        if summary:
            out += ["", summary]
        out += ["", *field_rows(section.model, link), ""]
    return "\n".join(out)


# -- JSON schemas ---------------------------------------------------------------------------------------------------


def schema_files() -> dict[str, str]:
    """The JSON schemas the site serves: the scan configuration's and each registered driver's options."""
    files = {SCAN_SCHEMA: json.dumps(cli.scan_config_schema(), indent=2) + "\n"}
    for d in registered_drivers():
        files[f"{SCHEMA_FOLDER}/driver-{d.name}.json"] = json.dumps(cli.driver_options_schema(d.name), indent=2) + "\n"
    return files


# -- the command-line page ----------------------------------------------------------------------------------------


def _argument_name(action: argparse.Action) -> str:
    if not action.option_strings:
        name = action.metavar or action.dest
        return f"`{name}`" if action.nargs not in ("?", "*") else f"`[{name}]`"
    takes_value = action.nargs != 0
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"`{o} {metavar}`" if takes_value else f"`{o}`" for o in action.option_strings)


def _argument_default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS, False, []) or action.nargs == 0 and action.default is False:
        return ""
    if isinstance(action, argparse._CountAction) and action.default == 0:
        return ""
    return f"`{action.default}`"


def _command_anchor(words: list[str]) -> str:
    return "-".join(words)


def _command_section(parser: argparse.ArgumentParser, words: list[str], level: int, help_text: str) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=400)
    formatter = parser._get_formatter()
    out = [f"{'#' * level} `{' '.join(words)}` {{#{_command_anchor(words)}}}", ""]
    description = parser.description or help_text
    if description:
        out += [prose(description), ""]
    out += ["```", parser.format_usage().strip().removeprefix("usage: "), "```", ""]
    exclusive = {id(a): group for group in parser._mutually_exclusive_groups for a in group._group_actions}
    rows, commands = [], None
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            commands = action
            continue
        text = prose(formatter._expand_help(action)) if action.help else ""
        notes = []
        if action.choices is not None:
            notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
        if action.required and action.option_strings:
            notes.append("required")
        if id(action) in exclusive:
            others = [o.option_strings[0] for o in exclusive[id(action)]._group_actions if o is not action]
            notes.append("not with " + ", ".join(f"`{o}`" for o in others))
        if notes:
            text += f" ({'; '.join(notes)})"
        rows.append(f"| {_argument_name(action)} | {_argument_default(action)} | {text} |")
    if rows:
        out += ["| argument | default | description |", "|---|---|---|", *rows, ""]
    if commands is not None:
        helps = {a.dest: a.help or "" for a in commands._choices_actions}
        out += ["| command | what it does |", "|---|---|"]
        out += [f"| [`{' '.join([*words, name])}`](#{_command_anchor([*words, name])}) | {prose(helps.get(name, ''))} |"
                for name in commands.choices]
        out += [""]
        for name, sub in commands.choices.items():
            out += _command_section(sub, [*words, name], min(level + 1, 4), helps.get(name, ""))
    return out


def cli_page() -> str:
    parser = cli.build_parser()
    out = ["# CLI reference", "",
           "Every command of `microct`, with its arguments, their defaults and help, generated from the "
           "command's own parser (`microct.cli.build_parser()`) when the site is built; `microct COMMAND -h` "
           "prints the same.", "",
           f"Exit codes: 0 done; {cli.EXIT_ERROR} device or scan error; {cli.EXIT_CONFIG} configuration error "
           f"(nothing was connected); {cli.EXIT_SIGINT} interrupted by Ctrl-C; {cli.EXIT_SIGTERM} stopped by "
           "SIGTERM. An interrupted or failed scan leaves its file marked `aborted` with the beam off.", ""]
    out += _command_section(parser, ["microct"], 2, "")
    return "\n".join(out)


# -- the driver kit's exports ----------------------------------------------------------------------------------

DRIVERKIT_EXPORTS = "<!-- generated: driverkit exports -->"


def driverkit_exports() -> str:
    """A table of ``microct.driverkit.__all__``: each name cross-referenced (mkdocs-autorefs) to the module
    that defines it, with the first line of its docstring."""
    import ast

    import microct.driverkit as kit

    source = Path(kit.__file__).read_text(encoding="utf-8")
    origin = {alias.asname or alias.name: f"{node.module}.{alias.name}"
              for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    rows = ["| name | defined in | what it is |", "|---|---|---|"]
    for name in kit.__all__:
        path = origin[name]
        thing = getattr(kit, name)
        module = path.rsplit(".", 1)[0]
        doc = inspect.getdoc(thing) if getattr(thing, "__module__", None) == module else _attribute_docstring(path)
        summary = prose(doc.split("\n\n")[0]) if doc else ""
        rows.append(f"| [`{name}`][{path}] | `{path.rsplit('.', 1)[0]}` | {summary} |")
    return "\n".join(rows)


def _attribute_docstring(path: str) -> str | None:
    """The string under a module-level assignment (``AxisUnit = Literal[...]`` then ``\"\"\"...\"\"\"``)."""
    import ast
    import importlib

    module_name, name = path.rsplit(".", 1)
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    for node, after in zip(tree.body, tree.body[1:]):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        named = any(isinstance(target, ast.Name) and target.id == name for target in targets)
        if named and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            return inspect.cleandoc(after.value.value)
    return None


# -- everything, for MkDocs and for the command line -------------------------------------------------------------


def generated_files() -> dict[str, str]:
    """Every generated file of the site, by its path in the site's docs folder."""
    return {CONFIGURATION_PAGE: configuration_page(), CLI_PAGE: cli_page(), **schema_files()}


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated files to the site (they exist only in the build)."""
    from mkdocs.structure.files import File

    for path, content in generated_files().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: fill in the generated parts of hand-written pages."""
    if DRIVERKIT_EXPORTS in markdown:
        markdown = markdown.replace(DRIVERKIT_EXPORTS, driverkit_exports())
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the generated documentation pages into a folder.")
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    for path, content in generated_files().items():
        target = args.output / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
