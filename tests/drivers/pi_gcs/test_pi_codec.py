"""PI GCS 2 codec and driver against scripted byte exchanges (commands and replies as in the fact sheet,
docs/protocols/pi-gcs.md). The codec does not care which transport carries it: the scripts run
under a SerialTransport with LF terminators, as a VISA session would carry the same bytes."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from microct.driverkit import MoveEngine
from microct.drivers.pi_gcs.codec import (
    ERRORS,
    encode_batch,
    encode_command,
    error_for,
    format_line,
    format_moving_mask,
    format_number,
    format_values,
    is_last_line,
    is_query,
    parse_axis_values,
    parse_command,
    parse_error_code,
    reply_end_counter,
    split_replies,
)
from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.drivers.pi_gcs.models import STAGES, stage_model
from microct.errors import (
    ConfigurationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    LimitError,
    ProtocolError,
)
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings

LF = SerialSettings(write_terminator="\n", read_terminator="\n", timeout_s=0.2)
IDN = b"microct, PI GCS 2 wire simulator, 0, 1.0"
CONNECT = [(b"*IDN?", IDN),
           (b"TMN? 1", b"1=-360.0"),
           (b"TMX? 1", b"1=360.0"),
           (b"FRF? 1", b"1=1")]
"""What connect() exchanges for axis 1 of a referenced U-651 (soft limits ±360 deg): queries only."""
MOTION = [(b"SVO 1 1\nERR?", b"0"),
          (b"VEL 1 720.0\nERR?", b"0")]
"""What goes out before the first move or homing: servo on, the held velocity (the U-651's top speed, 720 deg/s)."""
UNREFERENCED = [(command, b"1=0" if command == b"FRF? 1" else reply) for command, reply in CONNECT]
"""The same for an axis that is not referenced (after power-up): connect sends no FRF."""


def connected(script, options: PIOptions | None = None, connect=CONNECT):
    """A connected PIAxis on a scripted port playing ``connect`` then ``script``."""
    options = options or PIOptions(poll_interval_s=0.001)
    transport, port = scripted_transport(connect + script, LF)
    axis = PIAxis("rotation", options, transport=transport)
    axis.connect()
    return axis, port


# -- codec -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (("MOV", "1", 10.0), b"MOV 1 10.0"),
    (("MVR", "1", -2.5), b"MVR 1 -2.5"),
    (("POS?", "1"), b"POS? 1"),
    (("ONT?", "1"), b"ONT? 1"),
    (("SVO", "1", "1"), b"SVO 1 1"),
    (("FRF", "1"), b"FRF 1"),
    (("FRF?", "1"), b"FRF? 1"),
    (("VEL", "1", 20), b"VEL 1 20.0"),
    (("VEL?", "1"), b"VEL? 1"),
    (("HLT", "1"), b"HLT 1"),
    (("STP",), b"STP"),
    (("TMN?", "1"), b"TMN? 1"),
    (("TMX?", "1"), b"TMX? 1"),
    (("ERR?",), b"ERR?"),
    (("*IDN?",), b"*IDN?"),
    (("MOV", "A", 1.5, "B", 2.0), b"MOV A 1.5 B 2.0"),
])
def test_commands_encode_as_in_the_sheet(args, expected):
    assert encode_command(*args) == expected


@pytest.mark.parametrize("value, text", [(10.0, "10.0"), (-2.5, "-2.5"), (0, "0.0"), (0.1 + 0.2, "0.3"),
                                         (1e-7, "1e-07"), (123.456789012345, "123.456789012"), (1e15, "1e+15")])
def test_numbers_have_twelve_significant_digits_and_a_point_or_exponent(value, text):
    assert format_number(value) == text


def test_queries_are_the_commands_ending_in_a_question_mark():
    assert [is_query(c) for c in (b"POS? 1", b"*IDN?", b"ERR?", b"MOV 1 1.0", b"STP")] == [True] * 3 + [False] * 2
    assert encode_batch([b"MOV 1 10.0", b"ERR?"]) == b"MOV 1 10.0\nERR?"


def test_a_reply_ends_at_a_line_without_a_space_before_its_lf():
    lines = [b"1=1 ", b"2=0 ", b"3=1", b"0"]
    assert [is_last_line(line) for line in lines] == [False, False, True, True]
    assert split_replies(lines) == [[b"1=1 ", b"2=0 ", b"3=1"], [b"0"]]
    with pytest.raises(ProtocolError, match="incomplete reply"):
        split_replies([b"1=1 ", b"2=0 "])
    last = reply_end_counter(2)  # fed each line in order, true at the end of the second reply
    assert [last(line) for line in lines] == [False, False, False, True]


