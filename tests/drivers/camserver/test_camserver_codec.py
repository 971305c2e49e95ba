"""The camserver codec, models and driver against the notes (docs/protocols/dectris-camserver.md): pure
codec functions, and scripted byte exchanges (no server) with image files put where the driver reads."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import tifffile
from pydantic import ValidationError

from microct.clock import SimulatedClock
from microct.driverkit import ErrorReply
from microct.drivers.camserver import codec, models
from microct.drivers.camserver.driver import CamserverDetector, CamserverOptions
from microct.errors import ConfigurationError, DeviceTimeoutError, ProtocolError
from microct.registry import load_driver
from microct.testing.exchange import scripted_transport
from microct.transport import SerialSettings

# -- commands and replies -----------------------------------------------------------------------------------
SHEET_REPLIES = [b"15 OK N images set to: 10", b"15 OK Exposure time set to: 0.9970000 sec",
                 b"15 OK Exposure period set to: 0.2000000 sec", b"10 OK /ramdisk/x/",
                 b"15 OK  Starting 0.1970000 second background: 2011-Aug-04T15:27:22.593",
                 b"7 OK /path/scan_0300.tif", b"13 ERR kill", b"1 ERR *** Unrecognized command: threshold",
                 b"15 ERR ERROR: unknown gain setting: low 5000", b"24 OK Code release: 7.9.0",
                 b"215 OK Channel 0: Temperature = 31.4C, Rel. Humidity = 22.1%;", b"1 ERR access denied"]


@pytest.mark.parametrize("raw", SHEET_REPLIES)
def test_sheet_replies_parse_and_format_back_unchanged(raw):
    assert codec.format_reply(codec.parse_reply(raw)) == raw + b"\x18"


def test_parsed_replies_keep_code_status_and_text():
    assert codec.parse_reply(b"13 ERR kill") == codec.Reply(13, False, "kill")
    starting = codec.parse_reply(SHEET_REPLIES[4])
    assert (starting.code, starting.ok) == (15, True) and starting.text.startswith(" Starting")  # two spaces


@pytest.mark.parametrize("raw", [b"OK 15", b"15 YES fine", b"", b"15OK x"])
def test_garbled_replies_are_protocol_errors(raw):
    with pytest.raises(ProtocolError, match="garbled reply"):
        codec.parse_reply(raw)


def test_reply_texts_match_the_sheet_transcript():
    assert codec.n_images_text(10) == "N images set to: 10"
    assert codec.exposure_time_text(0.997) == "Exposure time set to: 0.9970000 sec"
    assert codec.exposure_period_text(0.2) == "Exposure period set to: 0.2000000 sec"
    assert codec.image_path_text("/ramdisk/x") == codec.image_path_text("/ramdisk/x/") == "/ramdisk/x/"
    when = datetime(2011, 8, 4, 15, 27, 22, 593000)
    assert codec.starting_text(0.197, when) == " Starting 0.1970000 second background: 2011-Aug-04T15:27:22.593"
    assert codec.unrecognized_text("threshold") == "*** Unrecognized command: threshold"


@pytest.mark.parametrize(("word", "name"), [
    ("ni", "NImages"), ("expt", "ExpTime"), ("expp", "ExpPeriod"), ("expo", "Exposure"), ("setthr", "SetThreshold"),
    ("NIMAGES", "NImages"), ("k", "K"), ("imgpath", "ImgPath"), ("version", "Version"), ("thread", "THread"),
    ("exp", None), ("e", None), ("d", None), ("threshold", None), ("", None), ("nimagesx", None)])
def test_commands_are_case_insensitive_unambiguous_prefixes(word, name):
    assert codec.resolve_command(word) == name


def test_reply_codes_follow_the_table():
    assert [codec.reply_code(n) for n in ("Exposure", "ImgPath", "K", "Version", "THread", "NImages", "ExpTime")] \
        == [7, 10, 13, 24, 215, 15, 15]


# -- file names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "n", "names"), [
    ("scan.tif", 3, ["scan_00000.tif", "scan_00001.tif", "scan_00002.tif"]),
    ("scan_0298.tif", 3, ["scan_0298.tif", "scan_0299.tif", "scan_0300.tif"]),
    ("scan_12.tif", 2, ["scan_012.tif", "scan_013.tif"]),          # width at least 3
    ("a_b_99999.tif", 2, ["a_b_99999.tif", "a_b_100000.tif"]),
    ("scan_x.tif", 2, ["scan_x_00000.tif", "scan_x_00001.tif"]),   # no digits after the last underscore
    ("raw", 2, ["raw_00000", "raw_00001"]),
    ("scan.tif", 1, ["scan.tif"]),                                 # one image: the name as given
])
def test_series_names_follow_the_sheet(name, n, names):
    assert codec.series_names(name, n) == names


# -- TIFF files ---------------------------------------------------------------------------------------------
def test_tiff_files_are_readable_by_tifffile_with_a_4096_byte_header(tmp_path):
    counts = np.arange(-2, 487 * 195 - 2, dtype=np.int32).reshape(195, 487)
    data = codec.encode_tiff(counts, "# Detector: PILATUS 100K")
    assert data[:4] == b"II*\x00" and len(data) == codec.tiff_size(195, 487) == 4096 + 195 * 487 * 4
    assert np.array_equal(np.frombuffer(data, "<i4", offset=4096).reshape(195, 487), counts)
    (tmp_path / "a.tif").write_bytes(data)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        page = tif.pages[0]
        assert page.description == "# Detector: PILATUS 100K"
        assert np.array_equal(page.asarray(), counts) and page.dtype == np.int32
    assert codec.parse_tiff_header(data[:4096]) == codec.TiffLayout(195, 487, 4096)


def test_tiff_header_checks_name_the_problem():
    good = codec.encode_tiff(np.zeros((4, 3), np.int32), "x")
    with pytest.raises(ProtocolError, match=r"not a TIFF file \(starts with b'GIF8'\)"):
        codec.parse_tiff_header(b"GIF89a" + good[6:4096])
    unsigned = bytearray(good[:4096])
    entry = unsigned.index(bytes.fromhex("5301 0300 01000000 0200"))  # SampleFormat = 2 (signed)
    unsigned[entry + 8] = 1
    with pytest.raises(ProtocolError, match="not one uncompressed strip of 32-bit signed pixels"):
        codec.parse_tiff_header(bytes(unsigned))
    with pytest.raises(ValueError, match="does not fit"):
        codec.encode_tiff(np.zeros((2, 2), np.int32), "x" * 4000)


# -- pixels and sizes ---------------------------------------------------------------------------------------
def test_frames_clip_to_uint16_and_masked_pixels_read_zero():
    counts = np.array([[-1, -2, 0, 5], [65535, 65536, 1 << 20, -7]], np.int32)
    assert codec.frame_from_counts(counts).tolist() == [[0, 0, 0, 5], [65535, 65535, 65535, 0]]
    assert codec.frame_from_counts(counts).dtype == np.uint16
    assert codec.mask_from_counts(counts).tolist() == [[1, 2, 0, 0], [0, 0, 0, 2]]
    assert codec.mask_from_counts(counts).dtype == np.uint32


@pytest.mark.parametrize(("model", "grid"), [("100K", (1, 1)), ("200K", (1, 2)), ("300K", (1, 3)),
                                             ("300K-W", (3, 1)), ("1M", (2, 5)), ("2M", (3, 8)), ("6M", (5, 12))])
def test_every_size_of_the_sheet_is_a_module_grid(model, grid):
    width, height = models.SIZES[model]
    assert models.module_grid(width, height) == grid
    gaps = models.gap_mask(width, height)
    across, down = grid
    assert gaps.shape == (height, width)
    assert (~gaps).sum() == across * down * 487 * 195


def test_gap_rows_and_columns_lie_between_modules():
    gaps = models.gap_mask(981, 407)  # 2 × 2 modules
    assert gaps[195:212].all() and not gaps[194, :487].any() and not gaps[212, :487].any()
    assert gaps[:, 487:494].all() and not gaps[:195, 486].any() and not gaps[:195, 494].any()
    with pytest.raises(ValueError, match="not a grid"):
        models.module_grid(500, 195)


# -- options ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"image_path": "ramdisk/x"}, "image_path"),
    ({"image_path": "/ram disk"}, "image_path"),
    ({"image_path": "/x", "model": "500K"}, "model"),
    ({"image_path": "/x", "readout_s": 0.0005}, "readout_s"),
    ({"image_path": "/x", "exposure_range_s": (0.1, 0.01)}, "exposure_range_s"),
    ({"image_path": "/x", "file_stem": "a/b"}, "file_stem"),
    ({"image_path": "/x", "binning": 2}, "binning"),
    ({"image_path": "/x", "visa": {"timeout_s": -1}}, "visa.timeout_s"),
])
def test_bad_options_are_refused_naming_the_field(options, message):
    with pytest.raises((ValidationError, ConfigurationError), match=message):
        CamserverOptions(**options)


def test_registered_as_a_visa_detector_driver():
    cls = load_driver("camserver", "detector", "detector.driver")
    assert cls is CamserverDetector and cls.backend == "VISA"


def test_a_resource_is_required():
    with pytest.raises(ConfigurationError, match=r"det.connection: .*TCPIP::.*::41234::SOCKET"):
        CamserverDetector("det", CamserverOptions(image_path="/x"))


# -- the driver against scripted exchanges ------------------------------------------------------------------
LINK = SerialSettings(timeout_s=0.05, read_terminator="\x18", write_terminator="\n")
STARTING = b"15 OK  Starting 0.0010000 second background: 2011-Aug-04T15:27:22.593"
CONNECT = [(b"Version", b"24 OK Code release: 7.9.0")]  # a query: connect sets nothing
IMG_PATH = (b"ImgPath /ramdisk/x", b"10 OK /ramdisk/x/")  # at the first use
FIRST_ACQUISITION = [IMG_PATH,
                     (b"ExpTime 0.0010000", b"15 OK Exposure time set to: 0.0010000 sec"),   # the held 1 ms ...
                     (b"ExpPeriod 0.0020000", b"15 OK Exposure period set to: 0.0020000 sec")]  # ... and 2 ms
ROWS, COLUMNS = 195, 487  # a 100K


def series(first: int, n: int, last: int | None = None) -> list[tuple[bytes, bytes]]:
    """NImages (if given) and Exposure of ``n`` images from file number ``first``, answered 15 then 7."""
    last = first + n - 1 if last is None else last
    return [(f"Exposure microct_{first:05d}.tif".encode(),
             (STARTING, f"7 OK /ramdisk/x/microct_{last:05d}.tif".encode()))]


def image(value: int) -> np.ndarray:
    counts = np.full((ROWS, COLUMNS), value, np.int32)
    counts[0, :3] = [-1, -2, 70000]
    return counts


def connected(script, folder, images=None, first=FIRST_ACQUISITION, **options):
    """A 100K on a scripted link (``CONNECT``, ``first``: what the first use sends, and ``script``) and a
    simulated clock; ``images`` maps a command to the files (name → bytes) that appear in ``folder`` once
    the driver has sent it."""
    transport, port = scripted_transport(CONNECT + first + script, LINK, name="detector 'det'")
    written = port.write

    def write(data: bytes) -> int:
        count = written(data)
        for name, content in (images or {}).get(data.rstrip(b"\n"), {}).items():
            (folder / name).write_bytes(content)
        return count

    port.write = write
    opts = CamserverOptions(**{"model": "100K", "image_path": "/ramdisk/x", "local_image_path": str(folder),
                               "margin_s": 0.5, **options})
    detector = CamserverDetector("det", opts, transport=transport, clock=SimulatedClock())
    detector.connect()
    return detector, port


def tiffs(first: int, *values: int) -> dict[str, bytes]:
    return {f"microct_{first + i:05d}.tif": codec.encode_tiff(image(v)) for i, v in enumerate(values)}


def test_connect_identifies_and_sets_nothing(tmp_path):
    detector, port = connected([], tmp_path, first=[])
    port.assert_done()
    assert detector.describe()["version"] == "Code release: 7.9.0"
    mask = detector.pixel_mask
    assert mask.shape == (195, 487) and not mask.any()  # one module: no gaps


def test_only_changed_settings_are_sent(tmp_path):
    detector, port = connected([(b"ExpTime 0.5000000", b"15 OK Exposure time set to: 0.5000000 sec"),
                                (b"ExpPeriod 0.5009500", b"15 OK Exposure period set to: 0.5009500 sec")],
                               tmp_path)
    detector.set_exposure_s(0.001)  # the first use: ImgPath, then the 1 ms (FIRST_ACQUISITION)
    detector.set_exposure_s(0.001)  # as sent: nothing
    detector.set_exposure_s(0.5)    # period = exposure + 0.95 ms
    detector.set_exposure_s(0.5)
    port.assert_done()


def test_acquire_reads_each_file_then_the_final_reply(tmp_path):
    script = [(b"NImages 2", b"15 OK N images set to: 2"), *series(0, 2),
              *series(2, 2)]  # NImages unchanged: not sent again
    detector, port = connected(script, tmp_path, {b"Exposure microct_00000.tif": tiffs(0, 10, 11),
                                                  b"Exposure microct_00002.tif": tiffs(2, 12, 13)})
    frames = detector.acquire(2) + detector.acquire(2)
    port.assert_done()
    assert [f.frame_number for f in frames] == [0, 1, 2, 3]
    assert [int(f.data[5, 5]) for f in frames] == [10, 11, 12, 13]
    assert frames[0].data.dtype == np.uint16 and frames[0].data[0, :4].tolist() == [0, 0, 65535, 10]
    assert detector.pixel_mask[0, :4].tolist() == [1, 2, 0, 0]
    assert list(tmp_path.iterdir()) == []  # read files are deleted
    assert frames[1].timestamp - frames[0].timestamp == pytest.approx(0.002, abs=1e-6)  # one period apart


def test_keep_files_keeps_them_and_later_series_number_past_them(tmp_path):
    script = [(b"NImages 1", b"15 OK N images set to: 1"), *series(0, 1)]
    detector, port = connected(script, tmp_path, {b"Exposure microct_00000.tif": tiffs(0, 1)}, keep_files=True)
    detector.acquire(1)
    assert [p.name for p in tmp_path.iterdir()] == ["microct_00000.tif"]
    (tmp_path / "microct_00001.tif").write_bytes(b"left by an earlier session")
    # a new session starts at 00000, which is taken: it numbers past the highest file there
    detector2, port2 = connected(script[:1] + series(2, 1), tmp_path, {b"Exposure microct_00002.tif": tiffs(2, 2)})
    assert detector2.acquire(1)[0].frame_number == 2
    port.assert_done()
    port2.assert_done()


def test_an_err_reply_is_an_error_naming_the_command(tmp_path):
    detector, _ = connected([(b"ExpTime 0.2000000", b"15 ERR ERROR: exposure time out of range")], tmp_path,
                            first=[IMG_PATH])
    with pytest.raises(ErrorReply, match=r"detector 'det': 'ExpTime 0.2000000' was refused: "
                                         r"'15 ERR ERROR: exposure time out of range'"):
        detector.set_exposure_s(0.2)
    assert detector.exposure_s == 0.001


def test_access_denied_says_another_client_has_control(tmp_path):
    transport, _ = scripted_transport([CONNECT[0], (b"ImgPath /ramdisk/x", b"1 ERR access denied")], LINK)
    detector = CamserverDetector("det", CamserverOptions(image_path="/ramdisk/x", local_image_path=str(tmp_path)),
                                 transport=transport)
    detector.connect()  # a query only: a read-only client may connect (microct check)
    with pytest.raises(ErrorReply, match="'ImgPath /ramdisk/x' was refused: '1 ERR access denied'; another client "
                                         "has control"):
        detector.acquire(1)  # the first use sets the image path


def test_a_folder_this_pc_cannot_see_is_a_configuration_error_at_the_first_use(tmp_path):
    detector, port = connected([], tmp_path / "missing", first=[IMG_PATH])
    check = {finding.item: finding for finding in detector.check()}["local_image_path"]
    assert check.level == "warning" and "creates ImgPath /ramdisk/x/ at the first use" in check.text
    with pytest.raises(ConfigurationError, match=r"local_image_path='.*missing' is not a folder here.*/ramdisk/x/"):
        detector.acquire(1)
    port.assert_done()


def test_a_missing_file_stops_the_series_with_k_and_names_the_file(tmp_path):
    script = [(b"NImages 2", b"15 OK N images set to: 2"), (b"Exposure microct_00000.tif", STARTING),
              (b"K", (b"13 ERR kill", b"7 OK /ramdisk/x/microct_00000.tif"))]
    detector, port = connected(script, tmp_path, {b"Exposure microct_00000.tif": tiffs(0, 1)})
    with pytest.raises(DeviceTimeoutError, match=r"image file .*microct_00001.tif \(frame 2 of 2 of 'Exposure "
                                                 r"microct_00000.tif'\) did not appear within 0.5\d* s of the start; "
                                                 r"K sent: camserver stopped the series"):
        detector.acquire(2)
    port.assert_done()
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_file_is_reported_with_its_size(tmp_path):
    script = [(b"NImages 1", b"15 OK N images set to: 1"), (b"Exposure microct_00000.tif", STARTING),
              (b"K", (b"13 OK kill", b"7 OK /ramdisk/x/microct_00000.tif"))]
    short = {"microct_00000.tif": codec.encode_tiff(image(1))[:5000]}
    detector, port = connected(script, tmp_path, {b"Exposure microct_00000.tif": short})
    with pytest.raises(DeviceTimeoutError, match=r"microct_00000.tif .* stayed incomplete \(5000 of 383956 bytes\)"):
        detector.acquire(1)
    port.assert_done()


@pytest.mark.parametrize(("content", "message"), [
    (codec.encode_tiff(np.zeros((195, 488), np.int32)), r"has 384736 bytes; a 100K image file has 383956"),
    (codec.encode_tiff(np.zeros((487, 195), np.int32)), r"195 × 487 pixels from byte 4096; a 100K image is 487 × 195"),
    (b"\0" * 383956, r"not a TIFF file"),
])
def test_a_wrong_file_is_a_protocol_error_after_k(tmp_path, content, message):
    script = [(b"NImages 1", b"15 OK N images set to: 1"), (b"Exposure microct_00000.tif", STARTING),
              (b"K", (b"13 OK kill", b"7 OK /ramdisk/x/microct_00000.tif"))]
    detector, port = connected(script, tmp_path, {b"Exposure microct_00000.tif": {"microct_00000.tif": content}})
    with pytest.raises(ProtocolError, match=message + ".*K sent"):
        detector.acquire(1)
    port.assert_done()


def test_a_final_reply_naming_another_file_is_a_protocol_error(tmp_path):
    script = [(b"NImages 1", b"15 OK N images set to: 1"), *series(0, 1, last=7)]
    detector, _ = connected(script, tmp_path, {b"Exposure microct_00000.tif": tiffs(0, 1)})
    with pytest.raises(ProtocolError, match=r"ended with '7 OK /ramdisk/x/microct_00007.tif', expected the last file "
                                            r"/ramdisk/x/microct_00000.tif"):
        detector.acquire(1)


def test_a_refused_exposure_names_it_and_needs_no_k(tmp_path):
    script = [(b"NImages 1", b"15 OK N images set to: 1"),
              (b"Exposure microct_00000.tif", b"15 ERR ERROR: an exposure series is running (K stops it)")]
    detector, port = connected(script, tmp_path)
    with pytest.raises(ErrorReply, match=r"'Exposure microct_00000.tif' was refused: '15 ERR ERROR: an exposure"):
        detector.acquire(1)
    port.assert_done()  # a K would have failed the script
