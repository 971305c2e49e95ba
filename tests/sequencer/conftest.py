"""Fixtures for scans on in-process simulators in simulated time (fast)."""

from __future__ import annotations

import copy
import tomllib
from importlib.resources import files

import pytest

from microct.config import ScanConfig, parse_config
from microct.instruments import Instruments, build_instruments

SIM = tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text())


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


SMALL = {"detector": {"options": {"rows": 64, "columns": 64, "pixel_pitch_um": 1600.0, "phantom": "spheres"}},
         "geometry": {"source_object_distance_mm": 100.0},
         "scan": {"n_projections": 12, "n_darks": 3, "n_flats": 4, "binning": 1}}


@pytest.fixture
def scan_data():
    """scan_data(overrides) -> the configuration of make_scan as plain data (picklable, for child processes)."""
    return lambda overrides=None: merged(merged(SIM, SMALL), overrides or {})


@pytest.fixture
def make_scan(tmp_path):
    """make_scan(overrides) -> (config, instruments, output path): sim.toml shrunk to 64×64 frames."""
    def make(overrides: dict | None = None) -> tuple[ScanConfig, Instruments, object]:
        config = parse_config(merged(merged(SIM, SMALL), overrides or {}))
        return config, build_instruments(config), tmp_path / "scan.nxs"
    return make
