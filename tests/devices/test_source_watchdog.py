"""XRaySource's communication-watchdog machinery (arm, feed, disarm), on a simulated device clock whose
timers fire inside ``clock.sleep``: a scripted source records what it would send, and when."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest

from microct.clock import SimulatedClock
from microct.devices.source import SourceCapabilities, SourceState, SpotMode, XRaySource
from microct.errors import ConfigurationError, DeviceTimeoutError, ErrorReply

CAPS = SourceCapabilities((0.0, 100.0), (0.0, 1000.0), {"small": SpotMode(power_limit_w=100.0, spot_size_um=5.0)})


class Scripted(XRaySource):
    """Records each exchange (device-clock time, what) as a driver would send it; ``refuse`` names the
    exchanges that fail."""

    backend = "in-process"

    def __init__(self, watchdog_s: float | None = 3.0) -> None:
        super().__init__("tube", CAPS, SimulatedClock(), watchdog_s=watchdog_s)
        self.sent: list[tuple[float, str]] = []
        self.refuse: set[str] = set()
        self.state = SourceState.STANDBY

    def say(self, what: str) -> None:
        self._exchange_started()
        if what in self.refuse:
            raise DeviceTimeoutError(f"{self.who}: no reply to {what!r}")
        self.sent.append((self.clock.monotonic(), what))

    def said(self) -> list[str]:
        return [what for _, what in self.sent]

    def _do_arm_watchdog(self, timeout_s: float) -> None:
        if "arm" in self.refuse:
            raise ErrorReply(10, "state error", "arm", message=f"{self.who}: arming refused")
        self.say(f"arm {timeout_s:g}")

    def _do_feed_watchdog(self) -> None:
        self.say("feed")

    def _do_disarm_watchdog(self) -> None:
        self.say("disarm")

    def _do_beam_on(self) -> None:
        self.say("on")
        self.state = SourceState.BEAM_ON

    def _do_beam_off(self) -> None:
        self.say("off")
        self.state = SourceState.STANDBY

    def _do_warm_up(self) -> None:
        self.say("warm-up")
        self.state = SourceState.WARMING_UP

    def _do_connect(self) -> None: ...
    def _do_close(self) -> None:
        self._stop_feeding()
    def _do_read_setpoints(self) -> tuple[float, float, str]:
        return 50.0, 100.0, "small"
    def _do_set_voltage_kv(self, voltage_kv: float) -> None: ...
    def _do_set_current_ua(self, current_ua: float) -> None: ...
    def _do_set_spot_mode(self, spot_mode: str) -> None: ...
    def _do_reset(self) -> None: ...
    def _do_read_state(self) -> SourceState:
        return self.state
    def _do_read_voltage_kv(self) -> float:
        return 0.0
    def _do_read_current_ua(self) -> float:
        return 0.0
    def _do_read_interlock_closed(self) -> bool:
        return True


def connected(watchdog_s: float | None = 3.0) -> Scripted:
    source = Scripted(watchdog_s)
    source.connect()
    return source


def test_beam_on_arms_first_then_the_feed_speaks_after_a_third_of_the_watchdog_time_of_silence():
    source = connected()
    source.beam_on()
    assert source.said() == ["arm 3", "on"] and source.watchdog_armed
    source.clock.sleep(0.5)
    source.say("status")  # the sequencer's own exchange at 0.5 s: the feed waits 1 s from it
    source.clock.sleep(0.9)
    assert source.said() == ["arm 3", "on", "status"]  # 1.4 s
    source.clock.sleep(7.2)  # to 8.6 s: feeds at 1.5, 2.5, ... 8.5 s
    assert [t for t, what in source.sent if what == "feed"] == pytest.approx([1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5])


def test_beam_off_stops_the_feed_then_disarms_once_the_beam_is_off():
    source = connected()
    source.beam_on()
    source.clock.sleep(1.0)
    source.beam_off()
    assert source.said() == ["arm 3", "on", "feed", "off", "disarm"] and not source.watchdog_armed
    source.clock.sleep(60.0)
    assert source.said()[-1] == "disarm"  # nothing fed with the beam off
    source.beam_off()  # idempotent: no second disarm
    assert source.said()[-2:] == ["disarm", "off"] and source.said().count("disarm") == 1


def test_a_beam_off_that_fails_leaves_the_watchdog_armed_and_unfed_so_the_device_trips():
    source = connected()
    source.beam_on()
    source.refuse.add("off")
    with pytest.raises(DeviceTimeoutError):
        source.beam_off()
    source.clock.sleep(60.0)
    assert source.said() == ["arm 3", "on"] and source.watchdog_armed  # no feed, no disarm


def test_an_arming_the_device_refuses_keeps_the_beam_off_and_feeds_nothing():
    source = connected()
    source.refuse.add("arm")
    with pytest.raises(ErrorReply, match="arming refused"):
        source.beam_on()
    source.clock.sleep(60.0)
    assert source.said() == [] and source.state is SourceState.STANDBY and not source.watchdog_armed


def test_warm_up_arms_too_and_close_disarms_and_stops_the_feed():
    source = connected()
    source.warm_up()
    source.clock.sleep(1.0)
    source.state = SourceState.STANDBY  # the warm-up ended
    source.close()
    assert source.said() == ["arm 3", "warm-up", "feed", "off", "disarm"]
    source.clock.sleep(60.0)
    assert source.said()[-1] == "disarm"


@pytest.mark.parametrize("watchdog_s", [None, 0.0])
def test_without_a_watchdog_nothing_is_armed_or_fed(watchdog_s):
    source = connected(watchdog_s)
    source.beam_on()
    source.clock.sleep(60.0)
    source.beam_off()
    assert source.said() == ["on", "off"] and source.watchdog_s is None and source.watchdog_feed_s == 0


def test_beam_on_with_the_beam_on_already_feeds_without_arming():
    source = connected()
    source.state = SourceState.BEAM_ON  # switched on before this session
    source.beam_on()
    source.clock.sleep(1.0)
    assert source.said() == ["feed"] and not source.watchdog_armed


def test_a_failing_feed_warns_once_is_tried_again_and_says_when_it_is_answered(caplog):
    source = connected()
    source.beam_on()
    source.refuse.add("feed")
    with caplog.at_level(logging.INFO):
        source.clock.sleep(3.5)  # three failed feeds: nothing escapes the timer
        source.refuse.clear()
        source.clock.sleep(1.0)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == __name__]
    assert messages == [
        (logging.WARNING, "source 'tube': watchdog feed failed (DeviceTimeoutError: source 'tube': no reply to "
                          "'feed'); the device switches the beam off after 3 s without a message; trying again "
                          "every 1 s"),
        (logging.INFO, "source 'tube': the watchdog feed is answered again")]
    assert source.said()[-1] == "feed"


def test_a_source_dropped_without_close_ends_its_feed():
    source = connected()
    source.beam_on()
    clock, alive = source.clock, weakref.ref(source)
    del source
    gc.collect()
    assert alive() is None
    clock.sleep(60.0)  # its pending timer finds no source and ends


def test_a_negative_watchdog_time_is_refused_naming_it():
    with pytest.raises(ConfigurationError, match=r"tube.options.watchdog_s=-1: a time in s > 0"):
        Scripted(-1.0)
