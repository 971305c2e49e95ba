"""The exact bytes SMC100Axis writes and reads, checked against scripts built from the manual's examples
(SMC100CC & SMC100PP User's Manual, Command Set: "1PA2.2", "1PR2.2", "1VA50", "1TS" → "1TS00000A",
"1TE" → "1TE@", "1SL-100", "1SR100", ...), with a scripted port under a real SerialTransport."""

from __future__ import annotations

import logging

import pytest

from microct.driverkit import DeviceFaultError, DeviceStateError, ErrorReply, LimitError
from microct.testing.exchange import scripted_transport
from microct_smc100.driver import SERIAL_DEFAULTS, SMC100Axis, SMC100Options

OPTIONS = {"overrides": {"max_velocity": 100.0}, "poll_interval_s": 0.005, "serial": {"timeout_s": 0.2}}

IDENTIFY = [(b"1ID?", b"1IDURS75BCC"),
            (b"1VE", b"1VE SMC - Controller-driver version 1.00r.")]  # the manual's VE example
LIMITS = [(b"1SL?", b"1SL-100"), (b"1SR?", b"1SR100")]
OK = b"1TE@"
VELOCITY = [(b"1VA100", None), (b"1TE", OK)]
"""The held velocity, sent before the first move or homing (connect sends nothing)."""


def connected(script, **options):
    """A connected SMC100Axis on a scripted port that starts with a READY controller (no home search):
    connect only reads (identification, state, soft limits)."""
    prologue = [*IDENTIFY, (b"1TS", b"1TS000033"), *LIMITS]
    axis, port = on_script(prologue + script, **options)
    axis.connect()
    return axis, port


def on_script(script, **options):
    opts = SMC100Options(**{**OPTIONS, **options})
    transport, port = scripted_transport(script, opts.serial_settings())
    return SMC100Axis("rotation", opts, transport=transport), port


def test_serial_defaults_are_the_manuals():
    settings = SMC100Options().serial_settings()
    assert (settings.baudrate, settings.bytesize, settings.parity, settings.stopbits, settings.xonxoff) == \
           (57600, 8, "N", 1, True)
    assert settings.write_terminator == settings.read_terminator == "\r\n"
    assert SERIAL_DEFAULTS["xonxoff"] is True
    kept = SMC100Options(serial={"baudrate": 9600, "timeout_s": 2.0}).serial_settings()
    assert (kept.baudrate, kept.timeout_s, kept.xonxoff) == (9600, 2.0, True)


def test_connect_to_a_controller_fresh_from_power_up_moves_nothing_and_the_first_move_homes_it():
    axis, port = on_script([
        *IDENTIFY,
        (b"1TS", b"1TS00000A"),  # NOT REFERENCED from reset (the manual's TS example): connect stops here
        (b"1OR", None), (b"1TE", OK),  # the first move: home search first (VA is held: refused unreferenced)
        (b"1TS", b"1TS00001E"),  # HOMING commanded from RS-232-C
        (b"1TS", b"1TS000032"),  # READY from HOMING
        (b"1VA100", None), (b"1TE", OK),
        *LIMITS,
        (b"1PA10", None), (b"1TE", OK),
        (b"1TS", b"1TS000033"),
    ])
    axis.connect()
    assert port.step == len(IDENTIFY) + 1 and axis.connected
    axis.move_to(10.0, timeout_s=5)
    port.assert_done()
    assert axis.capabilities.low_limit == -100.0 and axis.capabilities.high_limit == 100.0  # narrowed from ±360


def test_absolute_and_relative_moves_velocity_and_stop():
    axis, port = connected([
        (b"1VA50", None), (b"1TE", OK),  # set_velocity: sent, and not again before the first move
        (b"1PA2.2", None), (b"1TE", OK),
        (b"1TS", b"1TS000028"),  # MOVING
        (b"1TS", b"1TS000033"),  # READY from MOVING
        (b"1TP", b"1TP2.2"),
        (b"1PR2.2", None), (b"1TE", OK),
        (b"1TS", b"1TS000033"),
        (b"1TP", b"1TP4.4"),
        (b"1ST", None), (b"1TE", OK),
    ])
    axis.set_velocity(50.0)
    axis.move_to(2.2, timeout_s=5)
    axis.move_by(2.2, timeout_s=5)
    assert axis.read_position() == 4.4
    axis.stop()
    port.assert_done()