def test_multi_line_replies_parse_to_values_by_axis():
    assert parse_axis_values([b"1=10.0 ", b"2=3.5 ", b"A=-1e-07"]) == {"1": "10.0", "2": "3.5", "A": "-1e-07"}
    assert parse_axis_values([b"1 = 1"]) == {"1": "1"}


@pytest.mark.parametrize("line", [b"10.0", b"=1", b"1=", b"1=\xff", b""])
def test_lines_that_are_not_axis_value_are_protocol_errors(line):
    with pytest.raises(ProtocolError, match="garbled reply"):
        parse_axis_values([line])


def test_error_codes_parse():
    assert parse_error_code([b"0"]) == 0
    assert parse_error_code([b"17"]) == 17
    for garbled in ([b"1=0"], [b"ok"], [b""]):
        with pytest.raises(ProtocolError, match="expected an error code"):
            parse_error_code(garbled)


@pytest.mark.parametrize("code, cls", [(1, ProtocolError), (2, ProtocolError), (5, DeviceStateError),
                                       (7, LimitError), (8, LimitError), (10, DeviceStateError),
                                       (15, ProtocolError), (17, LimitError), (555, DeviceFaultError)])
def test_error_codes_map_to_the_error_hierarchy(code, cls):
    assert error_for(code)[0] is cls


def test_every_code_of_the_sheet_has_a_meaning():
    assert set(ERRORS) >= {1, 2, 5, 7, 10, 15, 17}
    assert error_for(7)[1] == "position out of limits"
    assert error_for(555)[1] == "controller error 555"


def test_replies_format_as_the_controller_sends_them():
    assert format_values({"1": "10.0"}) == b"1=10.0\n"
    assert format_values({"1": "1", "2": "0"}) == b"1=1 \n2=0\n"
    assert format_line("0") == b"0\n"
    assert format_moving_mask([False, False]) == b"0\n"
    assert format_moving_mask([True, False, True, True]) == b"D\n"
    assert parse_command(b"MOV 1 10.0") == ("MOV", ["1", "10.0"])
    with pytest.raises(ProtocolError):
        parse_command(b"  ")


def test_stage_models_take_overrides_and_refuse_unknown_names():
    assert (STAGES["U-651"].unit, STAGES["L-509.40"].unit) == ("deg", "mm")
    fast = stage_model("U-651", {"max_velocity": 1000.0})
    assert fast.max_velocity == 1000.0 and fast.low_limit == STAGES["U-651"].low_limit
    with pytest.raises(ConfigurationError, match="U-651"):
        stage_model("U-999")
    with pytest.raises(ConfigurationError, match="max_velocty"):
        stage_model("U-651", {"max_velocty": 1.0})
    with pytest.raises(ValidationError, match="low must be < high"):
        PIOptions(overrides={"low_limit": 10.0, "high_limit": 0.0})
    with pytest.raises(ConfigurationError, match="reference_position"):
        stage_model("L-509.40", {"reference_position": -1.0})


def test_options_default_to_lf_and_the_public_client_timeout_unless_given():
    settings = PIOptions().visa_settings()
    assert (settings.timeout_s, settings.write_terminator, settings.read_terminator) == (7.0, "\n", "\n")
    given = PIOptions.model_validate({"visa": {"timeout_s": 0.5}, "axis": 2}).visa_settings()
    assert (given.timeout_s, given.read_terminator) == (0.5, "\n")
    assert PIOptions.model_validate({"axis": 2}).axis == "2"
    for bad in ({"axes": "1"}, {"axis": "1 2"}, {"stage": "U-999"}, {"poll_interval_s": 0}):
        with pytest.raises(ValidationError):
            PIOptions.model_validate(bad)
    axis = PIAxis("sample_out", PIOptions(stage="L-509.40"), connection="TCPIP::192.0.2.1::50000::SOCKET")
    caps = axis.capabilities
    assert (caps.unit, caps.low_limit, caps.high_limit, caps.max_velocity) == ("mm", 0.0, 102.0, 20.0)
    assert PIAxis.backend == "VISA"
    with pytest.raises(ConfigurationError, match="needs a connection"):
        PIAxis("sample_out", PIOptions())


# -- driver over scripted exchanges -----------------------------------------------------------------------
def test_connect_identifies_reads_limits_and_reference_and_sets_nothing():
    axis, port = connected([(b"POS? 1", b"1=0.0")])
    description = axis.describe()
    port.assert_done()
    assert description["identification"] == IDN.decode().strip()
    assert (description["referenced"], description["soft_limits"], description["position"]) == (True, (-360, 360), 0)


