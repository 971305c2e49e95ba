"""The Hamamatsu communication watchdog, the controller's automatic X-ray stop (L9421-02T manual §10 1., A5
note 3, A11): the AST / SAT bytes, the driver arming it (AST) before X-rays go on, and the driver over the
wire simulator keeping it fed (the keepalive) or letting it drop the beam."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest

from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.drivers.hamamatsu import codec
from microct.drivers.hamamatsu.driver import HamamatsuOptions, HamamatsuSource
from microct.errors import ErrorReply
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.testing.exchange import scripted_transport
from microct.testing.rigs import served
from microct.testing.waiting import wait_until
from microct.transport import SerialSettings

FAST = SerialSettings(baudrate=38400, timeout_s=0.1)
CONNECT = [(b"TYP", b"TYP L10711"), (b"SVI", b"SVI 80 50"), (b"SFC", b"SFC 1")]
BEAM_ON_CHECKS = [(b"SAR", b"SAR 2 0 0 0 0 0 0"), (b"SIN", b"SIN 0")]  # standby, interlock closed


def scripted(sat: bytes, script, **options) -> tuple[HamamatsuSource, object]:
    """A connected L10711 driver (no keepalive) on a scripted port: connect with ``SAT`` answered ``sat``,
    then ``script``."""
    transport, port = scripted_transport(CONNECT + [(b"SAT", sat)] + script, FAST, name="source 'tube'")
    source = HamamatsuSource("tube", HamamatsuOptions(keepalive_s=0, **options), transport=transport)
    source.connect()
    return source, port


# -- the bytes ----------------------------------------------------------------------------------------------
def test_ast_and_sat_round_trip_over_the_whole_range():
    for seconds in codec.AUTO_STOP_S:  # 0-60 s (manual A11)
        assert codec.parse_request(codec.encode_auto_stop(seconds)) == codec.Request(codec.AST, seconds)
        assert codec.parse_auto_stop(codec.format_values(codec.SAT, seconds)) == seconds


# -- arming: AST before X-rays go on ------------------------------------------------------------------------
def test_a_disabled_auto_stop_is_armed_with_3_s_before_xon(caplog):
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source, port = scripted(b"SAT 0", BEAM_ON_CHECKS + [(b"AST 3", b"AST 3"), (b"XON", b"XON")])
    assert "SAT reports 0" in caplog.text and "the driver sets it to 3 s (AST) before X-rays go on" in caplog.text
    assert source.watchdog_s == 3.0
    source.beam_on()
    port.assert_done()
    assert source.auto_stop_s == 3 and source.watchdog_armed


def test_the_controller_s_own_auto_stop_time_is_kept_unless_watchdog_s_pins_another():
    source, port = scripted(b"SAT 5", BEAM_ON_CHECKS + [(b"XON", b"XON")])
    assert source.watchdog_s is None
    source.beam_on()
    port.assert_done()
    pinned, port = scripted(b"SAT 5", BEAM_ON_CHECKS + [(b"AST 1", b"AST 1"), (b"XON", b"XON")], watchdog_s=1)
    pinned.beam_on()
    port.assert_done()
    assert pinned.auto_stop_s == 1


def test_watchdog_s_zero_never_sends_ast(caplog):
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source, port = scripted(b"SAT 0", BEAM_ON_CHECKS + [(b"XON", b"XON")], watchdog_s=0)
    assert "watchdog_s = 0: the driver leaves it so" in caplog.text
    source.beam_on()
    port.assert_done()


def test_warm_up_arms_before_wup():
    checks = [(b"SIN", b"SIN 0"), (b"SAR", b"SAR 0 0 0 0 0 0 0")]  # warm-up needed
    source, port = scripted(b"SAT 0", checks + [(b"AST 3", b"AST 3"), (b"WUP", b"WUP")])
    source.warm_up()
    port.assert_done()


def test_an_ast_the_controller_refuses_keeps_x_rays_off():
    refused = [(b"AST 3", b"ERR 10 AST"), (b"SAR", b"SAR 2 0 0 0 0 0 0")]  # the refusal, then the state for it
    source, port = scripted(b"SAT 0", BEAM_ON_CHECKS + refused)
    with pytest.raises(ErrorReply) as info:
        source.beam_on()
    port.assert_done()  # no XON
    assert (info.value.code, info.value.command) == (10, "AST 3")
    assert "the device is in state 'standby'" in str(info.value)


# -- over the wire: a simulated controller whose auto stop starts disabled -----------------------------------
SIM = {"seed": 1, "warmed_up": True, "ramp_kv_per_s": 1e5, "ramp_ua_per_s": 1e5, "auto_stop_s": 0.0}
WATCHDOG_S, KEEPALIVE_S = 1, 0.1  # AST's shortest time; a keepalive leaving 0.9 s for a loaded machine


@pytest.fixture
def wire():
    """Makes a connected driver (``watchdog_s`` 1 s) on a simulated L10711 over TCP; returns it and the
    responder. Everything is closed afterwards."""
    with contextlib.ExitStack() as stack:
        def make(**options):
            responder = HamamatsuResponder(**SIM)
            link = stack.enter_context(served(responder, "tcp", name="hamamatsu"))
            source = HamamatsuSource.from_config("tube", HamamatsuOptions(
                watchdog_s=WATCHDOG_S, timeout_s=1.0, **options), link.address, DriverContext())
            source.connect()
            stack.callback(source.close)
            return source, responder

        yield make


def test_armed_at_beam_on_and_fed_the_beam_stays_on_through_several_watchdog_times(wire):
    source, responder = wire(keepalive_s=KEEPALIVE_S)
    source.configure(voltage_kv=60, current_ua=30)
    assert responder.auto_stop_s == 0  # disabled until the driver arms it
    source.beam_on()
    assert responder.auto_stop_s == WATCHDOG_S
    hook = responder.source.fault_hook()
    end = time.monotonic() + 3 * WATCHDOG_S
    while time.monotonic() < end:  # the test sends nothing: only the keepalive speaks
        assert hook.beam_on(), "the automatic X-ray stop cut the beam with the keepalive running"
        time.sleep(0.01)
    source.beam_off()
    assert not hook.beam_on() and source.read_state() is SourceState.STANDBY
    assert responder.auto_stop_s == WATCHDOG_S  # nothing disarms it: with X-rays off it has nothing to stop


def test_armed_and_not_fed_the_controller_drops_the_beam_within_the_watchdog_time(wire):
    source, responder = wire(keepalive_s=0)
    source.configure(voltage_kv=60, current_ua=30)
    source.beam_on()
    hook = responder.source.fault_hook()
    started = time.monotonic()
    wait_until(lambda: not hook.beam_on(), WATCHDOG_S + 5.0, "the armed automatic X-ray stop")
    assert time.monotonic() - started >= WATCHDOG_S - 0.05
