"""Serial drivers: round trip per command against a bare transport loop, commands and bytes per
projection, and what the same exchange costs at the devices' real baud rates.

    python benchmarks/bench_serial.py [--n 2000]

The wire simulators run in this process (threads) on pseudo-terminals and on TCP 127.0.0.1. "Bare
loop" = pyserial alone on the same link: write the request, read the reply in one call of its
known length (the floor of any driver). "Driver" = the public read method through the transport,
codec and driver. Bytes on a real RS-232 line cost 10 bits each (8N1).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib
from importlib.resources import files

import serial

from microct.config import parse_config
from microct.drivers.hamamatsu import HamamatsuOptions, HamamatsuSource
from microct.drivers.zaber import ZaberAxis, ZaberOptions
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder

TUBE = {"warmed_up": True, "ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5, "seed": 1}


def median_us(call, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def bare_loop(url: str, request: bytes, terminator: bytes, n: int) -> float:
    """pyserial alone: write the request, read a reply of the known length; every reply checked."""
    port = serial.serial_for_url(url, timeout=1.0)
    port.write(request)
    size = len(port.read_until(terminator))
    replies = []

    def once():
        port.write(request)
        replies.append(port.read(size))

    result = median_us(once, n)
    port.close()
    assert all(len(r) == size and r.endswith(terminator) for r in replies), "bare loop lost step"
    return result


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


def round_trips(n: int) -> None:
    print(f"1. Round trip per command, median of {n} (µs)")
    print(f"  {'link':<5} {'command':<26} {'bare loop':>10} {'driver':>8} {'ratio':>6}")
    for link in ("pty", "tcp"):
        with WireServer(HamamatsuResponder(model="L10711", **TUBE)) as tube_server, \
                WireServer(ZaberResponder()) as stage_server:
            tube_url = tube_server.serve_pty() if link == "pty" else f"socket://127.0.0.1:{tube_server.serve_tcp()}"
            stage_url = stage_server.serve_pty() if link == "pty" else \
                f"socket://127.0.0.1:{stage_server.serve_tcp()}"
            source = HamamatsuSource("tube", HamamatsuOptions(model="L10711", readback_max_age_s=0.0),
                                     connection=tube_url)
            axis = ZaberAxis("rotation", ZaberOptions(device=1), connection=stage_url)
            source.connect()
            axis.connect()
            cases = [("Hamamatsu SAR (read_state)", tube_url, b"SAR\r", b"\r", source),
                     ("Zaber get pos (read_position)", stage_url, b"/1 1 get pos\n", b"\r\n", axis)]
            for label, url, request, terminator, device in cases:
                driver = median_us(device.read_state if device is source else device.read_position, n)
                device.close()
                bare = bare_loop(url, request, terminator, n)
                print(f"  {link:<5} {label:<26} {bare:10.0f} {driver:8.0f} {driver / bare:6.2f}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    round_trips(args.n)
    per_projection()


if __name__ == "__main__":
    main()
