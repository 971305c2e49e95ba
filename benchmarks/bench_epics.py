"""Channel Access cost per projection: our EPICS drivers against a bare pyepics loop doing the same
puts and gets.

    python benchmarks/bench_epics.py [--n 300]

Per projection, besides the detector, the sequencer (``Sequencer._projections``) waits for the
rotation move started in the previous iteration, reads the angle, reads the tube's kV and µA and
starts the next move. "Driver": ``EpicsMotorAxis`` and ``EpicsSource`` making exactly those calls.
"Bare": pyepics PVs alone making the same puts and gets: a put-callback write of ``.VAL`` (completed
by the record at the end of the move), ``.RBV`` read from the IOC, ``HV_RBV`` / ``Current_RBV`` from
their monitors (as the driver reads them). Medians over ``--n`` projections, after a warm-up.

The IOCs (the caproto motor record and X-ray source simulators) run in a child process on free
127.0.0.1 ports, so that they do not share this process' GIL. Moves are ``STEP_DEG`` = 0.001 deg at
3600 deg/s, but the simulated record holds every move for at least ``MIN_MOVE_S`` and completes every
put-callback only after its monitor flush (caproto's batching window, set to 1 ms here, plus
``FLUSH_MARGIN_S``): the "IOC floor" line gives that time, which both loops pay on every move;
"overhead" is driver − bare, what our code costs on top of pyepics.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# before caproto is imported, here or in the IOC process (which inherits the environment)
os.environ["CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC"] = "0.001"

from microct.drivers.epics_motor.codec import FIELDS as MOTOR_FIELDS
from microct.drivers.epics_motor.codec import MONITORED as MOTOR_MONITORED
from microct.drivers.epics_motor.driver import EpicsMotorAxis, EpicsMotorOptions
from microct.drivers.epics_source.driver import EpicsSource, EpicsSourceOptions
from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.epics_ioc import free_port, start_ioc
from microct.simulators.epics_motor_ioc import (
    FLUSH_MARGIN_S,
    MIN_MOVE_S,
    start_motor_ioc,
)
from microct.simulators.source import SimulatedSourceOptions

SOURCE_PREFIX, RECORD = "BENCH:XRAY:", "BENCH:ROT:m1"
AXIS = SimulatedAxisOptions(unit="deg", max_velocity=3600.0, acceleration=1e6)
TUBE = SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e4, ramp_ua_per_s=1e5)
KV, UA = 80.0, 100.0
STEP_DEG = 0.001
WARM_UP = 20
TIMEOUT_S = 10.0


# -- the IOCs, in their own process ---------------------------------------------------------------------
def serve_iocs(ports: dict[str, int], ready, stop) -> None:
    """The child process: start the IOCs on ``ports``, say so, and serve until told to stop."""
    handles = [start_ioc(SOURCE_PREFIX, ports["source"], TUBE)[0],
               start_motor_ioc(RECORD, ports["motor"], AXIS, high_limit=360.0, low_limit=-360.0)[0]]
    ready.set()
    stop.wait()
    for handle in handles:
        handle.stop()


@contextmanager
def iocs() -> Iterator[None]:
    """The IOCs in a child process; the CA environment of this process points at them (set before
    pyepics starts its context)."""
    ports: dict[str, int] = {}
    for role in ("source", "motor"):
        while (port := free_port()) in ports.values():
            pass
        ports[role] = port
    os.environ.update(EPICS_CA_ADDR_LIST=" ".join(f"127.0.0.1:{port}" for port in ports.values()),
                      EPICS_CA_AUTO_ADDR_LIST="NO")
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    process = spawn.Process(target=serve_iocs, args=(ports, ready, stop), daemon=True)
    process.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the IOC process did not start within 60 s")
        yield
    finally:
        stop.set()
        process.join(10)


@contextmanager
def drivers() -> Iterator[tuple[EpicsMotorAxis, EpicsSource]]:
    """The rotation axis and the tube drivers, connected, beam on at KV / UA."""
    rotation = EpicsMotorAxis("rotation", EpicsMotorOptions(unit="deg", max_velocity=AXIS.max_velocity), RECORD)
    source = EpicsSource("source", EpicsSourceOptions(
        voltage_range_kv=TUBE.voltage_range_kv, current_range_ua=TUBE.current_range_ua,
        spot_modes={name: mode.model_dump() for name, mode in TUBE.spot_modes.items()}), SOURCE_PREFIX)
    with rotation, source:
        source.configure(voltage_kv=KV, current_ua=UA)
        source.beam_on()
        rotation.move_to(0.0)
        yield rotation, source
        source.beam_off()


class BarePVs:
    """The same PVs in pyepics alone: VAL (put-callback), RBV (read from the IOC), the tube's monitors;
    with ``driver_monitors``, also monitoring the record fields that EpicsMotorAxis monitors."""

    def __init__(self, driver_monitors: bool = False) -> None:
        import epics

        self.val = epics.PV(RECORD + ".VAL", auto_monitor=False)
        self.rbv = epics.PV(RECORD + ".RBV", auto_monitor=False)
        self.kv = epics.PV(SOURCE_PREFIX + "HV_RBV", auto_monitor=True)
        self.ua = epics.PV(SOURCE_PREFIX + "Current_RBV", auto_monitor=True)
        self.monitors = [epics.PV(RECORD + MOTOR_FIELDS[key], auto_monitor=True, callback=lambda **_: None)
                         for key in (MOTOR_MONITORED if driver_monitors else ())]
        for pv in self.pvs:
            if not pv.wait_for_connection(TIMEOUT_S):
                raise RuntimeError(f"PV {pv.pvname} did not connect")
        self.done = threading.Event()

    @property
    def pvs(self) -> list:
        return [self.val, self.rbv, self.kv, self.ua, *self.monitors]

    def start_move(self, angle: float) -> None:
        self.done.clear()
        self.val.put(angle, callback=lambda **_: self.done.set())

    def wait_move(self) -> None:
        if not self.done.wait(TIMEOUT_S):
            raise RuntimeError(f"{self.val.pvname} put did not complete")

    def close(self) -> None:
        for pv in self.pvs:
            pv.disconnect()


# -- measurements: each returns table rows (label, bare µs, driver µs) ------------------------------
Row = tuple[str, float, float]


def median_us(call: Callable[[], object], n: int) -> float:
    for _ in range(WARM_UP):
        call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def projection_loop(start_move: Callable[[float], object], finish_move: Callable[[], object],
                    reads: Callable[[], object], n: int) -> float:
    """Median µs per iteration of the sequencer's loop: finish the move under way, read, start the next."""
    angles = iter([STEP_DEG * (i % 2) for i in range(n + WARM_UP + 1)])
    start_move(next(angles))

    def one_projection() -> None:
        finish_move()
        reads()
        start_move(next(angles))

    result = median_us(one_projection, n)
    finish_move()
    return result


