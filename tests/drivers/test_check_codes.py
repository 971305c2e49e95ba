"""What `microct check` relies on in each codec: which requests only read (``is_query``, per protocol, from
the manuals), and what a device's codes mean and how a report judges them."""

from __future__ import annotations

import pytest

from microct.devices.base import Device, Finding, shown
from microct.drivers.camserver import codec as camserver
from microct.drivers.dexela import codec as dexela
from microct.drivers.epics_area_detector.codec import DETECTOR_STATES, state_level
from microct.drivers.epics_motor.codec import MSTA_MEANINGS, Msta, msta_report
from microct.drivers.hamamatsu import codec as hamamatsu
from microct.drivers.pi_gcs import codec as pi
from microct.drivers.spellman.codec import COMMAND_SETS, Codec
from microct.drivers.zaber import codec as zaber
from microct.errors import DeviceStateError

XRV = Codec(COMMAND_SETS["XRV"], checksum=True)
UX = Codec(COMMAND_SETS["uX"], checksum=False)

QUERIES = {
    "zaber": (zaber.is_query, [b"/1 1", b"/1 0 get system.serial", b"/2 1 get pos", b"/1 1 warnings",
                               b"/1 1 get pos:AC"],
              [b"/1 1 set maxspeed 803908", b"/1 1 move abs 100", b"/1 1 home", b"/1 1 stop",
               b"/1 1 warnings clear", b"garbage", b""]),
    "pi": (pi.is_query, [b"*IDN?", b"TMN? 1", b"FRF? 2", b"ERR?", b"POS? 1", b"\x05", b"\x07"],
           [b"SVO 1 1", b"VEL 1 720.0", b"MOV 1 10.0", b"FRF 1", b"HLT 1", b"\x18"]),
    "hamamatsu": (hamamatsu.is_query, [b"TYP", b"SVI", b"SFC", b"SAT", b"SAR", b"SNR", b"SIN"],
                  [b"XON", b"XOF", b"WUP", b"RST", b"HIV 080", b"CUR 100", b"CFS 1", b"AST 3", b"SAR 1", b"NOPE"]),
    "spellman XRV": (XRV.is_query, [XRV.frame(c) for c in (14, 15, 19, 22, 28, 68)],
                     [XRV.frame(10, b"2047"), XRV.frame(98, b"1"), XRV.frame(31), XRV.frame(32, b"1"),
                      XRV.frame(70, b"1"), XRV.frame(22, b"1"), b"\x0222,"]),  # the last: no checksum
    "spellman uX": (UX.is_query, [UX.frame(c) for c in (14, 15, 20, 22)], [UX.frame(99, b"1"), UX.frame(11, b"5")]),
    "camserver": (camserver.is_query, [b"Version", b"version", b"Df", b"telemetry"],
                  [b"ImgPath /ramdisk/x", b"ExpTime 0.1", b"NImages 2", b"Exposure a.tif", b"K", b"Version 2"]),
    "dexela": (dexela.is_query, [b"R1003", b"R1011"], [b"WC1", b"W000300004", b"W001100100", b"X"]),
}


@pytest.mark.parametrize("protocol", QUERIES)
def test_is_query_tells_reads_from_writes(protocol):
    is_query, reads, writes = QUERIES[protocol]
    assert [line for line in reads if not is_query(line)] == []
    assert [line for line in writes if is_query(line)] == []


@pytest.mark.parametrize(("flag", "level"), [("WR", "warning"), ("WH", "warning"), ("FS", "error"), ("WL", "error"),
                                             ("FD", "error"), ("NI", "ok"), ("WT", "warning")])
def test_zaber_flags_are_judged_by_kind(flag, level):
    assert zaber.flag_level(flag) == level
    assert flag in zaber.WARNINGS


@pytest.mark.parametrize(("code", "level"), [(0, "ok"), (10, "ok"), (216, "error"), (333, "error"), (7, "warning"),
                                             (5, "warning"), (1, "warning")])
def test_pi_error_codes_are_judged_by_their_error_class(code, level):
    assert pi.error_level(code) == level


def test_every_msta_bit_has_a_meaning_and_a_report_lists_the_bits_set():
    assert set(MSTA_MEANINGS) == set(Msta)
    report = msta_report(Msta.DONE | Msta.PLUS_LS | Msta.SLIP_STALL | 1 << 4)
    assert report == [("ok", "DONE: motion done"), ("warning", "PLUS_LS: at the positive hardware limit switch"),
                      ("warning", "bit 4: not in the motor record's table"),
                      ("error", "SLIP_STALL: slip or stall detected")]
    assert msta_report(0) == []


def test_detector_states_are_judged():
    levels = {state: state_level(state) for state in DETECTOR_STATES}
    assert [state for state, level in levels.items() if level == "ok"] == ["Idle", "Aborted"]
    assert [state for state, level in levels.items() if level == "error"] == ["Error", "Disconnected"]


def test_a_finding_has_one_of_three_levels_and_values_show_plainly():
    with pytest.raises(ValueError, match="level='fine': allowed \\['ok', 'warning', 'error'\\]"):
        Finding("fine", "state", "x")  # type: ignore[arg-type]
    values = (None, 0.1 + 0.2, (1.0, None), True, "deg")
    assert [shown(value) for value in values] == ["none", "0.3", "(1, none)", "True", "deg"]


class _Probe(Device):
    kind, backend = "axis", "in-process"

    def _do_connect(self) -> None:
        pass

    def _do_close(self) -> None:
        pass

    def _do_describe(self) -> dict:
        return {"a": 1, "b": 2.5}

    def _do_check(self) -> list[Finding]:
        return [Finding("warning", "b", "judged"), Finding("error", "b", "and more"), Finding("ok", "c", "new")]


def test_check_puts_a_judged_item_in_its_describe_line_and_what_else_after_it():
    probe = _Probe("probe")
    with pytest.raises(DeviceStateError):
        probe.check()
    probe.connect()
    assert [(f.level, f.item, f.text) for f in probe.check()] == [
        ("ok", "name", "probe"), ("ok", "driver", "_Probe"), ("ok", "a", "1"), ("warning", "b", "judged"),
        ("error", "b", "and more"), ("ok", "c", "new")]
    probe.release()
    assert not probe.connected
