"""Fixtures of the fault-injection tests: ``make_rig`` (see ``fault_helpers.build_rig``) and the
sequencer tests' ``make_scan``."""

from __future__ import annotations

import pytest
from fault_helpers import Rig, build_rig, make_scan  # noqa: F401  (make_scan: a fixture, registered here)


@pytest.fixture
def make_rig():
    """make_rig(faults) -> a connected Rig (``build_rig``), closed after the test."""
    rigs: list[Rig] = []

    def make(faults=()) -> Rig:
        rigs.append(build_rig(faults))
        return rigs[-1]

    yield make
    for rig in rigs:
        for device in (rig.detector, rig.sample_out, rig.rotation, rig.source):
            device.close()