def bare_projections(n: int, driver_monitors: bool) -> float:
    bare = BarePVs(driver_monitors)
    try:
        return projection_loop(bare.start_move, bare.wait_move,
                               lambda: (bare.rbv.get(use_monitor=False), bare.kv.get(), bare.ua.get()), n)
    finally:
        bare.close()


def per_projection(n: int) -> list[Row]:
    """The calls of Sequencer._projections besides the detector, through the drivers and bare; bare
    again with the driver's monitors on the record (the IOC then sends, and pyepics handles, ~10
    more updates per move)."""
    with drivers() as (rotation, source):
        moves: list = []
        driver_us = projection_loop(lambda angle: moves.append(rotation.start_move_to(angle)),
                                    lambda: moves.pop().wait(TIMEOUT_S),
                                    lambda: (rotation.read_position(), source.read_voltage_kv(),
                                             source.read_current_ua()), n)
    return [("projection: wait move, angle, kV, µA, next move", bare_projections(n, False), driver_us),
            (f"  same, bare also monitoring {len(MOTOR_MONITORED)} record fields", bare_projections(n, True),
             driver_us)]


def per_call(n: int) -> list[Row]:
    """Each call on its own: a whole move (start + wait), the angle, a tube read-back."""
    bare = BarePVs()
    try:
        angles = iter([STEP_DEG * (i % 2) for i in range(n + WARM_UP)])
        bare_move = median_us(lambda: bare.val.put(next(angles), wait=True, timeout=TIMEOUT_S), n)
        bare_rbv = median_us(lambda: bare.rbv.get(use_monitor=False), n)
        bare_kv = median_us(bare.kv.get, n)
    finally:
        bare.close()
    with drivers() as (rotation, source):
        angles = iter([STEP_DEG * (i % 2) for i in range(n + WARM_UP)])
        driver_move = median_us(lambda: rotation.move_to(next(angles), TIMEOUT_S), n)
        driver_rbv = median_us(rotation.read_position, n)
        driver_kv = median_us(source.read_voltage_kv, n)
    return [("move_to 0.001 deg (put-callback VAL)", bare_move, driver_move),
            ("read_position (RBV from the IOC)", bare_rbv, driver_rbv),
            ("read_voltage_kv (HV_RBV monitor)", bare_kv, driver_kv)]


def print_table(title: str, rows: list[Row]) -> None:
    print(title)
    print(f"  {'what':<50} {'bare':>9} {'driver':>9} {'ratio':>6} {'overhead':>9}")
    for label, bare, driver in rows:
        print(f"  {label:<50} {bare:9.0f} {driver:9.0f} {driver / bare:6.2f} {driver - bare:9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="projections (or calls) per measurement")
    args = parser.parse_args()
    floor_ms = 1e3 * (MIN_MOVE_S + float(os.environ["CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC"]) + FLUSH_MARGIN_S)
    with iocs():
        print(f"Channel Access, IOCs in a child process; medians of {args.n} (µs)")
        print(f"  IOC floor per move (both loops): >= {floor_ms:.1f} ms (MIN_MOVE_S + batching window "
              f"+ FLUSH_MARGIN_S)\n")
        print_table("1. Per projection (Sequencer._projections without the detector)", per_projection(args.n))
        print()
        print_table("2. Per call", per_call(args.n))


if __name__ == "__main__":
    main()
