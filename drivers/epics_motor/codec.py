"""The EPICS motor record's vocabulary, shared by the driver and the simulated IOC
(``microct.simulators.epics_motor_ioc``), so that neither can drift from the other. Pure: no I/O.

Sources: the EPICS motor record reference ("Motor Record and related software", section "Field
Descriptions": VAL, RBV, DMOV, MOVN, VELO, ACCL, HLM/LLM, DHLM/DLLM, STOP, HOMF/HOMR, MSTA, LVIO,
HLS/LLS), the record's source ``motorRecord.cc`` for the soft-limit rule, and
docs/protocols/epics-motor-record.md. A field's PV is the record name plus ``.FIELD``
(``CT:ROT:m1.VAL``).
"""

from __future__ import annotations

import enum

from microct.driverkit import FindingLevel

FIELDS = {"val": ".VAL", "rbv": ".RBV", "dmov": ".DMOV", "movn": ".MOVN", "velo": ".VELO", "accl": ".ACCL",
          "hlm": ".HLM", "llm": ".LLM", "dhlm": ".DHLM", "dllm": ".DLLM", "stop": ".STOP", "homf": ".HOMF",
          "homr": ".HOMR", "msta": ".MSTA", "lvio": ".LVIO", "hls": ".HLS", "lls": ".LLS"}
"""The fields the driver uses, by key: the suffix after the record name.

- ``VAL`` / ``RBV``: user set-point / read-back (EGU); a put-callback write of ``VAL`` completes at the
  end of the move;
- ``DMOV``: done moving (``DMOV_DONE``); 1→0→1 on every move, even a zero-length one; ``MOVN``: moving;
- ``VELO``: speed (EGU/s, ``VBAS`` ≤ ``VELO`` ≤ ``VMAX``); ``ACCL``: seconds to reach ``VELO``;
- ``HLM`` / ``LLM``: user soft limits; ``DHLM`` / ``DLLM``: the same in dial coordinates (user = dial ×
  ``DIR`` + ``OFF``), which the record checks set-points against (``refuses``, ``soft_limits``); ``LVIO``: 1
  when the last set-point was refused (outside them);
- ``STOP``, ``HOMF``, ``HOMR``: a put of ``START`` stops / homes forward / homes in reverse (``HOMF`` /
  ``HOMR`` complete when homing is done);
- ``MSTA``: the status word (``Msta``); ``HLS`` / ``LLS``: at the high / low hardware limit switch.
"""
MONITORED = ("rbv", "dmov", "movn", "msta", "lvio", "hls", "lls")
"""Fields the driver follows by monitor."""
DMOV_DONE = 1
"""``DMOV`` when the record is done moving."""
START = 1
"""What a put to ``STOP``, ``HOMF`` or ``HOMR`` writes to act."""


class Msta(enum.IntFlag):
    """The bits of ``MSTA`` (motor status), 0 to 14; bit 4 is unused."""

    DIRECTION = 1 << 0
    """Last direction of motion: 1 positive."""
    DONE = 1 << 1
    PLUS_LS = 1 << 2
    """At the positive hardware limit switch."""
    HOMELS = 1 << 3
    POSITION = 1 << 5
    """Closed-loop position control."""
    SLIP_STALL = 1 << 6
    HOME = 1 << 7
    PRESENT = 1 << 8
    """Encoder present."""
    PROBLEM = 1 << 9
    MOVING = 1 << 10
    GAIN_SUPPORT = 1 << 11
    COMM_ERR = 1 << 12
    MINUS_LS = 1 << 13
    """At the negative hardware limit switch."""
    HOMED = 1 << 14
    """The axis has been homed (``RA_HOMED`` in the motor module's ``motor.h``); set by the controller's
    driver, so only where that driver knows it (``EpicsMotorOptions.reports_homed``)."""


