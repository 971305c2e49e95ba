"""Every codec's reply parser (and the request parsers the wire simulators use) against arbitrary bytes
and near-valid mutations of real replies: a value of the documented type, or a ProtocolError; never
another exception, never a hang (the profile's deadline). Valid replies come from the protocol notes in
docs/protocols/ and from the codecs' own formatters (what the wire simulators send); formatter
and parser must also agree on every value (round trips).

Bugs these found are pinned by the regression tests at the end of each section."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fuzz_helpers import LONG_DIGITS, near, replies, returns_or_protocol_error
from hypothesis import given
from hypothesis import strategies as st

from microct.devices.source import SourceState
from microct.drivers.camserver import codec as camserver
from microct.drivers.dexela import codec as dexela
from microct.drivers.hamamatsu import codec as hamamatsu
from microct.drivers.pi_gcs import codec as pi_gcs
from microct.drivers.spellman import codec as spellman
from microct.drivers.zaber import codec as zaber
from microct.errors import LimitError, ProtocolError

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


# =====================================================================================================
# Hamamatsu (hamamatsu-microfocus.md: "STS n", "SAR sts kV µA ...", "SNR ser sin sph [svc]", ERR)
# =====================================================================================================
def _state(value):
    return isinstance(value, SourceState)


def _status(value):
    return _state(value.state) and math.isfinite(value.voltage_kv) and math.isfinite(value.current_ua)


def _code_in(allowed):
    return lambda value: isinstance(value, int) and value in allowed


HAMAMATSU = {  # parser: (valid replies, check of a parsed value)
    hamamatsu.parse_state: ([b"STS 2", b"STS 6"], _state),
    hamamatsu.parse_status: ([hamamatsu.format_status(SourceState.STANDBY, 100, 50), b"SAR 3 80 100"], _status),
    hamamatsu.parse_not_ready: ([hamamatsu.format_not_ready(hamamatsu.NotReadyCauses(203, True, False, 4)),
                                 b"SNR 0 0 1"], lambda v: v.board_error in range(1000) and v.vacuum_level in range(10)),
    hamamatsu.parse_setpoints: ([b"SVI 100 50"], lambda v: all(map(math.isfinite, v))),
    hamamatsu.parse_voltage: ([b"SHV 100"], math.isfinite),
    hamamatsu.parse_current: ([b"SCU 50"], math.isfinite),
    hamamatsu.parse_interlock_open: ([b"SIN 1"], lambda v: isinstance(v, bool)),
    hamamatsu.parse_preheating: ([b"SPH 0"], lambda v: isinstance(v, bool)),
    hamamatsu.parse_warmup: ([b"SWE 3"], _code_in(range(4))),
    hamamatsu.parse_focus: ([b"SFC 2"], _code_in(range(10))),
    hamamatsu.parse_model_name: ([b"TYP L10711"], lambda v: isinstance(v, str)),
    hamamatsu.parse_board_error: ([b"SER 209"], _code_in(range(1000))),
    hamamatsu.parse_auto_stop: ([b"SAT 3", b"SAT 60"], _code_in(range(61))),
}


@pytest.mark.parametrize("parse", HAMAMATSU, ids=lambda parse: parse.__name__)
@given(data=st.data())
def test_hamamatsu_replies_parse_or_are_protocol_errors(parse, data):
    valid, check = HAMAMATSU[parse]
    reply = data.draw(replies(*valid, b"ERR"), label="reply")
    value = returns_or_protocol_error(parse, reply)
    assert value is None or check(value), value


@given(command=st.sampled_from([b"HIV 100", b"CUR 050", b"CFS 1", b"XON", b"WUP"]), data=st.data())
def test_hamamatsu_echoes_are_checked_or_protocol_errors(command, data):
    reply = data.draw(replies(command, command.split()[0], b"ERR"), label="reply")
    returns_or_protocol_error(hamamatsu.parse_echo, command, reply)


@given(state=st.sampled_from(SourceState),
       voltage_kv=st.integers(0, 999), current_ua=st.integers(0, 9999))
def test_hamamatsu_status_round_trips(state, voltage_kv, current_ua):
    reply = hamamatsu.format_status(state, voltage_kv, current_ua)
    assert hamamatsu.parse_status(reply) == hamamatsu.BulkStatus(state, voltage_kv, current_ua)


@given(value=st.integers(-10**6, 10**6))
def test_hamamatsu_setpoint_commands_are_bytes_or_limit_errors(value):
    for encode, word in ((hamamatsu.encode_voltage, b"HIV"), (hamamatsu.encode_current, b"CUR")):
        try:
            command = encode(value)
        except LimitError as error:
            assert value < 0 and str(value) in str(error)
        else:
            assert command == b"%s %03d" % (word, value)
            assert hamamatsu.parse_echo(command, command) is None  # the L10711 echo is accepted


@pytest.mark.parametrize("reply", [b"STS " + LONG_DIGITS, b"SNR " + LONG_DIGITS + b" 0 0", b"SER 0" + LONG_DIGITS],
                         ids=["STS", "SNR", "SER"])
def test_hamamatsu_codes_of_thousands_of_digits_are_garbled_replies(reply):
    # found by fuzzing: int() refused the token with a ValueError
    with pytest.raises(ProtocolError, match=r"garbled reply .* is not one of the codes"):
        {b"STS": hamamatsu.parse_state, b"SNR": hamamatsu.parse_not_ready,
         b"SER": hamamatsu.parse_board_error}[reply[:3]](reply)


# =====================================================================================================
# Zaber ASCII (zaber-ascii.md: "@01 1 OK IDLE -- 0", info "#", checksum ":XX")
# =====================================================================================================
ZABER_REPLIES = (zaber.format_reply(zaber.Reply(1, 1, "OK", "IDLE", "--", "0"))[:-2],
                 zaber.format_reply(zaber.Reply(1, 1, "OK", "BUSY", "WR", "1000", 12), with_checksum=True)[:-2],
                 b"@01 1 RJ IDLE -- BADDATA", b"#01 1 serial 12345")
ZABER_COMMANDS = (zaber.encode_command(1, 1, "move abs 1000"),
                  zaber.encode_command(2, 0, "get pos", message_id=7, with_checksum=True), b"/")


@given(line=replies(*ZABER_REPLIES))
def test_zaber_replies_parse_or_are_protocol_errors(line):
    reply = returns_or_protocol_error(zaber.parse_reply, line)
    assert reply is None or isinstance(reply, (zaber.Reply, zaber.Info))


@given(line=replies(*ZABER_COMMANDS))
def test_zaber_commands_parse_or_are_protocol_errors(line):
    command = returns_or_protocol_error(zaber.parse_command, line)
    assert command is None or isinstance(command, zaber.Command)


@given(reply=st.builds(zaber.Reply, st.integers(0, 99), st.integers(0, 9), st.sampled_from(["OK", "RJ"]),
                       st.sampled_from(["BUSY", "IDLE"]), st.sampled_from(["--", *zaber.WARNINGS]),
                       st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=":"),
                               max_size=30),  # a colon starts the checksum
                       st.none() | st.integers(0, 99)),
       with_checksum=st.booleans())
def test_zaber_replies_round_trip(reply, with_checksum):
    line = zaber.format_reply(reply, with_checksum)
    assert line.endswith(zaber.REPLY_TERMINATOR)
    assert zaber.parse_reply(line[:-2]) == reply


def test_zaber_command_numbers_of_thousands_of_digits_are_protocol_errors():
    # found by fuzzing: int() refused a 5000-digit device address with a ValueError (the simulator's
    # handler died of it); a command the simulator cannot read is one it ignores
    with pytest.raises(ProtocolError, match=r"not a command: .* \(a number of 5000 digits\)"):
        zaber.parse_command(b"/" + LONG_DIGITS + b" 1 get pos")


# =====================================================================================================
# Spellman (spellman-xrv.md: STX "cc,arg,...," checksum; "$" or an error code)
# =====================================================================================================
CODECS = [spellman.Codec(spellman.COMMAND_SETS[family], checksum) for family in ("XRV", "uX")
          for checksum in (True, False)]
STATUS = spellman.GeneratorStatus(hv_on=True, open_interlocks=(), fault=False)


def _spellman_parsers(codec: spellman.Codec):
    """(name, parse(reply), valid replies) of every reply parser of ``codec``."""
    xrv = codec.commands.faults is not None
    extra_valid = ([codec.format_faults(("anode arc",)), codec.format_scaling(spellman.Scaling(160, 30, False))]
                   if xrv else [])
    return [
        ("decode", codec.decode, [codec.format_ack(10), codec.format_counts(14, 4095)]),
        ("ack", lambda reply: codec.parse_ack(spellman.Request(10, (5,)), reply),
         [codec.format_ack(10), codec.format_error(10, 1)]),
        ("counts", lambda reply: codec.parse_counts(spellman.Request(14), reply), [codec.format_counts(14, 2047)]),
        ("monitors", codec.parse_monitors, [codec.format_monitors(100, 4095)]),
        ("status", codec.parse_status, [codec.format_status(STATUS)]),
        ("faults", codec.parse_faults, extra_valid or [codec.format_ack(68)]),
        ("scaling", codec.parse_scaling, extra_valid or [codec.format_ack(28)]),
    ]


SPELLMAN = [(f"{codec.commands.name}-{'checksum' if codec.checksum else 'plain'}-{name}", parse, valid)
            for codec in CODECS for name, parse, valid in _spellman_parsers(codec)]


@pytest.mark.parametrize(("parse", "valid"), [case[1:] for case in SPELLMAN], ids=[case[0] for case in SPELLMAN])
@given(data=st.data())
def test_spellman_replies_parse_or_are_protocol_errors(parse, valid, data):
    reply = data.draw(replies(*valid), label="reply")
    value = returns_or_protocol_error(parse, reply)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        assert all(0 <= v <= spellman.DAC_MAX for v in value)  # monitor counts


INTERLOCKS = {"XRV": tuple(spellman._XRV_INTERLOCKS.values()), "uX": ("interlock",)}


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.commands.name}-{c.checksum}")
@given(kv=st.integers(0, spellman.DAC_MAX), ma=st.integers(0, spellman.DAC_MAX), data=st.data())
def test_spellman_replies_round_trip(codec, kv, ma, data):
    status = data.draw(st.builds(spellman.GeneratorStatus, hv_on=st.booleans(), fault=st.booleans(),
                                 open_interlocks=st.lists(st.sampled_from(INTERLOCKS[codec.commands.name]),
                                                          unique=True).map(tuple)), label="status")
    assert codec.parse_monitors(codec.format_monitors(kv, ma)) == (kv, ma)
    assert codec.parse_counts(spellman.Request(14), codec.format_counts(14, kv)) == kv
    parsed = codec.parse_status(codec.format_status(status))
    assert (parsed.hv_on, parsed.fault, set(parsed.open_interlocks)) == (status.hv_on, status.fault,
                                                                         set(status.open_interlocks))


@given(command=st.integers(0, 200), arguments=st.lists(st.integers(-10**12, 10**12), max_size=3))
def test_spellman_requests_are_frames_or_limit_errors(command, arguments):
    codec = CODECS[0]
    request = spellman.Request(command, tuple(arguments))
    try:
        frame = codec.encode(request)
    except LimitError as error:
        assert any(a < 0 for a in arguments) and str(request) in str(error)
    else:
        assert codec.decode(frame) == (command, [b"%d" % a for a in arguments])


@pytest.mark.parametrize(("parse", "request_", "body"), [
    ("parse_ack", spellman.Request(10, (5,)), LONG_DIGITS + b","),   # the command number
    ("parse_ack", spellman.Request(10, (5,)), b"10," + LONG_DIGITS + b","),  # an error code
    ("parse_counts", spellman.Request(14), b"14," + LONG_DIGITS + b","),  # a count
], ids=["command", "error-code", "count"])
def test_spellman_numbers_of_thousands_of_digits_are_garbled_replies(parse, request_, body):
    # found by fuzzing: int() refused the number with a ValueError
    codec = spellman.Codec(spellman.COMMAND_SETS["XRV"], checksum=False)
    with pytest.raises(ProtocolError, match="garbled reply"):
        getattr(codec, parse)(request_, spellman.STX + body)


# =====================================================================================================
# PI GCS 2 (pi-gcs.md: "axis=value" lines, continuation lines end in " LF", ERR? integer)
# =====================================================================================================
PI_LINES = (b"1=10.0 ", b"2=3.5", b"0", b"10", b"A=1")
line_lists = st.lists(replies(*PI_LINES), max_size=4)


@given(lines=line_lists)
def test_pi_replies_split_parse_or_are_protocol_errors(lines):
    grouped = returns_or_protocol_error(pi_gcs.split_replies, lines)
    assert grouped is None or sum(map(len, grouped)) == len(lines)
    values = returns_or_protocol_error(pi_gcs.parse_axis_values, lines)
    assert values is None or all(isinstance(k, str) and isinstance(v, str) and v for k, v in values.items())
    code = returns_or_protocol_error(pi_gcs.parse_error_code, lines)
    assert code is None or isinstance(code, int)


@given(line=replies(b"MOV 1 10.0", b"POS? 1", b"*IDN?"))
def test_pi_commands_parse_or_are_protocol_errors(line):
    returns_or_protocol_error(pi_gcs.parse_command, line)


@given(values=st.dictionaries(st.text("ABCXYZ0123456789_", min_size=1, max_size=4),
                              st.text("0123456789.-+eE", min_size=1, max_size=12), min_size=1, max_size=4))
def test_pi_axis_values_round_trip(values):
    lines = pi_gcs.format_values(values).split(pi_gcs.TERMINATOR)[:-1]
    (reply,) = pi_gcs.split_replies(lines)
    assert pi_gcs.parse_axis_values(reply) == values


# =====================================================================================================
# DECTRIS camserver (dectris-camserver.md: "<code> OK|ERR <text>" + CAN, TIFF image files)
# =====================================================================================================
CAMSERVER_REPLIES = (b"15 OK N images set to: 10", b"7 OK /path/scan_0300.tif", b"13 ERR kill",
                     b"15 OK  Starting 0.1970000 second background: 2011-Aug-04T15:27:22.593",
                     b"1 ERR *** Unrecognized command: threshold")
TIFF = camserver.encode_tiff(np.arange(6, dtype=np.int32).reshape(2, 3), "# Pilatus 300K")


@given(raw=replies(*CAMSERVER_REPLIES))
def test_camserver_replies_parse_or_are_protocol_errors(raw):
    reply = returns_or_protocol_error(camserver.parse_reply, raw)
    assert reply is None or (isinstance(reply.code, int) and reply.code >= 0 and isinstance(reply.text, str))


@given(code=st.integers(0, 10**6), ok=st.booleans(),
       text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40))
def test_camserver_replies_round_trip(code, ok, text):
    reply = camserver.Reply(code, ok, text)
    raw = camserver.format_reply(reply)
    assert raw.endswith(camserver.REPLY_TERMINATOR)
    assert camserver.parse_reply(raw[:-1]) == reply


@st.composite
def tiff_heads(draw: st.DrawFn) -> bytes:
    """A camserver TIFF header with fields of its first IFD overwritten (extremes or any value), or cut."""
    head = bytearray(TIFF[:camserver.TIFF_HEADER_BYTES])
    if draw(st.booleans()):
        head[:2] = b"MM"
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, 200))
        width = draw(st.sampled_from([1, 2, 4]))
        value = draw(st.sampled_from([0, 1, 2, 3, 4, 42, 2**(8 * width) - 1]) | st.integers(0, 2**(8 * width) - 1))
        head[at:at + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
    return bytes(head[:draw(st.integers(0, len(head)))]) if draw(st.booleans()) else bytes(head)


@given(head=st.one_of(st.binary(max_size=64), tiff_heads(), near(TIFF[:64])))
def test_camserver_tiff_headers_give_a_layout_or_protocol_errors(head):
    layout = returns_or_protocol_error(camserver.parse_tiff_header, head)
    assert layout is None or min(layout.rows, layout.columns, layout.data_offset) >= 0


@given(rows=st.integers(1, 6), columns=st.integers(1, 6), description=printable)
def test_camserver_tiff_layout_round_trips(rows, columns, description):
    counts = np.arange(rows * columns, dtype=np.int32).reshape(rows, columns)
    layout = camserver.parse_tiff_header(camserver.encode_tiff(counts, description)[:camserver.TIFF_HEADER_BYTES])
    assert layout == camserver.TiffLayout(rows, columns, camserver.TIFF_HEADER_BYTES)


@given(text=st.text(max_size=40))
def test_camserver_words_and_paths_of_any_text_resolve(text):
    assert camserver.resolve_command(text) in (None, *camserver.COMMANDS)
    assert camserver.image_path_text(text).endswith("/")


@given(argument=st.text(max_size=20))
def test_camserver_commands_are_ascii_bytes_or_limit_errors(argument):
    try:
        command = camserver.encode_command("ImgPath", argument)
    except LimitError as error:
        assert not argument.isascii() and "ImgPath" in str(error)
    else:
        assert command == b"ImgPath " + argument.encode("ascii")


def test_camserver_codes_of_thousands_of_digits_are_garbled_replies():
    # found by fuzzing: int() refused the code with a ValueError
    with pytest.raises(ProtocolError, match="garbled reply"):
        camserver.parse_reply(LONG_DIGITS + b" OK fine")


def test_camserver_commands_with_non_ascii_arguments_are_limit_errors():
    # found by fuzzing: a configured image_path such as /données raised UnicodeEncodeError at connect
    with pytest.raises(LimitError, match=r"'ImgPath /données': camserver takes ASCII only"):
        camserver.encode_command("ImgPath", "/données")


# =====================================================================================================
# Dexela (dexela-serial.md: "X", "E", "S" + 5 digits; commands W/R; this project's frame channel)
# =====================================================================================================
FRAME = dexela.encode_frame(7, np.zeros((4, 3), np.uint16))

DEXELA = {  # parser: valid inputs
    dexela.parse_write_reply: [b"X", b"E"],
    dexela.parse_read_reply: [b"S00004", b"S65535", b"E"],
    dexela.parse_request: [b"WC1", b"W000300004", b"R1003"],
    dexela.parse_frame_request: [b"T12", b"N2500"],
    dexela.parse_frame_header: [FRAME[:16], dexela.NO_FRAME],
}


@pytest.mark.parametrize("parse", DEXELA, ids=lambda parse: parse.__name__)
@given(data=st.data())
def test_dexela_replies_and_requests_parse_or_are_protocol_errors(parse, data):
    returns_or_protocol_error(parse, data.draw(replies(*DEXELA[parse]), label="line"))


@given(data=st.binary(max_size=64), rows=st.integers(0, 8), columns=st.integers(0, 8))
def test_dexela_frame_bytes_decode_or_are_protocol_errors(data, rows, columns):
    pixels = returns_or_protocol_error(dexela.decode_pixels, data, (rows, columns), "frame 1")
    assert pixels is None or (pixels.shape == (rows, columns) and pixels.dtype == np.uint16)


@given(name=st.text(max_size=30) | st.builds("frame_{}.raw".format, st.integers(0, 10**30)))
def test_dexela_frame_file_names_give_a_number_or_none(name):
    number = dexela.frame_file_number(name)
    assert number is None or number >= 0


@given(register=st.integers(-10, 1200), value=st.integers(-10, 70000))
def test_dexela_commands_are_bytes_or_limit_errors_and_round_trip(register, value):
    try:
        command = dexela.encode_write(register, value)
    except LimitError as error:
        assert not (0 <= register <= 999 and 0 <= value <= dexela.WORD_MAX) and "allowed" in str(error)
    else:
        assert dexela.parse_request(command) == dexela.Request("write", dexela.WRITE_SENSOR, register, value)
        assert dexela.parse_read_reply(dexela.format_reply(value)[:-1]) == value


@pytest.mark.parametrize("header", [b"", b"DXFR", FRAME[:15], FRAME[:16] + b"x"])
def test_dexela_frame_headers_of_another_length_are_protocol_errors(header):
    # found by fuzzing: struct.error from unpacking a header that is not 16 bytes
    with pytest.raises(ProtocolError, match=r"frame header .* is not 16 bytes"):
        dexela.parse_frame_header(header)


def test_dexela_frame_requests_of_thousands_of_digits_are_protocol_errors():
    # found by fuzzing: int() refused the number with a ValueError (the simulator's handler died of it)
    with pytest.raises(ProtocolError, match="not a frame request"):
        dexela.parse_frame_request(b"T" + LONG_DIGITS)

