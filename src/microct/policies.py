"""Recovery policies: what a scan does when a frame cannot be taken, instead of throwing the scan away.

Each frame is one *step* (move, settle, expose, check the tube, write). ``Recovery.run(step)`` runs it
and, when it fails, reacts by the kind of failure, then runs the step again at the same angle:

- ``InterlockError`` (the enclosure was opened; the tube switched itself off): pause, wait for the
  interlock to close (``interlock_timeout_s``), re-stabilise the beam, retake;
- ``BeamDropped`` (the tube arced or tripped during the frame): beam off, reset, wait ``arc_wait_s``,
  re-stabilise, retake (``arc_retakes`` per frame); the frame exposed during the arc is never kept;
- ``RetakeFrame`` (the detector dropped the frame or did not deliver it in time): retake at once
  (``frame_retakes`` per frame);
- a transient communication error (``CommunicationError``: link lost; ``ProtocolError``: garbled or
  partial reply; ``DeviceTimeoutError``: no reply): wait ``backoff_s``, doubling, and retry
  (``retries`` per frame);
- anything else, or a limit exhausted: the error goes on, and the scan aborts safely.

Every reaction is an event in the file's log, with the time and the frame it concerns.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from microct.errors import (
    CommunicationError,
    DeviceFaultError,
    DeviceTimeoutError,
    InterlockError,
    MicroCTError,
    ProtocolError,
)


class RecoveryPolicy(BaseModel):
    """``[scan.recovery]``: how many times, and how, a frame is tried again (0 turns a reaction off)."""

    model_config = ConfigDict(extra="forbid")
    retries: int = Field(default=3, ge=0, le=100, description="transient communication errors, per frame")
    backoff_s: float = Field(default=0.5, ge=0, le=600, description="first wait before a retry; doubles each time")
    arc_retakes: int = Field(default=3, ge=0, le=100, description="tube arcs or overloads, per frame")
    arc_wait_s: float = Field(default=5.0, ge=0, le=3600, description="wait after resetting the tube (s)")
    frame_retakes: int = Field(default=3, ge=0, le=100, description="dropped or late frames, per frame")
    interlock_timeout_s: float = Field(default=600.0, ge=0, description="how long to wait, paused, for an "
                                                                        "opened interlock to close (s)")
    pause_beam_off_s: float = Field(default=60.0, ge=0, description="a pause on request longer than this "
                                                                    "switches the beam off (s)")


class BeamDropped(DeviceFaultError):
    """The tube stopped emitting during a frame (an arc, an overload trip): the frame is not kept."""


class RetakeFrame(MicroCTError):
    """The detector lost a frame or did not deliver it in time: take it again at the same angle."""


TRANSIENT = (CommunicationError, ProtocolError, DeviceTimeoutError)
T = TypeVar("T")


class Recovery:
    """Runs frame steps under a RecoveryPolicy; the scan supplies the procedures it cannot know:
    ``after_arc()`` (beam off, reset, wait, re-stabilise), ``after_interlock(error)`` (wait for the
    interlock, re-stabilise), ``sleep(s)`` and ``event(message, level, frame)``."""

    def __init__(self, policy: RecoveryPolicy, *, after_arc: Callable[[], None],
                 after_interlock: Callable[[InterlockError], None], sleep: Callable[[float], None],
                 event: Callable[..., None]) -> None:
        self.policy = policy
        self.after_arc = after_arc
        self.after_interlock = after_interlock
        self.sleep = sleep
        self.event = event
        self.totals: collections.Counter[str] = collections.Counter()
        """Reactions taken over the whole scan, by kind ("retry", "arc", "retake", "interlock")."""

    def run(self, what: str, frame: int, step: Callable[[], T]) -> T:
        """Run ``step`` until it succeeds and return what it returns, reacting to each failure by the
        policy (``what`` and ``frame`` name it in the events); raises the last error when the policy
        gives up."""
        tries: collections.Counter[str] = collections.Counter()
        while True:
            try:
                return step()
            except InterlockError as error:
                self._count("interlock", tries, None, error, what, frame)
                self.event(f"{what}: interlock opened ({error}); paused, beam off, waiting for it to close",
                           logging.WARNING, frame)
                self.after_interlock(error)
            except BeamDropped as error:
                self._count("arc", tries, self.policy.arc_retakes, error, what, frame)
                self.event(f"{what}: tube fault during the frame ({error}); frame dropped; beam off, reset, wait "
                           f"{self.policy.arc_wait_s:g} s, re-stabilise, retake ({tries['arc']} of "
                           f"{self.policy.arc_retakes})", logging.WARNING, frame)
                self.after_arc()
            except RetakeFrame as error:
                self._count("retake", tries, self.policy.frame_retakes, error, what, frame)
                self.event(f"{what}: {error}; retaken at the same angle ({tries['retake']} of "
                           f"{self.policy.frame_retakes})", logging.WARNING, frame)
            except TRANSIENT as error:
                self._count("retry", tries, self.policy.retries, error, what, frame)
                wait = self.policy.backoff_s * 2 ** (tries["retry"] - 1)
                self.event(f"{what}: {type(error).__name__}: {error}; retry {tries['retry']} of "
                           f"{self.policy.retries} in {wait:g} s", logging.WARNING, frame)
                self.sleep(wait)

    def _count(self, kind: str, tries: collections.Counter[str], limit: int | None, error: BaseException,
               what: str, frame: int) -> None:
        tries[kind] += 1
        if limit is not None and tries[kind] > limit:
            self.event(f"{what}: giving up after {limit} {kind} reactions", logging.ERROR, frame)
            raise error.__cause__ if isinstance(error, RetakeFrame) and error.__cause__ else error
        self.totals[kind] += 1