MSTA_MEANINGS: dict[Msta, tuple[FindingLevel, str]] = {
    # The meaning of each bit (motor record reference, "Field Descriptions", MSTA; docs/protocols/
    # epics-motor-record.md, "Status bits") and how a commissioning report judges it set: SLIP_STALL and
    # PROBLEM put the record in MAJOR alarm, COMM_ERR is a lost controller: errors.
    Msta.DIRECTION: ("ok", "last motion in the positive direction"),
    Msta.DONE: ("ok", "motion done"),
    Msta.PLUS_LS: ("warning", "at the positive hardware limit switch"),
    Msta.HOMELS: ("ok", "at the home switch"),
    Msta.POSITION: ("ok", "closed-loop position control on"),
    Msta.SLIP_STALL: ("error", "slip or stall detected"),
    Msta.HOME: ("ok", "at the home position"),
    Msta.PRESENT: ("ok", "encoder present"),
    Msta.PROBLEM: ("error", "driver stopped polling, or a hardware problem"),
    Msta.MOVING: ("warning", "moving (started by another client?)"),
    Msta.GAIN_SUPPORT: ("ok", "the controller supports closed-loop gain settings"),
    Msta.COMM_ERR: ("error", "communication error with the controller"),
    Msta.MINUS_LS: ("warning", "at the negative hardware limit switch"),
    Msta.HOMED: ("ok", "homed"),
}


def msta_report(msta: int) -> list[tuple[FindingLevel, str]]:
    """Each bit set in ``msta``, lowest first, as (level, "NAME: meaning") from ``MSTA_MEANINGS``; a set
    bit the table lacks (bit 4, bits above 14) as a warning "bit N: not in the motor record's table"."""
    report: list[tuple[FindingLevel, str]] = []
    for bit in range(int(msta).bit_length()):
        if not msta >> bit & 1:
            continue
        flag = next((flag for flag in MSTA_MEANINGS if flag.value == 1 << bit), None)
        if flag is None:
            report.append(("warning", f"bit {bit}: not in the motor record's table"))
        else:
            level, meaning = MSTA_MEANINGS[flag]
            report.append((level, f"{flag.name}: {meaning}"))
    return report


def limits_enabled(dllm: float, dhlm: float) -> bool:
    """Whether the record checks set-points against its soft limits: unless BOTH dial limits are 0
    (``motorRecord.cc``, ``softLimitsDefined``: ``dhlm == dllm && dllm == 0``; e.g. a continuous rotation
    stage). Any other pair is enforced, even an inverted one (``limits_usable``)."""
    return not (dhlm == 0.0 and dllm == 0.0)


def limits_usable(dllm: float, dhlm: float) -> bool:
    """False when the record would refuse every move (but at most one target): its soft limits are enabled
    and ``DLLM`` ≥ ``DHLM``. ``motorRecord.cc`` ``do_work``: "At least one limit is violated when DLLM >
    DHLM" (LVIO = 1 for any set-point); with ``DLLM`` = ``DHLM`` ≠ 0 only that one position is allowed."""
    return not limits_enabled(dllm, dhlm) or dllm < dhlm


def refuses(dial_target: float, dllm: float, dhlm: float) -> bool:
    """Whether the record refuses a move to ``dial_target`` (LVIO = 1, nothing moves): limits enabled and
    either inverted (``DLLM`` > ``DHLM``) or the target outside ``DLLM``..``DHLM`` (``motorRecord.cc``
    ``do_work``; a record starting outside its limits may still move back towards them, not modelled)."""
    if not limits_enabled(dllm, dhlm):
        return False
    return dllm > dhlm or not dllm <= dial_target <= dhlm


def soft_limits(llm: float, hlm: float, dllm: float, dhlm: float) -> tuple[float | None, float | None]:
    """The record's soft limits in user coordinates (``LLM``, ``HLM``); (None, None) when they are disabled
    (both dial limits 0, ``limits_enabled``). Check ``limits_usable`` first: an inverted pair is returned
    as it is."""
    return (llm, hlm) if limits_enabled(dllm, dhlm) else (None, None)
