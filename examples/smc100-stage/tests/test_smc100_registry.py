"""The installed package registers with microct: `microct drivers` lists the driver, `microct sim serve`
lists the simulator and serves it with no options, and the driver talks to what it serves."""

from __future__ import annotations

import os
import subprocess
import sys

from microct.testing.rigs import sim_served
from microct_smc100.driver import SMC100Axis, SMC100Options


def microct(*arguments: str) -> str:
    """``python -m microct ARGUMENTS`` in its own process: its output (wide, so that no name is cut)."""
    completed = subprocess.run([sys.executable, "-m", "microct", *arguments], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def row(output: str, name: str, table_entry: str) -> str:
    """The table row of ``name`` showing ``table_entry`` (the registered object)."""
    rows = [line for line in output.splitlines() if line.strip("│ ").startswith(f"{name} ") and table_entry in line]
    assert len(rows) == 1, output
    return rows[0]


def test_microct_drivers_lists_smc100():
    line = row(microct("drivers"), "smc100", "microct_smc100.driver:SMC100Axis")
    assert "│ axis " in line and "│ serial " in line


def test_microct_sim_serve_lists_smc100():
    line = row(microct("sim", "serve"), "smc100", "microct_smc100.simulator:SIMULATOR")
    assert "Newport SMC100" in line and "cannot load" not in line


def test_microct_sim_serve_smc100_serves_with_no_options():
    with sim_served("smc100") as path:  # a pseudo-terminal, the default
        with SMC100Axis("rotation", SMC100Options(), path) as axis:  # the defaults of both: URS75BCC
            assert axis.describe()["identifier"] == "URS75BCC"
            axis.move_to(2.0, timeout_s=30)
            assert abs(axis.read_position() - 2.0) <= 0.001
