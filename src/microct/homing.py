"""Homing (referencing) the axes of a scan, before the beam is ever on.

Each axis table's ``home`` setting (``microct.config.AxisConfig``) says when its axis is homed:

- ``"if-needed"`` (the default): when the device reports no position reference
  (``Axis.read_referenced()`` is False, as after power-up); a device that cannot tell (None) is not
  homed, and the event says so;
- ``"always"``: at every scan;
- ``"never"``: not homed; if the device reports no reference, a warning says that its positions are
  relative to an arbitrary zero.

``force`` (``microct home``) homes every axis, referenced or not, except the ``"never"`` ones: the
configuration is the one place that says an axis must not be homed (a stage without a home switch, or
one whose homing run would hit something), and an operator changes it there.

A homing is a move bounded by the table's ``home_timeout_s``: past it the axis is stopped and
DeviceTimeoutError raised. A failed homing raises the driver's error; an axis that still reports no
reference after its homing ended is a DeviceFaultError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from microct.config import AxisConfig, ScanConfig
from microct.devices import Axis
from microct.errors import DeviceFaultError, DeviceTimeoutError, MicroCTError
from microct.instruments import Instruments

AXIS_ROLES = ("rotation", "sample_out")
"""The roles of a configuration that are axes, in the order they are homed."""

Event = Callable[[str, int], None]
"""Told what homing does, in words for an operator, with a logging level (INFO or WARNING)."""


def home_axes(instruments: Instruments, config: ScanConfig, event: Event, force: bool = False,
              roles: Collection[str] | None = None) -> list[str]:
    """Home the connected axes of ``instruments`` as ``config`` says (see the module), one after the other;
    ``roles``: only these (default: every axis configured). Returns the messages given to ``event``, one or
    two per axis (homing started, homed; or why it was not homed). Raises the driver's error of a failed
    homing, DeviceTimeoutError after ``home_timeout_s`` (the axis stopped)."""
    messages: list[str] = []

    def say(message: str, level: int = logging.INFO) -> None:
        messages.append(message)
        event(message, level)

    for role in AXIS_ROLES:
        axis: Axis | None = getattr(instruments, role)
        table: AxisConfig | None = getattr(config, role)
        if axis is None or table is None or (roles is not None and role not in roles):
            continue
        _home_axis(role, axis, table, force, instruments, say)
    return messages


def _home_axis(role: str, axis: Axis, table: AxisConfig, force: bool, instruments: Instruments,
               say: Callable[..., None]) -> None:
    if table.home == "never":
        referenced = axis.read_referenced()
        if referenced is False:
            say(f"{role}: not homed (home = \"never\") although the stage reports no position reference: its "
                f"positions are relative to an arbitrary zero (wherever it was at power-up)", logging.WARNING)
        else:
            say(f"{role}: not homed (home = \"never\"); {_state(referenced)}")
        return
    if force or table.home == "always":
        why = "on request" if force else "home = \"always\""
    else:  # if-needed
        referenced = axis.read_referenced()
        if referenced is not False:
            advice = f" (home = \"always\" in [{role}] homes it at every scan)" if referenced is None else ""
            say(f"{role}: not homed: {_state(referenced)}{advice}")
            return
        why = "the stage reports no position reference"
    say(f"{role}: homing ({why}), for up to {table.home_timeout_s:g} s")
    clock = instruments.clock
    started = clock.monotonic()
    _run_homing(role, axis, table.home_timeout_s)
    if axis.read_referenced() is False:
        raise DeviceFaultError(f"axis {role!r}: the homing move ended but the stage still reports no position "
                               f"reference")
    say(f"{role}: homed in {clock.monotonic() - started:.1f} s; now at {axis.read_position():g} {axis.unit}")


def _run_homing(role: str, axis: Axis, timeout_s: float) -> None:
    """``axis.home()``; past ``timeout_s``, stop the axis and raise DeviceTimeoutError."""
    try:
        axis.home(timeout_s)
    except DeviceTimeoutError as error:
        try:
            axis.stop()
            stopped = "the axis was stopped"
        except MicroCTError as failure:
            stopped = f"stopping the axis failed too: {failure}"
        raise DeviceTimeoutError(f"axis {role!r}: homing not finished within home_timeout_s = {timeout_s:g} s; "
                                 f"{stopped} ({error})") from error


def _state(referenced: bool | None) -> str:
    return {True: "the stage reports a position reference",
            False: "the stage reports no position reference",
            None: "the stage cannot tell whether it has a position reference"}[referenced]
