"""The ``microct`` command: scan, plan, preview, check, drivers.

Exit codes: 0 done; 1 device or scan error; 2 configuration error (nothing
was connected); 130 interrupted by Ctrl-C; 143 stopped by SIGTERM. An
interrupted or failed scan leaves its file marked ``aborted`` with the beam off.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tomllib
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from microct import __version__
from microct.config import load_config, parse_config
from microct.errors import ConfigurationError, MicroCTError
from microct.instruments import build_instruments
from microct.journal import journal_path
from microct.planner import FORMULA, plan_scan
from microct.resume import stored_configuration
from microct.registry import driver_entry_points
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
    from microct.simulators.wire import WireServer, make_responder

    options = dict(_parse_option(item) for item in args.option)
    faults = _fault_schedule(args.faults) if args.faults else None
    if args.name == "epics":
        return _serve_epics(args, options, faults)
    if faults is not None:
        options["faults"] = faults  # the simulated devices inside play the device faults
    try:
        responder = make_responder(args.name, **options)
    except KeyError as error:
        raise ConfigurationError(error.args[0]) from None
    except (TypeError, ValueError) as error:  # a bad option for this simulator
        raise ConfigurationError(f"sim serve {args.name}: {error}") from None
    if faults is not None:
        _require_played(faults, args)
    with WireServer(responder, args.name, faults=faults) as server:
        where = server.serve_pty() if args.tcp is None else f"socket://127.0.0.1:{server.serve_tcp(args.tcp)}"
        print(where, flush=True)  # the port or URL to put in a configuration's `connection`
        visa = f" (VISA resource TCPIP::127.0.0.1::{where.rsplit(':', 1)[1]}::SOCKET)" if args.tcp is not None else ""
        console.print(f"{args.name} simulator on {where}{visa}; Ctrl-C or SIGTERM stops it")
        _wait_for_stop()
    return 0


def _fault_schedule(path: str):
    """A FaultSchedule from a TOML file: optional ``seed``, then ``[[faults]]`` tables (the schema of a
    scan's ``[[simulation.faults]]``, see microct.simulators.faults). ConfigurationError naming the key."""
    from pydantic import TypeAdapter, ValidationError

    from microct.config import validation_message
    from microct.simulators.faults import Fault, FaultSchedule

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"--faults {path}: {error}") from None
    unknown = sorted(set(data) - {"seed", "faults"})
    if unknown:
        raise ConfigurationError(f"--faults {path}: unknown key(s) {', '.join(unknown)}; allowed: seed, [[faults]]")
    try:
        faults = TypeAdapter(list[Fault]).validate_python(data.get("faults", []))
    except ValidationError as error:
        raise ConfigurationError(f"--faults {path}: {validation_message(error, 'faults.')}") from None
    return FaultSchedule(faults, data.get("seed"))


def _require_played(faults, args: argparse.Namespace) -> None:
    """ConfigurationError naming the first fault of ``--faults`` that no simulator served here plays (a
    device it does not simulate, or the scan's writer): such a fault would never fire."""
    played = faults.attached()
    for index, fault in enumerate(faults.faults):
        if fault.device not in played:
            raise ConfigurationError(f"--faults {args.faults}: faults.{index}.device={fault.device!r}: sim serve "
                                     f"{args.name} does not simulate it (it plays the faults of "
                                     f"{', '.join(map(repr, played)) or 'no device'})")


def _serve_epics(args: argparse.Namespace, options: dict, faults=None) -> int:
    from pydantic import ValidationError

    from microct.config import validation_message
    from microct.simulators.epics_beamline import DETECTOR, ROTATION, SAMPLE_OUT, SOURCE, start_beamline
    from microct.simulators.source import SimulatedSourceOptions

    try:
        tube = SimulatedSourceOptions(**options)
    except ValidationError as error:
        raise ConfigurationError(f"sim serve epics: {validation_message(error, '-O ')}") from None
    beamline = start_beamline(args.prefix, args.tcp or 0, source=tube, faults=faults)
    try:
        if faults is not None:
            _require_played(faults, args)
    except ConfigurationError:
        beamline.stop()
        raise
    port = beamline.handle.port
    print(f"{args.prefix} 127.0.0.1:{port}", flush=True)
    names = ", ".join(args.prefix + name for name in (SOURCE, ROTATION, SAMPLE_OUT, DETECTOR))
    console.print(f"EPICS CT simulator ({names}) on 127.0.0.1:{port}; clients set EPICS_CA_ADDR_LIST=127.0.0.1:"
                  f"{port} EPICS_CA_AUTO_ADDR_LIST=NO EPICS_CA_MAX_ARRAY_BYTES=10000000. Ctrl-C stops it")
    try:
        _wait_for_stop()
    finally:
        beamline.stop()
    return 0


def _wait_for_stop() -> None:
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass


def _parse_option(item: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as a TOML value (number, boolean, string, array), else as a string."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigurationError(f"--option {item!r}: expected KEY=VALUE")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def cmd_drivers(args: argparse.Namespace) -> int:
    table = Table(title="registered drivers (entry-point group microct.drivers)")
    for column in ("name", "kind", "backend", "class"):
        table.add_column(column)
    for name, ep in sorted(driver_entry_points().items()):
        try:
            cls = ep.load()
            table.add_row(name, cls.kind, cls.backend, ep.value)
        except Exception as error:  # show a broken plug-in instead of hiding it
            table.add_row(name, "?", "?", f"{ep.value} (cannot load: {error})")
    Console().print(table)
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
    serve.add_argument("name", help="the device simulator: hamamatsu, zaber, spellman, pi, camserver, dexela, "
                                    "or epics (one Channel Access IOC serving a whole simulated CT: tube, two "
                                    "motor records, areaDetector; -O options go to its tube)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (the default)")
    where.add_argument("--tcp", "--port", dest="tcp", type=int, metavar="PORT",
                       help="serve on 127.0.0.1:PORT (0: a free port; for epics, the Channel Access server port)")
    serve.add_argument("--prefix", default="CT:", help="PV prefix of the epics simulator: it serves PREFIX+XRAY: (tube), "
                                                       "PREFIX+ROT:m1 and PREFIX+SMP:m2 (motor records), "
                                                       "PREFIX+DET1: (areaDetector); default CT:")
    serve.add_argument("--faults", metavar="FILE", help="inject faults: a TOML file with [[faults]] tables (kind, "
                                                         "device, trigger; microct.simulators.faults) and an optional "
                                                         "seed")
    serve.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                       help="a simulator option (repeatable), e.g. -O model=L12161-07, -O image_root=/tmp/camserver")
    serve.set_defaults(func=cmd_sim_serve)

    drivers = sub.add_parser("drivers", help="list the registered drivers and simulators",
                             description="List every driver registered in the microct.drivers entry-point group.")
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
        console.print(f"[red]microct: configuration error:[/] {error}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except MicroCTError as error:
        console.print(f"[red]microct: {type(error).__name__}:[/] {error}", highlight=False, soft_wrap=True)
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
