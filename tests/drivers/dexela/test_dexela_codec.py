"""Dexela register codec, frame-channel codec and driver against scripted byte exchanges (commands and
replies as in docs/protocols/dexela-serial.md, derived from open-source drivers)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pydantic import ValidationError

from microct.devices.detector import TriggerMode
from microct.drivers.dexela.codec import (
    EXPOSURE_RANGE_S,
    TRIGGER_SUFFIX,
    Request,
    decode_pixels,
    encode_frame,
    encode_frame_request,
    encode_read,
    encode_write,
    exposure_to_ticks,
    format_reply,
    frame_file_name,
    frame_file_number,
    join_words,
    parse_frame_header,
    parse_frame_request,
    parse_read_reply,
    parse_request,
    parse_write_reply,
    split_words,
    trigger_code,
    with_full_well,
    with_trigger_code,
)
from microct.drivers.dexela.driver import DexelaDetector, DexelaOptions
from microct.drivers.dexela.grabber import FolderChannel
from microct.errors import CommunicationError, DeviceTimeoutError, LimitError, ProtocolError
from microct.registry import load_driver
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings

FAST = SerialSettings(baudrate=115200, timeout_s=0.05)
# connect() writes nothing; the first use wakes the panel and sets the full-well mode (register 3) ...
PREPARE = [(b"WC1", b"X"), (b"W000300000", b"X")]
# ... and the held settings follow: trigger mode (register 0: software), exposure (the range's low end,
# 1 ms = 100 units of 10 µs: register 11 low word, 12 high word)
HELD = [(b"W000000000", b"X"), (b"W001100100", b"X"), (b"W001200000", b"X")]


def options(tmp_path, **fields) -> DexelaOptions:
    return DexelaOptions(rows=4, columns=3, frame_folder=str(tmp_path), **fields)


def connected(tmp_path, script, **fields):
    """A connected DexelaDetector on a scripted port playing ``script`` (connect writes nothing)."""
    transport, port = scripted_transport(script, FAST, name="dexela")
    detector = DexelaDetector("panel", options(tmp_path, **fields), transport=transport)
    detector.connect()
    return detector, port


# -- register codec --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("register", "value", "expected"), [
    (3, 4, b"W000300004"),          # the sheet's example: high full-well mode
    (0, 0x0060, b"W000000096"),     # edge trigger
    (0, 0x00A0, b"W000000160"),     # duration (bulb) trigger
    (11, 65535, b"W001165535"),
    (12, 0, b"W001200000"),
])
def test_writes_encode_as_in_the_sheet(register, value, expected):
    assert encode_write(register, value) == expected


def test_reads_use_sensor_digit_one_as_the_public_driver():
    assert encode_read(3) == b"R1003"
    assert encode_read(12) == b"R1012"


@pytest.mark.parametrize(("register", "value", "field"), [(0, 65536, "value"), (0, -1, "value"),
                                                          (1000, 0, "register")])
def test_a_value_or_register_outside_its_digits_is_refused(register, value, field):
    with pytest.raises(LimitError, match=rf"{field}={value if field == 'value' else register}: allowed 0-"):
        encode_write(register, value)


def test_write_replies():
    assert parse_write_reply(b"X") is True
    assert parse_write_reply(b"E") is False
    for garbled in (b"", b"XX", b"S00000", b"x"):
        with pytest.raises(ProtocolError, match="neither X"):
            parse_write_reply(garbled)


def test_read_replies():
    assert parse_read_reply(b"S00004") == 4
    assert parse_read_reply(b"S65535") == 65535
    assert parse_read_reply(b"E") is None
    for garbled in (b"S0004", b"S000004", b"Sabcde", b"X"):
        with pytest.raises(ProtocolError, match="neither S"):
            parse_read_reply(garbled)


def test_requests_parse_for_the_simulator_and_replies_format_with_cr():
    assert parse_request(b"WC1") == Request("wake")
    assert parse_request(b"W000300004") == Request("write", 0, 3, 4)
    assert parse_request(b"R1011") == Request("read", 1, 11)
    for garbled in (b"W00030004", b"R11", b"Q", b""):
        with pytest.raises(ProtocolError):
            parse_request(garbled)
    assert (format_reply(True), format_reply(False), format_reply(12)) == (b"X\r", b"E\r", b"S00012\r")


@pytest.mark.parametrize(("exposure_s", "ticks", "words"), [
    (0.001, 100, (100, 0)),
    (1.0, 100000, (34464, 1)),
    (0.65536, 65536, (0, 1)),
    (EXPOSURE_RANGE_S[1], 2 ** 32 - 1, (65535, 65535)),
    (0.0123456, 1235, (1235, 0)),   # whole 10 µs units, nearest
])
def test_exposure_is_whole_10us_units_split_into_two_words(exposure_s, ticks, words):
    assert exposure_to_ticks(exposure_s) == ticks
    assert split_words(ticks) == words
    assert join_words(*words) == ticks


@pytest.mark.parametrize("exposure_s", [4e-6, 0.0, EXPOSURE_RANGE_S[1] + 1e-5])
def test_exposure_outside_the_registers_is_refused(exposure_s):
    with pytest.raises(LimitError, match=f"exposure_s={exposure_s:g}: the registers hold 1e-05-42949.7 s"):
        exposure_to_ticks(exposure_s)


def test_trigger_mode_keeps_the_masked_bits_of_register_0():
    assert with_trigger_code(0xFFFF, 0x0060) == 0x071F | 0x0060
    assert with_trigger_code(0x071F | 0x00A0, 0x0000) == 0x071F
    assert trigger_code(0x071F | 0x00A0) == 0x00A0
    assert trigger_code(0x071F) == 0


def test_full_well_is_bit_0x4_of_register_3():
    assert with_full_well(0, True) == 4
    assert with_full_well(0xFFFF, False) == 0xFFFB
    assert with_full_well(4, True) == 4


# -- frame-channel codec ---------------------------------------------------------------------------------
def test_frames_round_trip_through_header_and_pixels():
    pixels = np.arange(12, dtype=np.uint16).reshape(4, 3) * 5000
    data = encode_frame(7, pixels)
    assert data[:4] == b"DXFR" and len(data) == 16 + 24
    assert parse_frame_header(data[:16]) == (7, 4, 3)
    np.testing.assert_array_equal(decode_pixels(data[16:], (4, 3), "frame 7"), pixels)
    with pytest.raises(ProtocolError, match=r"frame 7 has 22 bytes, expected 24 \(4 × 3 uint16\)"):
        decode_pixels(data[16:-2], (4, 3), "frame 7")
    with pytest.raises(ProtocolError, match="does not start with b'DXFR'"):
        parse_frame_header(b"XXXX" + data[4:16])


def test_frame_requests_and_file_names():
    assert encode_frame_request(12) == b"T12"
    assert encode_frame_request(None, wait_s=2.5) == b"N2500"
    assert parse_frame_request(b"T12") == (12, 0.0)
    assert parse_frame_request(b"N2500") == (None, 2.5)
    for garbled in (b"X1", b"N", b"T", b"T-1"):
        with pytest.raises(ProtocolError, match="not a frame request"):
            parse_frame_request(garbled)
    assert frame_file_name(12) == "frame_000012.raw"
    assert frame_file_name(12, TRIGGER_SUFFIX) == "frame_000012.trigger"
    assert frame_file_number("frame_000012.raw") == 12
    assert frame_file_number("frame_000012.trigger", TRIGGER_SUFFIX) == 12
    assert frame_file_number("frame_000012.trigger") is None
    assert frame_file_number("frame_000012.raw.part") is None


# -- options ---------------------------------------------------------------------------------------------
def test_options_default_to_the_sheet_line_and_one_sensor_tile(tmp_path):
    opts = options(tmp_path, serial={"timeout_s": 0.3})
    assert (opts.serial.baudrate, opts.serial.timeout_s) == (115200, 0.3)  # 115200 kept when other fields set
    assert (opts.serial.write_terminator, opts.serial.read_terminator) == ("\r", "\r")
    defaults = DexelaOptions(frame_folder=str(tmp_path))
    assert (defaults.rows, defaults.columns, defaults.pixel_pitch_um) == (1024, 1024, 74.8)
    assert load_driver("dexela", "detector", "detector.driver") is DexelaDetector


def test_exposure_range_is_the_config_range_within_the_registers(tmp_path):
    assert options(tmp_path, exposure_range_s=(1e-7, 1e6)).exposure_range() == EXPOSURE_RANGE_S
    assert options(tmp_path, exposure_range_s=(0.01, 5.0)).exposure_range() == (0.01, 5.0)
    with pytest.raises(ValidationError, match=r"exposure_range_s=\(50000.0, 60000.0\): must lie within"):
        options(tmp_path, exposure_range_s=(5e4, 6e4))


@pytest.mark.parametrize(("fields", "message"), [
    ({"frame_channel": "folder"}, "needs frame_folder"),
    ({"frame_channel": "tcp"}, "frame_address=None: .* needs 'host:port'"),
    ({"frame_channel": "tcp", "frame_address": "127.0.0.1"}, "needs 'host:port'"),
    ({"frame_channel": "tcp", "frame_address": "127.0.0.1:99999"}, "needs 'host:port'"),
])
def test_a_frame_channel_without_its_place_is_a_configuration_error(fields, message):
    with pytest.raises(ValidationError, match=message):
        DexelaOptions(**fields)


# -- driver: exact bytes -----------------------------------------------------------------------------------
def test_connect_writes_nothing_and_the_first_use_wakes_then_writes_full_well_trigger_and_exposure(tmp_path):
    detector, port = connected(tmp_path, [*PREPARE, *HELD])
    assert port.step == 0  # connect wrote nothing
    detector.set_trigger_mode(TriggerMode.SOFTWARE)
    detector.set_exposure_s(0.001)
    port.assert_done()
    assert detector.describe()["exposure_ticks"] == 100


def test_high_range_full_well_sets_bit_0x4(tmp_path):
    detector, port = connected(tmp_path, [PREPARE[0], (b"W000300004", b"X")], full_well="high-range")
    detector.set_binning(1)  # the first use; binning 1 writes nothing itself
    port.assert_done()


def test_exposure_writes_only_the_words_that_change(tmp_path):
    detector, port = connected(tmp_path, [*PREPARE, (b"W001134464", b"X"), (b"W001200001", b"X"),
                                          (b"W001100000", b"X")])
    detector.set_exposure_s(1.0)      # 100000 units: both words change
    detector.set_exposure_s(1.0)      # the same: nothing sent (the script fails on any extra write)
    detector.set_exposure_s(0.65536)  # 65536 units: the high word is already 1
    port.assert_done()
    assert detector.exposure_s == 0.65536


@pytest.mark.parametrize(("external_trigger", "sent"), [("edge", b"W000000096"), ("duration", b"W000000160")])
def test_trigger_modes_write_register_0(tmp_path, external_trigger, sent):
    detector, port = connected(tmp_path, [*PREPARE, (sent, b"X"), (b"W000000000", b"X")],
                               external_trigger=external_trigger)
    detector.set_trigger_mode(TriggerMode.EXTERNAL)
    detector.set_trigger_mode(TriggerMode.SOFTWARE)
    port.assert_done()
    with pytest.raises(LimitError, match="trigger_mode='internal'"):
        detector.set_trigger_mode(TriggerMode.INTERNAL)


def test_binning_is_1_only_and_sends_nothing(tmp_path):
    detector, port = connected(tmp_path, PREPARE)  # the first use's own
    detector.set_binning(1)
    with pytest.raises(LimitError, match=r"binning=2 is not one of \[1\]"):
        detector.set_binning(2)
    port.assert_done()


def test_an_e_reply_names_register_and_value_and_keeps_the_old_setting(tmp_path):
    detector, port = connected(tmp_path, [*PREPARE, (b"W001134464", b"E"), (b"W001134464", b"X"),
                                          (b"W001200001", b"X")])
    with pytest.raises(ProtocolError, match=r"detector 'panel': Dexela refused 'W001134464': register 11 "
                                            r"\(exposure, low word\) = 34464 \(reply E\)"):
        detector.set_exposure_s(1.0)
    assert detector.exposure_s == 0.001
    detector.set_exposure_s(1.0)  # the refused word was not recorded as written: it is sent again
    port.assert_done()


def test_a_garbled_reply_is_a_protocol_error_naming_the_command(tmp_path):
    detector, _ = connected(tmp_path, [*PREPARE, (b"W001134464", b"OK")])
    with pytest.raises(ProtocolError, match=r"'W001134464' \(register 11 .*= 34464\): reply b'OK' is neither X"):
        detector.set_exposure_s(1.0)


def test_no_reply_is_a_timeout_naming_the_command(tmp_path):
    detector, _ = connected(tmp_path, [*PREPARE, (b"W001134464", None)])
    with pytest.raises(DeviceTimeoutError, match=r"'W001134464' \(register 11 \(exposure, low word\) = 34464\) "
                                                 r"failed: .*no complete reply"):
        detector.set_exposure_s(1.0)


def test_a_detector_that_does_not_wake_is_refused_at_the_first_use(tmp_path):
    detector, port = connected(tmp_path, [(b"WC1", b"E")])
    with pytest.raises(ProtocolError, match=r"'WC1' \(wake-up\) answered b'E', not X"):
        detector.set_binning(1)
    assert not detector.prepared
    port.assert_done()


def test_verify_writes_reads_each_register_back(tmp_path):
    script = [PREPARE[0], PREPARE[1], (b"R1003", b"S00000"), HELD[0], (b"R1000", b"S00000"),
              HELD[1], (b"R1011", b"S00100"), HELD[2], (b"R1012", b"S00000")]
    detector, port = connected(tmp_path, script, verify_writes=True)
    detector.set_trigger_mode(TriggerMode.SOFTWARE)
    detector.set_exposure_s(0.001)
    port.assert_done()


def test_verify_writes_fails_on_a_unit_that_reads_zeros(tmp_path):
    script = [PREPARE[0], (b"W000300004", b"X"), (b"R1003", b"S00000")]
    detector, port = connected(tmp_path, script, full_well="high-range", verify_writes=True)
    with pytest.raises(ProtocolError, match=r"register 3 \(full-well mode\) reads back 0 after writing 4 "
                                            r"\(read-back is unreliable on some units: verify_writes = false\)"):
        detector.set_binning(1)
    assert not detector.prepared
    port.assert_done()


# -- the folder channel ------------------------------------------------------------------------------------
def grabber_writes(folder, number: int, data: bytes, delay_s: float = 0.02) -> threading.Thread:
    """Play the frame grabber: after ``delay_s``, write frame ``number`` as the channel expects."""
    def write() -> None:
        threading.Event().wait(delay_s)
        (folder / "partial").write_bytes(data)
        (folder / "partial").rename(folder / frame_file_name(number))
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_the_folder_channel_skips_old_frames_triggers_reads_and_deletes(tmp_path):
    (tmp_path / frame_file_name(41)).write_bytes(b"old")
    channel = FolderChannel(tmp_path)
    assert channel.open() == 42  # frames already there are never read
    channel.request(42)
    assert (tmp_path / "frame_000042.trigger").exists()
    pixels = np.arange(12, dtype=np.uint16).reshape(4, 3)
    grabber_writes(tmp_path, 42, pixels.astype("<u2").tobytes()).join()
    number, received = channel.receive(42, (4, 3), timeout_s=1.0)
    assert number == 42
    np.testing.assert_array_equal(received, pixels)
    assert not (tmp_path / frame_file_name(42)).exists()


def test_the_folder_channel_can_keep_files_and_awaits_external_frames_without_a_trigger(tmp_path):
    channel = FolderChannel(tmp_path, keep_files=True)
    channel.open()
    channel.request(None)
    assert list(tmp_path.iterdir()) == []
    thread = grabber_writes(tmp_path, 0, bytes(24))
    assert channel.receive(0, (4, 3), timeout_s=1.0)[1].shape == (4, 3)
    thread.join()
    assert (tmp_path / frame_file_name(0)).exists()


def test_the_folder_channel_times_out_naming_folder_and_file_and_withdraws_the_trigger(tmp_path):
    channel = FolderChannel(tmp_path)
    channel.request(5)
    with pytest.raises(DeviceTimeoutError, match=rf"frame 5 did not come on the frame folder {tmp_path} within "
                                                 r"0.05 s \(no file frame_000005.raw\)"):
        channel.receive(5, (4, 3), timeout_s=0.05)
    assert not (tmp_path / "frame_000005.trigger").exists()


def test_a_frame_file_of_the_wrong_size_is_a_protocol_error_naming_it(tmp_path):
    (tmp_path / frame_file_name(0)).write_bytes(bytes(10))
    with pytest.raises(ProtocolError, match=r"frame_000000.raw has 10 bytes, expected 24 \(4 × 3 uint16\)"):
        FolderChannel(tmp_path).receive(0, (4, 3), timeout_s=0.1)


def test_a_missing_frame_folder_fails_connect_and_closes_the_port(tmp_path):
    transport, port = scripted_transport([], FAST)
    detector = DexelaDetector("panel", DexelaOptions(frame_folder=str(tmp_path / "absent")), transport=transport)
    with pytest.raises(CommunicationError, match="frame folder .*absent does not exist"):
        detector.connect()
    assert not detector.connected and not port.is_open
