"""Plug-ins: drivers, wire simulators and environments come from entry points, built-ins registered
exactly as a third-party package registers its own; what the registry refuses is named."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel

from microct.devices import Axis, AxisCapabilities
from microct.errors import ConfigurationError
from microct.registry import (
    DRIVERS,
    ENVIRONMENTS,
    SIMULATORS,
    driver_problems,
    entry_points_of,
    load_driver,
    load_simulator,
)

BUILT_IN_SIMULATORS = ("hamamatsu", "zaber", "spellman", "pi", "camserver", "dexela", "epics")


def test_every_built_in_driver_passes_the_registry_checks():
    drivers = entry_points_of(DRIVERS)
    assert {"sim-source", "sim-axis", "sim-detector", "hamamatsu", "zaber", "spellman", "pi-gcs", "epics-source",
            "epics-motor", "epics-ad", "camserver", "dexela"} <= set(drivers)
    for name, ep in drivers.items():
        assert driver_problems(ep.load()) == [], name


@pytest.mark.parametrize("name", BUILT_IN_SIMULATORS)
def test_every_built_in_simulator_serves_with_its_defaults(name):
    simulator = load_simulator(name)
    assert simulator.description
    served = simulator.serve({}, None, 0)  # no options at all, a free port of 127.0.0.1
    try:
        assert "127.0.0.1" in served.address
    finally:
        served.stop()


def test_the_simulation_environment_is_a_plug_in_too():
    assert "simulation" in entry_points_of(ENVIRONMENTS)
    assert set(BUILT_IN_SIMULATORS) <= set(entry_points_of(SIMULATORS))


def test_an_unknown_simulator_is_named_with_the_registered_ones():
    with pytest.raises(ConfigurationError, match=r"unknown simulator 'nope'; registered: .*camserver.*zaber"):
        load_simulator("nope")


def test_the_command_lists_drivers_and_simulators():
    listed = subprocess.run([sys.executable, "-m", "microct", "drivers"], capture_output=True, text=True,
                            env={"COLUMNS": "250", "PATH": ""}, check=True).stdout
    for name in ("hamamatsu", "pi-gcs", "sim-detector", "wire simulators", "epics"):
        assert name in listed
    simulators = subprocess.run([sys.executable, "-m", "microct", "sim", "serve"], capture_output=True, text=True,
                                env={"COLUMNS": "250", "PATH": ""}, check=True).stdout
    for name in BUILT_IN_SIMULATORS:
        assert f"│ {name} " in simulators


class _NoHooks(Axis):
    backend = "serial"


class _Complete(Axis):
    backend = "serial"

    class Options(BaseModel):
        pass

    def __init__(self, name="a", options=None, connection=None, *, clock=None):
        super().__init__(name, AxisCapabilities("deg", 10.0), clock)

    def _do_connect(self): ...
    def _do_close(self): ...
    def _do_start_move(self, position): ...
    def _do_start_home(self): ...
    def _do_stop(self): ...
    def _do_read_position(self): ...
    def _do_set_velocity(self, velocity): ...


def test_what_a_driver_lacks_is_named():
    assert driver_problems(_Complete) == []
    problems = "; ".join(driver_problems(_NoHooks))
    assert "hooks not implemented: _do_close, _do_connect" in problems
    assert "Options" not in problems  # the kit's default: a driver without options (NoOptions)
    assert "is not a class derived from" in driver_problems(object())[0]
    no_backend = type("NoBackend", (_Complete,), {"backend": ""})
    assert any("backend" in p for p in driver_problems(no_backend))
    bad_options = type("BadOptions", (_Complete,), {"Options": dict})
    assert any("'Options' is not a pydantic model" in p for p in driver_problems(bad_options))


def test_a_driver_of_another_kind_is_refused_naming_the_key():
    with pytest.raises(ConfigurationError, match=r"source\.driver='zaber' is an axis driver, not a source driver"):
        load_driver("zaber", "source", "source.driver")


class _MissingLibrary:
    """An entry point whose module needs a library that is not installed."""

    def __init__(self, name: str, distribution: str) -> None:
        self.name, self.value = name, f"{distribution.replace('-', '_')}.driver:Driver"
        self.dist = type("Distribution", (), {"name": distribution})()

    def load(self):
        raise ModuleNotFoundError("No module named 'caproto'", name="caproto")


@pytest.mark.parametrize("distribution, hint", [
    ("microct", r"install it with: pip install 'microct\[epics-sim\]'"),
    ("acme-microct", r"install what acme-microct needs"),
])
def test_a_driver_whose_library_is_missing_names_what_to_install(monkeypatch, distribution, hint):
    import microct.registry as registry

    monkeypatch.setattr(registry, "driver_entry_points", lambda: {"panel": _MissingLibrary("panel", distribution)})
    with pytest.raises(ConfigurationError, match=rf"detector\.driver='panel': the driver .* needs caproto; {hint}"):
        load_driver("panel", "detector", "detector.driver")


def test_request_faults_for_a_simulator_that_cannot_place_them_are_a_configuration_error():
    """A plug-in's responder without ``fault_device`` cannot say which device a request line is for: its
    schedule of request faults is refused, naming why, not a TypeError."""
    from microct.faults import FaultPlan
    from microct.testing.simulation import WireSimulator

    class StageWithoutFaultDevice:
        request_terminators = b"\n"

        def __init__(self, faults=None) -> None:
            faults.attach("rotation")  # it plays the stage's faults, but not per request line

        def respond(self, line: bytes) -> list[bytes]:
            return [line + b"\n"]

    plan = FaultPlan.model_validate({"faults": [{"kind": "reply_timeout", "device": "rotation", "at_s": 1.0}]})
    with pytest.raises(ConfigurationError, match=r"--faults: StageWithoutFaultDevice does not tell which device"):
        WireSimulator(StageWithoutFaultDevice, "stage").serve({}, plan, 0)
