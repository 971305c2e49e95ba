"""The small hooks a simulator gives the fault contracts: what happens to the instrument behind a driver,
done and read past the driver (the simulator, not the protocol, is asked).

A simulator author implements these for the simulator of a driver (microct's in-process simulators have
``fault_hook()``; a wire simulator's hook also silences its server). They are Protocols: any object with
these methods will do.
"""

from __future__ import annotations

from typing import Literal, Protocol


class SilenceHook(Protocol):
    def mute(self, muted: bool = True) -> None:
        """The device goes silent (True): requests are neither carried out nor answered, as a wedged
        controller or a cut cable whose port stays open. False: it answers again."""


class AxisHook(SilenceHook, Protocol):
    def true_position(self) -> float:
        """Where the stage really is now (the axis unit)."""

    def strike(self, kind: Literal["stage_stall", "limit_switch"]) -> None:
        """A fault on the move under way, now: a stall (the stage stops but the move never completes) or a
        limit switch (the stage stops and the controller reports it)."""

    def refuse_moves(self, refuse: bool = True) -> None:
        """The controller refuses movement commands (parked, servo off, limits): its protocol's refusal."""


class SourceHook(SilenceHook, Protocol):
    def beam_on(self) -> bool:
        """True while the tube's high voltage is really on."""

    def arc(self) -> None:
        """A tube arc / overload now: the protection drops the beam and latches a fault until reset."""

    def open_interlock(self, open_: bool = True) -> None:
        """Open (or close again) the enclosure interlock."""


class DetectorHook(SilenceHook, Protocol):
    def withhold_frames(self, withhold: bool = True) -> None:
        """Frames are exposed but never delivered (a cable pulled, a grabber stuck)."""

    def last_exposure_s(self) -> float | None:
        """The exposure (s) the last frame was really integrated over."""
