"""Homing the SMC100: ``read_referenced`` from the controller state of one ``TS`` (NOT REFERENCED after
power-up, READY after the home search), and ``microct home`` on a configuration whose rotation is the
SMC100 wire simulator."""

from __future__ import annotations

from importlib.resources import files

import pytest

from microct.cli import main
from microct.testing.rigs import fast_socket_close, served
from microct_smc100.driver import SMC100Axis, SMC100Options
from microct_smc100.simulator import SMC100Responder

FAST = {"max_velocity": 1800.0, "acceleration": 18000.0}


@pytest.fixture(autouse=True)
def _fast_socket_close(monkeypatch):
    fast_socket_close(monkeypatch)


class Recording(SMC100Responder):
    """The controller, keeping every request line."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.lines: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line.strip())
        return super().respond(line)


def test_not_referenced_after_power_up_and_referenced_after_the_home_search_one_ts_each():
    with served(Recording(overrides=FAST, reset_s=0.05), "tcp", name="smc100") as link:
        responder = link.server.responder
        options = SMC100Options(overrides=FAST, auto_reference=False, poll_interval_s=0.01, serial={"timeout_s": 0.5})
        with SMC100Axis("rotation", options, link.address) as axis:
            responder.lines.clear()
            assert axis.read_referenced() is False
            assert responder.lines == [b"1TS"] and responder.state == "0A"
            axis.home(timeout_s=10.0)
            assert axis.read_referenced() is True
            assert responder.state == "32"  # READY from HOMING


def test_microct_home_homes_the_smc100_rotation(tmp_path, capsys):
    text = files("microct.configs").joinpath("sim.toml").read_text()
    rotation = text[text.index("[rotation]"):text.index("[sample_out]")]
    with served(SMC100Responder(overrides=FAST, reset_s=0.05), "tcp", name="smc100") as link:
        path = tmp_path / "smc100.toml"
        path.write_text(text.replace(rotation, f'[rotation]\ndriver = "smc100"\nconnection = "{link.address}"\n'
                                              f'[rotation.options]\noverrides = {{max_velocity = 1800.0, '
                                              f'acceleration = 18000.0}}\n\n')
                            .replace('clock = "simulated"', 'clock = "real"'))
        assert main(["home", str(path), "--axis", "rotation"]) == 0
        assert link.server.responder.state == "32"  # READY from HOMING: the home search ran and ended well
    captured = capsys.readouterr()
    assert "rotation: homing (on request)" in captured.err and "sample_out" not in captured.err
    rows = [line for line in captured.out.splitlines() if "smc100" in line]
    assert len(rows) == 1 and "yes" in rows[0] and "0 deg" in rows[0], captured.out
