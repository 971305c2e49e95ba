"""The Spellman codec and driver against scripted byte exchanges on a serial framing (STX … checksum ETX):
the bytes of the protocol notes (docs/protocols/spellman-xrv.md), no device and no simulator.

Checksum characters written out below ('j', 'u', 'F', ...) are the published examples of the public
PyMeasure XRV tests; the other frames are built with ``frame()``, whose checksum those examples test."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from microct.clock import SimulatedClock
from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.driverkit import ErrorReply
from microct.drivers.spellman import codec
from microct.drivers.spellman.codec import COMMAND_SETS, FAULT_FLAGS, GeneratorStatus, Request
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.drivers.spellman.models import MODELS
from microct.errors import ConfigurationError, DeviceStateError, LimitError, ProtocolError
from microct.registry import load_driver
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings, VisaTransport

ETX_LINK = SerialSettings(baudrate=9600, timeout_s=0.1, read_terminator="\x03", write_terminator="\x03")
XRV = codec.Codec(COMMAND_SETS["XRV"], checksum=True)
UX = codec.Codec(COMMAND_SETS["uX"], checksum=True)


def frame(body: bytes) -> bytes:
    """A checksummed frame (STX, body, checksum) without the ETX, which the link adds."""
    return b"\x02" + body + codec.checksum(body)


def status_reply(*bits: int) -> bytes:
    """An XRV status body ("22,...") with the given bits (indices of XRV_STATUS) set."""
    return b"22," + b"".join(b"1," if i in bits else b"0," for i in range(17))


# interlocks 1 and 2 closed, filament on, small filament confirmed, supply ready, internal interlock closed
READY_BITS = (1, 2, 6, 10, 15, 16)
STANDBY = (frame(b"22,"), frame(status_reply(*READY_BITS)))
HV_ON = (frame(b"22,"), frame(status_reply(0, *READY_BITS)))
# connect(): full scale, then the set-points: 2047 counts (79.98 kV), 682 counts (4996 µA), small filament
CONNECT = [(b"\x0228,j", b"\x0228,160,30,0,|"), (b"\x0214,o", frame(b"14,2047,")),
           (b"\x0215,n", frame(b"15,682,")), STANDBY]
CONNECT_UX = [(frame(b"14,"), frame(b"14,2047,")), (frame(b"15,"), frame(b"15,1024,"))]


def connected(script, connect=CONNECT, **options):
    """A connected driver (XRV160 unless ``options`` say otherwise) on a scripted port playing
    ``connect`` + ``script``; its clock stands still, so shared replies never expire on their own."""
    transport, port = scripted_transport(connect + script, ETX_LINK, name="source 'tube'")
    source = SpellmanSource("tube", SpellmanOptions(**options), transport=transport, clock=SimulatedClock())
    source.connect()
    return source, port


# -- framing and checksum ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "character"), [
    (b"28,", b"j"), (b"14,", b"o"), (b"15,", b"n"), (b"19,", b"j"), (b"22,", b"p"), (b"68,", b"f"), (b"31,", b"p"),
    (b"10,4095,", b"u"), (b"11,4095,", b"t"), (b"98,1,", b"F"), (b"98,0,", b"G"), (b"32,1,", b"R"), (b"32,0,", b"S"),
    (b"70,1,", b"P"), (b"97,4500,3000,", b"@"), (b"07,1,", b"P"),
    (b"10,$,", b"c"), (b"98,$,", b"S"), (b"31,$,", b"`"), (b"28,160,30,0,", b"|"), (b"14,4095,", b"q"),
])
def test_checksum_matches_the_published_examples(body, character):
    assert codec.checksum(body) == character
    assert 0x40 <= codec.checksum(body)[0] <= 0x7F


def test_encode_with_and_without_the_checksum():
    request = Request(10, (2047,))
    assert str(request) == "10,2047"
    assert XRV.encode(request) == b"\x0210,2047," + codec.checksum(b"10,2047,")
    assert codec.Codec(COMMAND_SETS["XRV"], checksum=False).encode(request) == b"\x0210,2047,"
    assert XRV.encode(Request(7, (1,))) == b"\x0207,1,P"  # two digits, as in the sheet's "07,n"
    with pytest.raises(LimitError, match=r"'10,-1' \(set kV\): the arguments must be whole numbers >= 0"):
        XRV.encode(Request(10, (-1,)))


def test_without_the_checksum_a_trailing_one_is_still_accepted_when_right():
    tcp = codec.Codec(COMMAND_SETS["XRV"], checksum=False)
    assert tcp.decode(b"\x0214,2047,") == (14, [b"2047"])
    assert tcp.decode(b"\x0214,4095,q") == (14, [b"4095"])
    with pytest.raises(codec.FrameError, match="does not end with a comma"):
        tcp.decode(b"\x0214,4095,r")


@pytest.mark.parametrize(("parse", "command", "reply", "why"), [
    (XRV.parse_status, "22' (status)", b"22,0,1,", "does not start with STX"),
    (XRV.parse_status, "22' (status)", b"\x0222,", "the checksum is missing"),
    (XRV.parse_status, "22' (status)", b"\x0222,1,q", "checksum 'q', expected"),
    (XRV.parse_status, "22' (status)", frame(b"19,1,2,3,4,5,6,7,8,"), "answers command 19"),
    (XRV.parse_status, "22' (status)", frame(b"22,1,1,"), "expected 17 value(s), got 2"),
    (XRV.parse_status, "22' (status)", frame(status_reply(1).replace(b"1", b"2", 1)),
     "'2' is not a flag 0 or 1"),
    (XRV.parse_monitors, "19' (monitors)", frame(b"19,4096,0,0,0,0,0,0,0,"), "'4096' is not a count 0-4095"),
    (XRV.parse_faults, "68' (faults)", frame(b"68,0,"), "expected 27 value(s)"),
    (XRV.parse_scaling, "28' (full scale)", frame(b"28,160,x,0,"), "not a number"),
    (XRV.parse_scaling, "28' (full scale)", frame(b"28,160,30,2,"), "polarity '2' is not 0 or 1"),
    (lambda r: XRV.parse_ack(Request(98, (1,)), r), "98,1' (HV on/off)", frame(b"98,ok,"),
     "expected '$' or an error code"),
    (lambda r: XRV.parse_counts(Request(14), r), "14' (kV set-point)", frame(b"14,-5,"), "not a count"),
])
def test_garbled_replies_name_command_and_reply(parse, command, reply, why):
    with pytest.raises(ProtocolError) as info:
        parse(reply)
    assert not isinstance(info.value, ErrorReply)
    assert f"'{command}: garbled reply {reply!r}" in str(info.value)
    assert why in str(info.value)


@pytest.mark.parametrize(("code", "meaning"), [(1, "out of range"), (2, "refused in the present state"),
                                               (9, "not in the error table")])
def test_an_error_code_in_place_of_dollar_names_command_and_meaning(code, meaning):
    with pytest.raises(ErrorReply, match=rf"'11,4095' \(set mA\) was answered with error code {code} \({meaning}"):
        XRV.parse_ack(Request(11, (4095,)), b"\x0211,%d," % code + codec.checksum(b"11,%d," % code))
    XRV.parse_ack(Request(11, (4095,)), b"\x0211,$,b")  # success


def test_an_error_reply_carries_the_code_its_meaning_and_the_command():
    with pytest.raises(ErrorReply) as info:
        XRV.parse_ack(Request(98, (1,)), frame(b"98,2,"))
    assert (info.value.code, info.value.command) == (2, "98,1")
    assert info.value.meaning.startswith("refused in the present state")


# -- requests, codec level (the simulator's side) -----------------------------------------------------------
@pytest.mark.parametrize(("body", "request_"), [
    (b"22,", Request(22)), (b"31,", Request(31)), (b"10,4095,", Request(10, (4095,))), (b"98,1,", Request(98, (1,))),
    (b"32,0,", Request(32, (0,))), (b"70,1,", Request(70, (1,))),
])
def test_requests_parse_as_the_generator_reads_them(body, request_):
    assert XRV.parse_request(b"\x02" + body + codec.checksum(body)) == request_
    assert XRV.parse_request(XRV.encode(request_)) == request_


@pytest.mark.parametrize(("body", "code"), [
    (b"22,1,", 1),           # an argument where none belongs
    (b"10,", 1),             # a set-point without its count
    (b"10,4096,", 1),        # above the DAC range
    (b"10,1,2,", 1),         # two arguments
    (b"98,2,", 1),           # a switch takes 0 or 1
    (b"10,-5,", 1),          # no sign
    (b"97,4500,3000,", 3),   # a commissioning command: not in the table
    (b"32,1,", 3),           # the uX has no filament select (below)
])
def test_requests_the_generator_refuses_are_error_replies_with_its_code(body, code):
    family = UX if body.startswith(b"32") else XRV
    with pytest.raises(ErrorReply) as info:
        family.parse_request(b"\x02" + body + codec.checksum(body))
    assert info.value.code == code and info.value.meaning == codec.ERROR_CODES[code]


def test_a_request_that_is_not_a_frame_is_a_frame_error():
    with pytest.raises(codec.FrameError, match="checksum"):
        XRV.parse_request(b"\x0222,")


# -- DAC scaling, both ways ----------------------------------------------------------------------------------
def test_setpoints_scale_to_counts_rounding_down():
    assert codec.setpoint_counts(160, 160) == 4095
    assert codec.setpoint_counts(80, 160) == 2047          # 2047.5: never more than asked
    assert codec.setpoint_counts(0, 160) == 0
    assert codec.setpoint_counts(codec.setpoint_value(1234, 30000), 30000) == 1234  # exact counts survive
    assert codec.setpoint_value(4095, 30000) == 30000
    assert codec.setpoint_value(2047, 160) == pytest.approx(79.9805, abs=1e-4)
    with pytest.raises(LimitError, match="voltage_kv=161 is outside the allowed range 0-160"):
        codec.setpoint_counts(161, 160, "voltage_kv")


def test_readbacks_have_the_xrv_over_range():
    assert codec.readback_value(4095, 160, 1.2) == pytest.approx(192.0)
    assert codec.readback_value(2977, 30000, 1.2) == pytest.approx(1.2 * 30000 * 2977 / 4095)
    assert codec.readback_counts(192.0, 160, 1.2) == 4095
    assert codec.readback_counts(500.0, 160, 1.2) == 4095   # clamped
    assert codec.readback_counts(-1.0, 160, 1.2) == 0
    assert codec.readback_value(codec.readback_counts(79.98, 160, 1.2), 160, 1.2) == pytest.approx(79.98, abs=0.03)


# -- status, monitors, faults, full scale --------------------------------------------------------------------
@pytest.mark.parametrize(("bits", "state", "reason"), [
    (READY_BITS, SourceState.STANDBY, ""),
    ((0, *READY_BITS), SourceState.BEAM_ON, ""),
    ((8, *READY_BITS), SourceState.BEAM_ON, ""),                      # X-rays imminent: the pre-warning
    ((4, *READY_BITS), SourceState.FAULT, ""),
    ((1, 6, 10, 15, 16), SourceState.NOT_READY, "interlock 2 open"),
    ((0, 2, 6, 10, 15), SourceState.NOT_READY, "interlock 1 open; internal interlock open"),
    ((5, *READY_BITS), SourceState.NOT_READY, "in local mode (switch the generator to remote)"),
    ((1, 2, 6, 10, 16), SourceState.NOT_READY, "supply not ready"),
])
def test_xrv_status_bits_to_state_and_reason(bits, state, reason):
    status = XRV.parse_status(frame(status_reply(*bits)))
    assert codec.state_of(status) is state
    assert codec.not_ready_reason(status) == reason


def test_xrv_status_round_trips_and_reports_the_filament():
    status = GeneratorStatus(hv_on=True, open_interlocks=("interlock 2",), large_filament=True, filament_enabled=False)
    assert XRV.parse_status(XRV.format_status(status)) == status
    assert XRV.parse_status(frame(status_reply(7, *READY_BITS))).large_filament is True


@pytest.mark.parametrize(("body", "status"), [
    (b"22,0,1,0,", GeneratorStatus(hv_on=False, open_interlocks=("interlock",))),  # uX notes: HV off, open
    (b"22,1,0,0,", GeneratorStatus(hv_on=True)),
    (b"22,0,0,1,", GeneratorStatus(hv_on=False, fault=True)),
])
def test_ux_status_has_three_values(body, status):
    assert UX.parse_status(frame(body)) == status
    assert UX.format_status(status) == frame(body)


def test_monitors_per_family():
    assert XRV.parse_monitors(frame(b"19,1234,2977,3783,512,768,6,7,899,")) == (1234, 2977)
    assert UX.parse_monitors(frame(b"20,500,2048,3000,1000,7,8,650,")) == (3000, 1000)
    assert XRV.format_monitors(1706, 568) == frame(b"19,1706,568,0,0,0,0,0,0,")


@pytest.mark.parametrize("index", range(len(FAULT_FLAGS)))
def test_each_fault_flag(index):
    reply = frame(b"68," + b"".join(b"1," if i == index else b"0," for i in range(27)))
    assert XRV.parse_faults(reply) == (FAULT_FLAGS[index],)
    assert XRV.format_faults((FAULT_FLAGS[index],)) == reply


def test_fault_flags_of_the_sheet():
    assert len(FAULT_FLAGS) == 27
    assert {"anode arc", "cathode arc", "board over-temperature", "kV difference", "mA difference"} <= set(FAULT_FLAGS)
    assert XRV.parse_faults(frame(b"68," + b"1," * 27)) == FAULT_FLAGS
    assert XRV.parse_faults(frame(b"68," + b"0," * 27)) == ()


def test_full_scale_reply_and_families_without_one():
    assert XRV.parse_scaling(b"\x0228,160,30,0,|") == codec.Scaling(160.0, 30.0, bipolar=False)
    assert XRV.format_scaling(codec.Scaling(160, 30, False)) == b"\x0228,160,30,0,|"
    with pytest.raises(ProtocolError, match="the uX family has no faults command"):
        UX.parse_faults(b"")


# -- connect -------------------------------------------------------------------------------------------------
def test_connect_checks_full_scale_and_adopts_the_setpoints():
    source, port = connected([])
    assert source.voltage_kv == pytest.approx(2047 * 160 / 4095)
    assert source.current_ua == pytest.approx(682 * 30000 / 4095)
    assert source.spot_mode == "small"
    port.assert_done()


def test_the_large_filament_selected_is_the_large_spot_mode():
    source, port = connected([], connect=CONNECT[:3] + [(frame(b"22,"), frame(status_reply(7, *READY_BITS)))])
    assert source.spot_mode == "large"


def test_a_generator_of_another_full_scale_is_refused_and_the_link_closed():
    transport, port = scripted_transport([(b"\x0228,j", frame(b"28,225,30,0,"))], ETX_LINK, "source 'tube'")
    source = SpellmanSource("tube", transport=transport)
    with pytest.raises(ConfigurationError, match=r"source 'tube': the generator reports a full scale of 225 kV / "
                                                 r"30 mA \('28'\), the model 'XRV160' has 160 kV / 30 mA"):
        source.connect()
    assert not source.connected and not port.is_open


def test_ux_connect_reads_setpoints_only():
    source, port = connected([], connect=CONNECT_UX, model="uX50")
    assert (source.voltage_kv, source.spot_mode) == (pytest.approx(2047 * 50 / 4095), "fixed")
    assert source.current_ua == pytest.approx(1024 * 2000 / 4095)
    port.assert_done()


def test_no_io_until_connect():
    transport, port = scripted_transport([], ETX_LINK)
    SpellmanSource("tube", transport=transport)
    assert port.step == 0


# -- setters: exact bytes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "sent", "answer"), [
    (lambda s: s.set_voltage_kv(160), b"\x0210,4095,u", b"\x0210,$,c"),
    (lambda s: s.set_voltage_kv(40), frame(b"10,1023,"), frame(b"10,$,")),        # 1023.75 counts
    (lambda s: s.set_current_ua(4000), frame(b"11,546,"), frame(b"11,$,")),       # 546 counts = 3999 µA
    (lambda s: s.set_spot_mode("large"), b"\x0232,1,R", b"\x0232,$,_"),
], ids=["kV-full-scale", "kV-rounded-down", "µA", "large-filament"])
def test_setters_send_counts(call, sent, answer):
    source, port = connected([(sent, answer)])
    call(source)
    port.assert_done()


def test_configure_orders_the_commands_so_power_stays_within_every_mode():
    # 40 kV / 30 mA / large (1.2 kW) → 160 kV / 4.5 mA / small (720 W): kV first would ask for 4.8 kW
    start = [CONNECT[0], (frame(b"14,"), frame(b"14,1024,")), (frame(b"15,"), frame(b"15,4095,")),
             (frame(b"22,"), frame(status_reply(7, *READY_BITS)))]
    source, port = connected([(frame(b"11,614,"), frame(b"11,$,")), (frame(b"10,4095,"), frame(b"10,$,")),
                              (frame(b"32,0,"), frame(b"32,$,"))], connect=start)
    source.configure(voltage_kv=160, current_ua=4500, spot_mode="small")
    port.assert_done()


@pytest.mark.parametrize(("call", "names"), [
    (lambda s: s.set_voltage_kv(161), ["voltage_kv=161", "0-160 kV"]),
    (lambda s: s.set_current_ua(31000), ["current_ua=31000", "0-30000 µA"]),
    (lambda s: s.configure(voltage_kv=160, current_ua=6000), ["'small'", "800 W"]),          # 960 W
    (lambda s: s.set_spot_mode("tiny"), ["'tiny'", "large", "small"]),
], ids=["kV-range", "µA-range", "power", "mode"])
def test_out_of_range_or_over_power_sends_nothing(call, names):
    source, port = connected([])  # nothing scripted after connect: any byte written fails the test
    with pytest.raises(LimitError) as info:
        call(source)
    assert all(name in str(info.value) for name in names), str(info.value)
    assert "tube" in str(info.value)
    port.assert_done()


# -- actions -------------------------------------------------------------------------------------------------
def test_beam_on_reads_one_status_then_enables_the_filament_and_hv():
    source, port = connected([STANDBY, (b"\x0270,1,P", b"\x0270,$,]"), (b"\x0298,1,F", b"\x0298,$,S")])
    source.beam_on()
    port.assert_done()


def test_beam_off_and_reset():
    source, port = connected([(b"\x0298,0,G", b"\x0298,$,S"), (b"\x0231,p", b"\x0231,$,`")])
    source.beam_off()
    source.reset()
    port.assert_done()


def test_ux_switches_hv_with_99_and_has_no_reset():
    source, port = connected([(frame(b"22,"), frame(b"22,0,0,0,")), (frame(b"99,1,"), frame(b"99,$,")),
                              (frame(b"99,0,"), frame(b"99,$,"))], connect=CONNECT_UX, model="uX50")
    source.beam_on()
    source.beam_off()
    with pytest.raises(DeviceStateError, match="source 'tube': the uX family has no reset-faults command"):
        source.reset()
    port.assert_done()


def test_warm_up_is_refused_there_is_no_programme():
    source, port = connected([STANDBY])
    assert source.read_state() is SourceState.STANDBY  # never WARMUP_NEEDED
    with pytest.raises(DeviceStateError, match="source 'tube': the XRV generator runs no warm-up programme"):
        source.warm_up()
    port.assert_done()


def test_a_refused_setpoint_names_device_command_value_counts_and_state():
    source, port = connected([(frame(b"10,2559,"), frame(b"10,1,")), STANDBY])
    with pytest.raises(ErrorReply) as info:
        source.set_voltage_kv(100)
    assert str(info.value) == ("source 'tube': '10,2559' (set kV) was answered with error code 1 (out of range); "
                               "voltage_kv=100 kV was sent as 2559 counts (0-4095 = 0-160 kV); the generator is in "
                               "state 'standby'")
    assert source.voltage_kv == pytest.approx(79.98, abs=0.01)  # the held set-point is unchanged
    port.assert_done()


def test_hv_on_refused_names_the_reason_from_the_status():
    open_1 = (frame(b"22,"), frame(status_reply(2, 6, 10, 15, 16)))
    source, port = connected([STANDBY, (b"\x0270,1,P", b"\x0270,$,]"),
                              (b"\x0298,1,F", frame(b"98,2,")), open_1])
    with pytest.raises(ErrorReply, match=r"source 'tube': '98,1' \(HV on/off\) was answered with error code 2 "
                                         r"\(refused .*\); the generator is in state 'not ready / interlock open' "
                                         r"\(interlock 1 open\)"):
        source.beam_on()
    port.assert_done()


# -- read-backs: one status and one monitor reply per frame ------------------------------------------------------
MONITORS = (b"\x0219,j", frame(b"19,1706,568,0,0,0,0,0,0,"))


def test_state_interlock_voltage_and_current_cost_two_exchanges():
    source, port = connected([HV_ON, MONITORS])
    assert source.read_state() is SourceState.BEAM_ON
    assert source.read_interlock_closed() is True
    assert source.read_voltage_kv() == pytest.approx(1706 * 1.2 * 160 / 4095)
    assert source.read_current_ua() == pytest.approx(568 * 1.2 * 30000 / 4095)
    port.assert_done()


def test_shared_replies_expire_after_their_max_age():
    source, port = connected([MONITORS, MONITORS], readback_max_age_s=0.05)
    source.read_voltage_kv()
    source.clock.sleep(0.01)
    source.read_current_ua()      # still fresh
    source.clock.sleep(0.05)
    source.read_voltage_kv()      # expired: asked again
    port.assert_done()


def test_a_command_in_between_discards_the_shared_replies():
    source, port = connected([STANDBY, (b"\x0298,0,G", b"\x0298,$,S"), STANDBY])
    source.read_state()
    source.beam_off()
    source.read_state()
    port.assert_done()


def test_readback_max_age_zero_asks_each_time():
    source, port = connected([MONITORS, MONITORS], readback_max_age_s=0)
    source.read_voltage_kv()
    source.read_current_ua()
    port.assert_done()


def test_a_fault_is_named_from_68_and_logged_once(caplog):
    fault = (frame(b"22,"), frame(status_reply(4, *READY_BITS)))
    faults = (b"\x0268,f", frame(b"68," + b"".join(b"1," if i in (11, 24) else b"0," for i in range(27))))
    source, port = connected([fault, faults, faults])
    with caplog.at_level(logging.WARNING, "microct.drivers.spellman"):
        assert source.read_state() is SourceState.FAULT
        assert source.read_state() is SourceState.FAULT
    assert caplog.text.count("source 'tube': fault: anode arc, kV difference") == 1
    port.assert_done()


def test_garbled_reply_through_the_driver_names_the_device():
    source, port = connected([(frame(b"22,"), frame(b"22,1,1,"))])
    with pytest.raises(ProtocolError, match=r"source 'tube': '22' \(status\): garbled reply .*expected 17 value"):
        source.read_state()


def test_a_silent_device_is_a_timeout_naming_device_and_command():
    source, port = connected([(frame(b"22,"), None)])
    with pytest.raises(TimeoutError, match=r"source 'tube': no complete reply to '\\x0222,p' within 0.1 s"):
        source.read_interlock_closed()


# -- model table and options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_spans_its_full_scale(model):
    g = MODELS[model]
    caps = g.capabilities()
    assert caps.voltage_range_kv == (0, g.full_scale_kv)
    assert caps.current_range_ua == (0, g.full_scale_ma * 1000)
    assert list(caps.spot_modes) == list(g.spot_modes)


def test_xrv160_power_limits_per_filament():
    modes = MODELS["XRV160"].spot_modes
    assert (modes["large"].code, modes["small"].code) == ("large", "small")
    assert modes["large"].power_limit_w > modes["small"].power_limit_w


@pytest.mark.parametrize(("resource", "expected"), [
    ("TCPIP::192.168.1.4::50001::SOCKET", False), ("tcpip0::10.0.0.2::50000::socket", False),
    ("ASRL/dev/ttyUSB0::INSTR", True), ("ASRL3::INSTR", True), ("TCPIP::10.0.0.2::INSTR", True),
])
def test_checksum_defaults_from_the_resource_kind(resource, expected):
    assert codec.checksum_default(resource) is expected
    assert SpellmanSource("tube", connection=resource).codec.checksum is expected
    assert SpellmanSource("tube", SpellmanOptions(checksum=not expected), resource).codec.checksum is not expected


def test_visa_settings_default_to_etx_the_timeout_and_on_asrl_the_baud():
    options = SpellmanOptions(timeout_s=0.5)
    tcp = options.visa_settings("TCPIP::127.0.0.1::5000::SOCKET")
    assert (tcp.read_terminator, tcp.write_terminator, tcp.timeout_s, tcp.baudrate) == ("\x03", "\x03", 0.5, None)
    assert options.visa_settings("ASRL/dev/ttyUSB0::INSTR").baudrate == 9600
    assert SpellmanOptions(visa={"baudrate": 38400}).visa_settings("ASRL1::INSTR").baudrate == 38400


def test_options_select_a_model_and_override_it_field_by_field():
    options = SpellmanOptions(overrides={"full_scale_ma": 20, "spot_modes": {"small": {"power_limit_w": 600.0}}})
    g = options.generator()
    assert g.full_scale_ma == 20 and g.spot_modes["small"].power_limit_w == 600.0
    assert g.spot_modes["small"].spot_size_um == 400.0 and g.spot_modes["large"] == MODELS["XRV160"].spot_modes["large"]
    assert SpellmanSource("tube", options, "ASRL1::INSTR").capabilities.current_range_ua == (0, 20000)


@pytest.mark.parametrize(("options", "message"), [
    ({"model": "XRV9"}, "model='XRV9' is not in the model table; known: XRV160, uX50"),
    ({"family": "uX"}, "the uX family has one filament, so exactly one spot mode"),
    ({"overrides": {"spot_modes": {"small": {"code": "large"}}}}, "each filament (large, small) serves one mode"),
    ({"overrides": {"spot_modes": {"small": {"code": "tiny"}}}}, "each code names the filament, 'small' or 'large'"),
    ({"overrides": {"voltage_range_kv": [0, 200]}}, "voltage_range_kv: 200 kV is above the full scale 160 kV"),
    ({"overrides": {"full_scale_kv": -1}}, "overrides.full_scale_kv"),
    ({"visa": {"read_termination": "\n"}}, "visa.read_termination"),
    ({"timeout": 1}, "timeout"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValidationError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        SpellmanOptions(**options)


def test_registered_and_built_from_config_without_io():
    cls = load_driver("spellman", "source", "source.driver")
    assert cls is SpellmanSource and cls.backend == "VISA"
    source = cls.from_config("source", cls.Options(), "TCPIP::192.0.2.1::50001::SOCKET", DriverContext())
    assert not source.connected and isinstance(source._transport, VisaTransport)
    assert source.capabilities.voltage_range_kv == (0, 160)
    with pytest.raises(ConfigurationError, match="source.connection: the spellman driver needs a VISA resource"):
        cls.from_config("source", cls.Options(), None, DriverContext())
