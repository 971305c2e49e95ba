"""Plug-in registries (Python entry points); microct's own drivers and simulators register exactly as a
third-party package does (see the README, "Adding a vendor driver").

- ``microct.drivers``: device classes by driver name (``[role] driver = "NAME"`` of a configuration);
- ``microct.simulators``: wire-level simulators by name (``microct sim serve NAME``), each an object
  with ``serve(options, faults, port)`` (see ``ServableSimulator``);
- ``microct.environments``: environment factories by name (see ``microct.environment``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from microct.devices.base import Device
from microct.errors import ConfigurationError
from microct.faults import FaultPlan

DRIVERS = "microct.drivers"
SIMULATORS = "microct.simulators"
ENVIRONMENTS = "microct.environments"


def entry_points_of(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name."""
    return {ep.name: ep for ep in entry_points(group=group)}


def driver_entry_points() -> dict[str, EntryPoint]:
    """Registered drivers by name."""
    return entry_points_of(DRIVERS)


def load_driver(name: str, kind: str | None, field_name: str) -> type[Device]:
    """The class registered as ``name``. ConfigurationError naming ``field_name`` if the name is unknown,
    the driver is of another kind (``kind`` None: any kind will do), or the class lacks what the registry
    needs (naming what is missing)."""
    available = driver_entry_points()
    if name not in available:
        of_kind = sorted(n for n in available if kind is None or _kind(available[n]) == kind)
        raise ConfigurationError(f"{field_name}={name!r} is not a registered driver; registered "
                                 f"{kind + ' ' if kind else ''}drivers: {of_kind}")
    try:
        cls = available[name].load()
    except ImportError as error:  # a library the driver needs is not installed
        raise ConfigurationError(f"{field_name}={name!r}: the driver {available[name].value} needs "
                                 f"{error.name or error}; {install_hint(available[name], error.name)}") from None
    except Exception as error:  # a broken plug-in: say which, and why
        raise ConfigurationError(f"{field_name}={name!r}: the driver {available[name].value} cannot be loaded: "
                                 f"{type(error).__name__}: {error}") from None
    missing = driver_problems(cls)
    if missing:
        raise ConfigurationError(f"{field_name}={name!r}: {available[name].value} is not a usable driver: "
                                 f"{'; '.join(missing)}")
    if kind is not None and cls.kind != kind:
        raise ConfigurationError(f"{field_name}={name!r} is {_a(cls.kind)} {cls.kind} driver, not {_a(kind)} {kind} "
                                 f"driver")
    return cls


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


EXTRAS = {"caproto": "epics-sim", "matplotlib": "preview", "itk": "recon"}
"""microct's extra that brings each optional library (by top-level module)."""


def install_hint(ep: EntryPoint, missing: str | None = None) -> str:
    """What to install for a plug-in whose import failed for want of module ``missing``: microct's extra
    that brings it, or what the plug-in's own package needs."""
    distribution = getattr(ep.dist, "name", None)
    extra = EXTRAS.get((missing or "").split(".")[0])
    if distribution == "microct" and extra:
        return f"install it with: pip install 'microct[{extra}]'"
    return f"install what {distribution or ep.value} needs"


def driver_problems(cls: Any) -> list[str]:
    """What a registered driver class lacks (empty if nothing): a Device subclass of a known kind, a
    ``backend``, an ``Options`` pydantic model and a ``from_config`` classmethod."""
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        return [f"{cls!r} is not a class derived from microct.driverkit's XRaySource, Axis or Detector"]
    problems = []
    if getattr(cls, "kind", None) not in ("source", "axis", "detector"):
        problems.append("it derives from none of XRaySource, Axis, Detector (no device kind)")
    if not isinstance(getattr(cls, "backend", None), str) or not cls.backend:
        problems.append("no 'backend' class attribute (\"serial\", \"VISA\", \"EPICS\", \"in-process\" ...)")
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        problems.append("'Options' is not a pydantic model of the driver's options")
    if not callable(getattr(cls, "from_config", None)):
        problems.append("no 'from_config' classmethod")
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        problems.append(f"hooks not implemented: {', '.join(abstract)}")
    return problems


def _kind(ep: EntryPoint) -> str | None:
    try:
        return getattr(ep.load(), "kind", None)
    except Exception:  # a broken third-party driver must not hide the others
        return None


class Served(Protocol):
    """A simulator being served: where clients reach it, and how to stop it."""

    address: str
    """What a configuration's ``connection`` names (a device path, a ``socket://`` URL, a PV prefix and port)."""
    hint: str
    """One line for a person: how to reach it (a VISA resource, the EPICS environment to set ...)."""

    def stop(self) -> None: ...


class ServableSimulator(Protocol):
    """What the entry point of a wire simulator names (group ``microct.simulators``)."""

    description: str

    def serve(self, options: Mapping[str, Any], faults: FaultPlan | None, port: int | None) -> Served:
        """Start serving on a pseudo-terminal (``port`` None, where the protocol allows) or on 127.0.0.1:``port``
        (0: a free one). ``options`` are the simulator's ``-O KEY=VALUE``; ConfigurationError naming the
        key for a bad one, and naming the fault for one it does not play."""


def load_simulator(name: str) -> ServableSimulator:
    """The wire simulator registered as ``name``; ConfigurationError naming the registered ones."""
    available = entry_points_of(SIMULATORS)
    if name not in available:
        raise ConfigurationError(f"unknown simulator {name!r}; registered: {', '.join(sorted(available))}")
    try:
        simulator: ServableSimulator = available[name].load()
    except ImportError as error:
        raise ConfigurationError(f"simulator {name!r} needs {error.name or error}; "
                                 f"{install_hint(available[name], error.name)}") from None
    return simulator
