"""VISA resources other than TCPIP SOCKET: an ASRL (serial) resource through pyvisa-py (the Spellman
generator with checksummed frames on a pseudo-terminal, as on its RS-232 port), and GPIB and TCPIP INSTR
(VXI-11) resources through another VISA library, pyvisa-sim, chosen by the driver's ``visa.backend``."""

from __future__ import annotations

from pathlib import Path

import pytest

from microct.devices import SourceState
from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer
from microct.testing.exchange import EchoResponder, assert_stale_replies_dropped
from microct.transport import VisaSettings, VisaTransport

PI_SIM = f"{Path(__file__).with_name('pi-gcs.sim.yaml')}@sim"
"""A VISA library given as a path: pyvisa-sim with a PI controller on GPIB0::4 and a VXI-11 address."""


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


def test_an_asrl_resource_discards_what_the_port_holds_before_a_query():
    echo = EchoResponder(b"\n")
    with WireServer(echo) as server:
        transport = VisaTransport(f"ASRL{server.serve_pty()}::INSTR", VisaSettings(timeout_s=0.5), "serial")
        transport.open()
        assert_stale_replies_dropped(transport, echo)
        transport.close()


@pytest.mark.parametrize("resource", ["GPIB0::4::INSTR", "TCPIP0::192.0.2.7::inst0::INSTR"])
def test_pi_axis_on_gpib_and_vxi11_resources_of_another_visa_library(resource):
    options = PIOptions(visa={"backend": PI_SIM, "timeout_s": 0.5}, poll_interval_s=0.001)
    with PIAxis("rotation", options, resource) as axis:
        assert axis.describe()["identification"] == "microct, PI GCS 2 as a pyvisa-sim device, 0, 1.0"
        axis.move_to(10.0, timeout_s=2.0)
        assert axis.read_position() == 10.0
