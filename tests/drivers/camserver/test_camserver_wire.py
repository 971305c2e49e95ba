"""CamserverDetector talking to CamserverResponder through a WireServer over real pyvisa-py TCPIP SOCKET
sessions: the detector contracts (with the fault contract), the simulator's protocol (notes:
docs/protocols/dectris-camserver.md), its files and schedule, the panel seeing the instruments, faults,
stop/close during a series, and `microct sim serve camserver`."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from microct.devices.base import DriverContext
from microct.devices.detector import Detector
from microct.driverkit import ErrorReply
from microct.drivers.camserver import codec
from microct.drivers.camserver.driver import CamserverDetector, CamserverOptions
from microct.errors import CommunicationError, DeviceStateError, DeviceTimeoutError, MicroCTError, ProtocolError
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.camserver import CamserverResponder
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireServer
from microct.testing import rigs
from microct.testing.contracts import DetectorContract, DetectorFaultContract
from microct.testing.rigs import sim_serve
from microct.testing.waiting import wait_until

IMAGE_PATH = "/ramdisk/microct"


def resource(server: WireServer) -> str:
    return f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"


def build(connection: str, root: Path, **options) -> CamserverDetector:
    """A 100K reading root/ramdisk/microct, with short time-outs."""
    opts = {"model": "100K", "image_path": IMAGE_PATH, "local_image_path": str(root / IMAGE_PATH.lstrip("/")),
            "reply_timeout_s": 0.3, "margin_s": 0.3, "exposure_range_s": (0.001, 1.0), **options}
    return CamserverDetector.from_config("det", CamserverOptions(**opts), connection, DriverContext())


# -- the contracts --------------------------------------------------------------------------------------------
class TestContract(DetectorContract, DetectorFaultContract):
    """Over the VISA TCPIP SOCKET link. The fault hook: frames withheld, ``Exposure`` starts (``15 OK``)
    but no image file appears (the driver's margin_s, 0.3 s, ends the wait; it sends K); mute, the
    server answers nothing (the driver's reply_timeout_s, 0.3 s)."""

    bright_exposure_s = 0.05
    frame_timeout_bound_s = 10.0  # the driver's own time-outs end a withheld or unanswered acquire(1) in ~1 s

    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        root = tmp_path_factory.mktemp("camserver")
        with rigs.served(CamserverResponder(root, model="100K", seed=1), "visa", name="camserver") as link:
            yield link, root

    @pytest.fixture
    def new_device(self, served):
        link, root = served
        return lambda: build(link.address, root)

    @pytest.fixture
    def hook(self, served):
        link, _ = served
        return link.server.responder.fault_hook(mute=link.mute)

    def test_frames_that_never_come_are_a_timeout_and_the_next_frame_comes(self, detector, hook, served):
        responder = served[0].server.responder
        lines = len(responder.lines)
        super().test_frames_that_never_come_are_a_timeout_and_the_next_frame_comes(detector, hook)
        sent = [line.split()[0] for line in responder.lines[lines:]]
        assert b"K" in sent and sent[:sent.index(b"K")].count(b"Exposure") == 1, sent  # the withheld series: K


# -- the simulator on a raw socket ----------------------------------------------------------------------------
class Client:
    """A raw TCP client of the simulator: ``ask`` sends bytes and returns the next ``replies`` replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buffer = b""

    def ask(self, data: bytes, replies: int = 1, timeout_s: float = 2.0) -> list[bytes]:
        if data:
            self.sock.sendall(data)
        deadline = time.monotonic() + timeout_s
        while self.buffer.count(b"\x18") < replies:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"only {self.buffer!r} within {timeout_s} s"
            self.buffer += self.sock.recv(65536)
        *answers, self.buffer = self.buffer.split(b"\x18", replies)
        return answers

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sim(tmp_path):
    """A served 300K simulator: (responder, port, root)."""
    responder = CamserverResponder(tmp_path, model="300K", seed=1)
    with WireServer(responder, "camserver") as server:
        yield responder, server.serve_tcp(), tmp_path


def test_replies_as_on_the_sheet(sim):
    _, port, _ = sim
    client = Client(port)
    assert client.ask(b"version\n") == [b"24 OK Code release: 7.9.0"]
    assert client.ask(b"ni 10\n") == [b"15 OK N images set to: 10"]
    assert client.ask(b"expt 0.997\n") == [b"15 OK Exposure time set to: 0.9970000 sec"]
    assert client.ask(b"expp 1.2\n") == [b"15 OK Exposure period set to: 1.2000000 sec"]
    assert client.ask(b"imgpath /ramdisk/x\n") == [b"10 OK /ramdisk/x/"]
    assert client.ask(b"threshold 5000\n") == [b"1 ERR *** Unrecognized command: threshold"]
    assert client.ask(b"exp 1\n") == [b"1 ERR *** Unrecognized command: exp"]  # ambiguous
    assert client.ask(b"thread\n")[0].startswith(b"215 OK Channel 0: Temperature = 31.4C, Rel. Humidity = 22.1%;")
    assert client.ask(b"ni 70000\n") == [b"15 ERR ERROR: number of images out of range: 70000"]
    assert client.ask(b"expp 0.001\n") == [b"15 ERR ERROR: exposure period out of range: 0.001"]
    starting = client.ask(b"EXPOSURE scan.tif\n")[0]
    stamp = rb"\d{4}-[A-Z][a-z]{2}-\d\dT\d\d:\d\d:\d\d\.\d{3}"  # 2011-Aug-04T15:27:22.593
    assert re.fullmatch(rb"15 OK  Starting 0\.9970000 second background: " + stamp, starting), starting
    assert client.ask(b"k\n", replies=2) == [b"13 ERR kill", b"7 OK /ramdisk/x/scan_00000.tif"]  # none written
    assert client.ask(b"k\n") == [b"13 OK kill"]
    client.close()


def test_any_control_character_ends_a_command_and_joined_commands_are_split(sim):
    _, port, _ = sim
    client = Client(port)
    assert client.ask(b"ni 2\rexpt 0.1\x00\x00expp 0.2\tversion\r\n", replies=4) == [
        b"15 OK N images set to: 2", b"15 OK Exposure time set to: 0.1000000 sec",
        b"15 OK Exposure period set to: 0.2000000 sec", b"24 OK Code release: 7.9.0"]
    client.close()


def test_only_the_first_client_may_change_state_until_it_hangs_up(sim):
    _, port, _ = sim
    first, second = Client(port), Client(port)
    assert first.ask(b"ni 3\n") == [b"15 OK N images set to: 3"]
    assert second.ask(b"ni 5\n") == [b"1 ERR access denied"]
    assert second.ask(b"exposure a.tif\n") == [b"1 ERR access denied"]
    assert second.ask(b"version\n") == [b"24 OK Code release: 7.9.0"]  # reading is allowed
    assert second.ask(b"ni\n") == [b"15 OK N images set to: 3"]
    first.close()
    assert second.ask(b"ni 5\n") == [b"15 OK N images set to: 5"]  # at once, even before the server noticed
    second.close()


def test_files_are_written_on_schedule_and_a_second_exposure_is_refused(sim):
    responder, port, root = sim
    client = Client(port)
    client.ask(b"ni 3\nexpt 0.05\nexpp 0.1\nimgpath /ramdisk/s\n", replies=4)
    start = time.monotonic()  # before the series starts, so a file seen "early" is one written early
    client.ask(b"exposure scan_0042.tif\n")
    assert client.ask(b"exposure again.tif\n") == [b"15 ERR ERROR: an exposure series is running (K stops it)"]
    assert client.ask(b"ni 4\n") == [b"15 ERR ERROR: an exposure series is running (K stops it)"]
    folder, size = root / "ramdisk" / "s", codec.tiff_size(619, 487)
    seen: dict[str, float] = {}
    while len(seen) < 3 and time.monotonic() < start + 2:
        for path in folder.glob("*.tif"):
            if path.stat().st_size == size:
                seen.setdefault(path.name, time.monotonic() - start)
        time.sleep(0.002)
    assert sorted(seen) == ["scan_0042.tif", "scan_0043.tif", "scan_0044.tif"]
    for i, name in enumerate(sorted(seen)):
        assert 0.05 + 0.1 * i - 0.01 <= seen[name] <= 0.05 + 0.1 * i + 0.15, (name, seen)  # not before it is due
    assert client.ask(b"", timeout_s=1.0) == [b"7 OK /ramdisk/s/scan_0044.tif"]
    assert client.ask(b"ni 4\n") == [b"15 OK N images set to: 4"]
    client.close()


def test_files_have_the_camserver_layout_gaps_and_bad_pixels(sim):
    responder, port, root = sim
    client = Client(port)
    client.ask(b"ni 1\nexpt 0.01\nexpp 0.02\nexposure one.tif\n", replies=4)
    assert client.ask(b"") == [b"7 OK /ramdisk/one.tif"]
    path = root / "ramdisk" / "one.tif"
    assert path.read_bytes()[:4] == b"II*\x00" and path.stat().st_size == 4096 + 619 * 487 * 4
    with tifffile.TiffFile(path) as tif:
        counts = tif.pages[0].asarray()
        assert "# Pixel_size 172e-6 m x 172e-6 m" in tif.pages[0].description
    assert counts.dtype == np.int32 and counts.shape == (619, 487)
    assert (counts[195:212] == -1).all() and (counts[407:424] == -1).all()  # the gaps between the 3 modules
    assert (counts == -1).sum() == 2 * 17 * 487
    assert (counts == -2).sum() == 5
    assert counts[counts >= 0].mean() > 100  # the standalone tube's beam is on
    client.close()


# -- the panel sees the scan's instruments --------------------------------------------------------------------
def test_the_panel_images_the_tube_and_stage_it_is_given(tmp_path):
    tube = SimulatedSource("tube", SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e6, ramp_ua_per_s=1e8))
    rotation = SimulatedAxis("rotation", SimulatedAxisOptions(max_velocity=1e6, acceleration=1e8))
    tube.connect()
    rotation.connect()
    devices = {"source": tube, "rotation": rotation}
    with WireServer(CamserverResponder(tmp_path, model="100K", devices=devices, phantom="edge", seed=1)) as server:
        with build(resource(server), tmp_path) as detector:
            detector.set_exposure_s(0.05)
            (dark,) = detector.acquire(1)
            tube.configure(voltage_kv=80, current_ua=100, spot_mode="small")
            tube.beam_on()
            time.sleep(0.01)
            first, again = (frame.data.astype(float) for frame in detector.acquire(2))
            rotation.move_to(45.0, 5.0)
            turned = detector.acquire(1)[0].data.astype(float)
    assert dark.data.max() == 0  # beam off: a photon counter counts nothing
    assert first.max() > 1500 and first.min() < 0.5 * first.max()  # open beam, and the edge's shadow
    # ~6.5 sigma of the Poisson noise: never between two frames at one angle, often after the turn
    assert (np.abs(again - first) > 400).mean() == 0 and (np.abs(turned - first) > 400).mean() > 0.02


# -- faults through the driver --------------------------------------------------------------------------------
@pytest.fixture
def make_rig(tmp_path):
    """make_rig(*faults) -> (responder, detector): a 100K simulator served with ``FaultSchedule(faults)``
    and a connected driver (exposure 0.01 s), closed after the test."""
    made = []

    def make(*faults: dict):
        schedule = FaultSchedule(faults)
        responder = CamserverResponder(tmp_path, model="100K", seed=1, faults=schedule)
        server = WireServer(responder, "camserver", schedule)
        detector = build(resource(server), tmp_path)
        made.append((server, detector))
        detector.connect()
        detector.set_exposure_s(0.01)
        return responder, detector

    yield make
    for server, detector in made:
        with contextlib.suppress(MicroCTError):
            detector.close()
        server.stop()


@pytest.fixture
def rig(make_rig):
    """A 100K simulator without scheduled faults and a connected driver: (responder, detector)."""
    return make_rig()


def folder(detector: Detector) -> list[str]:
    return sorted(p.name for p in detector.local_image_path.iterdir())


@pytest.mark.parametrize("kind", ["frame_dropped", "frame_timeout"])
def test_a_frame_fault_is_a_file_that_never_comes_named_and_the_series_stopped(make_rig, kind):
    responder, detector = make_rig({"kind": kind, "device": "detector", "at_frame": 1})
    with pytest.raises(DeviceTimeoutError, match=r"image file .*microct_00001\.tif \(frame 2 of 3 of 'Exposure "
                                                 r"microct_00000\.tif'\) did not appear within 0\.\d+ s of the "
                                                 r"start; K sent: camserver stopped the series"):
        detector.acquire(3)
    assert responder.lines[-1] == b"K"
    assert [hit.what for hit in responder.schedule.hits] == ["frame 1"]
    assert responder.frames_started == (3 if kind == "frame_dropped" else 2)  # a time-out halts the series
    assert folder(detector) == []  # what was written is cleaned up
    assert [f.frame_number for f in detector.acquire(2)] == [3, 4]  # the next series works


def test_a_file_cut_short_is_named_and_the_series_stopped(rig):
    responder, detector = rig
    responder.hooks.truncated_frame = 1
    with pytest.raises(DeviceTimeoutError, match=r"image file .*microct_00001\.tif \(frame 2 of 3 .*\) stayed "
                                                 r"incomplete \(191978 of 383956 bytes\) within .*; K sent: camserver "
                                                 r"stopped the series"):
        detector.acquire(3)
    assert responder.lines[-1] == b"K"
    assert folder(detector) == []  # what was written is cleaned up
    responder.hooks.truncated_frame = None
    assert [f.frame_number for f in detector.acquire(2)] == [3, 4]  # the next series works


def test_an_err_reply_names_the_command(rig):
    responder, detector = rig
    responder.hooks.error_replies["ExpTime"] = "ERROR: exposure time too long"
    with pytest.raises(ErrorReply, match=r"detector 'det': 'ExpTime 0.5000000' was refused: '15 ERR ERROR: "
                                         r"exposure time too long'"):
        detector.set_exposure_s(0.5)
    assert detector.exposure_s == 0.01
    responder.hooks.error_replies.clear()
    detector.set_exposure_s(0.5)


@pytest.mark.parametrize(("kind", "error", "message"), [
    ("garbled_reply", ProtocolError, r"'Exposure microct_00001\.tif': garbled reply"),
    ("reply_timeout", ProtocolError, r"'Exposure microct_00001\.tif': the reply '7 OK .*microct_00001\.tif' has "
                                     r"code 7, expected 15"),  # its series ran: its end came in place of '15 OK'
    ("disconnect", CommunicationError, r"reading the reply to 'Exposure microct_00001\.tif' .* the device closed "
                                       r"the connection"),
])
def test_a_request_fault_on_exposure_is_an_error_naming_it_and_the_next_series_works(make_rig, kind, error, message):
    responder, detector = make_rig({"kind": kind, "device": "detector", "at_frame": 1})
    detector.acquire(1)  # frame 0; the fault hits the first request after it
    with pytest.raises(error, match=message):
        detector.acquire(1)
    assert [hit.what for hit in responder.schedule.hits] == ["request"]
    assert responder.lines[-1] == b"K"  # its series was stopped (after a disconnect: over a new connection)
    assert [f.frame_number for f in detector.acquire(2)] == [2, 3]


def test_a_connection_dropped_mid_series_is_a_clear_error_and_reconnecting_works(rig):
    responder, detector = rig
    responder.hooks.drop_at_frame = 1
    with pytest.raises((DeviceTimeoutError, ProtocolError), match=r"detector 'det': image file .*microct_00001\.tif "
                                                                  r"\(frame 2 of 3 .*\) did not appear"):
        detector.acquire(3)
    responder.hooks.drop_at_frame = None
    detector.close()
    detector.connect()  # a new connection, and control, since the old one is gone
    detector.set_exposure_s(0.01)
    assert len(detector.acquire(2)) == 2


@pytest.mark.parametrize("how", ["stop", "close"])
def test_stop_or_close_during_a_series_sends_k(rig, how):
    responder, detector = rig
    detector.set_exposure_s(0.2)
    errors: list[BaseException] = []

    def acquire() -> None:
        try:
            detector.acquire(20)
        except MicroCTError as error:
            errors.append(error)

    worker = threading.Thread(target=acquire)
    worker.start()
    deadline = time.monotonic() + 5
    while responder.frames_started < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    getattr(detector, how)()
    worker.join(timeout=5)
    assert not worker.is_alive()
    # close() sends K and hangs up without waiting for a reply: the server may read it after this
    wait_until(lambda: b"K" in responder.lines, 1.0, "K at the simulator")
    assert responder.frames_started < 5
    assert len(errors) == 1 and isinstance(errors[0], DeviceStateError)
    assert re.search(rf"acquisition stopped by {how}\(\) \(frame \d+ of 20 of 'Exposure microct_00000.tif'\); K sent",
                     str(errors[0])), errors[0]
    if how == "stop":
        detector.set_exposure_s(0.01)
        assert len(detector.acquire(1)) == 1  # usable again


def test_stop_when_idle_does_nothing(rig):
    responder, detector = rig
    detector.stop()
    assert b"K" not in responder.lines
    assert len(detector.acquire(1)) == 1


# -- the command line -----------------------------------------------------------------------------------------
def test_sim_serve_camserver_serves_images_a_driver_reads(tmp_path):
    with sim_serve("camserver", f"image_root={tmp_path}", "model=100K") as port:
        with build(f"TCPIP::127.0.0.1::{port}::SOCKET", tmp_path, reply_timeout_s=2.0) as detector:
            detector.set_exposure_s(0.02)
            (frame,) = detector.acquire(1)
    assert frame.data.mean() > 50  # the simulator's own tube is on


def test_sim_serve_camserver_without_options_writes_into_a_temporary_folder_it_names():
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "camserver", "--tcp", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = re.fullmatch(r"socket://127\.0\.0\.1:(\d+)", process.stdout.readline().strip())[1]
        hint = ""
        while "stops it" not in hint:  # the hint may be wrapped over several lines
            line = process.stderr.readline()
            assert line, f"sim serve camserver ended: {hint!r}"
            hint += line
        root = Path(re.search(r"images under\s+(\S+);", hint)[1])
        with build(f"TCPIP::127.0.0.1::{port}::SOCKET", root, model="300K", reply_timeout_s=2.0) as detector:
            detector.set_exposure_s(0.02)
            (frame,) = detector.acquire(1)
        assert frame.data.shape == (619, 487) and frame.data.mean() > 50  # the default model; its own tube is on
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not root.exists()  # removed as the simulator ends


def test_sim_serve_camserver_with_a_fault_file_plays_the_faults(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nkind = "garbled_reply"\ndevice = "detector"\nat_s = 0.0\n'  # Version, at connect
                      '[[faults]]\nkind = "frame_dropped"\ndevice = "detector"\nat_frame = 0\n')
    with sim_serve("camserver", f"image_root={tmp_path}", "model=100K", extra=("--faults", str(faults))) as port:
        detector = build(f"TCPIP::127.0.0.1::{port}::SOCKET", tmp_path, reply_timeout_s=2.0)
        with pytest.raises(ProtocolError, match="'Version': garbled reply"):
            detector.connect()
        with detector:
            detector.set_exposure_s(0.02)
            with pytest.raises(DeviceTimeoutError, match=r"microct_00000\.tif .* did not appear"):
                detector.acquire(1)
            assert [frame.frame_number for frame in detector.acquire(1)] == [1]
