"""Homing a Zaber stage against the wire simulator: ``read_referenced`` from the WR / WH flag of a status
poll (and ``warnings`` when a flag of higher precedence hides them), a scan that homes a freshly powered
stage first and leaves no WR warning in the log, ``home = "never"``, and ``microct home`` on
sim-serial.toml."""

from __future__ import annotations

import logging
import tomllib
from importlib.resources import files

import h5py
import pytest

from microct.cli import main
from microct.drivers.zaber.codec import homed_from_flag
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.simulators.zaber import ZaberResponder
from microct.testing.rigs import run_small_scan, scan_with, served

FAST = {1: {"max_speed": 36000.0}, 2: {"max_speed": 5000.0}}
"""Stage overrides by device address (simulator and driver): moves of milliseconds."""


class Recording(ZaberResponder):
    """The chain, keeping every request line."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line.strip())
        return super().respond(line)


@pytest.fixture
def chain():
    with served(Recording(overrides=FAST), "tcp", name="zaber") as link:
        yield link


def rotation(address: str) -> ZaberAxis:
    options = ZaberOptions(device=1, stage="X-RSW60A", overrides=FAST[1], poll_interval_s=0.002,
                           serial={"timeout_s": 1.0})
    return ZaberAxis("rotation", options, connection=address)


@pytest.mark.parametrize(("flag", "homed"), [("WR", False), ("WH", False), ("--", True), ("NI", True),
                                             ("NC", True), ("WM", None), ("FS", None), ("WL", None), ("ZZ", None)])
def test_the_flag_a_reply_shows_says_whether_the_stage_is_homed_unless_a_higher_one_may_hide_it(flag, homed):
    assert homed_from_flag(flag) is homed


def test_a_powered_up_stage_has_no_reference_until_homed_and_one_status_poll_tells(chain):
    responder = chain.server.responder
    with rotation(chain.address) as axis:
        responder.lines.clear()
        assert axis.read_referenced() is False
        assert responder.lines == [b"/1 1"]  # the status poll: its WR flag says it
        axis.home(timeout_s=10.0)
        assert axis.read_referenced() is True
        assert responder.devices[1].homed


def test_a_flag_of_higher_precedence_hiding_wr_is_looked_behind_with_warnings(chain):
    responder = chain.server.responder
    responder.devices[1].latched.add("WT")  # controller temperature high: shown instead of WR
    with rotation(chain.address) as axis:
        responder.lines.clear()
        assert axis.read_referenced() is False
        assert responder.lines == [b"/1 1", b"/1 1 warnings"]  # "02 WT WR"
        axis.home(timeout_s=10.0)
        assert axis.read_referenced() is True  # "01 WT"


def scan_data(address: str, **rotation_table) -> dict:
    return scan_with({"rotation": {"driver": "zaber", "connection": address, **rotation_table,
                                   "options": {"device": 1, "overrides": FAST[1], "poll_interval_s": 0.002}}})


def events(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [message.decode() for message in f["entry/logs/events/message"][()]]


def test_a_scan_homes_a_stage_without_a_reference_first_and_no_wr_warning_is_logged(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    result = run_small_scan(scan_data(chain.address), tmp_path / "scan.nxs")
    assert result.status == "complete"
    assert chain.server.responder.devices[1].homed
    lines = chain.server.responder.lines
    assert lines.index(b"/1 1 home") < next(i for i, line in enumerate(lines) if line.startswith(b"/1 1 move abs"))
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [message for message in warnings if "WR" in message or "reference" in message], warnings
    logged = events(result.path)
    assert "rotation: homing (the stage reports no position reference), for up to 120 s" in logged
    assert any(message.startswith("rotation: homed in ") and message.endswith(" deg") for message in logged)


def test_home_never_leaves_the_stage_without_a_reference_and_the_scan_warns(chain, tmp_path, caplog):
    result = run_small_scan(scan_data(chain.address, home="never"), tmp_path / "scan.nxs")
    assert result.status == "complete"
    assert not chain.server.responder.devices[1].homed
    assert b"/1 1 home" not in chain.server.responder.lines
    warning = ("rotation: not homed (home = \"never\") although the stage reports no position reference: its "
               "positions are relative to an arbitrary zero (wherever it was at power-up)")
    assert warning in events(result.path)
    assert any(record.levelno == logging.WARNING and record.getMessage() == warning for record in caplog.records)


def test_microct_home_homes_both_stages_of_sim_serial_and_reports_them(chain, tmp_path, capsys):
    text = files("microct.configs").joinpath("sim-serial.toml").read_text()
    data = tomllib.loads(text)
    path = tmp_path / "serial.toml"
    path.write_text(text.replace(data["rotation"]["connection"], chain.address))
    assert main(["home", str(path)]) == 0
    devices = chain.server.responder.devices
    assert devices[1].homed and devices[2].homed
    captured = capsys.readouterr()
    assert "rotation: homing (on request)" in captured.err and "sample_out: homed in " in captured.err
    rows = [line for line in captured.out.splitlines() if "zaber" in line]
    assert len(rows) == 2 and all("yes" in row for row in rows), captured.out
    assert "0 deg" in rows[0] and "0 mm" in rows[1]
