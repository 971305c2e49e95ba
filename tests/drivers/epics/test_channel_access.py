"""microct.transport.epics.ChannelAccess over real Channel Access, where pyepics' own state matters: a read
libca refuses as its circuit drops must not leave the channel waiting for a reply that was never asked.

Seen under load in the fault matrix (EPICS, a dropped link): pyepics marks a get pending before it asks
libca; when libca refuses the request (ECA_DISCONN: it knows the circuit is gone, pyepics' ``connected``
does not yet), pyepics raises and leaves the mark, so every later read of that channel, once it is back,
waits on a reply never asked for and times out: the scan gave up on a link that had come back.
"""

from __future__ import annotations

import os

import pytest

from microct.errors import CommunicationError
from microct.simulators.epics_ioc import start_ioc
from microct.simulators.source import SimulatedSourceOptions
from microct.transport.epics import ChannelAccess

PORT = int(dict(item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())["source_spare"])
PREFIX = "CAR:XRAY:"
ECA_DISCONN = 192
"""libca's status "Virtual circuit disconnect" (CA_K_WARNING, message 24: 24 << 3)."""


@pytest.fixture(scope="module")
def ioc():
    handle, _ = start_ioc(PREFIX, PORT, SimulatedSourceOptions(warmed_up=True))
    yield
    handle.stop()


@pytest.fixture
def channels(ioc):
    ca = ChannelAccess({"state": PREFIX + "State_RBV", "interlock": PREFIX + "Interlock_RBV"}, who="tube",
                       timeout_s=2.0, monitored=("state",))
    ca.connect()
    yield ca
    ca.close()


@pytest.fixture
def libca_refuses_once(monkeypatch):
    """libca refuses the next get request as on a circuit just dropped, then serves again."""
    import epics.ca

    real = epics.ca.libca.ca_array_get_callback
    refused: list[bool] = []

    def get_callback(*args):
        if not refused:
            refused.append(True)
            return ECA_DISCONN
        return real(*args)

    monkeypatch.setattr(epics.ca.libca, "ca_array_get_callback", get_callback)
    return refused


@pytest.mark.parametrize("read", ["get", "get_fresh"])
def test_a_read_libca_refused_leaves_no_stale_request_behind(channels, libca_refuses_once, read):
    def read_state():
        return channels.get("state", fresh=True) if read == "get" else channels.get_fresh("state")[0]

    with pytest.raises(CommunicationError, match=rf"tube: reading PV {PREFIX}State_RBV failed"):
        read_state()
    assert libca_refuses_once
    assert int(read_state()) >= 0  # asked anew and answered (it waited 2 s in vain, then timed out)
    assert int(channels.get("interlock", fresh=True)) >= 0  # the other channels were never affected
