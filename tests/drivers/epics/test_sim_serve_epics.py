"""`microct sim serve epics` starts a Channel Access IOC on 127.0.0.1 and says where."""

from __future__ import annotations

import socket
import subprocess
import sys


def test_sim_serve_epics_prints_prefix_and_port():
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "epics", "--tcp", "0",
                                "--prefix", "TEST:TUBE:"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        prefix, address = process.stdout.readline().split()
        host, port = address.split(":")
        assert (prefix, host) == ("TEST:TUBE:", "127.0.0.1")
        with socket.create_connection((host, int(port)), timeout=5):  # the CA server accepts
            pass
    finally:
        process.terminate()
        process.wait(timeout=10)
