"""The codec, both sides: what the driver encodes and parses, what the simulator parses and formats."""

from __future__ import annotations

import math

import pytest

from microct.driverkit import ConfigurationError, ProtocolError
from microct_smc100 import codec
from microct_smc100.models import STAGES, stage_model


@pytest.mark.parametrize(("address", "command", "value", "expected"), [
    (1, "PA", 2.2, b"1PA2.2"), (1, "PR", -2.5, b"1PR-2.5"), (1, "VA", 50, b"1VA50"), (12, "OR", "", b"12OR"),
    (1, "TS", "", b"1TS"), (1, "SL", "?", b"1SL?"), (1, "PA", 1e-7, b"1PA0"), (1, "PA", -1e-7, b"1PA0"),
    (1, "PA", 123456.1234567, b"1PA123456.123457"), (0, "ST", "", b"ST"),
])
def test_commands_are_encoded_as_the_manual_writes_them(address, command, value, expected):
    assert codec.encode_command(address, command, value) == expected


@pytest.mark.parametrize(("address", "command", "value"), [(32, "PA", 1.0), (1, "pa", 1.0), (1, "PAX", 1.0),
                                                           (1, "PA", math.nan), (1, "PA", math.inf)])
def test_bad_commands_are_not_encoded(address, command, value):
    with pytest.raises(ValueError):
        codec.encode_command(address, command, value)


def test_replies_echo_address_and_command():
    assert codec.parse_reply(b"1TP-12.5", 1, "TP") == "-12.5"
    assert codec.parse_reply(b"1VE SMC - Controller-driver version 1.00r.", 1, "VE").strip() == \
        "SMC - Controller-driver version 1.00r."
    for line in (b"2TP1", b"1TH1", b"\xff1TP1", b"1TP\x001"):
        with pytest.raises(ProtocolError):
            codec.parse_reply(line, 1, "TP")


def test_status_errors_and_state():
    status = codec.parse_status("00000A")
    assert (status.errors, status.state, status.referenced, status.busy, status.ready) == (0, "0A", False, False, False)
    assert status.describe() == "state 0A (NOT REFERENCED from reset)"
    assert codec.parse_status("0013" "33").error_names == ["negative end of run", "positive end of run",
                                                          "short circuit detection"]  # the manual's example
    assert codec.parse_status("004C" "33").error_names == ["peak current limit", "RMS current limit",
                                                          "homing time out"]  # the manual's example
    assert codec.parse_status("000028").busy and codec.parse_status("00001E").busy
    assert codec.parse_status("00003c").state == "3C" and codec.parse_status("00003C").referenced
    assert codec.parse_status("800033").error_names == ["undocumented error bits"]
    for value in ("0033", "00G033", "0000033", ""):
        with pytest.raises(ProtocolError):
            codec.parse_status(value)


def test_status_round_trip():
    for state in codec.STATES:
        status = codec.ControllerStatus(0x0202, state)
        assert codec.parse_status(codec.format_status(status)) == status


def test_error_codes_and_explanations():
    assert codec.parse_error_code("@") == codec.NO_ERROR
    assert codec.COMMAND_ERRORS[codec.parse_error_code("G")] == "Displacement out of limits"
    for value in ("", "@@", "1", "g"):
        with pytest.raises(ProtocolError):
            codec.parse_error_code(value)
    assert codec.parse_error_text("@ No error", "@") == "No error"
    with pytest.raises(ProtocolError):
        codec.parse_error_text("A", "A")


def test_requests_as_the_controller_reads_them():
    assert codec.parse_request(b"2P A1.43 6") == codec.Request(2, "PA", "1.436")  # the manual's blanks example
    assert codec.parse_request(b"1pa2.2") == codec.Request(1, "PA", "2.2")
    assert codec.parse_request(b"ST") == codec.Request(None, "ST", "")
    assert codec.parse_request(b"1TS?").value == "?"
    for line in (b"", b"1P", b"\xff1PA1", b"1"):
        with pytest.raises(ProtocolError):
            codec.parse_request(line)
    assert codec.format_reply(1, "TS", "00000A") == b"1TS00000A\r\n"


def test_numbers():
    assert codec.format_number(-0.0) == "0" and codec.format_number(360) == "360"
    assert codec.parse_number("1e3", "TP") == 1000.0
    for text in ("x", "nan", "inf"):
        with pytest.raises(ProtocolError):
            codec.parse_number(text, "TP")


def test_stage_models():
    assert set(STAGES) == {"URS75BCC", "ILS100CC"}
    assert stage_model("ILS100CC").unit == "mm"
    assert stage_model("URS75BCC", {"max_velocity": 5.0}).max_velocity == 5.0
    with pytest.raises(ConfigurationError, match="stage='URS1'"):
        stage_model("URS1")
    with pytest.raises(ConfigurationError, match="low must be < high"):
        stage_model("URS75BCC", {"low_limit": 10.0, "high_limit": 0.0})
