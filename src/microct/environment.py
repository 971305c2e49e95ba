"""Environments: what surrounds the instruments of one scan, made by a plug-in.

A driver class may declare ``environment = "NAME"``: the instruments built from a configuration then
share one environment made by the factory registered as NAME in the entry-point group
``microct.environments``. microct's in-process simulators declare "simulation": that environment
holds the simulated bench they share (geometry, seed, the other instruments, the scheduled faults
of ``[simulation]``). The core knows environments only through this protocol, so it never imports
a simulator; the factory is called as ``factory(config, clock, shared)``, ``shared`` being what a
caller passes to ``build_instruments`` to share (e.g. a fault schedule that wire simulators already
play), or None.

The "simulation" environment is also made when ``[simulation]`` schedules faults, since something
must play them (the writer's faults included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from microct.devices.base import Device, DriverContext
from microct.errors import ConfigurationError
from microct.registry import ENVIRONMENTS, entry_points_of, install_hint

SIMULATION = "simulation"
"""The environment that plays a configuration's ``[simulation]`` table."""


class Environment(Protocol):
    def context(self, role: str) -> DriverContext:
        """The context for the driver of ``role`` ("source", "rotation" ...) that lives in this environment."""

    def built(self, devices: Mapping[str, Device]) -> None:
        """Every instrument is built (no I/O yet): see them by role; ConfigurationError for what cannot
        work (a scheduled fault that no simulator plays, naming its key)."""

    def writer_check(self, file_name: str) -> Callable[[int, int], None] | None:
        """A check the NXtomo writer calls with each frame's index and image key before writing its
        pixels (it raises OSError to play a disk fault), or None."""


def make_environment(name: str, config: Any, clock: Any, shared: object | None = None) -> Environment:
    """The environment registered as ``name``, made for ``config``; ConfigurationError if none is registered
    or it cannot be loaded (naming the extra to install)."""
    found = entry_points_of(ENVIRONMENTS).get(name)
    if found is None:
        raise ConfigurationError(f"no environment {name!r} is registered (entry-point group {ENVIRONMENTS}): "
                                 f"is the package that provides it installed?")
    try:
        factory = found.load()
    except ImportError as error:
        raise ConfigurationError(f"the {name!r} environment needs {error.name or error}; "
                                 f"{install_hint(found, error.name)}") from None
    environment: Environment = factory(config, clock, shared)
    return environment
