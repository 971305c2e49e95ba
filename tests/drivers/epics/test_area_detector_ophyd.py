"""Fidelity: ophyd's areaDetector classes (a client no one here wrote) acquire from the simulated IOC."""

from __future__ import annotations

import os

import numpy as np
import pytest

ophyd = pytest.importorskip("ophyd")
from ophyd import ADComponent, DetectorBase, ImagePlugin, SingleTrigger  # noqa: E402
from ophyd.areadetector.cam import AreaDetectorCam  # noqa: E402

from microct.clock import Clock  # noqa: E402
from microct.simulators.bench import Bench  # noqa: E402
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions  # noqa: E402
from microct.simulators.epics_ad_ioc import start_ad_ioc  # noqa: E402

PORTS = {role: int(port) for role, port in (item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())}


class CTPanel(SingleTrigger, DetectorBase):
    cam = ADComponent(AreaDetectorCam, "cam1:")
    image1 = ADComponent(ImagePlugin, "image1:")


@pytest.fixture
def ioc():
    panel = SimulatedDetector("panel", SimulatedDetectorOptions(rows=32, columns=40, read_noise=0.0),
                              Bench(clock=Clock(), seed=5))
    handle = start_ad_ioc("OPH:", panel, PORTS["ad_spare"])
    yield handle
    handle.stop()


def test_ophyd_single_trigger_acquires_an_image_from_the_simulated_ioc(ioc):
    det = CTPanel("OPH:", name="det")
    det.wait_for_connection(timeout=5)
    det.cam.acquire_time.set(0.02).wait(5)
    det.stage()
    try:
        det.trigger().wait(5)  # Acquire 1 → Acquire_RBV back to 0, as on a real IOC
        size = det.image1.array_size.get()  # (depth, height, width) = ArraySize2/1/0_RBV
        pixels = det.image1.array_data.get()
    finally:
        det.unstage()
    # (ophyd's ImagePlugin.image multiplies in depth = ArraySize2_RBV, which areaDetector sets to 0 for a
    # 2-D array, and gets 0 pixels; so the image is shaped here from ophyd's own size signals)
    assert (size.depth, size.height, size.width) == (0, 32, 40)
    dark = np.asarray(pixels).view(np.uint16).reshape(size.height, size.width)  # int16 on the wire
    assert dark.mean() == pytest.approx(100, abs=15)  # no tube: the panel's dark offset
    assert det.cam.array_counter.get() == ioc.ioc.frames_made == det.image1.unique_id.get()
    assert det.cam.detector_state.get(as_string=True) == "Idle"
