"""The Hamamatsu codec and driver against scripted byte exchanges: the bytes of the protocol notes
(docs/protocols/hamamatsu-microfocus.md), no device and no simulator."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from microct.clock import SimulatedClock
from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.driverkit import ErrorReply
from microct.drivers.hamamatsu import codec
from microct.drivers.hamamatsu.driver import HamamatsuOptions, HamamatsuSource
from microct.drivers.hamamatsu.models import MODELS
from microct.errors import ConfigurationError, LimitError, ProtocolError
from microct.registry import load_driver
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings

FAST = SerialSettings(baudrate=38400, timeout_s=0.1)
# connect(): identify, adopt the device's set-points: 80 kV, 50 µA, middle focus (L10711: 10 W), then read
# the auto-stop time (3 s, the manual's default).
CONNECT = [(b"TYP", b"TYP L10711"), (b"SVI", b"SVI 80 50"), (b"SFC", b"SFC 1"),
           (b"SAT", b"SAT 3")]
STANDBY = (b"SAR", b"SAR 2 0 0 0 0 0 0")
CLOSED = (b"SIN", b"SIN 0")


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


def test_connect_sends_typ_again_once_when_a_freshly_powered_controller_answers_noc():
    # manual §10 2.: the first command after power-on is answered ERR 0 NOC (a connection check)
    transport, port = scripted_transport([(b"TYP", b"ERR 0 NOC")] + CONNECT, FAST)
    source = HamamatsuSource("tube", transport=transport)
    source.connect()
    assert source.identity == "L10711" and source.connected
    port.assert_done()


@pytest.mark.parametrize(("second", "code"), [(b"ERR 0 NOC", 0), (b"ERR 10 TYP", 10)])
def test_connect_sends_typ_again_only_once_and_only_after_noc(second, code):
    transport, port = scripted_transport([(b"TYP", b"ERR 0 NOC"), (b"TYP", second)], FAST)
    source = HamamatsuSource("tube", transport=transport)
    with pytest.raises(ErrorReply) as info:
        source.connect()
    assert info.value.code == code and str(info.value).startswith("source 'tube': 'TYP' was answered")
    assert not source.connected
    port.assert_done()


@pytest.mark.parametrize("first", [b"ERR 10 TYP", b"ERR"])
def test_connect_does_not_repeat_typ_after_another_refusal(first):
    transport, port = scripted_transport([(b"TYP", first)], FAST)
    with pytest.raises(ErrorReply):
        HamamatsuSource("tube", transport=transport).connect()
    port.assert_done()


def test_another_model_answering_is_a_warning(caplog):
    transport, port = scripted_transport([(b"TYP", b"TYP L9181-02")] + CONNECT[1:], FAST)
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        HamamatsuSource("tube", HamamatsuOptions(model="L10711"), transport=transport).connect()
    assert "reports model 'L9181-02', the options configure 'L10711'" in caplog.text


def test_unknown_focus_code_at_connect_names_the_codes():
    transport, _ = scripted_transport(CONNECT[:2] + [(b"SFC", b"SFC 7")], FAST)
    with pytest.raises(ProtocolError, match=r"source 'tube': 'SFC' reports focus mode 7; .* codes \[0, 1, 2\]"):
        HamamatsuSource("tube", transport=transport).connect()


def test_no_io_until_connect():
    transport, port = scripted_transport([], FAST)
    HamamatsuSource("tube", transport=transport)
    assert port.step == 0


# -- the auto-stop time at connect (SAT) ----------------------------------------------------------------
def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_connect_reads_the_auto_stop_time_and_a_keepalive_under_half_of_it_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source, port = connected([])  # CONNECT ends with SAT, answered "SAT 3"
    port.assert_done()
    assert source.auto_stop_s == 3
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(("keepalive_s", "sat", "warning"), [
    (1.5, b"SAT 3", None),                        # exactly half: enough
    (1.6, b"SAT 3", "keepalive_s = 1.6 s is more than half the controller's auto-stop time, 3 s (SAT)"),
    (5.0, b"SAT 10", None),
    (0.0, b"SAT 3", "keepalive_s = 0: nothing is sent between requests, and the controller switches X-rays "
                    "off after 3 s without a command (SAT)"),
    (1.0, b"SAT 0", "SAT reports 0: the controller's automatic X-ray stop is disabled, a safety feature"),
    (0.0, b"SAT 0", "SAT reports 0"),             # no auto stop: nothing to keep alive, the one warning
], ids=["half", "over-half", "slow-AST", "keepalive-off", "auto-stop-off", "both-off"])
def test_connect_warns_of_an_auto_stop_disabled_or_a_keepalive_too_slow_for_it(caplog, keepalive_s, sat, warning):
    transport, port = scripted_transport(CONNECT[:-1] + [(b"SAT", sat + b"")], FAST)
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        HamamatsuSource("tube", HamamatsuOptions(keepalive_s=keepalive_s), transport=transport).connect()
    port.assert_done()
    assert len(warnings_of(caplog)) == (warning is not None)
    if warning:
        assert warnings_of(caplog)[0].startswith(f"source 'tube': {warning}")


def test_a_controller_refusing_sat_connects_with_the_auto_stop_time_unknown(caplog):
    transport, port = scripted_transport(CONNECT[:-1] + [(b"SAT", b"ERR 0 NOC")], FAST)
    source = HamamatsuSource("tube", HamamatsuOptions(keepalive_s=2.0), transport=transport)
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source.connect()
    port.assert_done()
    assert source.connected and source.auto_stop_s is None
    assert warnings_of(caplog) == [
        "source 'tube': 'SAT' was answered 'ERR 0 NOC': error 0, command not recognised (also the answer to the "
        "first command after power-on); the auto-stop time is unknown (3 s unless changed with AST)",
        "source 'tube': keepalive_s = 2 s is more than half the controller's auto-stop time, 3 s (the default; "
        "not read): one late keepalive and X-rays switch off"]


def test_a_model_without_sat_is_not_asked():
    transport, port = scripted_transport(CONNECT[:-1], FAST)
    source = HamamatsuSource("tube", HamamatsuOptions(overrides={"auto_stop_query": False}), transport=transport)
    source.connect()
    port.assert_done()
    assert source.auto_stop_s is None


def test_sat_and_ast_bytes():
    assert codec.parse_auto_stop(b"SAT 3") == 3  # manual A11: "SAT 0～60"
    assert codec.parse_auto_stop(b"SAT 60") == 60 and codec.parse_auto_stop(b"SAT 0") == 0
    assert (codec.encode_auto_stop(10), codec.encode_auto_stop(1), codec.encode_auto_stop(0)) == (
        b"AST 10", b"AST 1", b"AST 0")
    with pytest.raises(LimitError, match="AST: 61 s is outside 0-60 s"):
        codec.encode_auto_stop(61)
    assert codec.parse_request(b"AST 10") == codec.Request(b"AST", 10)
    assert codec.parse_request(b"AST 05") == codec.Request(b"AST", 5)
    assert codec.parse_request(b"SAT") == codec.Request(b"SAT")
    assert codec.parse_echo(b"AST 10", b"AST 10") is None
    assert codec.parse_error(b"AST 10", b"ERR 10 AST").code == codec.STATE_ERROR  # manual A11


@pytest.mark.parametrize(("reply", "why"), [(b"SAT 61", "codes 0-60"), (b"SAT x", "codes 0-60"),
                                            (b"SAT", "expected 1 value"), (b"SAT 3 1", "expected 1 value")])
def test_a_garbled_sat_reply_names_it(reply, why):
    with pytest.raises(ProtocolError, match=f"'SAT': garbled reply {reply!r}.*{why}"):
        codec.parse_auto_stop(reply)


# -- the keepalive, on a simulated device clock (its timers fire inside clock.sleep) -------------------------
KEEPALIVE = (b"SAR", b"SAR 3 80 50 0 0 0 0")


def on_simulated_clock(script, **options):
    """A connected L10711 driver on a SimulatedClock and a scripted port playing CONNECT + ``script``."""
    clock = SimulatedClock()
    transport, port = scripted_transport(CONNECT + script, FAST, name="source 'tube'")
    source = HamamatsuSource("tube", HamamatsuOptions(**options), transport=transport, clock=clock)
    source.connect()
    return source, port, clock


def test_the_keepalive_sends_sar_after_keepalive_s_without_an_exchange_and_its_reply_serves_reads():
    source, port, clock = on_simulated_clock([CLOSED, KEEPALIVE, (b"XOF", b"XOF")])  # keepalive_s = 1.0
    clock.sleep(0.6)
    assert source.read_interlock_closed()  # SIN at 0.6 s: the tick at 1.0 s sends nothing, waits to 1.6 s
    clock.sleep(0.99)
    assert port.step == len(CONNECT) + 1
    clock.sleep(0.02)
    assert port.step == len(CONNECT) + 2   # 1.0 s after SIN: SAR
    assert source.read_state() is SourceState.BEAM_ON  # the keepalive's reply: nothing written
    assert (source.read_voltage_kv(), source.read_current_ua()) == (80.0, 50.0)
    source.close()  # XOF; the keepalive stops
    clock.sleep(60.0)
    port.assert_done()


def test_a_keepalive_that_fails_warns_once_and_tries_again(caplog):
    silent = (b"SAR", None)
    source, port, clock = on_simulated_clock([silent, silent, KEEPALIVE, KEEPALIVE], keepalive_s=0.5,
                                             readback_max_age_s=0.0)
    with caplog.at_level(logging.INFO, "microct.drivers.hamamatsu"):
        for _ in range(4):
            clock.sleep(0.5)  # no exception gets out of a tick: it would end this test here
    port.assert_done()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "source 'tube': keepalive failed (DeviceTimeoutError: source 'tube': no complete reply to "
                          "'SAR' within 0.1 s); the controller switches X-rays off after 3 s without a command; "
                          "trying again every 0.5 s"),
        (logging.INFO, "source 'tube': the keepalive is answered again")]
    assert source.connected


def test_keepalive_s_zero_sends_nothing_between_requests():
    source, port, clock = on_simulated_clock([], keepalive_s=0)
    clock.sleep(60.0)
    port.assert_done()


def test_a_keepalive_reply_from_before_a_command_does_not_serve_reads_after_it():
    source, port, clock = on_simulated_clock([(b"SAR", b"SAR 2 0 0 0 0 0 0"), (b"XON", b"XON"),
                                              (b"SAR", b"SAR 3 80 50 0 0 0 0")], readback_max_age_s=60.0)
    clock.sleep(1.0)  # the keepalive: standby
    source._do_beam_on()
    assert source.read_state() is SourceState.BEAM_ON
    port.assert_done()


# -- setters: exact bytes, echo checked ------------------------------------------------------------------
@pytest.mark.parametrize(("call", "sent", "echo"), [
    (lambda s: s.set_voltage_kv(90), b"HIV 090", b"HIV 090"),
    (lambda s: s.set_voltage_kv(90), b"HIV 090", b"HIV 90"),     # L10711: the echo carries the value
    (lambda s: s.set_voltage_kv(5), b"HIV 005", b"HIV"),          # an echo without the value
    (lambda s: s.set_current_ua(60), b"CUR 060", b"CUR 060"),
    (lambda s: s.set_current_ua(7), b"CUR 007", b"CUR 007"),
    (lambda s: s.set_spot_mode("large"), b"CFS 2", b"CFS 2"),
    (lambda s: s.set_spot_mode("small"), b"CFS 0", b"CFS 0"),     # 80 kV x 50 µA = 4 W: allowed in small
], ids=["HIV", "HIV-echo-value", "HIV-bare-echo", "CUR", "CUR-padded", "CFS-large", "CFS-small"])
def test_setters_send_the_sheet_bytes(call, sent, echo):
    source, port = connected([(sent, echo)])
    call(source)
    port.assert_done()


def test_fractional_setpoints_are_truncated_never_rounded_up(caplog):
    source, port = connected([(b"CUR 022", b"CUR 022")])
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        source.set_current_ua(22.9)
    port.assert_done()
    assert "current_ua=22.9 µA is sent as 22 µA" in caplog.text


def test_configure_orders_the_commands_so_power_stays_within_every_mode():
    # 80 kV / 100 µA / middle (8 W) → 160 kV / 25 µA / small (4 W): HIV first would ask for 16 W
    transport, port = scripted_transport([CONNECT[0], (b"SVI", b"SVI 80 100"), *CONNECT[2:],
                                          (b"CUR 025", b"CUR 025"), (b"HIV 160", b"HIV 160"),
                                          (b"CFS 0", b"CFS 0")], FAST)
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
    source, port = connected([STANDBY, CLOSED, (b"XON", b"XON")])
    source.beam_on()
    port.assert_done()


def test_warm_up_sends_wup_when_warm_up_is_needed():
    source, port = connected([CLOSED, (b"SAR", b"SAR 0 0 0 0 0 0 0"), (b"WUP", b"WUP")])
    source.warm_up()
    port.assert_done()


def test_reset_sends_rst_and_beam_off_sends_xof():
    source, port = connected([(b"RST", b"RST"), (b"XOF", b"XOF")])
    source.reset()
    source.beam_off()
    port.assert_done()


def test_beam_off_never_raises_for_already_off():
    source, port = connected([(b"XOF", b"ERR"), STANDBY])
    source.beam_off()
    port.assert_done()


def test_beam_off_refused_with_x_rays_on_is_an_error():
    source, port = connected([(b"XOF", b"ERR"), (b"SAR", b"SAR 3 80 50 0 0 0 0")])
    with pytest.raises(ErrorReply, match="'XOF' was answered 'ERR'.*state 'beam on'"):
        source.beam_off()


def test_err_names_device_command_and_the_reason_from_snr():
    # standby when checked, then the filament starts preheating before XON arrives
    source, port = connected([STANDBY, CLOSED, (b"XON", b"ERR"), (b"SAR", b"SAR 5 0 0 0 0 0 0"),
                              (b"SNR", b"SNR 0 0 1 5")])
    with pytest.raises(ErrorReply) as info:
        source.beam_on()
    assert str(info.value).startswith("source 'tube': 'XON' was answered 'ERR'")
    assert "state 'not ready / interlock open': filament preheating" in str(info.value)
    port.assert_done()


def test_setter_refused_by_the_device_names_command_and_state():
    source, port = connected([(b"HIV 090", b"ERR"), STANDBY])
    with pytest.raises(ProtocolError, match=r"source 'tube': 'HIV 090' was answered 'ERR'.*state 'standby'"):
        source.set_voltage_kv(90)
    assert source.voltage_kv == 80.0  # the held set-point is unchanged


# -- the device's coded refusals (manual A4 2) ii), A11): ERR <code> <word> -------------------------------
@pytest.mark.parametrize(("call", "sent", "reply", "code", "meaning"), [
    (lambda s: s.set_voltage_kv(90), b"HIV 090", b"ERR 20 HIV", 20, "parameter error: beyond the settable range"),
    (lambda s: s.set_current_ua(60), b"CUR 060", b"ERR 40 CUR", 40, "wattage error: above the power limit"),
    (lambda s: s.set_current_ua(60), b"CUR 060", b"ERR 30 CUR", 30, "above the user maximum set with CMV / CMC"),
    (lambda s: s.set_spot_mode("large"), b"CFS 2", b"ERR 20 CFS", 20, "parameter error: beyond the settable range"),
    (lambda s: s._do_warm_up(), b"WUP", b"ERR 10 WUP", 10, "state error: not accepted in the present state"),
    (lambda s: s._do_beam_on(), b"XON", b"ERR 10 XON", 10, "state error: not accepted in the present state"),
    (lambda s: s._do_beam_on(), b"XON", b"ERR 0 NOC", 0, "command not recognised (also the answer to the first "
                                                         "command after power-on)"),
    (lambda s: s._do_beam_on(), b"XON", b"ERR 99 XON", 99, "not in the manual's error table"),
], ids=["HIV-20", "CUR-40", "CUR-30", "CFS-20", "WUP-10", "XON-10", "XON-NOC", "XON-unknown-code"])
def test_a_coded_refusal_is_error_reply_with_code_meaning_command_and_state(call, sent, reply, code, meaning):
    source, port = connected([(sent + b"", reply + b""), STANDBY])
    with pytest.raises(ErrorReply) as info:
        call(source)
    assert (info.value.code, info.value.meaning, info.value.command) == (code, meaning, sent.decode())
    assert str(info.value) == (f"source 'tube': {sent.decode()!r} was answered {reply.decode()!r}: error {code}, "
                               f"{meaning}; the device is in state 'standby'")
    assert (source.voltage_kv, source.current_ua, source.spot_mode) == (80.0, 50.0, "middle")  # held set-points
    port.assert_done()


def test_a_coded_refusal_in_not_ready_names_the_cause_from_snr():
    source, port = connected([STANDBY, CLOSED, (b"XON", b"ERR 10 XON"), (b"SAR", b"SAR 5 0 0 0 0 0 0"),
                              (b"SNR", b"SNR 0 0 1 5")])
    with pytest.raises(ErrorReply) as info:
        source.beam_on()
    assert info.value.code == 10
    assert str(info.value).endswith("state 'not ready / interlock open': filament preheating")
    port.assert_done()


def test_xof_refused_with_code_while_off_is_not_an_error():
    source, port = connected([(b"XOF", b"ERR 10 XOF"), STANDBY])
    source.beam_off()
    port.assert_done()


def test_rst_refused_outside_overload_is_not_an_error_but_in_overload_it_is():
    # manual A11: RST is answered ERR 10 RST in every state but overload (STS 4): nothing to clear
    source, port = connected([(b"RST", b"ERR 10 RST"), STANDBY])
    source.reset()
    port.assert_done()
    overload = (b"SAR", b"SAR 4 0 0 0 0 0 0")
    source, port = connected([(b"RST", b"ERR 10 RST"), overload])
    with pytest.raises(ErrorReply, match=r"'RST' was answered 'ERR 10 RST'.*state 'fault / overload'"):
        source.reset()
    port.assert_done()


# -- read-backs: one SAR for state, kV and µA ----------------------------------------------------------
def test_state_voltage_and_current_share_one_sar():
    source, port = connected([(b"SAR", b"SAR 3 79.8 49.6 12 1 0 0")])
    assert source.read_state() is SourceState.BEAM_ON
    assert source.read_voltage_kv() == 79.8
    assert source.read_current_ua() == 49.6
    port.assert_done()


def test_a_command_in_between_discards_the_shared_sar():
    source, port = connected([STANDBY, (b"XON", b"XON"), (b"SAR", b"SAR 3 80 50 0 0 0 0")])
    assert source.read_state() is SourceState.STANDBY
    source._do_beam_on()
    assert source.read_state() is SourceState.BEAM_ON
    port.assert_done()


def test_readback_max_age_zero_reads_sar_each_time():
    sar = (b"SAR", b"SAR 3 80 50 0 0 0 0")
    source, port = connected([sar, sar], readback_max_age_s=0)
    source.read_voltage_kv()
    source.read_current_ua()
    port.assert_done()


def test_interlock_from_sin():
    source, port = connected([CLOSED, (b"SIN", b"SIN 1")])
    assert source.read_interlock_closed() is True
    assert source.read_interlock_closed() is False
    port.assert_done()


def test_not_ready_state_logs_the_reason_from_snr(caplog):
    source, port = connected([(b"SAR", b"SAR 5 0 0 0 0 0 0"), (b"SNR", b"SNR 0 1 0 5")])
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
    with pytest.raises(ErrorReply, match=rf"'STS' was answered '{err.decode()}'") as info:
        codec.parse_state(err)
    assert (info.value.code, info.value.meaning, info.value.command) == (None, codec.ERR_MEANING, "STS")


@pytest.mark.parametrize(("command", "reply", "code"), [
    (b"STS", b"ERR 0 NOC", 0),          # the manual's form of code 0, whatever was sent
    (b"STS", b"ERR 0 STS", 0),
    (b"XON", b"ERR 10 XON", 10),
    (b"HIV 180", b"ERR 20 HIV", 20),    # the manual's example (A4 2) ii), example 4)
    (b"CUR 060", b"ERR 30 CUR", 30),
    (b"CUR 060", b"ERR 40 CUR", 40),
    (b"XON", b"ERR 10", 10),            # no word: the code still counts
    (b"XON", b"ERROR 10 XON", 10),
    (b"XON", b"ERR 010 XON", 10),
])
def test_coded_err_parses_into_code_and_the_manual_s_meaning(command, reply, code):
    refused = codec.parse_error(command, reply)
    assert isinstance(refused, ErrorReply)
    assert (refused.code, refused.meaning, refused.command) == (code, codec.ERROR_CODES[code], command.decode())
    assert str(refused) == f"{command.decode()!r} was answered {reply.decode()!r}: error {code}, {refused.meaning}"
    with pytest.raises(ErrorReply):
        codec.parse_echo(command, reply)


@pytest.mark.parametrize("reply", [b"ERR X", b"ERR 10 XON 1", b"ERR 1000 XON", b"ERR -1 XON"])
def test_err_followed_by_something_else_is_a_refusal_without_code(reply):
    refused = codec.parse_error(b"XON", reply)
    assert isinstance(refused, ErrorReply) and refused.code is None and refused.meaning == codec.ERR_MEANING
    assert f"was answered {reply.decode()!r}" in str(refused)


def test_a_refusal_of_another_command_is_a_garbled_reply():
    with pytest.raises(ProtocolError) as info:
        codec.parse_echo(b"XON", b"ERR 10 XOF")
    assert not isinstance(info.value, ErrorReply)
    assert "'XON': garbled reply b'ERR 10 XOF' (it refuses 'XOF', not 'XON')" in str(info.value)


@pytest.mark.parametrize("reply", [b"XON", b"ERRX 10 XON", b"STS 2", b""])
def test_a_reply_that_is_no_refusal_is_not_parsed_as_one(reply):
    assert codec.parse_error(b"XON", reply) is None


def test_the_error_table_is_the_manual_s():
    assert sorted(codec.ERROR_CODES) == [0, 10, 20, 30, 40]


@pytest.mark.parametrize(("code", "line", "reply"), [
    (0, b"FOO 1", b"ERR 0 NOC"), (10, b"XON", b"ERR 10 XON"), (20, b"HIV 180", b"ERR 20 HIV"),
    (40, b"CUR 100", b"ERR 40 CUR"),
])
def test_format_error_gives_the_manual_s_bytes_and_parses_back(code, line, reply):
    assert codec.format_error(code, line) == reply
    assert codec.parse_error(line, reply).code == code


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
    source, port = connected([(b"SAR", b"SAR 2 10")])
    with pytest.raises(ProtocolError, match=r"source 'tube': 'SAR': garbled reply b'SAR 2 10'"):
        source.read_state()


def test_reply_formats_round_trip():
    assert codec.format_status(SourceState.BEAM_ON, 99.6, 50.2) == b"SAR 3 100 50 0 0 0 0"
    assert codec.parse_status(codec.format_status(SourceState.FAULT, 0, 0)).state is SourceState.FAULT
    assert codec.format_values(codec.SVI, 80, 50) == b"SVI 80 50"
    assert codec.parse_model_name(codec.format_model_name("L12721")) == "L12721"


# -- requests, codec level (the simulator's side) -------------------------------------------------------
@pytest.mark.parametrize(("line", "request_"), [
    (b"SAR", codec.Request(b"SAR")),
    (b"XON", codec.Request(b"XON")),
    (b"HIV 090", codec.Request(b"HIV", 90)),
    (b"CUR 1000", codec.Request(b"CUR", 1000)),
    (b"CFS 2", codec.Request(b"CFS", 2)),
])
def test_requests_parse_into_word_and_argument(line, request_):
    assert codec.parse_request(line) == request_


def test_the_driver_s_commands_parse_back():
    for command in (codec.encode_voltage(160), codec.encode_current(5), codec.encode_focus(1), codec.TYP):
        request_ = codec.parse_request(command)
        assert request_.word == command.split()[0]


@pytest.mark.parametrize(("line", "code", "why"), [
    (b"", 0, "empty request"),
    (b"FOO", 0, "unknown command"),
    (b"STS 1", 0, "STS takes no argument"),
    (b"XON 1", 0, "XON takes no argument"),
    (b"HIV", 20, "HIV takes one argument"),
    (b"HIV 080 1", 20, "HIV takes one argument"),
    (b"HIV 80", 20, "'80' is not a HIV argument"),
    (b"CUR abc", 20, "'abc' is not a CUR argument"),
    (b"CFS 01", 20, "'01' is not a CFS argument"),
])
def test_requests_the_device_answers_err_are_error_replies(line, code, why):
    with pytest.raises(ErrorReply) as info:
        codec.parse_request(line)
    assert info.value.code == code and why in str(info.value)
    assert f"the device answers {codec.format_error(code, line).decode()!r}" in str(info.value)


# -- model table and options ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_has_capabilities_and_distinct_focus_codes(model):
    tube = MODELS[model]
    caps = tube.capabilities()
    assert list(caps.spot_modes) == list(tube.spot_modes)
    assert tube.baudrate == 38400
    assert HamamatsuOptions(model=model).serial_settings().baudrate == 38400


def test_options_select_a_model_and_override_it_field_by_field():
    options = HamamatsuOptions(model="L9181-02", overrides={"current_range_ua": [10, 250],
                                                            "spot_modes": {"small": {"power_limit_w": 6.0}}})
    tube = options.tube()
    assert tube.current_range_ua == (10, 250)
    assert tube.spot_modes["small"].power_limit_w == 6.0
    assert tube.spot_modes["small"].code == 0 and tube.spot_modes["small"].spot_size_um == 5.0
    assert tube.spot_modes["middle"] == MODELS["L9181-02"].spot_modes["middle"]
    assert HamamatsuSource("tube", options, "loop://").capabilities.spot_modes["small"].power_limit_w == 6.0


@pytest.mark.parametrize(("options", "message"), [
    ({"model": "L1"}, "model='L1' is not in the model table; known: L9181-02, L10711, L12721"),
    ({"overrides": {"voltage_range_kv": [0, "high"]}}, "overrides.voltage_range_kv.1"),
    ({"overrides": {"spot_modes": {"small": {"code": 1}}}}, "each mode needs its own code"),
    ({"overrides": {"spot_modes": {"small": {"code": 10}}}}, "each mode needs its CFS code"),
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
