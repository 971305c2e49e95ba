"""A Channel Access IOC (caproto) serving a subset of the EPICS motor record, driving a SimulatedAxis.

Fields of the record ``RECORD`` (e.g. ``CT:ROT:m1``), as in shared/protocols/epics-motor-record.md:
``.VAL .RBV .DMOV .MOVN .VELO .VMAX .ACCL .HLM .LLM .STOP .HOMF .HOMR .MSTA .LVIO .HLS .LLS .EGU``.

Behaviour copied from the real record (what ophyd / pyepics clients rely on):

- a put to ``VAL`` starts a move of non-zero duration (at least ``MIN_MOVE_S``, even a zero-length
  one); ``DMOV`` goes 1→0 at the start and 0→1 at the end, ``MOVN`` is 1 while moving, ``RBV``
  is updated at ~20 Hz while moving and once more at the end, before ``DMOV`` returns to 1; the
  put-callback of ``VAL`` completes when the move has ended (after ``DMOV`` = 1 was posted);
- a set-point outside ``LLM``..``HLM`` (checked only when ``HLM`` > ``LLM``) is refused: ``LVIO``
  becomes 1, nothing moves, ``VAL`` keeps its old value, ``DMOV`` still pulses; a valid set-point
  clears ``LVIO``;
- ``STOP`` = 1 halts the axis; the pending ``VAL`` put completes with ``VAL`` reset to ``RBV``;
- ``HOMF`` / ``HOMR`` = 1 runs the axis' homing move; the field is cleared and its put completes
  when it is done;
- optional hardware limit switches (``hls_position`` / ``lls_position``): a move crossing one stops
  there and sets ``HLS`` / ``LLS`` (and the MSTA bits).

The stage model is ``SimulatedAxis`` (real Clock); its own soft limits are not used (the record's
``HLM``/``LLM`` are). ``start_motor_ioc(record)`` runs the IOC in a background thread on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from microct.clock import Clock
from microct.devices.axis import move_duration_s
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.epics_ioc import IocHandle, run_ioc_in_thread

log = logging.getLogger("microct.simulators.epics_motor_ioc")

RBV_PERIOD_S = 0.05
"""Read-back update period while moving (20 Hz)."""
MIN_MOVE_S = 0.005
"""Shortest move: DMOV always pulses 1→0→1 over a visible time (see shared/notes, ophyd race)."""

FLUSH_S = 0.002
"""Pause before a put completes, so that the monitor updates go out first, as from the real record
(caproto queues monitor updates but sends the put-completion at once)."""

# MSTA bits (shared/protocols/epics-motor-record.md)
MSTA_DIRECTION, MSTA_DONE, MSTA_PLUS_LS, MSTA_HOMELS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MSTA_POSITION, MSTA_SLIP_STALL, MSTA_HOME, MSTA_PRESENT = 1 << 5, 1 << 6, 1 << 7, 1 << 8
MSTA_PROBLEM, MSTA_MOVING, MSTA_GAIN_SUPPORT, MSTA_COMM_ERR = 1 << 9, 1 << 10, 1 << 11, 1 << 12
MSTA_MINUS_LS, MSTA_HOMED = 1 << 13, 1 << 14


class MotorRecordIOC(PVGroup):
    """The motor-record subset; ``prefix`` is the record name (fields are ``prefix + '.FIELD'``)."""

    VAL = pvproperty(name=".VAL", value=0.0, precision=4, doc="user set-point; put-callback completes at move end")
    RBV = pvproperty(name=".RBV", value=0.0, precision=4, read_only=True)
    DMOV = pvproperty(name=".DMOV", value=1, read_only=True)
    MOVN = pvproperty(name=".MOVN", value=0, read_only=True)
    VELO = pvproperty(name=".VELO", value=1.0, precision=4)
    VMAX = pvproperty(name=".VMAX", value=1.0, precision=4)
    ACCL = pvproperty(name=".ACCL", value=0.1, precision=4, doc="seconds to reach VELO")
    HLM = pvproperty(name=".HLM", value=0.0, precision=4)
    LLM = pvproperty(name=".LLM", value=0.0, precision=4)
    STOP = pvproperty(name=".STOP", value=0)
    HOMF = pvproperty(name=".HOMF", value=0)
    HOMR = pvproperty(name=".HOMR", value=0)
    MSTA = pvproperty(name=".MSTA", value=MSTA_DONE | MSTA_PRESENT, read_only=True)
    LVIO = pvproperty(name=".LVIO", value=0, read_only=True)
    HLS = pvproperty(name=".HLS", value=0, read_only=True)
    LLS = pvproperty(name=".LLS", value=0, read_only=True)
    EGU = pvproperty(name=".EGU", value="deg", dtype=ChannelType.STRING, read_only=True)

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
        self.moves = 0
        """Moves started (VAL puts accepted and homing moves), for tests."""

    # -- helpers -------------------------------------------------------------------------------------
    async def _post_status(self, moving: bool, problem: bool = False) -> None:
        here = self.axis.read_position()
        hls = int(self.hls_position is not None and here >= self.hls_position)
        lls = int(self.lls_position is not None and here <= self.lls_position)
        msta = MSTA_PRESENT | (MSTA_DIRECTION if self._direction > 0 else 0)
        msta |= MSTA_MOVING if moving else MSTA_DONE
        msta |= (MSTA_PLUS_LS if hls else 0) | (MSTA_MINUS_LS if lls else 0)
        msta |= (MSTA_HOMED if self._homed else 0) | (MSTA_PROBLEM if problem else 0)
        await self.RBV.write(here)
        for pv, value in ((self.HLS, hls), (self.LLS, lls), (self.MSTA, msta)):
            if pv.value != value:
                await pv.write(value)

    def _switch_hit(self, here: float) -> bool:
        return ((self._direction > 0 and self.hls_position is not None and here >= self.hls_position)
                or (self._direction < 0 and self.lls_position is not None and here <= self.lls_position))

    async def _run_move(self, target: float | None) -> float:
        """Move to ``target`` (None: home) with the DMOV/MOVN/RBV sequence; returns the end position."""
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
        self._stopped = False
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + duration
        await self.DMOV.write(0)
        await self.MOVN.write(1)
        await self._post_status(moving=True)
        while generation == self._generation and not status.done and not wake.is_set():
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(wake.wait(), max(min(RBV_PERIOD_S, remaining), 0.001))
            except asyncio.TimeoutError:
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
        if generation != self._generation:
            return axis.read_position()  # superseded: the newer move owns DMOV
        if target is None and not self._stopped:
            self._homed = True
        await self.MOVN.write(0)
        await self._post_status(moving=False)
        await self.DMOV.write(1)
        await asyncio.sleep(FLUSH_S)
        return axis.read_position()

    def _limits_enabled(self) -> bool:
        return self.HLM.value > self.LLM.value

    # -- fields --------------------------------------------------------------------------------------
    @DMOV.startup
    async def DMOV(self, instance, async_lib) -> None:
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
        if self._limits_enabled() and not self.LLM.value <= value <= self.HLM.value:
            await self.LVIO.write(1)
            await self.DMOV.write(0)  # the record still processes: DMOV pulses
            await asyncio.sleep(MIN_MOVE_S)
            await self.DMOV.write(1)
            await asyncio.sleep(FLUSH_S)
            return instance.value  # refused: VAL keeps its old value
        if self.LVIO.value:
            await self.LVIO.write(0)
        here = await self._run_move(float(value))
        return here if self._stopped else value  # stopped: the record resets VAL to RBV

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
            here = await self._run_move(None)
            await self.VAL.write(here, verify_value=False)
        return 0

    @HOMF.putter
    async def HOMF(self, instance, value):
        return await self._home(instance, value)

    @HOMR.putter
    async def HOMR(self, instance, value):
        return await self._home(instance, value)

    @VELO.putter
    async def VELO(self, instance, value):
        top = self.axis.capabilities.max_velocity
        value = min(max(float(value), top * 1e-6), top)  # VBAS ≤ VELO ≤ VMAX: clamped, as the record does
        self.axis.set_velocity(value)
        await self.ACCL.write(value / self.axis.options.acceleration, verify_value=False)
        return value

    @ACCL.putter
    async def ACCL(self, instance, value):
        if value > 0:
            self.axis.options.acceleration = self.axis.velocity / float(value)
        return value


def _build(record: str, options: SimulatedAxisOptions | None, high_limit: float, low_limit: float,
           hls_position: float | None, lls_position: float | None) -> tuple[SimulatedAxis, MotorRecordIOC]:
    opts = (options or SimulatedAxisOptions()).model_copy(update={"low_limit": None, "high_limit": None})
    axis = SimulatedAxis("epics-motor-ioc", opts, clock=Clock())
    axis.connect()
    return axis, MotorRecordIOC(prefix=record, axis=axis, high_limit=high_limit, low_limit=low_limit,
                                hls_position=hls_position, lls_position=lls_position)


def start_motor_ioc(record: str = "CT:ROT:m1", port: int = 0, options: SimulatedAxisOptions | None = None, *,
                    high_limit: float = 360.0, low_limit: float = -360.0, hls_position: float | None = None,
                    lls_position: float | None = None, timeout_s: float = 5.0) -> tuple[IocHandle, SimulatedAxis]:
    """Run the motor IOC in a daemon thread on 127.0.0.1 (``port`` 0: a free one); returns (handle, axis).

    ``high_limit``/``low_limit`` are the record's initial ``HLM``/``LLM``; ``hls_position`` /
    ``lls_position`` place simulated hardware limit switches (None: none).
    """
    axis, ioc = _build(record, options, high_limit, low_limit, hls_position, lls_position)
    handle = run_ioc_in_thread(ioc.pvdb, record, port, timeout_s)
    handle.ioc = ioc  # type: ignore[attr-defined]  # for tests: move counter, switch positions
    return handle, axis
