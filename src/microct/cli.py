"""The ``microct`` command: scan, plan, preview, check, drivers.

Exit codes: 0 done; 1 device or scan error; 2 configuration error (nothing
was connected); 130 interrupted by Ctrl-C; 143 stopped by SIGTERM. An
interrupted or failed scan leaves its file marked ``aborted`` with the beam off.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from microct import __version__
from microct.config import ScanConfig, load_config, parse_config
from microct.errors import ConfigurationError, MicroCTError
from microct.faults import load_fault_plan
from microct.instruments import build_instruments
from microct.journal import journal_path
from microct.options import parse_option
from microct.planner import FORMULA, plan_scan
from microct.registry import DRIVERS, SIMULATORS, driver_problems, entry_points_of, load_driver, load_simulator
from microct.resume import stored_configuration
from microct.sequencer import run_scan

EXIT_ERROR, EXIT_CONFIG, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143

console = Console(stderr=True)


def _terminate(signum, frame) -> None:
    raise SystemExit(EXIT_SIGTERM)


def cmd_scan(args: argparse.Namespace) -> int:
    if args.resume:
        output = Path(args.resume)
        if args.config:
            config, text = load_config(args.config)
        else:  # the configuration the interrupted scan started with
            config, text = parse_config(stored_configuration(output), f"{output} (journal)"), ""
    else:
        config, text = load_config(args.config)
        output = Path(args.output or config.scan.output)
        stale = journal_path(output)
        if output.exists() or stale.exists():
            if not args.force:
                what = "exists" if output.exists() else f"has the journal of an interrupted scan ({stale})"
                raise ConfigurationError(f"output file {output} {what}; resume it with --resume {output}, choose "
                                         f"another file with -o or pass --force")
            output.unlink(missing_ok=True)
            stale.unlink(missing_ok=True)
    instruments = build_instruments(config)  # validates everything before anything connects
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=args.quiet) as progress:
        task = progress.add_task("starting", total=None)

        def report(done: int, total: int, kind: str) -> None:
            progress.update(task, completed=done, total=total, description=kind)

        result = run_scan(config, instruments, output, text, report, resume=bool(args.resume))
    print(f"{result.status}: {result.path} ({result.darks} darks, {result.flats} flats, "
          f"{result.projections} projections)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    plan = plan_scan(config, build_instruments(config))
    table = Table(title=f"plan for {args.config or 'sim.toml (default)'}", show_header=False)
    rows = [("magnification M = SDD/SOD", f"{plan.magnification:.4g}"),
            ("pixel pitch p (binned)", f"{plan.pixel_pitch_um:.4g} µm"),
            ("voxel size p/M", f"{plan.voxel_size_um:.4g} µm"),
            ("field of view at the axis", f"{plan.field_of_view_mm[0]:.3g} × {plan.field_of_view_mm[1]:.3g} mm"),
            ("target power", f"{plan.power_w:.4g} W"),
            (f"focal spot f ({plan.spot_mode!r} mode at this power)", f"{plan.focal_spot_um:.4g} µm"),
            ("geometric unsharpness f·(M−1), at the detector", f"{plan.geometric_unsharpness_um:.4g} µm"),
            ("detector unsharpness 2·p, at the detector", f"{plan.detector_unsharpness_um:.4g} µm"),
            ("detector-limited resolution 2·p/M, at the object", f"{plan.detector_limited_resolution_um:.4g} µm"),
            ("effective resolution R, at the object", f"{plan.effective_resolution_um:.4g} µm"),
            ("limited by", plan.limited_by),
            ("optimum magnification 1 + (2p/f)²", f"{plan.optimum_magnification:.4g} "
                                                 f"(R = {plan.optimum_resolution_um:.4g} µm, field of view "
                                                 f"{plan.optimum_field_of_view_mm:.3g} mm)"),
            ("largest M with the sample in view (SDD held)",
             "unknown: set scan.sample_diameter_mm" if plan.largest_magnification_in_view is None else
             f"{plan.largest_magnification_in_view:.4g} (sample {plan.sample_diameter_mm:g} mm across); best "
             f"min(M_opt, this) = {plan.best_magnification:.4g} (R = {plan.best_resolution_um:.4g} µm)"),
            ("smallest feature resolved ≈ R", f"{plan.effective_resolution_um:.4g} µm"),
            ("estimated scan time (no warm-up)", f"{plan.scan_time_s:.0f} s ({plan.scan_time_s / 60:.1f} min)")]
    for label, value in rows:
        table.add_row(label, value)
    out = Console()
    out.print(table)
    out.print(f"formula: {FORMULA}", highlight=False)
    for warning in plan.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    instruments = build_instruments(config)
    console.print(f"[green]configuration valid[/]: {args.config or 'sim.toml (default)'}")
    instruments.connect()
    try:
        for role, device in instruments.devices().items():
            table = Table(title=f"{role}: {type(device).__name__}", show_header=False)
            for key, value in device.describe().items():
                table.add_row(key, str(value))
            Console().print(table)
    finally:
        instruments.close()
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from microct.preview import write_preview  # matplotlib and RTK load only for this command

    print(write_preview(args.file, args.output))
    return 0


def cmd_sim_serve(args: argparse.Namespace) -> int:
    if args.name is None:
        return _list_simulators()
    options = dict(parse_option(item) for item in args.option)
    if args.prefix is not None:
        options.setdefault("prefix", args.prefix)
    plan = load_fault_plan(args.faults) if args.faults else None
    try:
        served = load_simulator(args.name).serve(options, plan, args.tcp)
    except ConfigurationError as error:
        raise ConfigurationError(f"sim serve {args.name}: {error}") from None
    try:
        print(served.address, flush=True)  # what to put in a configuration's `connection`
        console.print(escape(f"{args.name} simulator on {served.address}{served.hint}; Ctrl-C or SIGTERM stops it"),
                      highlight=False, soft_wrap=True)
        _wait_for_stop()
    finally:
        served.stop()
    return 0


def _wait_for_stop() -> None:
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass


def _entry_point_table(title: str, group: str, columns: tuple[str, ...], row) -> Table:
    """A table of the plug-ins of ``group``, one ``row(name, loaded object)`` each; a plug-in that cannot be
    loaded is shown with the error, not hidden."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for name, ep in sorted(entry_points_of(group).items()):
        try:
            table.add_row(*row(name, ep.load()), ep.value)
        except Exception as error:
            table.add_row(name, *("?" for _ in columns[1:-1]), f"{ep.value} (cannot load: {error})")
    return table


