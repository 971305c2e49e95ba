"""Faults as plain data: what goes wrong, on which device, and when (no injection here).

The simulators (``microct.simulators.faults``) play these descriptions; the core only reads and
validates them (``[[simulation.faults]]`` of a scan, ``microct sim serve --faults FILE``).

A ``Fault`` (one ``[[simulation.faults]]`` table of a scan file, or built in a test) names a
``kind``, the ``device`` it hits and one trigger. ``device`` is the role the simulator was built for
("source", "rotation", "sample_out", "detector"; its name when built by hand) or "writer" (the
NXtomo file, see ``WriterFaults``). Triggers:

- ``at_s``: seconds since the device first connected, on its clock (not for the writer);
- ``at_frame``: the detector simulator's frame number, 0-based, counting every frame it makes
  (skipped ones too); for the writer, the frame's index in the file;
- ``at_projection``: the projection number, 0-based. The sequencer does not tell simulators which
  frame is a projection, so the detector simulator counts them: an ``acquire()`` call is a projection
  when the source reports BEAM_ON and the sample axis ("sample_out", if any) lies within half the
  field of view of 0 mm (the sample-in position of the physics); the count goes up when it returns.
  For the writer, the index among the frames written with image key 0;
- ``probability``: drawn at every opportunity from a generator seeded by ``seed`` (default: the
  ``[simulation]`` seed and the fault's place in the list), so a random schedule replays exactly.

A fault fires at the first *opportunity* at or after its trigger and then hits ``count`` consecutive
opportunities; a random fault may fire ``repeat`` times (0: no limit). Opportunities and effects:

=================  ===================  ====================================================================
kind               device               opportunity → effect
=================  ===================  ====================================================================
arc                source               mid-exposure of a detector frame taken with the beam on (at_s: that
                                        instant) → the overload protection drops the beam and latches FAULT
                                        until ``reset()``; the frame gets the dose up to the arc only
interlock_open     source               mid-exposure of a frame (at_s: that instant) → interlock open, beam
                                        off, NOT_READY; closed again after ``duration_s`` (if not given,
                                        it stays open until ``set_interlock(True)``)
stage_stall        rotation, sample_out mid-move of a move (at_s: the move under way then, else the next
                                        one) → the stage stops where it is but the move never completes,
                                        like a jammed servo stage holding a following error: ``Status.wait``
                                        raises DeviceTimeoutError at the caller's timeout; after
                                        ``duration_s`` the jam clears and the move goes on (if not
                                        given, it lasts until ``stop()`` or another move)
limit_switch       rotation, sample_out same → the move stops there; its Status fails with DeviceFaultError
frame_timeout      detector             a frame → ``acquire``/``skip`` raises DeviceTimeoutError after it
frame_dropped      detector             a frame → FrameLostError (the frame number is used up)
reply_timeout      any but writer       a request → DeviceTimeoutError
garbled_reply      any but writer       a request → ProtocolError
disconnect         any but writer       a request → CommunicationError; with ``duration_s`` every request
                                        fails that long (the link is down), then all is well again
write_error        writer               a frame written → OSError(EIO) from the pixel write
disk_full          writer               a frame written → OSError(ENOSPC) from the pixel write
=================  ===================  ====================================================================

A *request* is any call of the device's public interface that needs the link (each is one exchange
or more on a real link); the reads the detector simulator makes of the other instruments to compute
its frames are physics, not requests, and meet no fault. For ``at_frame`` / ``at_projection``,
requests and moves compare the frames / projections made so far: a rotation fault ``at_projection = N``
hits the first move started after N projections, i.e. the move to projection N in step-and-shoot.

``FaultSchedule`` holds the runtime state (what fired, the shared frame and projection counters, a
``hits`` log with the device-clock time of each hit). Simulators attach to it by device name; the
wire simulators can reuse ``DeviceFaults.request()`` to decide when to stay silent, garble or drop.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from microct.errors import ConfigurationError
from microct.options import validation_message

FaultKind = Literal["arc", "interlock_open", "stage_stall", "limit_switch", "frame_timeout", "frame_dropped",
                    "reply_timeout", "garbled_reply", "disconnect", "write_error", "disk_full"]
FaultDevice = Literal["source", "rotation", "sample_out", "detector", "writer"]

BEAM_KINDS = frozenset({"arc", "interlock_open"})
STAGE_KINDS = frozenset({"stage_stall", "limit_switch"})
FRAME_KINDS = frozenset({"frame_timeout", "frame_dropped"})
REQUEST_KINDS = frozenset({"reply_timeout", "garbled_reply", "disconnect"})
WRITER_KINDS = frozenset({"write_error", "disk_full"})
DURATION_KINDS = frozenset({"interlock_open", "stage_stall", "disconnect"})

_INSTRUMENTS = ("source", "rotation", "sample_out", "detector")
DEVICES_OF: dict[str, tuple[str, ...]] = {
    **{kind: ("source",) for kind in BEAM_KINDS},
    **{kind: ("rotation", "sample_out") for kind in STAGE_KINDS},
    **{kind: ("detector",) for kind in FRAME_KINDS},
    **{kind: _INSTRUMENTS for kind in REQUEST_KINDS},
    **{kind: ("writer",) for kind in WRITER_KINDS},
}
"""The devices each kind of fault can hit."""

TRIGGERS = ("at_s", "at_frame", "at_projection", "probability")


class Fault(BaseModel):
    """One scheduled fault (see the module docstring for kinds, triggers and effects)."""

    model_config = ConfigDict(extra="forbid")
    kind: FaultKind = Field(description="what goes wrong (kinds and effects: microct.faults)")
    device: FaultDevice = Field(description="the device it hits; each kind hits only some (writer: the scan file)")
    at_s: float | None = Field(default=None, ge=0, description="s since the device first connected")
    at_frame: int | None = Field(default=None, ge=0, description="detector frame number (writer: file index)")
    at_projection: int | None = Field(default=None, ge=0, description="projection number, 0-based")
    probability: float | None = Field(default=None, gt=0, le=1, description="chance at each opportunity")
    seed: int | None = Field(default=None, description="for probability: the generator's seed")
    count: int = Field(default=1, ge=1, description="consecutive opportunities hit each time it fires")
    repeat: int = Field(default=1, ge=0, description="times a random fault may fire (0: no limit)")
    duration_s: float | None = Field(default=None, gt=0, description="how long the effect lasts (s)")

    @field_validator("device")
    @classmethod
    def _device_fits_kind(cls, device: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is not None and device not in DEVICES_OF[kind]:
            raise ValueError(f"a {kind!r} fault hits {' or '.join(map(repr, DEVICES_OF[kind]))}, not {device!r}")
        return device

    @field_validator("at_s")
    @classmethod
    def _writer_has_no_clock(cls, at_s: float | None, info: ValidationInfo) -> float | None:
        if at_s is not None and info.data.get("device") == "writer":
            raise ValueError("the writer has no device clock; give at_frame, at_projection or probability")
        return at_s

    @field_validator("seed")
    @classmethod
    def _seed_needs_probability(cls, seed: int | None, info: ValidationInfo) -> int | None:
        if seed is not None and info.data.get("probability") is None:
            raise ValueError("seed is only for a random fault (give probability)")
        return seed

    @field_validator("repeat")
    @classmethod
    def _repeat_needs_probability(cls, repeat: int, info: ValidationInfo) -> int:
        if repeat != 1 and "probability" in info.data and info.data["probability"] is None:
            raise ValueError("only a random fault (probability) fires more than once; list the fault "
                             "again for another time, frame or projection")
        return repeat

    @field_validator("duration_s")
    @classmethod
    def _duration_fits_kind(cls, duration_s: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if duration_s is not None and kind is not None and kind not in DURATION_KINDS:
            raise ValueError(f"a {kind!r} fault has no duration; duration_s is for "
                             f"{', '.join(sorted(DURATION_KINDS))}")
        return duration_s

    @model_validator(mode="after")
    def _one_trigger(self):
        given = [name for name in TRIGGERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one trigger of {', '.join(TRIGGERS)}; got "
                             f"{', '.join(given) if given else 'none'}")
        if self.kind == "disconnect" and self.duration_s is not None and "count" in self.model_fields_set:
            raise ValueError("a disconnect lasts count requests or duration_s seconds: give one of them")
        return self


class FaultPlan(BaseModel):
    """A ``--faults`` file of ``microct sim serve``: an optional ``seed`` and ``[[faults]]`` tables (the
    schema of a scan's ``[[simulation.faults]]``)."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(default=None, ge=0, description="seed of the random faults that have none")
    faults: list[Fault] = Field(default_factory=list)
    _origin: str = PrivateAttr(default="--faults")

    @property
    def origin(self) -> str:
        """Where the plan comes from, as errors name it (``--faults FILE``)."""
        return self._origin


def load_fault_plan(path: str | Path) -> FaultPlan:
    """Read a ``--faults`` TOML file; ConfigurationError naming the file and the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"--faults {path}: {error}") from None
    try:
        plan = FaultPlan.model_validate(data)
    except ValidationError as error:
        raise ConfigurationError(f"--faults {path}: {validation_message(error)}") from None
    plan._origin = f"--faults {path}"
    return plan
