"""The drivers against a port answering garbage: each driver's usual conversation (connect, read-backs,
a setting, a move or an acquisition) with one or two replies garbled: near-valid (mutated), arbitrary
bytes, or cut short of their terminator. Property: every call returns a sensible value or raises a
MicroCTError (ProtocolError, DeviceTimeoutError, LimitError, ...); nothing else gets out and nothing
hangs; close() afterwards raises nothing else either. Replies are answered in order, one per write,
whatever the driver wrote (AnsweringPort); the conversation itself is checked to succeed untouched.

Bugs these found are pinned by the regression tests at the end."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_helpers import LONG_DIGITS, answering_transport, calls_until_microct_error, conversation
from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from microct.devices.base import Device
from microct.devices.source import SourceState
from microct.drivers.camserver import codec as camserver_codec
from microct.drivers.camserver import models as camserver_models
from microct.drivers.camserver.driver import CamserverDetector, CamserverOptions
from microct.drivers.dexela import codec as dexela
from microct.drivers.dexela.driver import DexelaDetector, DexelaOptions
from microct.drivers.dexela.grabber import StreamChannel
from microct.drivers.hamamatsu.driver import HamamatsuOptions, HamamatsuSource
from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.drivers.spellman.codec import COMMAND_SETS, Codec, GeneratorStatus, Scaling
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.errors import ProtocolError
from microct.transport import SerialSettings, Transport

TIMEOUT_S = 0.02
"""Per reply: an answer cut short of its terminator costs this much."""
MOVE_TIMEOUT_S, HANG_S = 5.0, 2.0
"""Moves wait up to 5 s, but garbage must end them within the transport's time-outs: a conversation
taking 2 s has a call waiting for something that never comes (a poller thread that died, say)."""
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
"""An exception killing a thread (a move's poller) fails the test, even if the caller then times out."""
DRIVER = settings(deadline=None)
"""No per-example deadline: a conversation takes milliseconds, but a reply cut short costs a time-out
(HANG_S bounds the whole conversation instead)."""


def finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def a_state(value: Any) -> bool:
    return isinstance(value, SourceState)


def a_flag(value: Any) -> bool:
    return isinstance(value, bool)


@dataclass(frozen=True)
class Scenario:
    """A driver's usual conversation: the replies ``talk`` (no terminators; ``folder_talk(folder)`` for a
    detector naming its folder) to the exchanges of ``calls(device)``; ``checks`` one per call, for its
    result (None: anything)."""

    name: str
    talk: list[bytes]
    terminator: bytes
    settings: SerialSettings
    build: Callable[[Transport, Path], Device]
    calls: Callable[[Any], list[Callable[[], Any]]]
    checks: list[Callable[[Any], bool] | None]
    on_write: Callable[[Path], Callable[[bytes], None]] | None = None
    folder_talk: Callable[[Path], list[bytes]] | None = None

    def replies(self, folder: Path) -> list[bytes]:
        return self.folder_talk(folder) if self.folder_talk else self.talk

    def run(self, answers: list[bytes], folder: Path) -> list[Any]:
        """The results of the calls that succeeded, up to the first MicroCTError; then close()."""
        on_write = self.on_write(folder) if self.on_write else None
        transport = answering_transport(answers, self.settings, on_write)
        device = self.build(transport, folder)
        try:
            start = time.monotonic()
            results = calls_until_microct_error(*self.calls(device))
            assert time.monotonic() - start < HANG_S, f"the calls took {time.monotonic() - start:.1f} s: a hang"
            for result, check in zip(results, self.checks):
                assert check is None or check(result), result
            return results
        finally:
            try:
                calls_until_microct_error(device.close)
            finally:
                transport.close()


def _serial(terminator: str, write: str | None = None) -> SerialSettings:
    return SerialSettings(timeout_s=TIMEOUT_S, read_terminator=terminator, write_terminator=write or terminator)


# -- Hamamatsu (serial, CR; hamamatsu-microfocus.md) --------------------------------------------------------
HAMAMATSU = Scenario(
    "hamamatsu",
    talk=[b"TYP L10711", b"SVI 80 50", b"SFC 1", b"SAT 3",  # connect: model, set-points, focus, auto stop
          b"SAR 2 80 50 0 0 0 0",                   # read_state
          b"SAR 3 80.0 49.9 0 0 0 0",               # read_voltage_kv
          b"SIN 0",                                 # read_interlock_closed
          b"HIV 090"],                              # set_voltage_kv(90): the echo
    terminator=b"\r", settings=_serial("\r"),
    build=lambda transport, _: HamamatsuSource("tube", HamamatsuOptions(readback_max_age_s=0), transport=transport),
    calls=lambda source: [source.connect, source.read_state, source.read_voltage_kv, source.read_interlock_closed,
                          partial(source.set_voltage_kv, 90)],
    checks=[None, a_state, finite, a_flag, None])

# -- Zaber (serial, LF out, CR LF in; zaber-ascii.md) --------------------------------------------------------
ZABER = Scenario(
    "zaber",
    talk=[b"@01 0 OK IDLE -- 10001",                         # connect: serial number (a query only)
          b"@01 1 OK IDLE -- 42667",                         # read_position
          b"@01 1 OK IDLE -- 0",                             # maxspeed, before the first move
          b"@01 1 OK BUSY -- 0", b"@01 1 OK BUSY -- 0",      # move abs, a poll
          b"@01 1 OK IDLE -- 0",                             # the poll that ends the move
          b"@01 1 OK IDLE NI 0"],                            # stop (at close)
    terminator=b"\r\n", settings=_serial("\r\n", "\n"),
    build=lambda transport, _: ZaberAxis("rotation", ZaberOptions(poll_interval_s=0.001), transport=transport),
    calls=lambda axis: [axis.connect, axis.read_position, partial(axis.move_to, 10.0, timeout_s=MOVE_TIMEOUT_S)],
    checks=[None, finite, None])

# -- Spellman (STX frame, ETX; spellman-xrv.md) ----------------------------------------------------------------
# Without the checksum, as over TCP/IP: with it, nearly every garbled reply would stop at the checksum
# (the codec tests garble both framings).
XRV = Codec(COMMAND_SETS["XRV"], checksum=False)
READY = GeneratorStatus(hv_on=False)
SPELLMAN = Scenario(
    "spellman",
    talk=[XRV.format_scaling(Scaling(160, 30, False)), XRV.format_counts(14, 2047),  # connect: full scale,
          XRV.format_counts(15, 682), XRV.format_status(READY),                       # set-points, filament
          XRV.format_monitors(2047, 682),                                             # read_voltage_kv
          XRV.format_status(READY),                                                   # read_state
          XRV.format_status(READY)],                                                  # read_interlock_closed
    terminator=b"\x03", settings=_serial("\x03"),
    build=lambda transport, _: SpellmanSource("tube", SpellmanOptions(checksum=False, readback_max_age_s=0),
                                              transport=transport),
    calls=lambda source: [source.connect, source.read_voltage_kv, source.read_state, source.read_interlock_closed],
    checks=[None, finite, a_state, a_flag])

# -- PI GCS 2 (LF both ways; a setter and ERR? go in one write, so one answer holds two replies; pi-gcs.md) ----
PI = Scenario(
    "pi-gcs",
    talk=[b"(c)2023 Physik Instrumente, E-873, 0, 1.0",         # connect (queries only): *IDN?,
          b"1=-360.0", b"1=360.0", b"1=1",                     # TMN?, TMX?, FRF?
          b"1=10.0",                                           # read_position
          b"0", b"0",                                          # before the first move: SVO + ERR?, VEL + ERR?
          b"0", b"1=0\n0", b"1=1\n0",                          # MOV + ERR?, two polls ONT? + ERR?
          b"0"],                                               # HLT + ERR? (at close)
    terminator=b"\n", settings=_serial("\n"),
    build=lambda transport, _: PIAxis("rotation", PIOptions(poll_interval_s=0.001),
                                      transport=transport),
    calls=lambda axis: [axis.connect, axis.read_position, partial(axis.move_to, 20.0, timeout_s=MOVE_TIMEOUT_S)],
    checks=[None, finite, None])


# -- DECTRIS camserver (newline out, CAN in; frames are files; dectris-camserver.md) ---------------------------
def _camserver_images(folder: Path) -> Callable[[bytes], None]:
    """camserver's side of ``Exposure <name>``: the image file of a 100K, written at once."""
    def on_write(data: bytes) -> None:
        if data.startswith(b"Exposure "):
            rows, columns = camserver_models.SIZES["100K"][::-1]
            counts = np.zeros((rows, columns), np.int32)
            (folder / data.split()[1].decode()).write_bytes(camserver_codec.encode_tiff(counts))
    return on_write


def _camserver_talk(folder: Path) -> list[bytes]:
    path = str(folder).encode()
    return [b"24 OK Code release: 7.9.0",                                 # connect: version (a query only)
            b"10 OK %s/" % path,                                          # the first use: ImgPath, then
            b"15 OK Exposure time set to: 0.0100000 sec",                 # set_exposure_s(0.01)
            b"15 OK Exposure period set to: 0.0109500 sec",
            b"15 OK N images set to: 1",                                  # acquire(1): the start and,
            b"15 OK  Starting 0.0100000 second background: 2011-Aug-04T15:27:22.593\x18"  # unasked, the end
            b"7 OK %s/microct_00000.tif" % path,
            b"13 ERR kill\x187 OK %s/microct_00000.tif" % path]          # K, if the series fails


CAMSERVER = Scenario(
    "camserver",
    talk=[], folder_talk=_camserver_talk,
    terminator=b"\x18", settings=_serial("\x18", "\n"),
    build=lambda transport, folder: CamserverDetector(
        "pilatus", CamserverOptions(model="100K", image_path=str(folder), reply_timeout_s=TIMEOUT_S,
                                    start_timeout_s=0.05, margin_s=0.05, poll_s=0.002), transport=transport),
    calls=lambda detector: [detector.connect, partial(detector.set_exposure_s, 0.01), partial(detector.acquire, 1)],
    checks=[None, None, lambda frames: len(frames) == 1 and frames[0].data.shape == (195, 487)],
    on_write=_camserver_images)

# -- Dexela (serial registers, CR; dexela-serial.md) ----------------------------------------------------------
DEXELA = Scenario(
    "dexela",
    talk=[b"X", b"X", b"S00000",             # the first use (connect writes nothing): wake; register 3
          b"X", b"S00200", b"X", b"S00000"], # written and read back; set_exposure_s(0.002): registers 11, 12
    terminator=b"\r", settings=_serial("\r"),
    build=lambda transport, folder: DexelaDetector(
        "panel", DexelaOptions(rows=4, columns=3, frame_folder=str(folder), verify_writes=True), transport=transport),
    calls=lambda detector: [detector.connect, partial(detector.set_exposure_s, 0.002)],
    checks=[None, None])

SCENARIOS = [HAMAMATSU, ZABER, SPELLMAN, PI, CAMSERVER, DEXELA]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The image / frame folder of the detectors (module-scoped: hypothesis runs many examples per test)."""
    return tmp_path_factory.mktemp("frames")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_usual_conversation_succeeds(scenario, folder):
    """The conversation the fuzzing garbles is right: untouched, every call succeeds."""
    answers = [reply + scenario.terminator for reply in scenario.replies(folder)]
    assert len(scenario.run(answers, folder)) == len(scenario.checks)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@DRIVER
@given(data=st.data())
def test_drivers_answered_garbage_raise_microct_errors_only(scenario, folder, data):
    answers = data.draw(conversation(scenario.replies(folder), scenario.terminator), label="answers")
    results = scenario.run(answers, folder)
    event(f"{len(results)} of {len(scenario.checks)} calls succeeded")
    target(len(results), label="calls that succeeded")  # steer towards conversations that get further


# -- regressions -----------------------------------------------------------------------------------------------
def test_zaber_positions_beyond_float_range_are_protocol_errors(folder):
    # found by fuzzing: "get pos" answered with 400 digits raised OverflowError (int too large for a float)
    answers = [reply + b"\r\n" for reply in ZABER.talk[:1] + [b"@01 1 OK IDLE -- " + b"9" * 400]]  # connect
    axis = ZABER.build(transport := answering_transport(answers, ZABER.settings), folder)
    axis.connect()
    with pytest.raises(ProtocolError, match=r"axis 'rotation': Zaber device 1 axis 1: position '9999.*' in the "
                                            r"reply to 'get pos' is not a whole number of microsteps \(within"):
        axis.read_position()
    transport.close()


@pytest.mark.parametrize("position", [b"inf", b"-inf", b"nan", b"1e999"])
def test_pi_positions_that_are_not_finite_are_protocol_errors(folder, position):
    # found by fuzzing: POS? answered "1=inf" was returned as the position, and the next move's first
    # poll waited float("inf") s: OverflowError in the poller thread, whose Status then never ended
    answers = [reply + b"\n" for reply in PI.talk[:4] + [b"1=" + position]]  # connect, POS?
    axis = PI.build(transport := answering_transport(answers, PI.settings), folder)
    axis.connect()
    with pytest.raises(ProtocolError, match=r"axis 'rotation': PI axis 1: '.*' in the reply to 'POS\? 1' is not a "
                                            r"finite number"):
        axis.read_position()
    transport.close()


def test_pi_positions_far_beyond_the_soft_limits_do_not_stall_the_next_move(folder):
    # found by fuzzing: POS? answered "1=18446744073709551616" made the next move's first poll wait
    # 2.6e16 s: OverflowError in the poller thread, whose Status then never ended (move_to() without a
    # time-out hung); such a position now gives no start for the estimate, and the first poll comes at once
    answers = [reply + b"\n" for reply in PI.talk[:4] + [b"1=18446744073709551616",  # connect, POS?,
                                                          b"0", b"0", b"0", b"1=1\n0"]]  # SVO, VEL, MOV, ONT?
    axis = PI.build(transport := answering_transport(answers, PI.settings), folder)
    axis.connect()
    assert axis.read_position() == 2.0**64
    start = time.monotonic()
    axis.move_to(20.0, timeout_s=MOVE_TIMEOUT_S)
    assert time.monotonic() - start < 1.0
    transport.close()


def test_a_garbled_reply_is_named_in_the_error(folder):
    """What a user reads when a device answers garbage: the device, the command and the reply."""
    answers = [b"TYP " + LONG_DIGITS[:20] + b"\r", b"SVI 80 50\r", b"SFC \xff\r"]
    source = HAMAMATSU.build(transport := answering_transport(answers, HAMAMATSU.settings), folder)
    with pytest.raises(ProtocolError, match=r"^source 'tube': 'SFC': garbled reply b'SFC \\xff' "
                                            r"\('\ufffd' is not one of the codes 0-9\)$"):
        source.connect()
    transport.close()


# -- the Dexela frame stream (this project's TCP frame channel, see microct.drivers.dexela) ------------------------
SHAPE = (4, 3)
FRAME = dexela.encode_frame(5, np.arange(12, dtype=np.uint16).reshape(SHAPE))


@st.composite
def frame_streams(draw: st.DrawFn) -> bytes:
    """A frame, or the grabber's no-frame header and a frame, with header fields (number, rows, columns)
    replaced by extremes, cut short, and followed by junk."""
    stream = bytearray(draw(st.sampled_from([FRAME, dexela.NO_FRAME + FRAME])))
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.sampled_from([4, 8, 12]))
        stream[field:field + 4] = draw(st.sampled_from([0, 1, 3, 4, 65536, 2**32 - 1])).to_bytes(4, "little")
    if draw(st.booleans()):
        stream = stream[:draw(st.integers(0, len(stream)))]
    return bytes(stream) + draw(st.binary(max_size=24))


@pytest.fixture(scope="module")
def grabber():
    """A listening socket on 127.0.0.1 standing in for the frame grabber."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def channel_to(grabber: socket.socket, stream: bytes) -> StreamChannel:
    """An open StreamChannel whose grabber has sent ``stream`` and hung up."""
    channel = StreamChannel(f"127.0.0.1:{grabber.getsockname()[1]}", connect_timeout_s=1.0)
    channel.open()
    sender, _ = grabber.accept()
    with sender:
        sender.sendall(stream)
    return channel


@DRIVER
@given(stream=frame_streams() | st.binary(max_size=64))
def test_dexela_frame_stream_of_garbage_gives_frames_or_microct_errors(grabber, stream):
    channel = channel_to(grabber, stream)
    try:
        for number, pixels in calls_until_microct_error(partial(channel.receive, 5, SHAPE, 1.0)):
            assert number >= 5 and pixels.shape == SHAPE and pixels.dtype == np.uint16
    finally:
        channel.close()


def test_dexela_frame_headers_announcing_gigabytes_are_protocol_errors(grabber):
    # found by fuzzing: rows = columns = 2**32 - 1 made receive() ask recv() for 3.7e19 bytes: OverflowError
    # (smaller but still huge figures: a buffer of gigabytes)
    channel = channel_to(grabber, dexela.FRAME_HEADER.pack(dexela.FRAME_MAGIC, 5, 2**32 - 1, 2**32 - 1))
    try:
        with pytest.raises(ProtocolError, match=r"frame 5 is 4294967295 × 4294967295, expected 4 × 3"):
            channel.receive(5, SHAPE, 1.0)
    finally:
        channel.close()
