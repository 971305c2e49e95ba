"""`microct sim serve epics` starts the simulated CT's Channel Access IOC on 127.0.0.1 and says where."""

from __future__ import annotations

import os
import subprocess
import sys


def test_sim_serve_epics_serves_tube_motors_and_detector():
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "epics", "--port", "0",
                                "--prefix", "SERVE:"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        prefix, address = process.stdout.readline().split()
        host, port = address.split(":")
        assert (prefix, host) == ("SERVE:", "127.0.0.1")
        # this process' CA context only searches the reserved ports: ask the server directly
        env = {**os.environ, "EPICS_CA_ADDR_LIST": address, "EPICS_CA_AUTO_ADDR_LIST": "NO"}
        names = ["SERVE:XRAY:State_RBV", "SERVE:ROT:m1.DMOV", "SERVE:SMP:m2.EGU", "SERVE:DET1:cam1:MaxSizeX_RBV"]
        out = subprocess.run([sys.executable, "-c", f"import epics; print([epics.caget(n, as_string=True, timeout=5) "
                                                    f"for n in {names!r}])"],
                             env=env, capture_output=True, text=True, timeout=60).stdout
        assert out.strip().splitlines()[-1] == "['Warm-up needed', '1', 'mm', '512']"
    finally:
        process.terminate()
        process.wait(timeout=10)
