"""Zaber ASCII codec and driver against scripted byte exchanges (commands and replies as in the fact sheet,
docs/protocols/zaber-ascii.md)."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from microct.drivers.zaber.codec import (
    CLEARED_BY_WARNINGS_CLEAR,
    Command,
    Info,
    Reply,
    checksum,
    data_to_speed,
    encode_command,
    format_reply,
    format_warnings,
    highest_warning,
    is_fault,
    parse_command,
    parse_reply,
    parse_warnings,
    position_to_steps,
    speed_to_data,
    steps_to_position,
)
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.drivers.zaber.models import STAGES, stage_model
from microct.errors import (
    ConfigurationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    LimitError,
    ProtocolError,
)
from microct.testing.exchange import scripted_transport

ROTARY, LINEAR = STAGES["X-RSW60A"], STAGES["X-LSM100A"]
CONNECT = [(b"/1 0 get system.serial", b"@01 0 OK IDLE -- 10001")]
"""What connect() exchanges with device 1: a query only (connect sets nothing)."""
VELOCITY = (b"/1 1 set maxspeed 803908", b"@01 1 OK IDLE -- 0")
"""What goes out before the first move or homing: the held velocity (an X-RSW60A's top speed, 115 deg/s)."""


def connected(script, options: ZaberOptions | None = None):
    """A connected ZaberAxis on a scripted port playing CONNECT then ``script``."""
    options = options or ZaberOptions(poll_interval_s=0.001)
    transport, port = scripted_transport(CONNECT + script,
                                         options.serial_settings().model_copy(update={"timeout_s": 0.2}))
    axis = ZaberAxis("rotation", options, transport=transport)
    axis.connect()
    return axis, port


# -- codec -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    ((1, 1, "move abs 1000"), b"/1 1 move abs 1000"),
    ((1, 1, "move rel -500"), b"/1 1 move rel -500"),
    ((1, 0, "home"), b"/1 0 home"),
    ((1, 1, "stop"), b"/1 1 stop"),
    ((1, 1, "get maxspeed"), b"/1 1 get maxspeed"),
    ((1, 1, "set maxspeed 153600"), b"/1 1 set maxspeed 153600"),
    ((1, 0, ""), b"/1 0"),  # a status poll
    ((2, 1, "get pos", 12), b"/2 1 12 get pos"),
])
def test_commands_encode_as_in_the_sheet(args, expected):
    assert encode_command(*args) == expected


def test_checksum_is_the_twos_complement_of_the_byte_sum_after_the_slash():
    # "1 1 move abs 1000" sums to 1168 = 0x490; 0x100 - 0x90 = 0x70
    assert encode_command(1, 1, "move abs 1000", with_checksum=True) == b"/1 1 move abs 1000:70"
    assert checksum(b"1 1") == 0x7E  # 130 = 0x82 → 0x7E
    assert checksum(b"\x80\x80") == 0x00  # a sum ending in 0x00 gives 00, not 100


@pytest.mark.parametrize("line, expected", [
    (b"@01 1 OK IDLE -- 0", Reply(1, 1, "OK", "IDLE", "--", "0")),
    (b"@02 0 OK BUSY WR 153600", Reply(2, 0, "OK", "BUSY", "WR", "153600")),
    (b"@01 1 12 OK IDLE NI -21333", Reply(1, 1, "OK", "IDLE", "NI", "-21333", message_id=12)),
    (b"@01 1 RJ IDLE -- BADDATA", Reply(1, 1, "RJ", "IDLE", "--", "BADDATA")),
    (b"@01 1 OK IDLE -- 0:8C", Reply(1, 1, "OK", "IDLE", "--", "0")),
    (b"#01 0 a line of help", Info(1, 0, "a line of help")),
])
def test_replies_parse(line, expected):
    assert parse_reply(line) == expected


@pytest.mark.parametrize("line", [b"@01 1 OK IDLE -- 0:8D", b"@01 1 OK WAIT -- 0", b"@1 1 OK IDLE -- 0", b"",
                                  b"garbage", b"!01 1 IDLE --"])
def test_garbled_replies_and_wrong_checksums_are_protocol_errors(line):
    with pytest.raises(ProtocolError, match="checksum|garbled"):
        parse_reply(line)


def test_replies_format_as_the_device_sends_them():
    reply = Reply(1, 1, "OK", "IDLE", "--", "0")
    assert format_reply(reply) == b"@01 1 OK IDLE -- 0\r\n"
    assert format_reply(reply, with_checksum=True) == b"@01 1 OK IDLE -- 0:8C\r\n"
    with_id = Reply(2, 1, "RJ", "BUSY", "WR", "BADCOMMAND", message_id=7)
    assert parse_reply(format_reply(with_id, True).rstrip(b"\r\n")) == with_id


