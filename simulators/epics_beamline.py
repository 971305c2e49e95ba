"""A whole simulated CT over Channel Access: tube, two motor records and an areaDetector, one IOC.

Under a ``prefix`` (default ``CT:``) it serves ``XRAY:`` (the tube PVs of epics_ioc), the motor
records ``ROT:m1`` (rotation, deg) and ``SMP:m2`` (sample out, mm), and the areaDetector ``DET1:``
(``cam1:``, ``image1:``, ``HDF1:``). They share one physical model, as the instruments of a real
CT share one beam: the panel images its phantom through the simulated tube and at the pose of the
simulated stages behind the PVs, so a scan driven over Channel Access sees the sample rotate.
The defaults match ``configs/sim-epics.toml`` (magnification 10, 512 × 512 panel of 200 µm, the
BGA phantom).

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube, the stages and the panel
play "source", "rotation", "sample_out" and "detector": arcs and interlock openings (by time, or offered
mid-exposure by the panel), stage stalls and limit switches, dropped and late frames (see the IOC
modules for how each shows in the PVs). The tube's PVs are refreshed before each frame is published,
so a client that has a frame also has the tube state it was taken in. The tube answers reads late for a
reply_timeout, and for a disconnect closes every client circuit of the IOC instead of answering (see
epics_ioc); other request faults are not played over Channel Access: a schedule holding some is refused
(ConfigurationError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from microct.clock import Clock
from microct.errors import ConfigurationError
from microct.faults import FaultPlan
from microct.geometry import Geometry
from microct.simulators import epics_ad_ioc, epics_ioc, epics_motor_ioc
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.epics_ioc import IocHandle, refuse_request_faults, run_ioc_in_thread, silences_of
from microct.simulators.faults import BEAM_KINDS, FRAME_KINDS, STAGE_KINDS, FaultSchedule, require_fireable
from microct.simulators.serving import check_options, check_port
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions

SOURCE, ROTATION, SAMPLE_OUT, DETECTOR = "XRAY:", "ROT:m1", "SMP:m2", "DET1:"
"""PV prefixes (records) under the beamline prefix."""

DEFAULT_GEOMETRY = Geometry(source_object_distance_mm=50.0, source_detector_distance_mm=500.0)
DEFAULT_PANEL = SimulatedDetectorOptions(rows=512, columns=512, pixel_pitch_um=200.0, phantom="bga")
DEFAULT_ROTATION = SimulatedAxisOptions(unit="deg", max_velocity=720.0, acceleration=1e4)
DEFAULT_SAMPLE_OUT = SimulatedAxisOptions(unit="mm", max_velocity=100.0, acceleration=1e3)


@dataclass
class Beamline:
    """The shared models behind the PVs (for tests: fault a tube, read a stage) and the IOC handle."""

    source: SimulatedSource
    rotation: SimulatedAxis
    sample_out: SimulatedAxis
    panel: SimulatedDetector
    handle: IocHandle

    def stop(self) -> None:
        self.handle.stop()


def start_beamline(prefix: str = "CT:", port: int = 0, *, source: SimulatedSourceOptions | None = None,
                   panel: SimulatedDetectorOptions | None = None, geometry: Geometry | None = None,
                   rotation: SimulatedAxisOptions | None = None, sample_out: SimulatedAxisOptions | None = None,
                   seed: int | None = None, faults: FaultSchedule | None = None, timeout_s: float = 5.0,
                   reply_late_s: float = epics_ioc.REPLY_LATE_S) -> Beamline:
    """Serve the beamline's PVs on 127.0.0.1:``port`` (0: a free one) from a daemon thread, with the
    physics and frame faults of ``faults`` (and the tube's late replies, ``reply_late_s`` late)."""
    refuse_request_faults(faults, "rotation", "sample_out", "detector")
    tube, tube_ioc = epics_ioc.build(prefix + SOURCE, source, faults, "source", reply_late_s)
    rotation_ioc = epics_motor_ioc.build(prefix + ROTATION, rotation or DEFAULT_ROTATION, high_limit=0.0,
                                         low_limit=0.0, faults=faults, role="rotation")  # both 0: no soft limits
    sample_ioc = epics_motor_ioc.build(prefix + SAMPLE_OUT, sample_out or DEFAULT_SAMPLE_OUT, high_limit=100.0,
                                       low_limit=-100.0, faults=faults, role="sample_out")
    rotation_axis, sample_axis = rotation_ioc.axis, sample_ioc.axis
    bench = Bench(clock=Clock(), geometry=geometry or DEFAULT_GEOMETRY, seed=seed, faults=faults,
                  devices={"source": tube, "rotation": rotation_axis, "sample_out": sample_axis})
    detector = SimulatedDetector("detector", panel or DEFAULT_PANEL, bench)
    ad_ioc = epics_ad_ioc.build(prefix + DETECTOR, detector)
    ad_ioc.before_publish = tube_ioc.refresh  # the tube's state reaches clients before the frame does
    pvdb = {**tube_ioc.pvdb, **rotation_ioc.pvdb, **sample_ioc.pvdb, **ad_ioc.pvdb}
    handle = run_ioc_in_thread(pvdb, f"beamline {prefix}", port, timeout_s, faults,
                               silences_of(tube_ioc, rotation_ioc, sample_ioc, ad_ioc))
    tube_ioc.drop_link = handle.drop_clients  # a disconnect of the tube: every circuit of the one IOC
    return Beamline(tube, rotation_axis, sample_axis, detector, handle)


class ServedBeamline:
    """The beamline as ``microct sim serve epics`` serves it (see ``microct.registry.Served``)."""

    def __init__(self, beamline: Beamline, prefix: str) -> None:
        self.beamline = beamline
        port = beamline.handle.port
        self.address = f"{prefix} 127.0.0.1:{port}"
        names = ", ".join(prefix + name for name in (SOURCE, ROTATION, SAMPLE_OUT, DETECTOR))
        self.hint = (f" ({names}); clients set EPICS_CA_ADDR_LIST=127.0.0.1:{port} EPICS_CA_AUTO_ADDR_LIST=NO "
                     f"EPICS_CA_MAX_ARRAY_BYTES=10000000")

    def stop(self) -> None:
        self.beamline.stop()


PLAYS = {"source": BEAM_KINDS | set(epics_ioc.TUBE_PLAYS), "rotation": STAGE_KINDS, "sample_out": STAGE_KINDS,
         "detector": FRAME_KINDS}
"""The faults the beamline plays, by device (request faults other than the tube's late reply and dropped
link are not played over Channel Access); its panel makes frames, so every trigger fires."""


class EpicsServeOptions(SimulatedSourceOptions):
    """The ``-O`` options of ``microct sim serve epics``: the tube's, and the PV prefix."""

    prefix: str = Field(default="CT:", description="PV prefix of the beamline (also --prefix)")


class EpicsCTSimulator:
    """``microct sim serve epics``: one Channel Access IOC serving a whole simulated CT. Options: ``prefix``
    (default ``CT:``); every other ``-O`` is a tube option (``SimulatedSourceOptions``)."""

    description = "a whole CT over EPICS Channel Access: tube, two motor records, areaDetector (one IOC)"
    options = EpicsServeOptions

    def serve(self, options: Mapping[str, Any], faults: FaultPlan | None, port: int | None) -> ServedBeamline:
        """Serve on 127.0.0.1:``port`` (None or 0: a free one; another port is never taken in its place).
        ConfigurationError, before anything is served, for a bad option (naming it, listing the allowed
        ones), a fault it would never fire (naming each, and what it fires) or a port it cannot serve on."""
        check_port(port)
        given = check_options(self.options, options)
        prefix = str(given.pop("prefix", "CT:"))
        tube = SimulatedSourceOptions(**given)  # checked with the options
        if faults is not None:
            require_fireable(faults.faults, PLAYS, True, faults.origin)
        schedule = None if faults is None else FaultSchedule(faults.faults, faults.seed)
        try:
            beamline = start_beamline(prefix, port or 0, source=tube, faults=schedule)
        except OSError as error:
            raise ConfigurationError(f"--tcp {port}: {error.strerror}") from None
        return ServedBeamline(beamline, prefix)


SIMULATOR = EpicsCTSimulator()
"""What ``microct sim serve epics`` serves (entry-point group ``microct.simulators``)."""
