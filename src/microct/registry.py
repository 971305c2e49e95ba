"""The driver registry: entry-point group ``microct.drivers`` maps a driver name to its class.

Built-in drivers and simulators register there (in pyproject.toml) exactly as
a third-party package does. A registered class derives from XRaySource, Axis
or Detector, has an ``Options`` pydantic model, and a ``from_config``
classmethod (see ``DriverContext``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from microct.clock import Clock
from microct.devices.base import Device
from microct.errors import ConfigurationError
from microct.geometry import Geometry

if TYPE_CHECKING:
    from microct.simulators.faults import FaultSchedule

GROUP = "microct.drivers"


@dataclass
class DriverContext:
    """What a driver may need beyond its own options: the clock all devices share, and,
    for simulators, the scan geometry, a random seed, the other instruments by role
    ("source", "rotation", "sample_out", "detector"), filled in once all are built, and the
    faults to inject (``[[simulation.faults]]``; None: none)."""

    clock: Clock = field(default_factory=Clock)
    geometry: Geometry | None = None
    seed: int | None = None
    devices: dict[str, Device] = field(default_factory=dict)
    faults: FaultSchedule | None = None


def driver_entry_points() -> dict[str, EntryPoint]:
    """Registered drivers by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_driver(name: str, kind: str, field_name: str) -> type[Device]:
    """The class registered as ``name``; ConfigurationError naming ``field_name`` if unknown or of another kind."""
    available = driver_entry_points()
    if name not in available:
        raise ConfigurationError(f"{field_name}={name!r} is not a registered driver; "
                                 f"registered {kind} drivers: {sorted(n for n in available if _kind(available[n]) == kind)}")
    cls = available[name].load()
    if getattr(cls, "kind", None) != kind:
        raise ConfigurationError(f"{field_name}={name!r} is a {getattr(cls, 'kind', 'non-device')} driver, "
                                 f"not a {kind} driver")
    return cls


def _kind(ep: EntryPoint) -> str | None:
    try:
        return getattr(ep.load(), "kind", None)
    except Exception:  # a broken third-party driver must not hide the others
        return None
