"""Channel Access on loopback only: the environment pyepics reads once is set here, at import,
before anything imports epics. Every IOC a test starts uses one of these ports (all are in the CA
address list): per device kind, the shared IOC's port and a spare one that a test may stop.

One conftest for every EPICS test: pyepics reads the environment once per process, so one list of
ports must hold every role of every EPICS test module collected. The per-driver tests therefore live
under this folder (``epics_source/``, ``epics_motor/``, ``epics_area_detector/``), beside the
cross-cutting ones (scans over CA, ophyd / pyepics fidelity, ``sim serve epics``)."""

import os

from microct.simulators.epics_ioc import free_port

ROLES = ("source", "source_spare", "motor", "motor_spare", "fidelity", "ad", "ad_spare", "beamline", "kill_rest",
         "kill_detector", "matrix")  # matrix: tests/faults/test_fault_matrix.py (which sets it up if run alone)
ports: list[int] = []
while len(ports) < len(ROLES):
    port = free_port()
    if port not in ports:
        ports.append(port)
os.environ["MICROCT_TEST_IOC_PORTS"] = " ".join(f"{role}={port}" for role, port in zip(ROLES, ports))
os.environ["EPICS_CA_ADDR_LIST"] = " ".join(f"127.0.0.1:{port}" for port in ports)
os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
os.environ["EPICS_CA_SERVER_PORT"] = str(ports[0])
os.environ["EPICS_CA_MAX_ARRAY_BYTES"] = str(16 * 2**20)  # whole frames (areadetector.md)

