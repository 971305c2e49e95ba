"""Homing PI axes: the options that referenced at connect are refused with a pointer to ``home``, and
``microct home`` on sim-visa.toml references both axes of the wire simulator (FRF)."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import pytest
from pydantic import ValidationError

from microct.cli import main
from microct.config import parse_config
from microct.drivers.pi_gcs.driver import PIOptions
from microct.errors import ConfigurationError
from microct.instruments import build_instruments
from microct.simulators.pi_gcs import PIResponder
from microct.testing.rigs import served

SIM_VISA = files("microct.configs").joinpath("sim-visa.toml").read_text()


@pytest.mark.parametrize("old", [{"reference_on_connect": True}, {"reference_timeout_s": 60.0},
                                 {"reference_on_connect": False, "reference_timeout_s": 5.0}])
def test_the_options_that_referenced_at_connect_are_refused_pointing_to_home(old):
    with pytest.raises(ValidationError, match=r"no longer options \(connect moves nothing\); set `home` in the "
                                              r"axis table"):
        PIOptions.model_validate(old)


def test_a_configuration_still_setting_reference_on_connect_is_a_configuration_error_naming_it():
    data = tomllib.loads(SIM_VISA)
    data["rotation"]["options"]["reference_on_connect"] = True
    with pytest.raises(ConfigurationError, match=r"^rotation.options: reference_on_connect: no longer options"):
        build_instruments(parse_config(data))


def test_microct_home_references_both_axes_of_sim_visa(tmp_path, capsys):
    with served(PIResponder(), "visa", name="pi") as link:
        path = tmp_path / "visa.toml"
        path.write_text(SIM_VISA.replace("TCPIP::127.0.0.1::7004::SOCKET", link.address))
        axes = link.server.responder.controller_axes
        assert not axes["1"].referenced and not axes["2"].referenced  # as after power-up
        assert main(["home", str(path)]) == 0
        assert axes["1"].referenced and axes["2"].referenced
    captured = capsys.readouterr()
    assert "rotation: homing (on request)" in captured.err
    rows = [line for line in captured.out.splitlines() if "pi-gcs" in line]
    assert len(rows) == 2 and all("yes" in row for row in rows), captured.out