def test_a_refused_move_raises_the_manuals_meaning():
    axis, port = connected([*VELOCITY, (b"1PA-12.5", None), (b"1TE", b"1TEJ")])
    with pytest.raises(ErrorReply) as info:
        axis.start_move_to(-12.5)
    error = info.value
    assert (error.code, error.meaning, error.command) == ("J", "Command not allowed in DISABLE state", "1PA-12.5")
    assert str(error).startswith("axis 'rotation': SMC100 controller 1 refused '1PA-12.5': error J")
    assert "soft limits -100 to 100 deg" in str(error)
    assert not axis.moving
    port.assert_done()


def test_a_code_missing_from_the_manuals_list_is_explained_by_tb():
    axis, port = connected([(b"1VA10", None), (b"1TE", b"1TEY"),
                            (b"1TBY", b"1TBY Something newer firmware says")])
    with pytest.raises(ErrorReply, match=r"error Y \(Something newer firmware says\); velocity 10 deg/s"):
        axis.set_velocity(10.0)
    assert axis.velocity == 100.0
    port.assert_done()


def test_an_end_of_run_fails_the_move_and_the_next_move_references_again():
    axis, port = connected([
        *VELOCITY, (b"1PA50", None), (b"1TE", OK),
        (b"1TS", b"1TS000028"),
        (b"1TS", b"1TS00020F"),  # positive end of run; NOT REFERENCED from MOVING
        (b"1OR", None), (b"1TE", OK),  # the next move: home search first
        (b"1TS", b"1TS000032"),
        (b"1VA100", None), (b"1TE", OK), *LIMITS,
        (b"1PA50", None), (b"1TE", OK),
        (b"1TS", b"1TS000033"),
    ])
    status = axis.start_move_to(50.0)
    with pytest.raises(DeviceFaultError, match=r"move to 50 deg failed: .*errors 0002 \(positive end of run\), "
                                               r"state 0F \(NOT REFERENCED from MOVING\)"):
        status.wait(5)
    axis.set_velocity(100.0)  # held: a NOT REFERENCED controller refuses VA; sent after the home search
    axis.move_to(50.0, timeout_s=5)
    port.assert_done()


def test_a_following_error_disables_the_controller_and_fails_the_move():
    axis, port = connected([*VELOCITY, (b"1PA10", None), (b"1TE", OK),
                            (b"1TS", b"1TS00203D")])  # following error; DISABLE from MOVING
    with pytest.raises(DeviceFaultError, match=r"following error\), state 3D \(DISABLE from MOVING\)"):
        axis.move_to(10.0, timeout_s=5)
    port.assert_done()


def test_home_from_ready_reboots_the_controller_first():
    axis, port = connected([
        *VELOCITY,
        (b"1TS", b"1TS000033"),
        (b"1RS", None),  # no TE: the controller reboots
        (b"1TS", None),  # silent while it initialises
        (b"1TS", b"1TS00000A"),
        (b"1OR", None), (b"1TE", OK),
        (b"1TS", b"1TS000032"),
        (b"1VA100", None), (b"1TE", OK), *LIMITS,
    ])
    axis.home(timeout_s=5)
    port.assert_done()


def test_home_while_moving_is_refused_without_a_command():
    axis, port = connected([*VELOCITY, (b"1TS", b"1TS000028")])
    with pytest.raises(DeviceStateError, match=r"state 28 \(MOVING\): stop\(\) first"):
        axis.home()
    port.assert_done()


def test_stop_where_nothing_moves_ignores_the_controllers_refusal():
    axis, port = connected([(b"1ST", None), (b"1TE", b"1TEH")])
    axis.stop()
    port.assert_done()


def test_without_auto_reference_moves_wait_for_home(caplog):
    axis, port = on_script([*IDENTIFY, (b"1TS", b"1TS00000A")], auto_reference=False)
    with caplog.at_level(logging.WARNING, "microct_smc100.driver"):
        axis.connect()  # no home search, and VA held
    assert "not referenced: moves are refused until home()" in caplog.text
    with pytest.raises(DeviceStateError, match="not referenced"):
        axis.start_move_to(10.0)
    with pytest.raises(LimitError):
        axis.start_move_to(400.0)  # the configured limits (±360) until the controller's are read
    port.assert_done()
