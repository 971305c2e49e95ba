"""A detector simulator served on its own says plainly that its scan is a protocol demo (issue 14)."""

from __future__ import annotations

from importlib.resources import files

import pytest

from microct.config import load_config
from microct.simulators.camserver import CamserverResponder
from microct.simulators.dexela import DexelaResponder

MAKERS = {"camserver": lambda tmp, **devices: CamserverResponder(tmp, **devices),
          "dexela": lambda tmp, **devices: DexelaResponder(frame_folder=str(tmp), **devices)}


@pytest.mark.parametrize("name", MAKERS)
def test_a_detector_served_on_its_own_says_its_darks_are_lit_and_its_sample_does_not_turn(name, tmp_path):
    for devices, standalone in (({}, True), ({"devices": {}}, False)):  # {}: the scan's own, filled later
        responder = MAKERS[name](tmp_path, **devices)
        try:
            assert ("darks are lit and the sample does not turn" in responder.hint) is standalone
        finally:
            getattr(responder, "stop", lambda: None)()


@pytest.mark.parametrize("name", ["sim-camserver", "sim-dexela"])
def test_the_standalone_demo_configurations_say_so_and_skip_the_reference_check(name):
    config, _ = load_config(str(files("microct.configs").joinpath(f"{name}.toml")))
    assert config.scan.title.startswith("protocol demo") and "does not turn" in config.scan.title
    assert config.scan.reference_check.enabled is False