def _simulators_table() -> Table:
    return _entry_point_table(f"wire simulators (entry-point group {SIMULATORS}; microct sim serve NAME)", SIMULATORS,
                              ("name", "description", "object"), lambda name, sim: (name, sim.description))


def _list_simulators() -> int:
    Console().print(_simulators_table())
    return 0


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def scan_config_schema() -> dict:
    """The JSON schema of a scan configuration (``microct config schema``). Each instrument's ``options`` is
    a free table here: the driver's own Options model checks it (``driver_options_schema``)."""
    return {"$schema": JSON_SCHEMA_DIALECT, **ScanConfig.model_json_schema()}


def driver_options_schema(name: str) -> dict:
    """The JSON schema of the ``options`` table of the registered driver ``name`` (``microct config schema
    --driver NAME``); ConfigurationError naming the registered drivers for an unknown one."""
    cls = load_driver(name, None, "--driver")
    schema = cls.Options.model_json_schema()
    schema.setdefault("description", f"[ROLE.options] of the {name!r} driver")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def cmd_config_schema(args: argparse.Namespace) -> int:
    schema = driver_options_schema(args.driver) if args.driver else scan_config_schema()
    print(json.dumps(schema, indent=2))
    return 0


def cmd_drivers(args: argparse.Namespace) -> int:
    def row(name: str, cls) -> tuple[str, ...]:
        problems = driver_problems(cls)
        if problems:
            raise ConfigurationError("; ".join(problems))
        return name, cls.kind, cls.backend

    out = Console()
    out.print(_entry_point_table(f"registered drivers (entry-point group {DRIVERS})", DRIVERS,
                                 ("name", "kind", "backend", "class"), row))
    out.print(_simulators_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microct", description="Acquire microfocus X-ray CT scans as NXtomo files.")
    parser.add_argument("--version", action="version", version=f"microct {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: info, -vv: debug (every exchange)")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="run a CT scan and write an NXtomo file",
                          description="Run the scan a configuration describes. Without CONFIG, runs the shipped "
                                      "simulated demo (sim.toml). Ctrl-C or SIGTERM stops it safely: beam off, "
                                      "file kept and marked aborted.")
    scan.add_argument("config", nargs="?", help="TOML configuration (default: the shipped sim.toml)")
    scan.add_argument("-o", "--output", help="output .nxs file (default: scan.output of the configuration)")
    scan.add_argument("--force", action="store_true", help="overwrite an existing output file")
    scan.add_argument("--resume", metavar="FILE", help="continue the interrupted (aborted or killed) scan "
                                                       "of FILE from its last whole frame; with CONFIG, checked "
                                                       "against the configuration it started with")
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    scan.set_defaults(func=cmd_scan)

    plan = sub.add_parser("plan", help="print magnification, resolution and scan time for a configuration",
                          description="Plan a scan before switching a tube on: magnification, voxel size, "
                                      "focal-spot size at the set power, geometric and detector unsharpness, the "
                                      "effective resolution and the magnification that minimises it (bounded by "
                                      "scan.sample_diameter_mm, if given, so the sample stays in view), and the "
                                      "estimated scan time. Connects nothing.")
    plan.add_argument("config", nargs="?", help="TOML configuration (default: the shipped sim.toml)")
    plan.set_defaults(func=cmd_plan)

    preview = sub.add_parser("preview", help="write a PNG preview of a scan file",
                             description="Write a PNG with a flat- and dark-corrected projection, the sinogram "
                                         "of the centre row and, with itk-rtk installed (microct[recon]), the "
                                         "centre slice of an FDK reconstruction.")
    preview.add_argument("file", help="NXtomo file written by microct scan")
    preview.add_argument("-o", "--output", help="PNG path (default: the file's path with .png)")
    preview.set_defaults(func=cmd_preview)

    check = sub.add_parser("check", help="validate a configuration, connect, print each device's status",
                           description="Validate CONFIG, connect to every instrument, identify it and print its "
                                       "status. Never switches the X-ray beam on.")
    check.add_argument("config", nargs="?", help="TOML configuration (default: the shipped sim.toml)")
    check.set_defaults(func=cmd_check)

    sim = sub.add_parser("sim", help="run wire-level device simulators",
                         description="Wire-level simulators speak a device's exact protocol, for testing the "
                                     "real drivers without hardware.")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve a simulated device on a pseudo-terminal or a TCP port",
                               description="Serve a simulated device's protocol on a new pseudo-terminal "
                                           "(default; prints the device path) or on a TCP port of 127.0.0.1 "
                                           "(prints the socket:// URL), until Ctrl-C or SIGTERM.")
    serve.add_argument("name", nargs="?", help="a registered simulator (without NAME: list them): hamamatsu, "
                                               "zaber, spellman, pi, camserver, dexela, epics (one Channel Access "
                                               "IOC serving a whole simulated CT: tube, two motor records, "
                                               "areaDetector; -O options go to its tube) and any a plug-in "
                                               "package registers")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (the default)")
    where.add_argument("--tcp", "--port", dest="tcp", type=int, metavar="PORT",
                       help="serve on 127.0.0.1:PORT (0: a free port; for epics, the Channel Access server port)")
    serve.add_argument("--prefix", default=None, help="PV prefix of the epics simulator: it serves PREFIX+XRAY: "
                                                       "(tube), PREFIX+ROT:m1 and PREFIX+SMP:m2 (motor records), "
                                                       "PREFIX+DET1: (areaDetector); default CT:")
    serve.add_argument("--faults", metavar="FILE", help="inject faults: a TOML file with [[faults]] tables (kind, "
                                                         "device, trigger; microct.faults) and an optional "
                                                         "seed")
    serve.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                       help="a simulator option (repeatable), e.g. -O model=L12161-07, -O image_root=/tmp/camserver")
    serve.set_defaults(func=cmd_sim_serve)

    config = sub.add_parser("config", help="describe the configuration file",
                            description="Describe the scan configuration file for editors and tools.")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    schema = config_sub.add_parser("schema", help="print the JSON schema of a scan configuration",
                                   description="Print the JSON schema of a scan configuration (TOML read as "
                                               "JSON), for editors that check and complete TOML against one "
                                               "(e.g. a '#:schema FILE' first line for Taplo / Even Better TOML). "
                                               "An instrument's options table is free in it: each driver checks "
                                               "its own (--driver).")
    schema.add_argument("--driver", metavar="NAME", help="print instead the schema of the options table of the "
                                                         "registered driver NAME (see microct drivers)")
    schema.set_defaults(func=cmd_config_schema)

    drivers = sub.add_parser("drivers", help="list the registered drivers and simulators",
                             description="List every driver (entry-point group microct.drivers) and wire simulator "
                                         "(microct.simulators) that installed packages register.")
    drivers.set_defaults(func=cmd_drivers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except ConfigurationError as error:
        console.print(f"[red]microct: configuration error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except MicroCTError as error:
        console.print(f"[red]microct: {type(error).__name__}:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.print("[red]microct: interrupted[/] (beam off; any scan file is marked aborted)")
        return EXIT_SIGINT
    except SystemExit as stop:
        if stop.code == EXIT_SIGTERM:
            console.print("[red]microct: terminated[/] (beam off; any scan file is marked aborted)")
        raise


if __name__ == "__main__":
    sys.exit(main())
