"""The areaDetector vocabulary (``epics_area_detector.codec`` / ``models``) and the simulated IOC built from it:
the IOC serves every PV the driver connects, starts at the driver's PerkinElmer defaults, and frames survive the
int16 wire (no Channel Access traffic)."""

from __future__ import annotations

import numpy as np

from microct.clock import Clock
from microct.drivers.epics_area_detector import codec
from microct.drivers.epics_area_detector.models import CAM_PREFIX, HDF_PREFIX, IMAGE_PREFIX, PerkinElmerOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.epics_ad_ioc import build

PREFIX = "CODEC:DET1:"


def test_the_ioc_serves_every_pv_the_driver_connects_at_the_drivers_defaults():
    panel = SimulatedDetector("panel", SimulatedDetectorOptions(rows=8, columns=6), Bench(clock=Clock(), seed=1))
    ioc = build(PREFIX, panel, vendor="perkinelmer")
    try:
        served = set(ioc.pvdb)
        for plugin, table in ((CAM_PREFIX, codec.CAM), (IMAGE_PREFIX, codec.IMAGE), (HDF_PREFIX, codec.HDF),
                              (CAM_PREFIX, codec.PERKINELMER)):
            assert {PREFIX + plugin + name for name in table.values()} <= served, plugin
        defaults = PerkinElmerOptions()
        pv = {key: ioc.pvdb[PREFIX + CAM_PREFIX + name] for key, name in codec.PERKINELMER.items()}
        assert pv["pe_num_offset_frames"].value == defaults.num_offset_frames
        assert pv["pe_num_gain_frames"].value == defaults.num_gain_frames
        assert pv["pe_offset_constant"].value == defaults.offset_constant
        assert pv["pe_use_offset"].value == codec.DISABLE_ENABLE[defaults.use_offset]
        assert tuple(ioc.pvdb[PREFIX + CAM_PREFIX + codec.CAM["state"]].enum_strings) == codec.DETECTOR_STATES
        assert ioc.pvdb[PREFIX + HDF_PREFIX + codec.HDF["file_template"]].value == codec.FILE_TEMPLATE
    finally:
        panel.close()


def test_uint16_frames_survive_the_int16_wire():
    frame = np.array([[0, 1, 32767], [32768, 40000, 65535]], dtype=np.uint16)
    wire = codec.pixels_to_wire(frame)
    assert wire.dtype == np.int16 and wire.shape == (6,) and wire[3] == -32768
    assert np.array_equal(codec.pixels_from_wire(wire, 2, 3), frame)


def test_file_names_and_array_sizes():
    assert codec.file_name(codec.FILE_TEMPLATE, "/data/ct/", "scan", 7) == "/data/ct/scan_000007.h5"
    assert codec.max_array_bytes(2048, 2048) == 2048 * 2048 * 2 + codec.ARRAY_HEADROOM_BYTES
    assert codec.setpoint(codec.CAM["counter"]) == "ArrayCounter"
    assert codec.is_on(1, codec.DONE_CAPTURE) and codec.is_on("Capture", codec.DONE_CAPTURE)
    assert not codec.is_on(0, codec.DONE_ACQUIRE) and not codec.is_on("Done", codec.DONE_ACQUIRE)
