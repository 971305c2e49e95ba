"""`microct home` on the in-process simulators (sim.toml): it homes the axes only, never the tube or the
detector; `--axis`; a rotation in millimetres is a configuration error (exit 2) before anything connects."""

from __future__ import annotations

from importlib.resources import files

import pytest

from microct.cli import main
from microct.simulators.axis import SimulatedAxis
from microct.simulators.detector import SimulatedDetector
from microct.simulators.source import SimulatedSource

SIM_TEXT = files("microct.configs").joinpath("sim.toml").read_text()
UNREFERENCED = 'acceleration = 360.0             # deg/s²\ninitial_position = 12.0\nreferenced = false\n'


def config(tmp_path, old: str = "", new: str = "") -> str:
    assert old in SIM_TEXT
    path = tmp_path / "sim.toml"
    path.write_text(SIM_TEXT.replace(old, new, 1))
    return str(path)


def test_home_homes_every_axis_and_connects_neither_tube_nor_detector(tmp_path, capsys, mocker):
    connects = {cls: mocker.spy(cls, "connect") for cls in (SimulatedAxis, SimulatedSource, SimulatedDetector)}
    home = mocker.spy(SimulatedAxis, "home")
    path = config(tmp_path, "acceleration = 360.0             # deg/s²\n", UNREFERENCED)
    assert main(["home", path]) == 0
    assert [call.args[0].name for call in home.call_args_list] == ["rotation", "sample_out"]
    assert connects[SimulatedAxis].call_count == 2
    assert not connects[SimulatedSource].called and not connects[SimulatedDetector].called
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:2] == ["rotation: homing (on request), for up to 120 s",
                                             "rotation: homed in 0.4 s; now at 0 deg"]  # 12 deg, simulated time
    rows = [line.split("│")[1:-1] for line in captured.out.splitlines() if "sim-axis" in line]
    assert [[cell.strip() for cell in row] for row in rows] == [["rotation", "sim-axis", "0 deg", "yes"],
                                                               ["sample_out", "sim-axis", "0 mm", "yes"]]


def test_axis_homes_that_axis_only_and_an_axis_never_homed_is_left_alone(tmp_path, capsys, mocker):
    home = mocker.spy(SimulatedAxis, "home")
    path = config(tmp_path, '[sample_out]                     # moves the sample out of the beam for flat fields\n',
                  '[sample_out]\nhome = "never"\n')
    assert main(["home", path, "--axis", "rotation"]) == 0
    assert [call.args[0].name for call in home.call_args_list] == ["rotation"]
    assert main(["home", path, "--axis", "sample_out"]) == 0
    assert len(home.call_args_list) == 1  # "never": not homed, even on request
    assert 'sample_out: not homed (home = "never")' in capsys.readouterr().err


def test_axis_naming_an_axis_the_configuration_lacks_is_a_configuration_error(tmp_path, capsys):
    path = config(tmp_path, SIM_TEXT[SIM_TEXT.index("[sample_out]"):SIM_TEXT.index("[detector]")], "")
    assert main(["home", path, "--axis", "sample_out"]) == 2
    assert "--axis sample_out: " in capsys.readouterr().err


@pytest.mark.parametrize("command", ["home", "scan", "check"])
def test_a_rotation_in_millimetres_exits_2_before_anything_connects(tmp_path, capsys, mocker, command):
    connect = mocker.spy(SimulatedAxis, "connect")
    path = config(tmp_path, 'unit = "deg"', 'unit = "mm"')
    assert main([command, path, *(["-o", str(tmp_path / "out.nxs")] if command == "scan" else [])]) == 2
    err = capsys.readouterr().err
    assert "rotation.driver='sim-axis' is an axis in 'mm': the rotation must be in degrees" in err
    assert not connect.called
