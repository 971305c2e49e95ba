"""The Spellman communication watchdog: the XRV keeps its time in its own configuration (no command arms
it), trips HV off with the 68 watchdog flag latched; the wire simulator plays it (``watchdog_s``) and the
driver (option ``watchdog_s``) feeds it with status queries while the beam is on."""

from __future__ import annotations

import contextlib
import time

import pytest

from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.drivers.spellman.codec import (
    COMMAND_SETS,
    FAULT_FLAGS,
    WATCHDOG_FAULT,
    Codec,
    GeneratorStatus,
    Request,
)
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.simulators.spellman import SpellmanResponder
from microct.testing.rigs import served
from microct.testing.waiting import wait_until

SIM = {"seed": 1, "ramp_kv_per_s": 1e6, "ramp_ua_per_s": 1e8}
WATCHDOG_S = 1.0


# -- the bytes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("checksum", [True, False], ids=["serial", "tcp"])
def test_the_watchdog_fault_flag_and_the_feed_s_status_reply_round_trip(checksum):
    c = Codec(COMMAND_SETS["XRV"], checksum)
    assert FAULT_FLAGS.index(WATCHDOG_FAULT) == 21  # bit 21 of 68 (PyMeasure's WATCH_DOG_FAULT)
    assert c.parse_faults(c.format_faults((WATCHDOG_FAULT,))) == (WATCHDOG_FAULT,)
    status = GeneratorStatus(hv_on=False, fault=True)
    assert c.parse_status(c.format_status(status)) == status
    assert c.parse_request(c.encode(Request(22))) == Request(22)  # the feed: a status query


# -- the simulated generator's watchdog ---------------------------------------------------------------------
def frames(responder: SpellmanResponder, *requests: bytes) -> list[bytes]:
    return [responder.respond(b"\x02" + request)[0] for request in requests]


def test_the_simulator_trips_hv_off_after_watchdog_s_of_silence_and_latches_the_watchdog_fault():
    responder = SpellmanResponder(**SIM, watchdog_s=0.3)
    assert frames(responder, b"10,1000,", b"11,1000,", b"70,1,", b"98,1,") == [
        b"\x0210,$,\x03", b"\x0211,$,\x03", b"\x0270,$,\x03", b"\x0298,$,\x03"]
    tube = responder.source  # read past the wire: a frame would restart the watchdog time
    wait_until(lambda: tube.read_state() is SourceState.FAULT, 10.0, "the generator's watchdog")
    assert responder.watchdog_tripped and not tube.fault_hook().beam_on()
    codec = responder.codec
    assert codec.parse_faults(frames(responder, b"68,")[0][:-1]) == (WATCHDOG_FAULT,)
    assert codec.parse_status(frames(responder, b"22,")[0][:-1]).fault
    assert frames(responder, b"98,1,") == [b"\x0298,2,\x03"]  # refused with the fault latched
    assert frames(responder, b"31,") == [b"\x0231,$,\x03"]
    assert not responder.watchdog_tripped and tube.read_state() is SourceState.STANDBY


def test_without_a_watchdog_the_simulated_hv_stays_on_in_silence():
    responder = SpellmanResponder(**SIM)  # watchdog_s 0: the default, as nothing arms it
    frames(responder, b"70,1,", b"98,1,")
    assert not responder._watching  # no timer at all: nothing can trip


# -- the driver over the wire ---------------------------------------------------------------------------------
class Recorder:
    """Wraps the responder: records every request frame."""

    request_terminators = b"\x03"

    def __init__(self, responder: SpellmanResponder) -> None:
        self.responder = responder
        self.lines: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        return self.responder.respond(line)


@pytest.fixture
def wire():
    """Makes a connected XRV160 driver on a simulated generator whose watchdog is set to 1 s (a VISA TCPIP
    SOCKET resource); returns the driver and the recorder."""
    with contextlib.ExitStack() as stack:
        def make(**options):
            recorder = Recorder(SpellmanResponder(**SIM, watchdog_s=WATCHDOG_S))
            link = stack.enter_context(served(recorder, "visa", name="spellman"))
            source = SpellmanSource.from_config("tube", SpellmanOptions(timeout_s=1.0, **options), link.address,
                                                DriverContext())
            source.connect()
            stack.callback(source.close)
            source.configure(voltage_kv=60, current_ua=3000)
            return source, recorder

        yield make


def test_fed_while_the_beam_is_on_the_watchdog_never_trips_and_the_feed_stops_at_beam_off(wire):
    source, recorder = wire(watchdog_s=WATCHDOG_S)
    source.beam_on()
    assert source.watchdog_feed_s == pytest.approx(WATCHDOG_S / 3)
    heard = len(recorder.lines)
    hook = recorder.responder.source.fault_hook()
    end = time.monotonic() + 3 * WATCHDOG_S
    while time.monotonic() < end:  # the test sends nothing: only the feed speaks
        assert hook.beam_on(), f"the watchdog tripped; frames: {recorder.lines[heard:]}"
        time.sleep(0.01)
    assert recorder.lines[heard:] and set(recorder.lines[heard:]) == {b"\x0222,"}  # status queries only
    source.beam_off()
    assert not source._feeder.running and not hook.beam_on()
    assert not recorder.responder.watchdog_tripped


def test_not_fed_the_generator_trips_and_the_driver_reports_the_watchdog_fault(wire):
    source, recorder = wire()  # watchdog_s unset: the driver sends nothing between requests
    source.beam_on()
    responder = recorder.responder
    started = time.monotonic()
    wait_until(lambda: responder.watchdog_tripped, WATCHDOG_S + 5.0, "the generator's watchdog")
    assert time.monotonic() - started >= WATCHDOG_S - 0.05
    source.refresh()
    assert source.read_state() is SourceState.FAULT
    assert source.fault_flags() == (WATCHDOG_FAULT,)
    source.beam_off()
    source.reset()
    assert source.read_state() is SourceState.STANDBY
