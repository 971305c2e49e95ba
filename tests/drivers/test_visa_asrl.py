"""A VISA ASRL (serial) resource through pyvisa-py: the Spellman generator with checksummed frames on a
pseudo-terminal, as on its RS-232 port."""

from __future__ import annotations

import pytest

from microct.devices import SourceState
from microct.drivers.spellman import SpellmanOptions, SpellmanSource
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer


class Frames:
    """Records the request frames the generator receives."""

    def __init__(self, responder) -> None:
        self.responder, self.request_terminators = responder, responder.request_terminators
        self.lines: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        return self.responder.respond(line)


def test_spellman_over_asrl_with_checksums():
    frames = Frames(SpellmanResponder(serial=True, ramp_kv_per_s=1e4, ramp_ua_per_s=1e6, seed=1))
    with WireServer(frames) as server:
        source = SpellmanSource("generator", SpellmanOptions(timeout_s=0.5), f"ASRL{server.serve_pty()}::INSTR")
        with source:
            source.configure(voltage_kv=60.0, current_ua=1000.0, spot_mode="small")
            source.beam_on()
            assert source.read_state() is SourceState.BEAM_ON
            source.clock.sleep(0.05)
            assert source.read_voltage_kv() == pytest.approx(60.0, abs=0.2)
            source.beam_off()
            assert source.read_state() is SourceState.STANDBY
    # every frame carried its checksum character (0x40-0x7F) after the last comma; the responder in
    # serial mode verifies it and would have answered an error otherwise
    assert frames.lines and all(line.startswith(b"\x02") and 0x40 <= line[-1] <= 0x7F for line in frames.lines)
    assert frames.responder.source.read_state() is SourceState.STANDBY
