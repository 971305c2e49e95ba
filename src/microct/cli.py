"""The ``microct`` command: scan, plan, preview, check, home, drivers.

Exit codes: 0 done; 1 device or scan error; 2 configuration error (nothing
was connected); 130 interrupted by Ctrl-C; 143 stopped by SIGTERM. An
interrupted or failed scan leaves its file marked ``aborted`` with the beam off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from microct import __version__
from microct.config import ScanConfig, load_config, parse_config
from microct.errors import ConfigurationError, LockedError, MicroCTError
from microct.faults import load_fault_plan
from microct.homing import AXIS_ROLES, home_axes
from microct.instruments import Instruments, build_instruments
from microct.locks import instrument_locks
from microct.options import parse_option
from microct.outputs import OutputState, check_disk_space, check_writable, inspect_output
from microct.planner import FORMULA, plan_scan
from microct.registry import DRIVERS, SIMULATORS, driver_problems, entry_points_of, load_driver, load_simulator
from microct.resume import stored_configuration
from microct.sequencer import ScanProgress, planned_frames, run_scan

EXIT_ERROR, EXIT_CONFIG, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143

console = Console(stderr=True)


def _terminate(signum, frame) -> None:
    raise SystemExit(EXIT_SIGTERM)


def cmd_scan(args: argparse.Namespace) -> int:
    config, text, output, how = _scan_target(args)
    check_writable(output)
    instruments = build_instruments(config)  # validates everything before anything connects
    if not instruments.detector.writes_own_files:
        rows, cols = (size // config.scan.binning for size in instruments.detector.capabilities.shape)
        frames = sum(planned_frames(config, instruments.sample_out is not None))
        tight = check_disk_space(output, frames * rows * cols * 2)
        if tight:
            console.print(f"[yellow]warning:[/] {escape(tight)}", highlight=False, soft_wrap=True)
    if how == "replace-empty":
        console.print(escape(f"replacing {output}: a scan interrupted before its first frame"), highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[eta]}"))
    try:
        with Progress(*columns, console=console, transient=False, disable=args.quiet) as bar:
            task = bar.add_task("starting", total=None, eta="")

            def report(at: ScanProgress) -> None:
                detail = f" ({at.detail})" if at.detail else ""
                counted = f" {at.done}/{at.total}" if at.total else ""
                eta = f"ETA {_duration(at.eta_s)}" if at.eta_s is not None else ""
                bar.update(task, description=escape(f"{at.phase}{counted}{detail}"), completed=at.frames_done,
                           total=at.frames_total, eta=eta)

            result = run_scan(config, instruments, output, text, report, resume=how == "resume",
                              replace=how in ("replace", "replace-empty"), log_level=_scan_log_level(args))
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, KeyboardInterrupt) or stop.code == EXIT_SIGTERM:
            _tell_kept(output, "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated")
        raise
    print(f"{result.status}: {result.path} ({result.darks} darks, {result.flats} flats, "
          f"{result.projections} projections)")
    return 0


def _scan_target(args: argparse.Namespace) -> tuple[ScanConfig, str, Path, str]:
    """(config, its TOML, output, how: "new", "resume", "replace" (--force) or "replace-empty"), from what is at
    the output; ConfigurationError for what cannot be (nothing touched yet)."""
    if args.resume:
        output = Path(args.resume)
        if args.output or args.force:
            option = "-o/--output" if args.output else "--force"
            raise ConfigurationError(f"{option} cannot be used with --resume: a scan resumes into its own file "
                                     f"({output}); to keep it elsewhere, copy it and its .journal first")
        found = inspect_output(output)
        if found.state is OutputState.COMPLETE:
            raise AlreadyComplete(f"{output}: already complete ({found.frames} frames); nothing to resume")
        if found.state is OutputState.ABSENT:
            raise ConfigurationError(f"--resume {output}: there is no such file, nor the journal of an interrupted "
                                     f"scan of it")
        if found.state is OutputState.OTHER:
            raise ConfigurationError(f"--resume {output}: not a scan microct can resume: {found.detail}")
        if args.config:
            config, text = load_config(args.config)
        else:  # the configuration the interrupted scan started with
            config, text = parse_config(stored_configuration(output), f"{output} (journal)"), ""
        return config, text, output, "resume"
    config, text = load_config(args.config)
    output = Path(args.output or config.scan.output)
    found = inspect_output(output)
    if found.state is OutputState.ABSENT:
        return config, text, output, "new"
    if found.state is OutputState.EMPTY:
        return config, text, output, "replace-empty"
    if not args.force:
        if found.state is OutputState.INTERRUPTED:
            raise ConfigurationError(f"{output} holds an interrupted scan with {found.frames} frames; resume it with "
                                     f"`microct scan --resume {output}`, choose another file with -o, or pass "
                                     f"--force to replace it")
        what = "a complete scan" if found.state is OutputState.COMPLETE else found.detail
        raise ConfigurationError(f"output file {output} exists ({what}); choose another file with -o or pass --force "
                                 f"to replace it")
    return config, text, output, "replace"


class AlreadyComplete(MicroCTError):
    """``--resume`` of a scan that has nothing left to take (exit 0)."""


def _scan_log_level(args: argparse.Namespace) -> int:
    return logging.DEBUG if args.verbose >= 2 else logging.INFO


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _tell_kept(output: Path, what: str) -> None:
    """One line after Ctrl-C or SIGTERM: the file, the frames it keeps, the command that resumes it."""
    try:
        found = inspect_output(output)
    except MicroCTError:
        return
    if found.state in (OutputState.INTERRUPTED, OutputState.EMPTY):
        console.print(escape(f"microct: {what}: {output} keeps {found.frames} frames, marked aborted, beam off; "
                             f"resume with: microct scan --resume {output}"), highlight=False, soft_wrap=True)


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
    instruments = build_instruments(config)  # validates everything before anything connects
    console.print(f"[green]configuration valid[/]: {args.config or 'sim.toml (default)'}")
    with instrument_locks(config):  # its queries would interleave with a running scan's on the same link
        failed = _check(instruments)
    if failed:
        console.print(f"[red]microct check: errors on {', '.join(failed)}[/]", highlight=False)
        return EXIT_ERROR
    return 0


def _check(instruments: Instruments) -> list[str]:
    """Report every device (``check_device``: connect, query, release); the roles with an error."""
    from microct.devices.base import check_device

    out, styles = Console(), {"ok": "green", "warning": "yellow", "error": "red"}
    failed = []
    for role, device in instruments.devices().items():  # each on its own: one that fails stops no other
        findings = check_device(device)
        table = Table(title=f"{role}: {type(device).__name__} ({device.backend})", title_justify="left")
        for column in ("level", "item", "meaning"):
            table.add_column(column, overflow="fold")
        for finding in findings:
            table.add_row(f"[{styles[finding.level]}]{finding.level}[/]", escape(finding.item), escape(finding.text))
        out.print(table)
        if any(finding.level == "error" for finding in findings):
            failed.append(role)
    return failed


def cmd_home(args: argparse.Namespace) -> int:
    config, _ = load_config(args.config)
    roles = [role for role in AXIS_ROLES if getattr(config, role) is not None]
    if args.axis is not None:
        if args.axis not in roles:
            raise ConfigurationError(f"--axis {args.axis}: {args.config or 'sim.toml'} has no [{args.axis}] table; "
                                     f"its axes: {', '.join(roles)}")
        roles = [args.axis]
    instruments = build_instruments(config)  # validates everything before anything connects

    def event(message: str, level: int) -> None:
        style = "[yellow]warning:[/] " if level >= logging.WARNING else ""
        console.print(style + escape(message), highlight=False, soft_wrap=True)

    with instrument_locks(config):  # never the stages of a running scan
        _home(config, instruments, roles, event)
    return 0


def _home(config: ScanConfig, instruments: Instruments, roles: list[str],
          event: Callable[[str, int], None]) -> None:
    try:  # the axes only: the tube and the detector stay unconnected
        axes = {role: getattr(instruments, role) for role in roles}
        for axis in axes.values():
            axis.connect()
        home_axes(instruments, config, event, force=True, roles=roles)
        table = Table(title="axes")
        for column in ("axis", "driver", "position", "referenced"):
            table.add_column(column)
        for role, axis in axes.items():
            referenced = {True: "yes", False: "no", None: "cannot tell"}[axis.read_referenced()]
            table.add_row(role, getattr(config, role).driver, f"{axis.read_position():g} {axis.unit}", referenced)
        Console().print(table)
    finally:
        instruments.close()  # closes what was connected


def cmd_preview(args: argparse.Namespace) -> int:
    from microct.preview import write_preview  # matplotlib and RTK load only for this command

    print(write_preview(args.file, args.output))
    return 0


def _port(text: str) -> int:
    """``--tcp PORT``: a port number, 0 (a free port) to 65535; argparse's error (exit 2) otherwise."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give 0 (a free port) to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range: give 0 (a free port) to 65535")
    return port


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
    except (OSError, OverflowError) as error:  # a plug-in's port or folder problem, said in one line
        raise ConfigurationError(f"sim serve {args.name}: {getattr(error, 'strerror', None) or error}") from None

    def announce() -> None:
        print(served.address, flush=True)  # what to put in a configuration's `connection`
        console.print(escape(f"{args.name} simulator on {served.address}{served.hint}; Ctrl-C or SIGTERM stops it"),
                      highlight=False, soft_wrap=True)

    try:
        stopped_by = _wait_for_stop(announce)
    finally:
        served.stop()
    console.print(f"{args.name} simulator stopped ({stopped_by})", highlight=False)
    return 0


