"""Channel Access on loopback only: the environment pyepics reads once is set here, at import,
before anything imports epics. Two IOC ports: the shared IOC, and one that a test stops."""

import os

from microct.simulators.epics_ioc import free_port

MAIN_PORT = free_port()
SPARE_PORT = free_port()
while SPARE_PORT == MAIN_PORT:
    SPARE_PORT = free_port()

os.environ["EPICS_CA_ADDR_LIST"] = f"127.0.0.1:{MAIN_PORT} 127.0.0.1:{SPARE_PORT}"
os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
os.environ["EPICS_CA_SERVER_PORT"] = str(MAIN_PORT)
os.environ.setdefault("CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC", "0.001")
