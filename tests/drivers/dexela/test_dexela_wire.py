"""DexelaDetector talking to the wire-level DexelaResponder: registers over a pty or TCP, frames from a
folder or the TCP frame stream; the detector contracts (with the fault contract) over each combination."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from microct.devices.detector import TriggerMode
from microct.drivers.dexela.driver import DexelaDetector, DexelaOptions
from microct.errors import CommunicationError, DeviceTimeoutError, ProtocolError
from microct.simulators.dexela import DexelaResponder
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import WireServer
from microct.testing.contracts import DetectorContract, DetectorFaultContract, within
from microct.testing.rigs import SERIAL_LINKS, sim_serve

SIZE = {"rows": 32, "columns": 48}


class Bench:
    """A served simulator and a factory of drivers for it; ``channel`` is "tcp" or "folder"; ``faults``: the
    simulator and its server play ``FaultSchedule(faults)``."""

    def __init__(self, channel: str, folder, link: str = "tcp", faults: tuple[dict, ...] = (), **simulator) -> None:
        self.channel = channel
        self.folder = str(folder)
        self.schedule = FaultSchedule(faults)
        self.responder = DexelaResponder(**({"frame_port": 0} if channel == "tcp" else {"frame_folder": self.folder}),
                                         **{**SIZE, "seed": 1, **simulator}, faults=self.schedule)
        self.server = WireServer(self.responder, "dexela", self.schedule)
        self.url = self.server.serve_serial(link)

    def detector(self, name: str = "panel", **fields) -> DexelaDetector:
        options = {**SIZE, "frame_channel": self.channel, "frame_folder": self.folder, "readout_margin_s": 0.3,
                   "frame_address": f"127.0.0.1:{self.responder.frame_port}", "serial": {"timeout_s": 0.3}, **fields}
        return DexelaDetector(name, DexelaOptions(**options), connection=self.url)

    def mute(self, muted: bool = True) -> None:
        """The register link goes silent (its server neither carries out nor answers commands)."""
        self.server.muted = muted

    def stop(self) -> None:
        self.server.stop()
        self.responder.stop()


@pytest.fixture(params=["tcp", "folder"])
def bench(request, tmp_path):
    bench = Bench(request.param, tmp_path)
    yield bench
    bench.stop()


# -- the detector contracts, over each serial link with each frame channel -------------------------------------
class TestContract(DetectorContract, DetectorFaultContract):
    """Registers over a pty or a ``socket://`` URL, frames from the folder or the stream. The fault hook:
    frames withheld, nothing comes on the frame channel (the driver's readout_margin_s ends the wait);
    mute, the register link's server answers nothing (serial timeout_s). Both are 1 s here, not the bench's
    0.3 s: the contracts' frames after a withheld one must come however loaded the machine (0.3 s once
    missed a frame written to the folder)."""

    bright_exposure_s = 0.05
    exposure_resolution_s = 1e-5  # registers 11 and 12 count 10 µs ticks (docs/protocols/dexela-serial.md)
    frame_timeout_bound_s = 10.0  # the driver's own time-outs end a withheld acquire(1) in ~1 s

    @pytest.fixture(params=[(link, channel) for link in SERIAL_LINKS for channel in ("folder", "tcp")],
                    ids=lambda param: f"{param[0]}-{'stream' if param[1] == 'tcp' else param[1]}")
    def rig(self, request, tmp_path):
        link, channel = request.param
        bench = Bench(channel, tmp_path, link=link)
        yield bench
        bench.stop()

    @pytest.fixture
    def new_device(self, rig):
        return lambda: rig.detector(readout_margin_s=1.0, serial={"timeout_s": 1.0})

    @pytest.fixture
    def hook(self, rig):
        return rig.responder.fault_hook(mute=rig.mute)

    def test_a_silent_register_link_is_a_timeout_on_the_next_write_and_frames_still_come(self, detector, hook,
                                                                                           rig):
        """What the silent link does to a Dexela: the next register write times out naming the detector
        and the write; the frame channel still delivers; once the link answers again, the write goes."""
        detector.set_exposure_s(0.01)
        detector.set_trigger_mode(TriggerMode.SOFTWARE)  # every held setting out before the link goes silent
        hook.mute()
        try:
            with pytest.raises(DeviceTimeoutError, match=r"detector 'panel': Dexela 'W001100200' \(register 11 "):
                within(self.frame_timeout_bound_s, lambda: detector.set_exposure_s(0.002), "set_exposure_s(0.002)")
            assert len(within(self.frame_timeout_bound_s, lambda: detector.acquire(1), "acquire(1)")) == 1
        finally:
            hook.mute(False)
        assert rig.responder.registers[11] == 1000
        detector.set_exposure_s(0.002)  # written again: the driver's record was not updated
        assert rig.responder.registers[11] == 200
        assert hook.last_exposure_s() == pytest.approx(0.01)
        detector.acquire(1)
        assert hook.last_exposure_s() == pytest.approx(0.002)


# -- settings reach the registers, frames follow them --------------------------------------------------------
def test_settings_land_in_the_simulated_registers(bench):
    with bench.detector(full_well="high-range") as detector:
        detector.set_exposure_s(1.23456)
        detector.set_trigger_mode(TriggerMode.EXTERNAL)
        registers = bench.responder.registers
        assert registers[3] == 4
        assert (registers[11], registers[12]) == (123456 & 0xFFFF, 123456 >> 16)
        assert bench.responder.exposure_s == pytest.approx(1.23456)
        assert bench.responder.trigger_mode == "edge"


def test_frames_follow_the_exposure_in_the_registers(bench):
    offset = bench.responder.panel.options.dark_offset
    with bench.detector() as detector:
        detector.set_exposure_s(0.01)
        short = np.mean([frame.data.mean() for frame in detector.acquire(2)]) - offset
        detector.set_exposure_s(0.04)
        long = np.mean([frame.data.mean() for frame in detector.acquire(2)]) - offset
    assert long / short == pytest.approx(4.0, rel=0.1)


def test_the_driver_does_not_rely_on_read_back(tmp_path):
    bench = Bench("tcp", tmp_path, reads_return_zeros=True)
    try:
        with bench.detector(full_well="high-range") as detector:
            detector.set_exposure_s(0.02)
            assert len(detector.acquire(2)) == 2
        assert bench.responder.registers[11] == 2000
        with bench.detector(full_well="high-range", verify_writes=True) as detector:  # connect writes nothing
            with pytest.raises(ProtocolError, match=r"register 3 \(full-well mode\) reads back 0 after writing 4"):
                detector.set_exposure_s(0.02)  # the first use: wake-up, full-well mode (verified)
        bench.responder.reads_return_zeros = False
        with bench.detector(full_well="high-range", verify_writes=True) as detector:
            detector.set_exposure_s(0.03)
            assert bench.responder.registers[11] == 3000
    finally:
        bench.stop()


def test_external_trigger_frames_come_when_the_input_fires(bench):
    with bench.detector(external_timeout_s=0.3) as detector:
        detector.set_exposure_s(0.01)
        detector.acquire(1)  # frame 0, software-triggered
        assert bench.responder.external_trigger() is None  # ignored in software mode
        detector.set_trigger_mode(TriggerMode.EXTERNAL)
        with pytest.raises(DeviceTimeoutError, match="frame 1 did not come"):
            detector.acquire(1)  # a software trigger would be ignored, and the input did not fire
        assert [bench.responder.external_trigger() for _ in range(2)] == [1, 2]  # numbered on by the grabber
        frames = detector.acquire(2)
        assert [frame.frame_number for frame in frames] == [1, 2]
        assert all(frame.data.mean() > 200 for frame in frames)  # exposed with the beam on
        detector.set_trigger_mode(TriggerMode.SOFTWARE)
        assert [frame.frame_number for frame in detector.acquire(1)] == [3]


def test_the_simulator_wants_waking_and_can_read_back_zeros(tmp_path):
    responder = DexelaResponder(frame_folder=str(tmp_path), **SIZE)
    try:
        assert responder.respond(b"W000300004") == [b"E\r"]  # inferred: asleep until WC1
        assert responder.respond(b"WC1") == [b"X\r"]
        assert responder.respond(b"W000300004") == [b"X\r"]
        assert responder.respond(b"R1003") == [b"S00004\r"]
        assert responder.respond(b"W000399999") == [b"E\r"]  # above 16 bits
        responder.reads_return_zeros = True
        assert responder.respond(b"R1003") == [b"S00000\r"]
    finally:
        responder.stop()


# -- faults ------------------------------------------------------------------------------------------------
def test_a_refused_write_names_register_and_value_and_the_link_still_works(bench):
    with bench.detector() as detector:
        bench.responder.refused_registers.add(12)
        with pytest.raises(ProtocolError, match=r"Dexela refused 'W001200001': register 12 \(exposure, high word\)"
                                                r" = 1 \(reply E\)"):
            detector.set_exposure_s(1.0)
        bench.responder.refused_registers.clear()
        detector.set_exposure_s(1.0)
        assert bench.responder.registers[12] == 1


@pytest.mark.parametrize("kind", ["frame_dropped", "frame_timeout"])
@pytest.mark.parametrize("channel", ["tcp", "folder"])
def test_a_frame_fault_is_a_frame_that_never_comes_a_timeout_naming_frame_and_channel(tmp_path, channel, kind):
    bench = Bench(channel, tmp_path, faults=({"kind": kind, "device": "detector", "at_frame": 1},))
    where = "frame stream 127.0.0.1:" if channel == "tcp" else "frame folder "
    try:
        with bench.detector() as detector:
            detector.set_exposure_s(0.01)
            with pytest.raises(DeviceTimeoutError, match=rf"detector 'panel': frame 1 did not come on the {where}"
                                                         r".* within 0.31 s"):
                detector.acquire(3)
            assert [frame.frame_number for frame in detector.acquire(2)] == [2, 3]  # the next frames come
    finally:
        bench.stop()
    assert [hit.what for hit in bench.schedule.hits] == ["frame 1"]


@pytest.mark.parametrize(("kind", "error", "message"), [
    ("reply_timeout", DeviceTimeoutError, r"'W001100200' \(register 11 \(exposure, low word\) = 200\) failed: .*no "
                                          r"complete reply"),
    ("garbled_reply", ProtocolError, r"'W001100200' \(register 11 \(exposure, low word\) = 200\): reply b'\\xff' is "
                                     r"neither X"),
    ("disconnect", CommunicationError, r"'W001100200' \(register 11 \(exposure, low word\) = 200\) failed: .*socket "
                                       r"disconnected"),
])
def test_a_request_fault_on_the_register_link_names_the_write_and_the_link_works_after(tmp_path, kind, error,
                                                                                         message):
    bench = Bench("folder", tmp_path, faults=({"kind": kind, "device": "detector", "at_frame": 1},))
    try:
        with bench.detector() as detector:
            detector.set_exposure_s(0.01)
            detector.acquire(1)  # frame 0; the fault hits the next request
            with pytest.raises(error, match=message):
                detector.set_exposure_s(0.002)
            detector.set_exposure_s(0.002)  # written again: the driver's record was not updated
            assert bench.responder.registers[11] == 200
    finally:
        bench.stop()
    assert [hit.what for hit in bench.schedule.hits] == ["request"]


@pytest.mark.parametrize(("kind", "error", "message"), [
    ("reply_timeout", DeviceTimeoutError, r"frame 1 did not come on the frame stream .* within 0.31 s"),
    ("garbled_reply", ProtocolError, r"frame stream .*: frame header b'\\xffXFR.* does not start with b'DXFR'"),
    ("disconnect", CommunicationError, r"frame stream .*: the grabber closed the connection while frame 1 was "
                                       r"awaited"),
])
def test_a_request_fault_on_the_frame_stream_loses_that_frame_and_the_stream_recovers(tmp_path, kind, error, message):
    """The stream's reply to T<N> is played after frame N is made: a fault at_frame 2 hits frame 1's reply."""
    bench = Bench("tcp", tmp_path, faults=({"kind": kind, "device": "detector", "at_frame": 2},))
    try:
        with bench.detector() as detector:
            detector.set_exposure_s(0.01)
            detector.acquire(1)
            with pytest.raises(error, match=rf"detector 'panel': {message}"):
                detector.acquire(1)
            assert [frame.frame_number for frame in detector.acquire(2)] == [2, 3]  # a new connection if lost
    finally:
        bench.stop()
    assert [hit.what for hit in bench.schedule.hits] == ["request"]


def test_a_frame_arriving_after_its_time_out_is_never_taken_for_the_next(bench):
    with bench.detector() as detector:
        detector.set_exposure_s(0.01)
        bench.responder.panel.options.readout_s = 0.45  # beyond the driver's 0.3 s margin
        with pytest.raises(DeviceTimeoutError, match="frame 0 did not come"):
            detector.acquire(1)
        bench.responder.panel.options.readout_s = 0.0
        (frame,) = detector.acquire(1)
    assert frame.frame_number == 1


def test_the_register_link_dropping_names_the_command_and_close_still_works(bench):
    detector = bench.detector()
    detector.connect()
    detector.set_binning(1)  # the first use: wake-up and full-well mode
    bench.server.stop()
    with pytest.raises((CommunicationError, DeviceTimeoutError), match=r"detector 'panel': Dexela 'W001100200' "
                                                                       r"\(register 11 .*\) failed"):
        detector.set_exposure_s(0.002)
    detector.close()
    assert not detector.connected


def test_the_grabber_going_away_mid_series_names_the_channel(bench):
    with bench.detector() as detector:
        detector.set_exposure_s(0.05)
        stopper = threading.Timer(0.12, bench.responder.stop)
        stopper.start()
        if bench.channel == "tcp":  # the connection closes
            expected = pytest.raises(CommunicationError, match=r"detector 'panel': frame stream 127.0.0.1:\d+: "
                                                               r"(the grabber closed the connection|sending the)")
        else:  # nobody answers the trigger files any more
            expected = pytest.raises(DeviceTimeoutError, match=r"detector 'panel': frame \d+ did not come on the "
                                                               r"frame folder")
        with expected:
            detector.acquire(20)
        stopper.join()
        if bench.channel == "tcp":  # the next request tries a new connection
            with pytest.raises(CommunicationError, match=r"frame stream 127.0.0.1:\d+: cannot connect: .* \(re-opening "
                                                         r"it for frame \d+\)"):
                detector.acquire(1)


def test_frames_of_another_size_are_protocol_errors(bench):
    message = (r"frame 0 is 32 × 48, expected 16 × 48" if bench.channel == "tcp" else
               r"frame_000000.raw has 3072 bytes, expected 1536 \(16 × 48")
    with bench.detector(rows=16) as detector, pytest.raises(ProtocolError, match=message):
        detector.acquire(1)


# -- the command line ------------------------------------------------------------------------------------
def test_sim_serve_with_a_frame_folder_serves_a_working_detector(tmp_path):
    with sim_serve("dexela", f"frame_folder={tmp_path}", "rows=32", "columns=48") as port:
        options = DexelaOptions(**SIZE, frame_folder=str(tmp_path), readout_margin_s=1.0)
        with DexelaDetector("panel", options, connection=f"socket://127.0.0.1:{port}") as detector:
            detector.set_exposure_s(0.05)
            (frame,) = detector.acquire(1)
    assert frame.data.mean() > 200  # its own tube: beam on


def test_sim_serve_with_two_frame_channels_is_a_configuration_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "microct", "sim", "serve", "dexela", "--tcp", "0",
                           "-O", f"frame_folder={tmp_path}", "-O", "frame_port=0"],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done
    assert "frame_folder=PATH or frame_port=PORT" in done.stdout + done.stderr


def test_sim_serve_without_options_serves_frames_in_a_temporary_folder_it_names():
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "dexela", "--tcp", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        hint = ""
        while "stops it" not in hint:  # the hint may be wrapped over several lines
            line = process.stderr.readline()
            assert line, f"sim serve dexela ended: {hint!r}"
            hint += line
        folder = re.search(r"frames in\s+(\S+);", hint)[1]
        options = DexelaOptions(frame_folder=folder, readout_margin_s=1.0)  # the simulator's default panel
        with DexelaDetector("panel", options, connection=url) as detector:
            detector.set_exposure_s(0.02)
            (frame,) = detector.acquire(1)
        assert frame.data.shape == (1024, 1024) and frame.data.mean() > 100  # its own tube: beam on
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not Path(folder).exists()  # removed as the simulator ends


def test_sim_serve_dexela_with_a_fault_file_plays_the_faults(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nkind = "reply_timeout"\ndevice = "detector"\nat_s = 0.0\n'  # WC1, at first use
                      '[[faults]]\nkind = "frame_dropped"\ndevice = "detector"\nat_frame = 0\n')
    with sim_serve("dexela", f"frame_folder={tmp_path}", "rows=32", "columns=48",
                   extra=("--faults", str(faults))) as port:
        options = DexelaOptions(**SIZE, frame_folder=str(tmp_path), readout_margin_s=0.5, serial={"timeout_s": 0.5})
        detector = DexelaDetector("panel", options, connection=f"socket://127.0.0.1:{port}")
        with detector:  # connect writes nothing
            with pytest.raises(DeviceTimeoutError, match="'WC1' \\(wake-up\\) failed"):
                detector.set_exposure_s(0.02)  # the first use wakes the panel
            detector.set_exposure_s(0.02)
            with pytest.raises(DeviceTimeoutError, match="frame 0 did not come"):
                detector.acquire(1)
            assert [frame.frame_number for frame in detector.acquire(1)] == [1]