@pytest.mark.parametrize("line, expected", [
    (b"/1 1 move abs 1000", Command(1, 1, "move abs 1000")),
    (b"/1 get pos", Command(1, 0, "get pos")),
    (b"/", Command(0, 0, "")),
    (b"/2 1 34 stop", Command(2, 1, "stop", 34)),
    (b"/1 1 move abs 1000:70", Command(1, 1, "move abs 1000", has_checksum=True)),
])
def test_commands_parse(line, expected):
    assert parse_command(line) == expected


def test_a_command_with_a_wrong_checksum_is_refused():
    with pytest.raises(ProtocolError, match="checksum"):
        parse_command(b"/1 1 move abs 1000:71")


def test_positions_convert_both_ways():
    assert position_to_steps(5.0, ROTARY) == 21333  # 5 / 0.000234375 = 21333.3
    assert steps_to_position(21333, ROTARY) == pytest.approx(4.99992, abs=1e-5)
    round_trip = steps_to_position(position_to_steps(-359.9, ROTARY), ROTARY)
    assert round_trip == pytest.approx(-359.9, abs=ROTARY.microstep_size)
    assert position_to_steps(101.6, LINEAR) == 2133333  # 101.6 mm / 0.047625 um
    assert steps_to_position(2133333, LINEAR) == pytest.approx(101.6, abs=1e-4)


def test_speeds_convert_both_ways():
    # data = (unit/s) / microstep × 1.6384
    assert speed_to_data(115.0, ROTARY) == 803908
    assert data_to_speed(803908, ROTARY) == pytest.approx(115.0, rel=1e-6)
    assert speed_to_data(26.0, LINEAR) == 894455
    assert data_to_speed(1_638_400, LINEAR) == pytest.approx(0.047625 * 1e-3 * 1e6)
    assert speed_to_data(1e-9, ROTARY) == 1  # never 0, which would not move


def test_warning_precedence_and_faults():
    assert highest_warning(set()) == "--"
    assert highest_warning({"NI", "WR"}) == "WR"
    assert highest_warning({"WR", "FS"}) == "FS"
    assert [flag for flag in ("FS", "FD", "WL", "WR", "NI", "--") if is_fault(flag)] == ["FS", "FD", "WL"]


def test_stage_models_take_overrides_and_refuse_unknown_names():
    fast = stage_model("X-RSW60A", {"max_speed": 1000.0})
    assert fast.max_speed == 1000.0 and fast.microstep_size == ROTARY.microstep_size
    with pytest.raises(ConfigurationError, match="X-RSW60A"):
        stage_model("X-NOPE")
    with pytest.raises(ConfigurationError, match="speed_factr"):
        stage_model("X-RSW60A", {"speed_factr": 1.0})
    with pytest.raises(ValidationError, match="low must be < high"):
        ZaberOptions(overrides={"low_limit": 10.0, "high_limit": 0.0})


def test_options_default_to_the_stage_line_settings_unless_given():
    settings = ZaberOptions().serial_settings()
    assert (settings.baudrate, settings.write_terminator, settings.read_terminator) == (115200, "\n", "\r\n")
    given = ZaberOptions.model_validate({"serial": {"baudrate": 9600, "timeout_s": 0.5}}).serial_settings()
    assert (given.baudrate, given.timeout_s, given.read_terminator) == (9600, 0.5, "\r\n")
    with pytest.raises(ValidationError):
        ZaberOptions.model_validate({"adress": 2})
    axis = ZaberAxis("sample_out", ZaberOptions(stage="X-LSM100A"), connection="loop://")
    caps = axis.capabilities
    assert (caps.unit, caps.low_limit, caps.high_limit, caps.max_velocity) == ("mm", 0.0, 101.6, 26.0)
    with pytest.raises(ConfigurationError, match="needs a connection"):
        ZaberAxis("sample_out", ZaberOptions())


