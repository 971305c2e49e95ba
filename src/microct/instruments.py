"""Build the instruments a configuration names, check the scan against their capabilities, connect them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pydantic import ValidationError

from microct.clock import Clock, SimulatedClock
from microct.config import ScanConfig
from microct.devices import Axis, Detector, XRaySource, check_operating_point
from microct.devices.base import Device, DriverContext
from microct.environment import SIMULATION, Environment, make_environment
from microct.errors import ConfigurationError, LimitError
from microct.options import validation_message
from microct.registry import load_driver

ROLES = {"source": "source", "rotation": "axis", "detector": "detector", "sample_out": "axis"}


@dataclass
class Instruments:
    source: XRaySource
    rotation: Axis
    detector: Detector
    sample_out: Axis | None
    clock: Clock
    environments: tuple[Environment, ...] = ()
    """The environments the drivers live in (see ``microct.environment``); the simulated bench's plays
    the scheduled faults of ``[simulation]``, the file writer's included."""

    def writer_check(self, file_name: str) -> Callable[[int, int], None] | None:
        """What the environments check before each frame is written (simulated disk faults), or None."""
        checks = [check for env in self.environments if (check := env.writer_check(file_name)) is not None]
        if len(checks) <= 1:
            return checks[0] if checks else None

        def all_checks(index: int, image_key: int) -> None:
            for check in checks:
                check(index, image_key)

        return all_checks

    def devices(self) -> dict[str, Device]:
        """Instruments by role; the source first, so that closing in this order turns the beam off first."""
        found = {"source": self.source, "rotation": self.rotation, "detector": self.detector,
                 "sample_out": self.sample_out}
        return {role: device for role, device in found.items() if device is not None}

    def connect(self) -> None:
        """Connect all; if one fails, close those already connected and re-raise."""
        try:
            for device in self.devices().values():
                device.connect()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close all (the source first: beam off). Raises the first error after trying every device."""
        first: BaseException | None = None
        for device in self.devices().values():
            try:
                device.close()
            except Exception as error:  # keep closing the others
                first = first or error
        if first is not None:
            raise first


def build_instruments(config: ScanConfig, faults: object | None = None) -> Instruments:
    """Instantiate the drivers (no I/O) and check the scan against their capabilities.

    Raises ConfigurationError naming the key for an unknown driver, bad driver options, a scan the
    instruments cannot do (kV, power, angles, exposure), or a scheduled fault no simulator plays.
    ``faults``: a fault schedule that wire simulators already play, for the in-process simulators and the
    writer to share; it goes to the "simulation" environment (``microct.environment``), made then.
    """
    clock = SimulatedClock() if config.simulation.clock == "simulated" else Clock()
    environments: dict[str, Environment] = {}

    def environment(name: str) -> Environment:
        if name not in environments:
            environments[name] = make_environment(name, config, clock, faults)
        return environments[name]

    if config.simulation.faults or faults is not None:  # something must play them, the writer's too
        environment(SIMULATION)
    devices: dict[str, Device] = {}
    for role, kind in ROLES.items():
        table = getattr(config, role)
        if table is None:
            continue
        cls = load_driver(table.driver, kind, f"{role}.driver")
        try:
            options = cls.Options.model_validate(table.options)
        except ValidationError as error:
            raise ConfigurationError(validation_message(error, prefix=f"{role}.options.")) from None
        context = environment(cls.environment).context(role) if cls.environment else DriverContext(clock=clock)
        device = cls.from_config(role, options, table.connection, context)
        if clock.simulated and device.backend != "in-process":
            raise ConfigurationError(f"simulation.clock='simulated' works with in-process simulators only; "
                                     f"{role}.driver={table.driver!r} talks to a real device ({device.backend})")
        devices[role] = device
    for env in environments.values():
        env.built(devices)
    sample_out = devices.get("sample_out")
    instruments = Instruments(source=cast(XRaySource, devices["source"]), rotation=cast(Axis, devices["rotation"]),
                              detector=cast(Detector, devices["detector"]),
                              sample_out=None if sample_out is None else cast(Axis, sample_out), clock=clock,
                              environments=tuple(environments.values()))
    check_scan(config, instruments)
    return instruments


def check_scan(config: ScanConfig, instruments: Instruments) -> None:
    """Check the scan settings against the instruments' declared capabilities (no I/O)."""
    scan = config.scan
    unit = instruments.rotation.capabilities.unit
    if unit != "deg":  # angles go to the file as degrees: a rotation in mm would write them wrong
        raise ConfigurationError(f"rotation.driver={config.rotation.driver!r} is an axis in {unit!r}: the rotation "
                                 f"must be in degrees ('deg'; e.g. options.unit or the stage model's unit)")
    try:
        check_operating_point(instruments.source.capabilities, scan.voltage_kv, scan.current_ua,
                              scan.spot_mode, who="scan")
        angles = scan.angles_deg()
        for angle in (angles[0], angles[-1]):
            instruments.rotation.capabilities.check_position(angle, who="scan angles (rotation soft limits)")
        if instruments.sample_out is not None and scan.sample_out_position_mm is not None:
            instruments.sample_out.capabilities.check_position(scan.sample_out_position_mm,
                                                               who="scan.sample_out_position_mm")
        instruments.detector.capabilities.check_exposure(scan.exposure_s, who="scan")
    except LimitError as error:
        raise ConfigurationError(str(error)) from None
    if instruments.detector.writes_own_files and scan.frames_averaged > 1:
        raise ConfigurationError(f"scan.frames_averaged={scan.frames_averaged}: detector "
                                 f"{instruments.detector.name!r} writes its frames to its own file, so they "
                                 f"cannot be averaged here; allowed: 1 (or let the driver pull the pixels)")
    if scan.binning not in instruments.detector.capabilities.binnings:
        raise ConfigurationError(f"scan.binning={scan.binning}: the detector allows "
                                 f"{list(instruments.detector.capabilities.binnings)}")
