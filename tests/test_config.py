"""Configuration loading: errors name the key, the value and the rule."""

from __future__ import annotations

from importlib.resources import files

import pytest

from microct import registry
from microct.config import load_config, parse_config
from microct.errors import ConfigurationError
from microct.instruments import build_instruments


def test_shipped_configs_load_and_build(tmp_path):
    config, text = load_config()
    assert config.scan.n_projections == 180 and "[scan]" in text
    instruments = build_instruments(config)
    assert instruments.sample_out is not None and not instruments.source.connected
    assert config.scan.angles_deg()[:3] == [0.0, 2.0, 4.0]


def test_angles_with_and_without_end_angle():
    config, _ = load_config()
    scan = config.scan.model_copy(update={"n_projections": 5, "range_deg": 180.0})
    assert scan.angles_deg() == [0.0, 36.0, 72.0, 108.0, 144.0]
    assert scan.model_copy(update={"include_end_angle": True}).angles_deg() == [0.0, 45.0, 90.0, 135.0, 180.0]


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read configuration"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(bad)


def test_missing_tables_and_geometry_rules():
    with pytest.raises(ConfigurationError) as error:
        parse_config({"scan": {}})
    message = str(error.value)
    for key in ("source: required key is missing", "geometry: required key is missing",
                "scan.n_projections: required key is missing"):
        assert key in message
    config, _ = load_config()
    data = config.model_dump(mode="json")
    data["geometry"]["source_object_distance_mm"] = 600.0
    with pytest.raises(ConfigurationError, match="must be smaller than source_detector_distance_mm"):
        parse_config(data)


def test_driver_of_the_wrong_kind_is_refused():
    config, _ = load_config()
    data = config.model_dump(mode="json")
    data["rotation"]["driver"] = "sim-detector"
    data["rotation"]["options"] = {}
    with pytest.raises(ConfigurationError, match="rotation.driver='sim-detector' is a detector driver"):
        build_instruments(parse_config(data))


def test_simulated_clock_refuses_a_real_device_driver(mocker):
    from microct.simulators.axis import SimulatedAxis

    class HardwareAxis(SimulatedAxis):
        backend = "serial"

    real = registry.load_driver
    mocker.patch("microct.instruments.load_driver",
                 side_effect=lambda name, kind, field: HardwareAxis if field == "rotation.driver"
                 else real(name, kind, field))
    config, _ = load_config()
    with pytest.raises(ConfigurationError, match="simulation.clock='simulated' works with in-process simulators"):
        build_instruments(config)


def test_exposure_and_binning_checked_against_the_detector():
    config, _ = load_config()
    data = config.model_dump(mode="json")
    data["scan"]["exposure_s"] = 100.0
    with pytest.raises(ConfigurationError, match="exposure_s=100 is outside the allowed range 0.001-60 s"):
        build_instruments(parse_config(data))
    data["scan"]["exposure_s"] = 1.0
    data["scan"]["binning"] = 3
    with pytest.raises(ConfigurationError, match=r"scan.binning=3: the detector allows \[1, 2, 4\]"):
        build_instruments(parse_config(data))


SHIPPED = sorted(p.name for p in files("microct.configs").iterdir() if p.name.endswith(".toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates_and_builds_without_io(name):
    config, _ = load_config(str(files("microct.configs").joinpath(name)))
    instruments = build_instruments(config)
    assert not any(device.connected for device in instruments.devices().values())
