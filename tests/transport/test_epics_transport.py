"""ChannelAccess error mapping for a channel lost between the ``connected`` check and the CA call.

The race was seen in CI: the IOC stopped, pyepics still reported the channel connected, and its
``ca.put`` raised a bare ``KeyError: -1`` (field type of a dead channel) out of ``axis.close()``.
"""

from __future__ import annotations

import os

import pytest

from microct.errors import CommunicationError
from microct.transport.epics import ChannelAccess


class DyingPV:
    """A pyepics-like PV that still says ``connected`` but whose CA calls fail as a dropped channel does."""

    pvname = "CT:GONE:m1.STOP"
    connected = True

    def put(self, *_, **__):
        raise KeyError(-1)

    def get(self, *_, **__):
        raise KeyError(-1)


@pytest.fixture
def channels():
    ca = ChannelAccess({"stop": DyingPV.pvname}, who="axis 'rot'")
    ca._pvs = {"stop": DyingPV()}
    return ca


@pytest.mark.parametrize("wait", [True, False])
def test_put_on_a_channel_dropped_mid_call_is_a_communication_error_naming_the_pv(channels, wait):
    with pytest.raises(CommunicationError, match=r"axis 'rot'.*CT:GONE:m1\.STOP"):
        channels.put("stop", 1, wait=wait)


def test_get_on_a_channel_dropped_mid_call_is_a_communication_error_naming_the_pv(channels):
    with pytest.raises(CommunicationError, match=r"reading PV CT:GONE:m1\.STOP"):
        channels.get("stop")


def test_max_array_bytes_is_raised_for_large_frames_but_never_lowered(monkeypatch):
    import epics.ca

    from microct.transport.epics import configure_environment

    monkeypatch.setattr(epics.ca, "libca", None)  # Channel Access not started in this process yet
    monkeypatch.delenv("EPICS_CA_MAX_ARRAY_BYTES", raising=False)
    configure_environment(max_array_bytes=540_672)  # 512 × 512 × 2 + headroom: pyepics' 16 MiB is enough
    assert "EPICS_CA_MAX_ARRAY_BYTES" not in os.environ
    configure_environment(max_array_bytes=50_000_000)  # a 5k × 5k panel
    assert os.environ["EPICS_CA_MAX_ARRAY_BYTES"] == "50000000"
    configure_environment(max_array_bytes=1_000)
    assert os.environ["EPICS_CA_MAX_ARRAY_BYTES"] == "50000000"


def test_get_fresh_names_the_pv_whose_channel_dropped(channels, monkeypatch):
    import epics.ca

    monkeypatch.setattr(DyingPV, "chid", 1, raising=False)
    monkeypatch.setattr(epics.ca, "get", lambda *a, **k: (_ for _ in ()).throw(KeyError(-1)))
    with pytest.raises(CommunicationError, match=r"reading PV CT:GONE:m1\.STOP"):
        channels.get_fresh("stop")