def _wait_for_stop(announce: Callable[[], None]) -> str:
    """Call ``announce``, then wait for Ctrl-C or SIGTERM; the signal's name. From ``announce`` on, either is
    taken as the request to stop, not raised. The signal may land in any thread (a library's worker thread,
    where Python only notes it): the wakeup fd wakes this one, which then runs the handler."""
    received: list[int] = []
    wake, woken = os.pipe()
    os.set_blocking(woken, False)
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(woken, warn_on_full_buffer=False)
    try:
        announce()
        while not received:
            select.select([wake], [], [])
            os.read(wake, 64)
    finally:
        signal.set_wakeup_fd(previous_fd)
        for number, handler in previous.items():
            signal.signal(number, handler)
        os.close(wake)
        os.close(woken)
    return signal.Signals(received[0]).name


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

    check = sub.add_parser("check", help="validate a configuration, then report every device's status",
                           description="Validate CONFIG (exit 2 on an error, nothing connected), then connect to "
                                       "each instrument in turn and report it: one line per item, ok / warning / "
                                       "error, with the meaning of any status or error code. Strictly read-only: "
                                       "queries only, no set-point, no beam, no move, nothing stopped (the links "
                                       "are released without close()'s beam off and stop). A device that fails "
                                       "is an error line and the others are still checked; exit 1 if any device "
                                       "has an error, 0 otherwise.")
    check.add_argument("config", nargs="?", help="TOML configuration (default: the shipped sim.toml)")
    check.set_defaults(func=cmd_check)

    home = sub.add_parser("home", help="home (reference) the axes of a configuration",
                          description="Validate CONFIG, connect its axes only (never the tube or the detector), "
                                      "home each one (Zaber home, PI FRF, motor record HOMF/HOMR ...), referenced "
                                      "or not, except those whose table says home = \"never\", then print each "
                                      "axis' position and whether it reports a position reference. A homing "
                                      "that does not end within the table's home_timeout_s stops the axis and "
                                      "fails.")
    home.add_argument("config", nargs="?", help="TOML configuration (default: the shipped sim.toml)")
    home.add_argument("--axis", choices=AXIS_ROLES, metavar="ROLE", help="home only this axis: rotation or "
                                                                          "sample_out")
    home.set_defaults(func=cmd_home)

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
    where.add_argument("--tcp", "--port", dest="tcp", type=_port, metavar="PORT",
                       help="serve on 127.0.0.1:PORT, 0 to 65535 (0: a free port; for epics, the Channel Access "
                            "server port); a port in use or privileged is an error, never replaced by another")
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
    handler = RichHandler(console=console, show_path=False, level=level)  # its own level: a scan's log file
    handler.addFilter(lambda record: not getattr(record, "told_by_caller", False))  # may want more (scanlog)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except AlreadyComplete as done:
        console.print(escape(str(done)), highlight=False, soft_wrap=True)
        return 0
    except ConfigurationError as error:
        console.print(f"[red]microct: configuration error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except LockedError as error:  # refused before anything was touched
        console.print(f"[red]microct: refused:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except MicroCTError as error:
        console.print(f"[red]microct: {type(error).__name__}:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.print("[red]microct: interrupted[/] (beam off)")
        return EXIT_SIGINT
    except SystemExit as stop:
        if stop.code == EXIT_SIGTERM:
            console.print("[red]microct: terminated[/] (beam off)")
        raise


if __name__ == "__main__":
    sys.exit(main())