def test_the_controller_soft_limits_narrow_the_configured_ones(caplog):
    caplog.set_level(logging.INFO, "microct.devices.axis")  # the kit's AxisCapabilities.narrowed logs it
    connect = [CONNECT[0], (b"TMN? 1", b"1=-10.0"), (b"TMX? 1", b"1=1000000000.0"), *CONNECT[3:]]
    axis, port = connected([], connect=connect)
    assert (axis.capabilities.low_limit, axis.capabilities.high_limit) == (-10.0, 360.0)
    assert ("PI axis 1: the controller's (TMN?, TMX?) soft limits -10 to 1e+09 deg narrow the configured "
            "-360 to 360") in caplog.text
    with pytest.raises(LimitError, match="position=-20 deg is outside the soft limits -10 to 360 deg"):
        axis.start_move_to(-20.0)
    port.assert_done()


def test_soft_limits_that_do_not_overlap_the_configured_ones_refuse_to_connect():
    script = [CONNECT[0], (b"TMN? 1", b"1=400.0"), (b"TMX? 1", b"1=500.0")]
    transport, port = scripted_transport(script, LF)
    axis = PIAxis("rotation", PIOptions(), transport=transport)
    with pytest.raises(ConfigurationError, match="configured soft limits -360 to 360 deg do not overlap the "
                                                 r"controller's \(TMN\?, TMX\?\) 400 to 500"):
        axis.connect()
    assert not axis.connected


def test_connect_leaves_an_unreferenced_axis_alone_and_read_referenced_is_one_frf_query():
    axis, port = connected([(b"FRF? 1", b"1=0"), (b"FRF? 1", b"1=1")], connect=UNREFERENCED)  # no FRF
    assert axis.read_referenced() is False
    assert axis.read_referenced() is True  # referenced meanwhile (by another client, by hand)
    port.assert_done()


def test_an_unreferenced_axis_refuses_moves_until_home():
    options = PIOptions(poll_interval_s=0.001)
    axis, port = connected([*MOTION,  # sent before the refused move (the refusal is the driver's)
                            (b"FRF 1\nERR?", b"0"),
                            (b"FRF? 1\nERR?", b"1=1\n0"),
                            (b"MOV 1 5.0\nERR?", b"0"),
                            (b"ONT? 1\nERR?", b"1=1\n0")], options, UNREFERENCED)
    with pytest.raises(DeviceStateError, match=r"PI axis 1 is not referenced \(FRF\? 1 = 0\): home it first "
                                               r"\(home\(\), `microct home`, or the axis table's home setting\)"):
        axis.start_move_to(5.0)
    axis.home(timeout_s=2.0)
    axis.move_to(5.0, timeout_s=2.0)
    port.assert_done()


def test_a_position_read_is_one_pos_query():
    axis, port = connected([(b"POS? 1", b"1=12.345")])
    assert axis.read_position() == 12.345
    port.assert_done()


def test_a_multi_line_reply_is_read_to_its_end_and_the_axis_value_taken():
    axis, port = connected([(b"POS? 1", b"2=7.0 \n1=5.0"), (b"POS? 1", b"1=6.0")])
    assert axis.read_position() == 5.0
    assert axis.read_position() == 6.0  # nothing of the first reply was left behind
    port.assert_done()


def test_a_move_is_mov_with_err_then_on_target_polls():
    axis, port = connected([*MOTION, (b"MOV 1 10.0\nERR?", b"0"),
                            (b"ONT? 1\nERR?", b"1=0\n0"),
                            (b"ONT? 1\nERR?", b"1=0\n0"),
                            (b"ONT? 1\nERR?", b"1=1\n0")])
    status = axis.start_move_to(10.0)
    status.wait(2.0)
    assert status.done
    port.assert_done()


def test_a_relative_move_reads_the_position_then_sends_mvr_with_err():
    axis, port = connected([(b"POS? 1", b"1=10.0"), *MOTION,
                            (b"MVR 1 -2.5\nERR?", b"0"),
                            (b"ONT? 1\nERR?", b"1=1\n0")])
    axis.move_by(-2.5, timeout_s=2.0)
    port.assert_done()


def test_a_refused_relative_move_names_the_distance_and_the_range():
    axis, port = connected([(b"POS? 1", b"1=350.0"), *MOTION, (b"MVR 1 5.0\nERR?", b"7")])
    with pytest.raises(LimitError, match=r"error 7 \(position out of limits\) after 'MVR 1 5.0'; distance 5 deg "
                                         r"to 355 deg; soft limits -360 to 360 deg"):
        axis.move_by(5.0)
    port.assert_done()


def test_from_a_known_position_the_first_poll_waits_for_the_shortest_move_time(mocker):
    axis, port = connected([(b"POS? 1", b"1=0.0"), *MOTION,
                            (b"MOV 1 72.0\nERR?", b"0"),
                            (b"ONT? 1\nERR?", b"1=1\n0")])
    axis.read_position()
    starts = mocker.spy(MoveEngine, "start")
    axis.move_to(72.0, timeout_s=2.0)  # 0.1 s at 720 deg/s; the script checks that ONT? 1 is polled
    engine, what, send = starts.call_args.args
    assert (what, starts.call_args.kwargs["first_poll_s"]) == ("move to 72 deg", pytest.approx(0.1))
    port.assert_done()