# -- driver over scripted exchanges -----------------------------------------------------------------------
def test_connect_only_reads_the_serial_number_and_logs_warnings(caplog):
    caplog.set_level(logging.INFO, "microct.drivers.zaber")
    script = [(b"/1 0 get system.serial", b"@01 0 OK IDLE WR 10001"),  # connect sends no set-point
              (b"/1 1 get pos", b"@01 1 OK IDLE WR 0")]
    transport, port = scripted_transport(script, ZaberOptions().serial_settings())
    axis = ZaberAxis("rotation", ZaberOptions(), transport=transport)
    axis.connect()
    description = axis.describe()
    port.assert_done()
    assert (description["serial_number"], description["warning"], description["position"]) == ("10001", "WR", 0.0)
    assert "Zaber device 1 axis 1 reports WR (no reference position (home needed))" in caplog.text


def test_position_read_is_one_get_pos():
    axis, port = connected([(b"/1 1 get pos", b"@01 1 OK IDLE -- 21333")])
    assert axis.read_position() == pytest.approx(4.99992, abs=1e-5)
    port.assert_done()


def test_a_move_is_move_abs_then_status_polls_until_idle():
    axis, port = connected([VELOCITY, (b"/1 1 move abs 21333", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK IDLE -- 0")])
    status = axis.start_move_to(5.0)
    status.wait(2.0)
    assert status.done
    port.assert_done()


def test_a_relative_move_reads_the_position_then_sends_move_rel():
    axis, port = connected([(b"/1 1 get pos", b"@01 1 OK IDLE -- 21333"), VELOCITY,  # before the first move
                            (b"/1 1 move rel -2133", b"@01 1 OK BUSY -- 0"),   # -0.5 deg
                            (b"/1 1", b"@01 1 OK IDLE -- 0")])
    axis.move_by(-0.5, timeout_s=2.0)
    port.assert_done()


def test_a_rejected_relative_move_names_the_distance_and_the_range():
    axis, port = connected([(b"/1 1 get pos", b"@01 1 OK IDLE -- 0"), VELOCITY,
                            (b"/1 1 move rel 42667", b"@01 1 RJ IDLE -- BADDATA")])
    with pytest.raises(LimitError, match=r"rejected '/1 1 move rel 42667': BADDATA .*; distance 10 deg \(42667 "
                                         r"microsteps\) to 10 deg; soft limits -360 to 360 deg"):
        axis.move_by(10.0)
    port.assert_done()


def test_checksums_go_out_and_replies_are_verified():
    options = ZaberOptions(checksums=True, poll_interval_s=0.001)
    script = [(b"/1 0 get system.serial:AC", b"@01 0 OK IDLE -- 10001:CB"),
              (b"/1 1 get pos:AC", b"@01 1 OK IDLE -- 21333:C0"),
              (b"/1 1 get pos:AC", b"@01 1 OK IDLE -- 21333:C1")]
    transport, port = scripted_transport(script, options.serial_settings())
    axis = ZaberAxis("rotation", options, transport=transport)
    axis.connect()
    assert axis.read_position() == pytest.approx(4.99992, abs=1e-5)
    with pytest.raises(ProtocolError, match=r"checksum mismatch.*'/1 1 get pos:AC'"):
        axis.read_position()
    port.assert_done()


def test_out_of_limit_moves_are_refused_before_any_byte_is_sent():
    axis, port = connected([])
    with pytest.raises(LimitError, match="position=400 deg is outside the soft limits -360 to 360 deg"):
        axis.start_move_to(400.0)
    port.assert_done()  # nothing beyond connect was written


def test_rejected_move_is_a_limit_error_naming_command_value_and_range():
    axis, port = connected([VELOCITY, (b"/1 1 move abs 21333", b"@01 1 RJ IDLE -- BADDATA")])
    with pytest.raises(LimitError) as info:
        axis.start_move_to(5.0)
    message = str(info.value)
    for part in ("axis 'rotation'", "Zaber device 1 axis 1", "'/1 1 move abs 21333'", "BADDATA",
                 "position 5 deg (21333 microsteps)", "-360 to 360 deg"):
        assert part in message, message


def test_rejected_command_is_a_protocol_error_naming_it():
    axis, port = connected([(b"/1 1 set maxspeed 401954", b"@01 1 RJ IDLE -- BADCOMMAND")])
    with pytest.raises(ProtocolError, match=r"rejected '/1 1 set maxspeed 401954': BADCOMMAND.*velocity 57.5 deg/s"):
        axis.set_velocity(57.5)


@pytest.mark.parametrize("flag, meaning", [("FS", "stalled and stopped"), ("WL", "unexpected limit trigger")])
def test_a_fault_flag_while_polling_fails_the_move(flag, meaning):
    axis, port = connected([VELOCITY, (b"/1 1 move abs -21333", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", f"@01 1 OK IDLE {flag} 0\r\n".encode()),
                            (b"/1 1 warnings clear", f"@01 1 OK IDLE -- 01 {flag}\r\n".encode())])
    status = axis.start_move_to(-5.0)
    with pytest.raises(DeviceFaultError, match=f"move to -5 deg failed: axis 'rotation': Zaber device 1 axis 1 "
                                               f"reports {flag} \\({meaning}\\)"):
        status.wait(2.0)


def test_a_fault_flag_is_cleared_before_the_move_fails_so_the_next_move_works():
    """FS, FE, WL ... persist until 'warnings clear' (manual, "Warning Flags"): the driver sends it as soon as
    a poll shows one, before failing the move, so the device is clear when the caller hears of the fault."""
    axis, port = connected([VELOCITY, (b"/1 1 move abs 42667", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK IDLE WL 0"),
                            (b"/1 1 warnings clear", b"@01 1 OK IDLE -- 02 WL NI"),
                            (b"/1 1 move abs 0", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK IDLE -- 0")])
    status = axis.start_move_to(10.0)
    with pytest.raises(DeviceFaultError, match=r"move to 10 deg failed: .*reports WL \(unexpected limit trigger\)$"):
        status.wait(2.0)
    assert port.step == len(CONNECT) + 5  # cleared by the time the Status failed
    axis.move_to(0.0, timeout_s=2.0)
    port.assert_done()


def test_a_failed_clear_still_reports_the_fault_and_says_the_flag_may_remain():
    axis, port = connected([VELOCITY, (b"/1 1 move abs 42667", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 OK IDLE FE 0"),
                            (b"/1 1 warnings clear", None)])
    status = axis.start_move_to(10.0)
    with pytest.raises(DeviceFaultError, match=r"reports FE \(limit sensor cannot be reached or is faulty\) \(and "
                                               r"clearing it with 'warnings clear' failed: .*no complete reply"):
        status.wait(2.0)
    port.assert_done()


def test_warnings_data_formats_and_parses():
    assert format_warnings(set()) == "00"
    assert format_warnings({"WR", "WL", "NI"}) == "03 WL WR NI"  # highest precedence first
    assert parse_warnings("02 FS WR") == ["FS", "WR"] and parse_warnings("00") == []
    for garbled in ("", "02 FS", "1 FS", "01 fs"):
        with pytest.raises(ProtocolError, match="garbled warnings"):
            parse_warnings(garbled)
    assert CLEARED_BY_WARNINGS_CLEAR >= {"FS", "FE", "WL"} and not CLEARED_BY_WARNINGS_CLEAR & {"WR", "NI", "FD"}


def test_a_rejected_poll_fails_the_move():
    axis, port = connected([VELOCITY, (b"/1 1 move abs 0", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1", b"@01 1 RJ IDLE -- PARKED")])
    with pytest.raises(DeviceStateError, match="move to 0 deg failed.*PARKED"):
        axis.move_to(0.0, timeout_s=2.0)


def test_home_and_stop():
    axis, port = connected([VELOCITY, (b"/1 1 home", b"@01 1 OK BUSY WR 0"),
                            (b"/1 1", b"@01 1 OK IDLE -- 0"),
                            (b"/1 1 move abs 42667", b"@01 1 OK BUSY -- 0"),
                            (b"/1 1 stop", b"@01 1 OK BUSY NI 0")])
    axis.home(timeout_s=2.0)
    axis.options.poll_interval_s = 10.0  # no poll before stop()
    status = axis.start_move_to(10.0)
    axis.stop()
    with pytest.raises(DeviceStateError, match="move to 10 deg did not complete: stop"):
        status.wait(1.0)
    port.assert_done()


def test_no_reply_is_a_timeout_naming_device_and_command():
    axis, port = connected([(b"/1 1 get pos", None)])
    with pytest.raises(DeviceTimeoutError, match=r"Zaber device 1 axis 1: .*no complete reply to '/1 1 get pos'"):
        axis.read_position()


@pytest.mark.parametrize("reply, what", [(b"@01 1 OK IDLE", "garbled"),
                                         (b"@02 1 OK IDLE -- 5", "unexpected answer"),
                                         (b"@01 1 OK IDLE -- 5.5", "not a whole number")])
def test_garbled_or_misaddressed_replies_are_protocol_errors(reply, what):
    axis, port = connected([(b"/1 1 get pos", reply)])
    with pytest.raises(ProtocolError, match=f"axis 'rotation': Zaber device 1 axis 1: .*{what}") as info:
        axis.read_position()
    assert "get pos" in str(info.value)
