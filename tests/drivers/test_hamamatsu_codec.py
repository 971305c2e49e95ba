"""The Hamamatsu codec and driver against scripted byte exchanges: the bytes of the fact sheet
(shared/protocols/hamamatsu-microfocus.md), no device and no simulator."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from microct.devices.source import SourceState
from microct.drivers import hamamatsu as codec
from microct.drivers.hamamatsu import MODELS, ErrorReply, HamamatsuOptions, HamamatsuSource
from microct.errors import ConfigurationError, LimitError, ProtocolError
from microct.devices.base import DriverContext
from microct.registry import load_driver
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings

FAST = SerialSettings(baudrate=38400, timeout_s=0.1)
# connect(): identify, then adopt the device's set-points: 80 kV, 50 µA, middle focus (L10711: 10 W).
CONNECT = [(b"TYP\r", b"TYP L10711\r"), (b"SVI\r", b"SVI 80 50\r"), (b"SFC\r", b"SFC 1\r")]
STANDBY = (b"SAR\r", b"SAR 2 0 0 0 0 0 0\r")
CLOSED = (b"SIN\r", b"SIN 0\r")


def connected(script, **options):
    """A connected L10711 driver on a scripted port playing CONNECT + ``script``."""
    transport, port = scripted_transport(CONNECT + script, FAST, name="source 'tube'")
    source = HamamatsuSource("tube", HamamatsuOptions(**options), transport=transport)
    source.connect()
    return source, port


# -- connect ---------------------------------------------------------------------------------------------
def test_connect_identifies_and_adopts_the_device_setpoints():
    source, port = connected([])
    assert source.identity == "L10711"
    assert (source.voltage_kv, source.current_ua, source.spot_mode) == (80.0, 50.0, "middle")
    port.assert_done()


def test_another_model_answering_is_a_warning(caplog):
    transport, port = scripted_transport([(b"TYP\r", b"TYP L9181-02\r")] + CONNECT[1:], FAST)
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        HamamatsuSource("tube", HamamatsuOptions(model="L10711"), transport=transport).connect()
    assert "reports model 'L9181-02', the options configure 'L10711'" in caplog.text


def test_unknown_focus_code_at_connect_names_the_codes():
    transport, _ = scripted_transport(CONNECT[:2] + [(b"SFC\r", b"SFC 7\r")], FAST)
    with pytest.raises(ProtocolError, match=r"source 'tube': 'SFC' reports focus mode 7; .* codes \[0, 1, 2\]"):
        HamamatsuSource("tube", transport=transport).connect()


def test_no_io_until_connect():
    transport, port = scripted_transport([], FAST)
    HamamatsuSource("tube", transport=transport)
    assert port.step == 0


# -- setters: exact bytes, echo checked ------------------------------------------------------------------
@pytest.mark.parametrize(("call", "sent", "echo"), [
    (lambda s: s.set_voltage_kv(90), b"HIV 090\r", b"HIV 090\r"),
    (lambda s: s.set_voltage_kv(90), b"HIV 090\r", b"HIV 90\r"),     # L10711: the echo carries the value
    (lambda s: s.set_voltage_kv(5), b"HIV 005\r", b"HIV\r"),          # an echo without the value
    (lambda s: s.set_current_ua(60), b"CUR 060\r", b"CUR 060\r"),
    (lambda s: s.set_current_ua(7), b"CUR 007\r", b"CUR 007\r"),
    (lambda s: s.set_spot_mode("large"), b"CFS 2\r", b"CFS 2\r"),
    (lambda s: s.set_spot_mode("small"), b"CFS 0\r", b"CFS 0\r"),     # 80 kV x 50 µA = 4 W: allowed in small
], ids=["HIV", "HIV-echo-value", "HIV-bare-echo", "CUR", "CUR-padded", "CFS-large", "CFS-small"])
def test_setters_send_the_sheet_bytes(call, sent, echo):
    source, port = connected([(sent, echo)])
    call(source)
    port.assert_done()


def test_fractional_setpoints_are_truncated_never_rounded_up(caplog):
    source, port = connected([(b"CUR 022\r", b"CUR 022\r")])
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source.set_current_ua(22.9)
    port.assert_done()
    assert "current_ua=22.9 µA is sent as 22 µA" in caplog.text


def test_configure_orders_the_commands_so_power_stays_within_every_mode():
    # 80 kV / 100 µA / middle (8 W) → 160 kV / 25 µA / small (4 W): HIV first would ask for 16 W
    transport, port = scripted_transport([CONNECT[0], (b"SVI\r", b"SVI 80 100\r"), CONNECT[2],
                                          (b"CUR 025\r", b"CUR 025\r"), (b"HIV 160\r", b"HIV 160\r"),
                                          (b"CFS 0\r", b"CFS 0\r")], FAST)
    source = HamamatsuSource("tube", transport=transport)
    source.connect()
    source.configure(voltage_kv=160, current_ua=25, spot_mode="small")
    port.assert_done()


# -- refused before any byte ---------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "names"), [
    (lambda s: s.set_voltage_kv(161), ["voltage_kv=161", "0-160 kV"]),
    (lambda s: s.set_current_ua(250), ["current_ua=250", "0-200 µA"]),
    (lambda s: s.set_current_ua(150), ["'middle'", "10 W"]),                  # 80 kV x 150 µA = 12 W
    (lambda s: s.configure(voltage_kv=160, current_ua=50, spot_mode="small"), ["'small'", "4 W"]),
    (lambda s: s.set_spot_mode("tiny"), ["'tiny'", "large", "middle", "small"]),
], ids=["kV-range", "µA-range", "power", "power-configure", "mode"])
def test_out_of_range_or_over_power_sends_nothing(call, names):
    source, port = connected([])  # nothing scripted after connect: any byte written fails the test
    with pytest.raises(LimitError) as info:
        call(source)
    assert all(name in str(info.value) for name in names), str(info.value)
    assert "tube" in str(info.value)
    port.assert_done()


def test_codec_refuses_negative_whole_numbers():
    with pytest.raises(LimitError, match="HIV: -1 kV is negative"):
        codec.encode_voltage(-1)


# -- actions ---------------------------------------------------------------------------------------------
def test_beam_on_checks_state_and_interlock_then_sends_xon():
    source, port = connected([STANDBY, CLOSED, (b"XON\r", b"XON\r")])
    source.beam_on()
    port.assert_done()


def test_warm_up_sends_wup_when_warm_up_is_needed():
    source, port = connected([CLOSED, (b"SAR\r", b"SAR 0 0 0 0 0 0 0\r"), (b"WUP\r", b"WUP\r")])
    source.warm_up()
    port.assert_done()


def test_reset_sends_rst_and_beam_off_sends_xof():
    source, port = connected([(b"RST\r", b"RST\r"), (b"XOF\r", b"XOF\r")])
    source.reset()
    source.beam_off()
    port.assert_done()


def test_beam_off_never_raises_for_already_off():
    source, port = connected([(b"XOF\r", b"ERR\r"), STANDBY])
    source.beam_off()
    port.assert_done()


def test_beam_off_refused_with_x_rays_on_is_an_error():
    source, port = connected([(b"XOF\r", b"ERR\r"), (b"SAR\r", b"SAR 3 80 50 0 0 0 0\r")])
    with pytest.raises(ErrorReply, match="'XOF' was answered 'ERR'.*state 'beam on'"):
        source.beam_off()


def test_err_names_device_command_and_the_reason_from_snr():
    # standby when checked, then the filament starts preheating before XON arrives
    source, port = connected([STANDBY, CLOSED, (b"XON\r", b"ERR\r"), (b"SAR\r", b"SAR 5 0 0 0 0 0 0\r"),
                              (b"SNR\r", b"SNR 0 0 1 5\r")])
    with pytest.raises(ErrorReply) as info:
        source.beam_on()
    assert str(info.value).startswith("source 'tube': 'XON' was answered 'ERR'")
    assert "state 'not ready / interlock open': filament preheating" in str(info.value)
    port.assert_done()


def test_setter_refused_by_the_device_names_command_and_state():
    source, port = connected([(b"HIV 090\r", b"ERR\r"), STANDBY])
    with pytest.raises(ProtocolError, match=r"source 'tube': 'HIV 090' was answered 'ERR'.*state 'standby'"):
        source.set_voltage_kv(90)
    assert source.voltage_kv == 80.0  # the held set-point is unchanged


# -- read-backs: one SAR for state, kV and µA ----------------------------------------------------------
def test_state_voltage_and_current_share_one_sar():
    source, port = connected([(b"SAR\r", b"SAR 3 79.8 49.6 12 1 0 0\r")])
    assert source.read_state() is SourceState.BEAM_ON
    assert source.read_voltage_kv() == 79.8
    assert source.read_current_ua() == 49.6
    port.assert_done()


def test_a_command_in_between_discards_the_shared_sar():
    source, port = connected([STANDBY, (b"XON\r", b"XON\r"), (b"SAR\r", b"SAR 3 80 50 0 0 0 0\r")])
    assert source.read_state() is SourceState.STANDBY
    source._do_beam_on()
    assert source.read_state() is SourceState.BEAM_ON
    port.assert_done()


def test_readback_max_age_zero_reads_sar_each_time():
    sar = (b"SAR\r", b"SAR 3 80 50 0 0 0 0\r")
    source, port = connected([sar, sar], readback_max_age_s=0)
    source.read_voltage_kv()
    source.read_current_ua()
    port.assert_done()


def test_interlock_from_sin():
    source, port = connected([CLOSED, (b"SIN\r", b"SIN 1\r")])
    assert source.read_interlock_closed() is True
    assert source.read_interlock_closed() is False
    port.assert_done()


def test_not_ready_state_logs_the_reason_from_snr(caplog):
    source, port = connected([(b"SAR\r", b"SAR 5 0 0 0 0 0 0\r"), (b"SNR\r", b"SNR 0 1 0 5\r")])
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        assert source.read_state() is SourceState.NOT_READY
    assert "source 'tube': not ready: interlock open" in caplog.text
    port.assert_done()


# -- replies, codec level ------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "state"), list(codec.STATE_CODES.items()))
def test_sts_codes(code, state):
    assert codec.parse_state(b"STS %d" % code) is state
    if code != 6:
        assert codec.format_state(state) == b"STS %d" % code


@pytest.mark.parametrize(("reply", "model", "reason"), [
    (b"SNR 0 1 0 5", "L10711", "interlock open"),
    (b"SNR 0 0 1 5", "L10711", "filament preheating"),
    (b"SNR 203 0 0 5", "L10711", "board error 203 (board fault)"),
    (b"SNR 209 1 0 5", "L10711", "interlock open; board error 209 (temperature)"),
    (b"SNR 0 0 0 0", "L10711", "vacuum level 0 (X-rays need 2-5)"),
    (b"SNR 0 0 0 0", "L9181-02", "SNR reports no cause"),       # the L9181-02 sends 0: no vacuum gauge
    (b"SNR 0 0 0", "L9181-02", "SNR reports no cause"),          # svc is optional
])
def test_snr_causes_in_words(reply, model, reason):
    causes = codec.parse_not_ready(reply)
    assert codec.describe_not_ready(causes, MODELS[model].vacuum_in_snr) == reason
    if len(reply.split()) == 5:
        assert codec.format_not_ready(causes) == reply


@pytest.mark.parametrize(("parse", "reply", "value"), [
    (codec.parse_status, b"SAR 2 100 50 0 0 0 0", codec.BulkStatus(SourceState.STANDBY, 100.0, 50.0)),
    (codec.parse_setpoints, b"SVI 100 50", (100.0, 50.0)),
    (codec.parse_voltage, b"SHV 100", 100.0),
    (codec.parse_current, b"SCU 50", 50.0),
    (codec.parse_interlock_open, b"SIN 1", True),
    (codec.parse_preheating, b"SPH 0", False),
    (codec.parse_warmup, b"SWE 3", 3),
    (codec.parse_focus, b"SFC 2", 2),
    (codec.parse_model_name, b"TYP L9181-02", "L9181-02"),
    (codec.parse_board_error, b"SER 201", 201),
])
def test_each_reply_parses(parse, reply, value):
    assert parse(reply) == value


@pytest.mark.parametrize("err", [b"ERR", b"ERROR"])
def test_err_and_older_error_name_the_command(err):
    with pytest.raises(ErrorReply, match=r"'STS' was answered '%s'" % err.decode()):
        codec.parse_state(err)


@pytest.mark.parametrize(("parse", "command", "reply", "why"), [
    (codec.parse_status, "SAR", b"STS 2", "start with 'SAR'"),
    (codec.parse_status, "SAR", b"SAR 2 x 50", "'x' is not a number"),
    (codec.parse_status, "SAR", b"SAR 2 100", "at least 3 value"),
    (codec.parse_status, "SAR", b"SAR 2 nan 50", "not a finite number"),
    (codec.parse_state, "STS", b"STS 9", "not one of the codes 0-6"),
    (codec.parse_voltage, "SHV", b"SHV 10 20", "expected 1 value"),
    (codec.parse_interlock_open, "SIN", b"SIN 2", "codes 0-1"),
    (codec.parse_setpoints, "SVI", b"", "start with 'SVI'"),
    (lambda r: codec.parse_echo(b"HIV 090", r), "HIV 090", b"HIV 091", "echoes 091, 090 was sent"),
    (lambda r: codec.parse_echo(b"HIV 090", r), "HIV 090", b"CUR 090", "start with 'HIV'"),
    (lambda r: codec.parse_echo(b"XON", r), "XON", b"XON 1", "expected 0 value"),
])
def test_garbled_replies_name_command_and_reply(parse, command, reply, why):
    with pytest.raises(ProtocolError) as info:
        parse(reply)
    assert not isinstance(info.value, ErrorReply)
    assert f"{command!r}: garbled reply {reply!r}" in str(info.value)
    assert why in str(info.value)


def test_garbled_reply_through_the_driver_names_the_device():
    source, port = connected([(b"SAR\r", b"SAR 2 10\r")])
    with pytest.raises(ProtocolError, match=r"source 'tube': 'SAR': garbled reply b'SAR 2 10'"):
        source.read_state()


def test_reply_formats_round_trip():
    assert codec.format_status(SourceState.BEAM_ON, 99.6, 50.2) == b"SAR 3 100 50 0 0 0 0"
    assert codec.parse_status(codec.format_status(SourceState.FAULT, 0, 0)).state is SourceState.FAULT
    assert codec.format_values(codec.SVI, 80, 50) == b"SVI 80 50"
    assert codec.parse_model_name(codec.format_model_name("L12721")) == "L12721"


# -- model table and options ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_has_capabilities_and_distinct_focus_codes(model):
    tube = MODELS[model]
    caps = tube.capabilities()
    assert list(caps.spot_modes) == list(tube.focus_modes)
    assert tube.baudrate == 38400
    assert HamamatsuOptions(model=model).serial_settings().baudrate == 38400


def test_options_select_a_model_and_override_it_field_by_field():
    options = HamamatsuOptions(model="L9181-02", overrides={"current_range_ua": [10, 250],
                                                            "focus_modes": {"small": {"power_limit_w": 6.0}}})
    tube = options.tube()
    assert tube.current_range_ua == (10, 250)
    assert tube.focus_modes["small"].power_limit_w == 6.0
    assert tube.focus_modes["small"].code == 0 and tube.focus_modes["small"].spot_size_um == 5.0
    assert tube.focus_modes["middle"] == MODELS["L9181-02"].focus_modes["middle"]
    assert HamamatsuSource("tube", options, "loop://").capabilities.spot_modes["small"].power_limit_w == 6.0


@pytest.mark.parametrize(("options", "message"), [
    ({"model": "L1"}, "model='L1' is not in the model table; known: L9181-02, L10711, L12721"),
    ({"overrides": {"voltage_range_kv": [0, "high"]}}, "overrides.voltage_range_kv.1"),
    ({"overrides": {"focus_modes": {"small": {"code": 1}}}}, "each mode needs its own code"),
    ({"serial": {"parity": "X"}}, "serial.parity"),
    ({"timeout": 1}, "timeout"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValidationError, match=message.replace(".", r"\.").replace("[", r"\[")):
        HamamatsuOptions(**options)


def test_serial_settings_default_to_the_model_baud_and_the_timeout():
    settings = HamamatsuOptions(timeout_s=0.3, serial={"rtscts": False}).serial_settings()
    assert (settings.baudrate, settings.timeout_s, settings.bytesize, settings.parity, settings.stopbits) == \
        (38400, 0.3, 8, "N", 1)
    assert HamamatsuOptions(serial={"baudrate": 9600}).serial_settings().baudrate == 9600


def test_registered_and_built_from_config():
    cls = load_driver("hamamatsu", "source", "source.driver")
    assert cls is HamamatsuSource and cls.backend == "serial"
    source = cls.from_config("source", cls.Options(), "/dev/ttyUSB9", DriverContext())
    assert not source.connected and source.capabilities.voltage_range_kv == (0, 160)
    with pytest.raises(ConfigurationError, match="source.connection: the hamamatsu driver needs a serial port"):
        cls.from_config("source", cls.Options(), None, DriverContext())