def test_out_of_limit_moves_are_refused_before_any_byte_is_sent():
    axis, port = connected([])
    with pytest.raises(LimitError, match="position=400 deg is outside the soft limits -360 to 360 deg"):
        axis.start_move_to(400.0)
    port.assert_done()  # nothing beyond connect was written


@pytest.mark.parametrize("code, cls, meaning", [
    (7, LimitError, "position out of limits"),
    (5, DeviceStateError, "move without reference or with servo off"),
    (2, ProtocolError, "unknown command"),
    (1, ProtocolError, "parameter syntax error"),
    (15, ProtocolError, "invalid axis identifier"),
    (10, DeviceStateError, "controller was stopped by command"),
    (333, DeviceFaultError, "controller error 333"),
])
def test_an_error_code_after_a_move_raises_naming_axis_command_value_and_range(code, cls, meaning):
    axis, port = connected([*MOTION, (b"MOV 1 20.0\nERR?", f"{code}\n".encode())])
    with pytest.raises(cls) as info:
        axis.start_move_to(20.0)
    message = str(info.value)
    for part in ("axis 'rotation'", f"PI axis 1 reports error {code} ({meaning}", "after 'MOV 1 20.0'",
                 "position 20 deg", "-360 to 360 deg"):
        assert part in message, message
    port.assert_done()


def test_a_refused_velocity_names_the_value_and_the_allowed_range():
    axis, port = connected([(b"VEL 1 57.5\nERR?", b"17")])
    with pytest.raises(LimitError, match=r"error 17 \(parameter out of range\) after 'VEL 1 57.5'; "
                                         r"velocity 57.5 deg/s; the stage model allows \(0, 720\] deg/s"):
        axis.set_velocity(57.5)
    assert axis.velocity == 720.0


def test_an_error_code_while_polling_fails_the_move():
    axis, port = connected([*MOTION, (b"MOV 1 -5.0\nERR?", b"0"),
                            (b"ONT? 1\nERR?", b"1=1\n10")])
    with pytest.raises(DeviceStateError, match=r"move to -5 deg failed: axis 'rotation': PI axis 1 reports error 10 "
                                               r"\(controller was stopped .*\) during move to -5 deg "
                                               r"\(polling 'ONT\? 1'\)"):
        axis.move_to(-5.0, timeout_s=2.0)


def test_home_polls_frf_and_stop_halts_accepting_error_10():
    axis, port = connected([*MOTION, (b"FRF 1\nERR?", b"0"),
                            (b"FRF? 1\nERR?", b"1=1\n0"),
                            (b"MOV 1 10.0\nERR?", b"0"),
                            (b"HLT 1\nERR?", b"10"),
                            (b"HLT 1\nERR?", b"0"),
                            (b"HLT 1\nERR?", b"5")])
    axis.home(timeout_s=2.0)
    axis.options.poll_interval_s = 10.0  # no poll before stop()
    status = axis.start_move_to(10.0)
    axis.stop()
    with pytest.raises(DeviceStateError, match="move to 10 deg did not complete: stop"):
        status.wait(1.0)
    axis.stop()  # idle: some controllers leave no error
    with pytest.raises(DeviceStateError, match=r"error 5 .* after 'HLT 1'"):
        axis.stop()
    port.assert_done()


def test_no_reply_is_a_timeout_naming_device_and_command():
    axis, port = connected([(b"POS? 1", None)])
    with pytest.raises(DeviceTimeoutError, match=r"axis 'rotation': PI axis 1: 'POS\? 1' failed: .*"
                                                 r"no complete reply to 'POS\? 1'"):
        axis.read_position()


@pytest.mark.parametrize("reply, what", [(b"garbage", r"garbled reply b'garbage': expected axis=value"),
                                         (b"2=5.0", "unexpected answer b'2=5.0' .* no value for axis 1"),
                                         (b"1=five", "'five' in the reply to 'POS\\? 1' is not a number")])
def test_garbled_replies_are_protocol_errors_naming_device_and_command(reply, what):
    axis, port = connected([(b"POS? 1", reply)])
    with pytest.raises(ProtocolError, match=f"axis 'rotation': PI axis 1: {what}") as info:
        axis.read_position()
    assert "POS? 1" in str(info.value)


def test_a_garbled_error_code_is_a_protocol_error():
    axis, port = connected([(b"VEL 1 100.0\nERR?", b"OK")])
    with pytest.raises(ProtocolError, match=r"expected an error code \(integer\) to 'ERR\?' after 'VEL 1 100.0'"):
        axis.set_velocity(100.0)
