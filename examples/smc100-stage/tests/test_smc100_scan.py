"""A whole CT scan with the SMC100 as the rotation stage (over each serial link) and microct's in-process
simulators for the tube and the panel."""

from __future__ import annotations

import h5py
import pytest

from microct.testing.rigs import SERIAL_LINKS, fast_socket_close, run_small_scan, scan_with, served
from microct_smc100.simulator import SMC100Responder

FAST = {"max_velocity": 720.0, "acceleration": 7200.0}
PLANNED = [0.0, 45.0, 90.0, 135.0]
"""The small scan's projection angles: 4 over 180 deg from 0, end angle excluded."""


@pytest.fixture(autouse=True)
def _fast_socket_close(monkeypatch):
    fast_socket_close(monkeypatch)


@pytest.mark.parametrize("link", SERIAL_LINKS)
def test_a_small_scan_with_the_smc100_as_rotation_stage(tmp_path, link):
    smc = SMC100Responder(overrides=FAST)
    with served(smc, link, name="smc100") as served_link:
        data = scan_with({"rotation": {"driver": "smc100", "connection": served_link.address,
                                       "options": {"overrides": FAST}}})
        result = run_small_scan(data, tmp_path / "scan.nxs")
    assert (result.status, result.darks, result.flats, result.projections) == ("complete", 1, 0, 4)
    with h5py.File(result.path, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
        angles = f["entry/sample/rotation_angle"][()]
        assert f["entry/instrument/detector/data"].shape[0] == len(keys) == 5
    assert list(keys) == [2, 0, 0, 0, 0]
    assert list(angles[keys == 0]) == pytest.approx(PLANNED, abs=0.001)  # measured (TP), as planned
    assert smc.axis.true_position() == pytest.approx(0.0, abs=0.001)  # back at the start
    assert smc.state == "33"  # READY from MOVING: the controller saw every move end
