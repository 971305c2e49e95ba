"""Wire drivers (serial and VISA): round trip per command against a bare transport loop, commands
and bytes per projection, and what the serial exchanges cost at the devices' real baud rates.

    python benchmarks/bench_wire_drivers.py [--n 2000]

For round trips the wire simulators run in their own processes (`microct sim serve`), so that the
measured client does not share a GIL with them; for command counts they run in this process. "Bare
loop" = the library alone on the driver's own link (its pyserial port or pyvisa-py session): pyserial
writing the request and reading a reply of known length, or pyvisa-py's write_raw + read (the floor
of any driver). "Driver" = the public read method through the transport, codec and driver. Driver
and bare loop alternate in blocks of 20 calls, so both meet the same machine load and the same
connection (two TCP connections to one server can differ by 100 µs, as the kernel places their
threads); the ratio is the median of the blocks' ratios (target: 1.2 at most). Bytes on a real
RS-232 line cost 10 bits each (8N1).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib.resources import files

from microct.config import parse_config
from microct.drivers.hamamatsu.driver import HamamatsuOptions, HamamatsuSource
from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder
from microct.transport import SerialTransport, VisaTransport

TUBE = {"warmed_up": True, "ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5, "seed": 1}


BLOCK = 20
"""Calls per block when a driver and its bare loop alternate."""


def compare(driver, bare, n: int) -> tuple[float, float, float]:
    """(bare µs, driver µs, driver ÷ bare): medians over ``n`` calls each, the two alternating in blocks of
    BLOCK calls; the ratio is the median of the blocks' ratios."""
    times: dict[object, list[float]] = {driver: [], bare: []}
    ratios = []
    for _ in range(max(1, n // BLOCK)):
        medians = {}
        for call in (driver, bare):
            block = []
            for _ in range(BLOCK):
                start = time.perf_counter()
                call()
                block.append(time.perf_counter() - start)
            times[call] += block
            medians[call] = statistics.median(block)
        ratios.append(medians[driver] / medians[bare])
    return 1e6 * statistics.median(times[bare]), 1e6 * statistics.median(times[driver]), statistics.median(ratios)


@contextlib.contextmanager
def served(name: str, link: str, *options: str) -> Iterator[str]:
    """A `microct sim serve` process; yields the pty path or the socket:// URL it prints."""
    where = ["--tcp", "0"] if link == "tcp" else ["--pty"]
    options = [item for option in options for item in ("-O", option)]
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", name, *where, *options],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def visa_resource(url: str) -> str:
    return f"TCPIP::127.0.0.1::{url.rsplit(':', 1)[1]}::SOCKET"


@contextlib.contextmanager
def bare_loop(transport: SerialTransport, request: bytes, terminator: bytes) -> Iterator:
    """pyserial alone on the transport's own port: write the request, read a reply of the known length;
    every reply checked."""
    port = transport._port.serial
    port.timeout = 1.0  # blocking reads for pyserial; the transport waits with select and reads the descriptor
    port.write(request)
    size = len(port.read_until(terminator))

    def once():
        port.write(request)
        if not port.read(size).endswith(terminator):
            raise AssertionError("bare loop lost step")

    yield once
    port.timeout = 0


class Counting:
    def __init__(self, responder) -> None:
        self.responder, self.request_terminators = responder, responder.request_terminators
        self.requests: list[bytes] = []
        self.replies: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        replies = self.responder.respond(line)
        self.requests.append(line)
        self.replies.extend(replies)
        return replies


def bare_visa_loop(transport: VisaTransport, request: bytes):
    """pyvisa-py alone on the transport's own session: write_raw the request, read the reply up to the
    termination character."""
    session = transport._session.resource

    def once():
        session.write_raw(request)
        session.read()

    return once


def visa_round_trips(n: int) -> None:
    print(f"\n1b. VISA round trip per command (pyvisa-py TCPIP SOCKET), median of {n} (µs)")
    print(f"  {'command':<32} {'bare loop':>10} {'driver':>8} {'ratio':>6}")
    with served("spellman", "tcp") as generator_url, served("pi", "tcp") as controller_url:
        generator, controller = visa_resource(generator_url), visa_resource(controller_url)
        source = SpellmanSource("generator", SpellmanOptions(readback_max_age_s=0.0), generator)
        axis = PIAxis("rotation", PIOptions(axis="1"), controller)
        source.connect()
        axis.connect()
        cases = [("Spellman monitors 19 (read_kv)", source, b"\x0219,\x03", source.read_voltage_kv),
                 ("PI POS? 1 (read_position)", axis, b"POS? 1\n", axis.read_position)]
        for label, device, request, driver in cases:
            bare_us, driver_us, ratio = compare(driver, bare_visa_loop(device._transport, request), n)
            print(f"  {label:<32} {bare_us:10.0f} {driver_us:8.0f} {ratio:6.2f}")
        source.close()
        axis.close()


def round_trips(n: int) -> None:
    print(f"1. Serial round trip per command, median of {n} (µs)")
    print(f"  {'link':<5} {'command':<30} {'bare loop':>10} {'driver':>8} {'ratio':>6}")
    for link in ("pty", "tcp"):
        with served("hamamatsu", link, "warmed_up=true") as tube_url, served("zaber", link) as stage_url:
            source = HamamatsuSource("tube", HamamatsuOptions(model="L10711", readback_max_age_s=0.0),
                                     connection=tube_url)
            axis = ZaberAxis("rotation", ZaberOptions(device=1), connection=stage_url)
            source.connect()
            axis.connect()
            cases = [("Hamamatsu SAR (read_state)", source, b"SAR\r", b"\r", source.read_state),
                     ("Zaber get pos (read_position)", axis, b"/1 1 get pos\n", b"\r\n", axis.read_position)]
            for label, device, request, terminator, driver in cases:
                with bare_loop(device._transport, request, terminator) as bare:
                    bare_us, driver_us, ratio = compare(driver, bare, n)
                print(f"  {link:<5} {label:<30} {bare_us:10.0f} {driver_us:8.0f} {ratio:6.2f}")
            source.close()
            axis.close()


def per_projection() -> None:
    tube, stages = Counting(HamamatsuResponder(model="L10711", **TUBE)), Counting(ZaberResponder(
        overrides={1: {"max_speed": 720.0}}))
    with WireServer(tube) as tube_server, WireServer(stages) as stage_server:
        data = tomllib.loads(files("microct.configs").joinpath("sim-serial.toml").read_text())
        data["source"]["connection"] = tube_server.serve_pty()
        stage_url = stage_server.serve_pty()
        data["rotation"]["connection"] = data["sample_out"]["connection"] = stage_url
        data["rotation"]["options"]["overrides"] = {"max_speed": 720.0}
        data["scan"].update(n_projections=36, n_darks=0, n_flats=0, exposure_s=0.05, settle_s=0.0,
                            stable_hold_s=0.1, return_to_start=False)
        config = parse_config(data)
        instruments = build_instruments(config)
        marks = {}

        original = instruments.rotation.start_move_to

        def start_move_to(position):  # mark the traffic at the first projection move
            marks.setdefault("start", (len(tube.requests), len(stages.requests), len(tube.replies),
                                       len(stages.replies)))
            return original(position)

        instruments.rotation.start_move_to = start_move_to
        run_scan(config, instruments, f"/tmp/bench-serial-{time.time_ns()}.nxs")
    t0, s0, tr0, sr0 = marks["start"]
    n = 36
    tube_cmds, stage_cmds = (len(tube.requests) - t0) / n, (len(stages.requests) - s0) / n
    polls = sum(line == b"/1 1" for line in stages.requests[s0:]) / n
    tube_bytes = (sum(len(r) + 1 for r in tube.requests[t0:]) + sum(map(len, tube.replies[tr0:]))) / n
    stage_bytes = (sum(len(r) + 1 for r in stages.requests[s0:]) + sum(map(len, stages.replies[sr0:]))) / n
    print("\n2. Commands per projection (36 projections, 30° steps at 720 °/s, 0.05 s exposure)")
    print(f"  Hamamatsu: {tube_cmds:.2f} commands, {tube_bytes:.0f} bytes both ways")
    print(f"  Zaber:     {stage_cmds:.2f} commands ({polls:.2f} of them IDLE polls during the move), "
          f"{stage_bytes:.0f} bytes both ways")
    print("\n3. The same bytes on real RS-232 lines (10 bits per byte, 8N1), per projection")
    for label, count, bauds in (("Hamamatsu", tube_bytes, (38400, 9600)), ("Zaber", stage_bytes, (115200, 9600))):
        for baud in bauds:
            print(f"  {label:<10} at {baud:>6} baud: {1e3 * count * 10 / baud:6.1f} ms")


def visa_per_projection() -> None:
    generator, stages = Counting(SpellmanResponder(ramp_kv_per_s=1e4, ramp_ua_per_s=1e6, seed=1)), \
        Counting(PIResponder())
    with WireServer(generator) as generator_server, WireServer(stages) as stage_server:
        data = tomllib.loads(files("microct.configs").joinpath("sim-visa.toml").read_text())
        data["source"]["connection"] = f"TCPIP::127.0.0.1::{generator_server.serve_tcp()}::SOCKET"
        data["rotation"]["connection"] = data["sample_out"]["connection"] = \
            f"TCPIP::127.0.0.1::{stage_server.serve_tcp()}::SOCKET"
        data["scan"].update(n_projections=36, n_darks=0, n_flats=0, exposure_s=0.05, settle_s=0.0,
                            stable_hold_s=0.1, return_to_start=False)
        config = parse_config(data)
        instruments = build_instruments(config)
        marks = {}
        original = instruments.rotation.start_move_to

        def start_move_to(position):
            marks.setdefault("start", (len(generator.requests), len(stages.requests)))
            return original(position)

        instruments.rotation.start_move_to = start_move_to
        run_scan(config, instruments, f"/tmp/bench-visa-{time.time_ns()}.nxs")
    g0, s0 = marks["start"]
    polls = sum(line.startswith(b"ONT?") for line in stages.requests[s0:]) / 36
    print("\n4. VISA commands per projection (36 projections of 10°, 0.05 s exposure)")
    print(f"  Spellman: {(len(generator.requests) - g0) / 36:.2f} commands")
    print(f"  PI:       {(len(stages.requests) - s0) / 36:.2f} request lines ({polls:.2f} of them ONT? polls; "
          f"setters go out with ERR? in the same write)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    round_trips(args.n)
    visa_round_trips(args.n)
    per_projection()
    visa_per_projection()


if __name__ == "__main__":
    main()
