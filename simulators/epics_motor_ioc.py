"""A Channel Access IOC (caproto) serving a subset of the EPICS motor record, driving a SimulatedAxis.

Fields of the record ``RECORD`` (e.g. ``CT:ROT:m1``), as the EPICS motor record reference describes them
("Field Descriptions"; docs/protocols/epics-motor-record.md): the driver's fields (``codec.FIELDS`` of
``microct.drivers.epics_motor``, whose names, ``MSTA`` bits and soft-limit rule this IOC imports, so
driver and IOC cannot drift apart) ``.VAL .RBV .DMOV .MOVN .VELO .ACCL .HLM .LLM .DHLM .DLLM .STOP .HOMF
.HOMR .MSTA .LVIO .HLS .LLS``, with ``.VMAX .EGU .TDIR``,
and, so that ophyd's ``EpicsMotor`` and pyepics' ``epics.Motor`` connect, ``.RTYP`` (``motor``),
``.DESC``, ``.PREC`` and the user/dial calibration fields ``.OFF .DIR .FOFF .SET`` at the record's
defaults (user = dial: read-only here, a write is refused with a Channel Access error).

Behaviour copied from the real record (what ophyd / pyepics clients rely on):

- a put to ``VAL`` starts a move of non-zero duration (at least ``MIN_MOVE_S``, even a zero-length
  one); ``DMOV`` goes 1→0 at the start and 0→1 at the end, ``MOVN`` is 1 while moving, ``RBV``
  is updated at ~20 Hz while moving and once more at the end, before ``DMOV`` returns to 1; the
  put-callback of ``VAL`` completes when the move has ended (after ``DMOV`` = 1 was posted);
- the soft limits are off only when both dial limits ``DLLM`` and ``DHLM`` are 0 (``motorRecord.cc``;
  ``codec.refuses``); otherwise a set-point outside ``DLLM``..``DHLM``, or any set-point while
  ``DLLM`` > ``DHLM``, is refused: ``LVIO`` becomes 1, nothing moves, ``VAL`` keeps its old value,
  ``DMOV`` still pulses; a valid set-point clears ``LVIO``. User = dial here (``DIR`` Pos, ``OFF`` 0):
  a put to ``HLM``/``LLM`` sets ``DHLM``/``DLLM`` too, and the other way round;
- ``VAL`` and ``RBV`` report ``LLM``/``HLM`` as their control and display limits (the record's
  ``get_control_double``; ophyd's ``EpicsMotor`` takes its soft limits from them), updated when
  ``HLM``/``LLM`` change; they never refuse a value (an out-of-range set-point is answered by
  ``LVIO``, not by a Channel Access error);
- ``TDIR`` is the direction of the last move (1 positive), which ophyd reads to pick the limit switch;
- ``ACCL`` (seconds to reach ``VELO``) is kept when ``VELO`` changes: the stage's acceleration
  becomes ``VELO / ACCL``;
- ``STOP`` = 1 halts the axis; the pending ``VAL`` put completes with ``VAL`` reset to ``RBV``;
- ``HOMF`` / ``HOMR`` = 1 runs the axis' homing move; the field is cleared and its put completes
  when it is done; ``MSTA`` bit 14 (HOMED) is 0 from power-up (the IOC's start) and while a homing
  runs, and 1 once a homing has ended without a stop or a limit switch;
- optional hardware limit switches (``hls_position`` / ``lls_position``): a move crossing one stops
  there and sets ``HLS`` / ``LLS`` (and the MSTA bits).

The stage model is ``SimulatedAxis`` (real Clock); its own soft limits are not used (the record's
``HLM``/``LLM`` are). Given a ``FaultSchedule`` it plays the device ``role`` and takes that role's
stage stalls (``DMOV`` stays 0 and the ``VAL`` put pending until the jam clears, a stop or a new
move) and limit switches (the move ends there with ``HLS`` or ``LLS`` set, by its direction, until the
next move), as ``microct.simulators.faults`` schedules them. ``start_motor_ioc(record)`` runs the IOC
in a background thread on 127.0.0.1; ``start_motor_iocs(records)`` serves several records, each with
its own stage, from one IOC.

For the axis fault contract (``MotorRecordIOC.fault_hook()``, a ``MotorRecordHook``): ``mute`` silences
the record (``epics_ioc.Silence``: its reads are answered late, its writes dropped, and a move under
way neither posts nor ends — ``DMOV`` stays 0, the ``VAL`` put-callback pending — until it speaks again);
``strike`` stalls the stage (``DMOV`` stays 0) or stops it on a limit switch (``HLS``/``LLS``);
``refuse_moves`` makes the record refuse every set-point as a motor record does, with inverted soft
limits (``DLLM`` > ``DHLM``: ``LVIO`` = 1), put back afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import caproto.server.common as caproto_server_common
from caproto import ChannelType
from caproto.server import PVGroup, PvpropertyDouble, PvpropertyInteger, pvproperty

from microct.clock import Clock
from microct.devices.axis import move_duration_s
from microct.drivers.epics_motor.codec import DMOV_DONE, FIELDS, Msta, refuses
from microct.simulators.axis import SimulatedAxis, SimulatedAxisHook, SimulatedAxisOptions
from microct.simulators.epics_ioc import IocHandle, Silence, refuse_request_faults, run_ioc_in_thread, silences_of
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import stopped_by_limit_switch

log = logging.getLogger("microct.simulators.epics_motor_ioc")

RBV_PERIOD_S = 0.05
"""Read-back update period while moving (20 Hz)."""
MIN_MOVE_S = 0.005
"""Shortest move: DMOV always pulses 1→0→1 over a visible time, as from the real record (a simulated move
that completed in the same tick exposed a race in ophyd's ``EpicsMotor`` status handling: scans hung)."""

FLUSH_MARGIN_S = 0.01
"""Added to caproto's batching window before a put completes: on a loaded 2-core machine (two CPU-bound
processes) 2 ms let 18 of 200 HLM updates reach pyepics after the put-completion; 10 ms, none."""



class _FlushedPut:
    """A client's put completes only after the monitor updates it caused have gone out, as from the
    real record. caproto sends the put-completion at once but holds monitor updates for up to its
    batching window (``epics_ioc.MONITOR_BATCH_S``); pyepics' ``epics.Motor`` reads ``LVIO``/``HLS``/
    ``VAL``/``HLM`` from its monitors as soon as a put-callback completes. A pause, not a guarantee:
    caproto tells no one when an update has been sent, and a thread hogging this process' GIL can still
    delay them past it."""

    async def auth_write(self, *args, **kwargs):
        result = await super().auth_write(*args, **kwargs)
        await asyncio.sleep(caproto_server_common.HIGH_LOAD_TIMEOUT + FLUSH_MARGIN_S)
        return result


class FieldDouble(_FlushedPut, PvpropertyDouble):
    """A writable DOUBLE field of the record."""


class FieldInteger(_FlushedPut, PvpropertyInteger):
    """A writable LONG field of the record."""


class PositionData(FieldDouble):
    """``VAL`` / ``RBV``: control limits are reported (``HLM``/``LLM``) but, as on the record, not
    enforced by the Channel Access server."""

    async def verify_value(self, value):
        return await self.putter(self, value) if self.putter is not None else value


def _constant_enum(field: str, strings: tuple[str, ...]) -> pvproperty:
    """A read-only enum field fixed at its first string (the record's default)."""
    return pvproperty(name=field, value=strings[0], enum_strings=strings, dtype=ChannelType.ENUM, read_only=True)


class MotorRecordIOC(PVGroup):
    """The motor-record subset; ``prefix`` is the record name (fields are ``prefix + '.FIELD'``)."""

    # the driver's fields
    VAL = pvproperty(name=FIELDS["val"], value=0.0, precision=4, dtype=PositionData,
                     doc="user set-point; put-callback completes at move end")
    RBV = pvproperty(name=FIELDS["rbv"], value=0.0, precision=4, dtype=PositionData, read_only=True)
    DMOV = pvproperty(name=FIELDS["dmov"], value=DMOV_DONE, read_only=True)
    MOVN = pvproperty(name=FIELDS["movn"], value=0, read_only=True)
    VELO = pvproperty(name=FIELDS["velo"], value=1.0, precision=4, dtype=FieldDouble)
    ACCL = pvproperty(name=FIELDS["accl"], value=0.1, precision=4, dtype=FieldDouble, doc="seconds to reach VELO")
    HLM = pvproperty(name=FIELDS["hlm"], value=0.0, precision=4, dtype=FieldDouble)
    LLM = pvproperty(name=FIELDS["llm"], value=0.0, precision=4, dtype=FieldDouble)
    DHLM = pvproperty(name=FIELDS["dhlm"], value=0.0, precision=4, dtype=FieldDouble, doc="dial high limit (= HLM)")
    DLLM = pvproperty(name=FIELDS["dllm"], value=0.0, precision=4, dtype=FieldDouble, doc="dial low limit (= LLM)")
    STOP = pvproperty(name=FIELDS["stop"], value=0, dtype=FieldInteger)
    HOMF = pvproperty(name=FIELDS["homf"], value=0, dtype=FieldInteger)
    HOMR = pvproperty(name=FIELDS["homr"], value=0, dtype=FieldInteger)
    MSTA = pvproperty(name=FIELDS["msta"], value=int(Msta.DONE | Msta.PRESENT), read_only=True)
    LVIO = pvproperty(name=FIELDS["lvio"], value=0, read_only=True)
    HLS = pvproperty(name=FIELDS["hls"], value=0, read_only=True)
    LLS = pvproperty(name=FIELDS["lls"], value=0, read_only=True)
    # fields only other clients read (pyepics' epics.Motor, ophyd's EpicsMotor)
    VMAX = pvproperty(name=".VMAX", value=1.0, precision=4, dtype=FieldDouble)
    EGU = pvproperty(name=".EGU", value="deg", dtype=ChannelType.STRING, read_only=True)
    TDIR = pvproperty(name=".TDIR", value=0, read_only=True, doc="direction of the last move: 1 positive")
    RTYP = pvproperty(name=".RTYP", value="motor", dtype=ChannelType.STRING, read_only=True)
    DESC = pvproperty(name=".DESC", value="simulated stage", dtype=ChannelType.STRING, read_only=True)
    PREC = pvproperty(name=".PREC", value=4, read_only=True)
    OFF = pvproperty(name=".OFF", value=0.0, precision=4, read_only=True)
    DIR = _constant_enum(".DIR", ("Pos", "Neg"))
    FOFF = _constant_enum(".FOFF", ("Variable", "Frozen"))
    SET = _constant_enum(".SET", ("Use", "Set"))

    def __init__(self, *args, axis: SimulatedAxis, high_limit: float, low_limit: float,
                 hls_position: float | None = None, lls_position: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis
        self._initial_limits = (low_limit, high_limit)
        self.hls_position = hls_position
        self.lls_position = lls_position
        self._generation = 0
        self._wake: asyncio.Event | None = None
        self._homed = False
        self._direction = 1
        self._stopped = False
        self._limit_hit = False  # a scheduled limit switch ended the last move
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limits_before_refusal: tuple[float, float] | None = None
        self.silence = Silence()
        self.moves = 0
        """Moves started (VAL puts accepted and homing moves), for tests."""

    def fault_hook(self) -> MotorRecordHook:
        """The axis fault contract's hook on this record (see the module docstring)."""
        return MotorRecordHook(self)

    def call(self, coroutine, timeout_s: float = 5.0):
        """Run ``coroutine`` in the IOC's event loop (from another thread) and return its result."""
        if self._loop is None:
            raise RuntimeError(f"motor record {self.prefix!r} is not served yet")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def refuse_moves(self, refuse: bool = True) -> None:
        """Invert the soft limits (``DLLM`` > ``DHLM``: every set-point refused, ``LVIO`` = 1), or put the
        ones from before back."""
        if refuse and self._limits_before_refusal is None:
            low, high = float(self.LLM.value), float(self.HLM.value)
            self._limits_before_refusal = low, high
            await self.HLM.write(min(low, high) - 1.0)  # never both 0: the record enforces them
            await self.LLM.write(max(low, high) + 1.0)
        elif not refuse and self._limits_before_refusal is not None:
            (low, high), self._limits_before_refusal = self._limits_before_refusal, None
            await self.LLM.write(low)
            await self.HLM.write(high)

    # -- helpers -------------------------------------------------------------------------------------
    async def _post_status(self, moving: bool, problem: bool = False) -> None:
        here = self.axis.read_position()
        hls = int((self.hls_position is not None and here >= self.hls_position)
                  or (self._limit_hit and self._direction > 0))
        lls = int((self.lls_position is not None and here <= self.lls_position)
                  or (self._limit_hit and self._direction < 0))
        msta = Msta.PRESENT | (Msta.DIRECTION if self._direction > 0 else 0)
        msta |= Msta.MOVING if moving else Msta.DONE
        msta |= (Msta.PLUS_LS if hls else 0) | (Msta.MINUS_LS if lls else 0)
        msta |= (Msta.HOMED if self._homed else 0) | (Msta.PROBLEM if problem else 0)
        msta = int(msta)
        await self.RBV.write(here)
        for pv, value in ((self.HLS, hls), (self.LLS, lls), (self.MSTA, msta), (self.TDIR, int(self._direction > 0))):
            if pv.value != value:
                await pv.write(value)

    def _switch_hit(self, here: float) -> bool:
        return ((self._direction > 0 and self.hls_position is not None and here >= self.hls_position)
                or (self._direction < 0 and self.lls_position is not None and here <= self.lls_position))

    async def _run_move(self, target: float | None) -> None:
        """Move to ``target`` (None: home) with the DMOV/MOVN/RBV sequence; homed or stopped, ``VAL``
        becomes the end position (before ``DMOV`` = 1, as the record posts it)."""
        self._generation += 1
        generation = self._generation
        if self._wake is not None:
            self._wake.set()  # a move in progress ends (its put completes) and this one takes over
        wake = self._wake = asyncio.Event()
        axis = self.axis
        start = axis.read_position()
        goal = axis.options.home_position if target is None else target
        self._direction = 1 if goal >= start else -1
        duration = max(move_duration_s(goal - start, axis.velocity, axis.options.acceleration), MIN_MOVE_S)
        # SimulatedAxis.home() blocks: its start hook gives the Status of the homing move
        status = axis._do_start_home() if target is None else axis.start_move_to(goal)
        self.moves += 1
        self._stopped = self._limit_hit = False
        if target is None:  # the controller forgets its reference when a homing starts (MSTA HOMED = 0)
            self._homed = False
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + duration
        await self.DMOV.write(0)
        await self.MOVN.write(1)
        await self._post_status(moving=True)
        while generation == self._generation and not status.done and not wake.is_set():
            await self.silence.heard()  # a silent record posts nothing (the stage goes on)
            remaining = deadline - loop.time()
            # after the deadline the simulator's timer is about to fire; much later, the stage is jammed
            wait = min(RBV_PERIOD_S, remaining) if remaining > 0 else 0.001 if remaining > -RBV_PERIOD_S \
                else RBV_PERIOD_S
            try:
                await asyncio.wait_for(wake.wait(), wait)
            except TimeoutError:
                pass
            if self._switch_hit(axis.read_position()):
                axis.stop()
                self._stopped = True
                break
            if loop.time() >= deadline and not status.done:
                continue  # the simulator's timer is about to fire
            if not status.done:
                await self.RBV.write(axis.read_position())
        if loop.time() < began + MIN_MOVE_S:  # keep DMOV low for a visible time
            await asyncio.sleep(MIN_MOVE_S)
        await self.silence.heard()  # nor ends a move (DMOV stays 0, the put-callback pending)
        if generation != self._generation:
            return  # superseded: the newer move owns DMOV and VAL
        if stopped_by_limit_switch(status):  # a scheduled fault: the stage stopped on a limit switch
            self._stopped = self._limit_hit = True
        if target is None and not self._stopped:
            self._homed = True
        if target is None or self._stopped:
            await self.VAL.write(axis.read_position(), verify_value=False)
        await self.MOVN.write(0)
        await self._post_status(moving=False)
        await self.DMOV.write(DMOV_DONE)

    async def _post_limits(self, low: float, high: float) -> None:
        """Report the soft limits as ``VAL``/``RBV`` control and display limits (before the new
        ``HLM``/``LLM`` value is posted, so a client re-reading them on that monitor sees them)."""
        for pv in (self.VAL, self.RBV):
            await pv.write_metadata(lower_ctrl_limit=low, upper_ctrl_limit=high, lower_disp_limit=low,
                                    upper_disp_limit=high)

    # -- fields --------------------------------------------------------------------------------------
    @DMOV.startup
    async def DMOV(self, instance, async_lib) -> None:
        self._loop = asyncio.get_running_loop()
        low, high = self._initial_limits
        await self.LLM.write(low)
        await self.HLM.write(high)
        await self.VMAX.write(self.axis.capabilities.max_velocity)
        await self.VELO.write(self.axis.velocity, verify_value=False)
        await self.ACCL.write(self.axis.velocity / self.axis.options.acceleration, verify_value=False)
        await self.EGU.write(self.axis.unit)
        await self.VAL.write(self.axis.read_position(), verify_value=False)
        await self._post_status(moving=False)

    @VAL.putter
    async def VAL(self, instance, value):
        if refuses(value, self.DLLM.value, self.DHLM.value):  # dial = user (DIR Pos, OFF 0)
            await self.LVIO.write(1)
            await self.DMOV.write(0)  # the record still processes: DMOV pulses
            await asyncio.sleep(MIN_MOVE_S)
            await self.DMOV.write(DMOV_DONE)
            return instance.value  # refused: VAL keeps its old value
        if self.LVIO.value:
            await self.LVIO.write(0)
        await self.VAL.write(float(value), verify_value=False)  # posted as the move starts, as by the record
        await self._run_move(float(value))
        return self.VAL.value  # the set-point; RBV if stopped; a newer move's set-point if superseded

    @STOP.putter
    async def STOP(self, instance, value):
        if value:
            self.axis.stop()
            self._stopped = True
            if self._wake is not None:
                self._wake.set()
        return 0

    async def _home(self, instance, value):
        if value:
            if self.LVIO.value:
                await self.LVIO.write(0)
            await self._run_move(None)
        return 0

    @HOMF.putter
    async def HOMF(self, instance, value):
        return await self._home(instance, value)

    @HOMR.putter
    async def HOMR(self, instance, value):
        return await self._home(instance, value)

    @HLM.putter
    async def HLM(self, instance, value):
        await self._post_limits(self.LLM.value, value)
        await self.DHLM.write(value, verify_value=False)
        return value

    @LLM.putter
    async def LLM(self, instance, value):
        await self._post_limits(value, self.HLM.value)
        await self.DLLM.write(value, verify_value=False)
        return value

    @DHLM.putter
    async def DHLM(self, instance, value):
        await self._post_limits(self.LLM.value, value)
        await self.HLM.write(value, verify_value=False)
        return value

    @DLLM.putter
    async def DLLM(self, instance, value):
        await self._post_limits(value, self.HLM.value)
        await self.LLM.write(value, verify_value=False)
        return value

    @VELO.putter
    async def VELO(self, instance, value):
        top = self.axis.capabilities.max_velocity
        value = min(max(float(value), top * 1e-6), top)  # VBAS ≤ VELO ≤ VMAX: clamped, as the record does
        self.axis.set_velocity(value)
        self.axis.options.acceleration = value / self.ACCL.value  # the record keeps ACCL (s to reach VELO)
        return value

    @ACCL.putter
    async def ACCL(self, instance, value):
        value = float(value) if value > 0 else 0.1  # the record replaces ACCL <= 0 by 0.1
        self.axis.options.acceleration = self.axis.velocity / value
        return value


def build(record: str, options: SimulatedAxisOptions | None = None, *, high_limit: float = 360.0,
          low_limit: float = -360.0, hls_position: float | None = None, lls_position: float | None = None,
          faults: FaultSchedule | None = None, role: str = "epics-motor-ioc") -> MotorRecordIOC:
    """A motor-record PV group driving a new SimulatedAxis (``ioc.axis``, joining ``faults`` as
    ``role``); not served yet. ConfigurationError for request faults (``refuse_request_faults``)."""
    refuse_request_faults(faults, role)
    opts = (options or SimulatedAxisOptions()).model_copy(update={"low_limit": None, "high_limit": None})
    axis = SimulatedAxis(role, opts, clock=Clock(), faults=faults)
    axis.connect()
    return MotorRecordIOC(prefix=record, axis=axis, high_limit=high_limit, low_limit=low_limit,
                          hls_position=hls_position, lls_position=lls_position)


def start_motor_iocs(records: Sequence[str], port: int = 0, options: SimulatedAxisOptions | None = None, *,
                     high_limit: float = 360.0, low_limit: float = -360.0, hls_position: float | None = None,
                     lls_position: float | None = None, timeout_s: float = 5.0
                     ) -> tuple[IocHandle, dict[str, MotorRecordIOC]]:
    """Serve several motor records from one IOC (a daemon thread on 127.0.0.1, ``port`` 0: a free one),
    each driving its own SimulatedAxis (``ioc.axis``); returns (handle, {record: ioc}).

    ``high_limit``/``low_limit`` are each record's initial ``HLM``/``LLM``; ``hls_position`` /
    ``lls_position`` place simulated hardware limit switches (None: none).
    """
    iocs = {record: build(record, options, high_limit=high_limit, low_limit=low_limit, hls_position=hls_position,
                          lls_position=lls_position) for record in records}
    pvdb = {name: pv for ioc in iocs.values() for name, pv in ioc.pvdb.items()}
    return run_ioc_in_thread(pvdb, " ".join(records), port, timeout_s, silences=silences_of(*iocs.values())), iocs


def start_motor_ioc(record: str = "CT:ROT:m1", port: int = 0, options: SimulatedAxisOptions | None = None, *,
                    high_limit: float = 360.0, low_limit: float = -360.0, hls_position: float | None = None,
                    lls_position: float | None = None, timeout_s: float = 5.0) -> tuple[IocHandle, SimulatedAxis]:
    """One motor record (``start_motor_iocs``); returns (handle, axis), the record's IOC as ``handle.ioc``."""
    handle, iocs = start_motor_iocs([record], port, options, high_limit=high_limit, low_limit=low_limit,
                                    hls_position=hls_position, lls_position=lls_position, timeout_s=timeout_s)
    handle.ioc = ioc = iocs[record]  # for tests: move counter, switch positions, fault hook
    return handle, ioc.axis


class MotorRecordHook(SimulatedAxisHook):
    """The axis fault contract's hook on a motor record of these IOCs: ``mute`` silences the record's PVs,
    ``strike`` and ``true_position`` act on its stage, ``refuse_moves`` inverts the record's soft limits
    (``MotorRecordIOC.refuse_moves``)."""

    def __init__(self, ioc: MotorRecordIOC) -> None:
        super().__init__(ioc.axis, ioc.silence.mute)
        self.ioc = ioc

    def refuse_moves(self, refuse: bool = True) -> None:
        self.ioc.call(self.ioc.refuse_moves(refuse))
