"""The EPICS motor-record axis driver, over Channel Access (docs/protocols/epics-motor-record.md).

``connection`` is the record name (e.g. ``CT:ROT:m1``); fields are ``record + '.FIELD'`` (``codec.FIELDS``).

- A move is a put-callback write to ``.VAL``, run by the kit's ``MoveEngine`` (superseding, ``stop()``,
  ``close()``): the record completes the put when the move is done, and a watcher thread ends the
  move once that completion has come and ``DMOV`` is back to 1 (no polling).
- ``LVIO`` = 1 when the put completes means the record refused the set-point (outside its
  ``LLM``..``HLM``): the Status fails with ``LimitError`` naming ``.LVIO``.
- ``HLS`` / ``LLS`` = 1 at the end of a move (a hardware limit switch hit): ``DeviceFaultError``.
- A move ended by ``stop()`` fails at once with the engine's ``DeviceStateError`` ("... did not complete:
  stop() was called"); then ``.STOP`` = 1 is written and ``stop()`` waits for ``DMOV`` = 1.
- If the IOC goes away mid-move the Status fails with ``CommunicationError`` naming the PV.
- ``home()`` is a put-callback write of 1 to ``.HOMF`` (``.HOMR`` with ``home_reverse``);
  ``read_referenced()`` reads ``.MSTA`` bit 14 (HOMED); ``set_velocity`` writes ``.VELO``.

Soft limits: ``low_limit`` / ``high_limit`` in the options are the driver's own (None: unbounded).
With ``use_record_limits`` (the default), ``connect()`` reads the record's ``LLM``/``HLM`` and
narrows them to the intersection (``AxisCapabilities.narrowed``); the configured values come back at
the next ``connect()``. The record turns its soft limits off only when both dial limits ``DLLM`` and
``DHLM`` are 0 (``codec.limits_enabled``: such a record narrows nothing); a record with ``DLLM`` ≥
``DHLM`` otherwise refuses every move (``LVIO`` = 1), so ``connect()`` refuses it with a
ConfigurationError naming the four fields and their values, whatever ``use_record_limits`` says.
Every move is checked against these limits before anything is sent; the record checks its own
limits again (``LVIO``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import Field, model_validator

from microct.driverkit import (
    Axis,
    AxisCapabilities,
    AxisUnit,
    ChannelAccess,
    Clock,
    CommunicationError,
    ConfigurationError,
    DeviceFaultError,
    DeviceTimeoutError,
    DriverOptions,
    Finding,
    LimitError,
    Move,
    MoveEngine,
    Status,
    configure_environment,
)
from microct.drivers.epics_motor.codec import (
    DMOV_DONE,
    FIELDS,
    MONITORED,
    START,
    Msta,
    limits_usable,
    msta_report,
    soft_limits,
)

log = logging.getLogger("microct.drivers.epics_motor")


class EpicsMotorOptions(DriverOptions):
    """``[axis.options]`` of the ``epics-motor`` driver."""

    unit: AxisUnit = Field(default="deg", description="the unit of the record's user coordinates, its EGU (not read "
                           "from the record): 'deg' for a rotation, 'mm' for a linear axis; positions, limits and "
                           "speeds are in it")
    max_velocity: float = Field(gt=0, description="top speed (unit/s) that set_velocity allows (≤ the record's VMAX)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s², for move-time estimates only")
    low_limit: float | None = Field(default=None, description="driver soft limit (unit); narrowed by LLM")
    high_limit: float | None = Field(default=None, description="driver soft limit (unit); narrowed by HLM")
    use_record_limits: bool = Field(default=True, description="narrow the soft limits to the record's LLM/HLM "
                                                              "at connect")
    home_reverse: bool = Field(default=False, description="home with HOMR instead of HOMF")
    reports_homed: bool = Field(default=True, description="the controller's driver sets MSTA bit 14 (HOMED) once "
                                "the axis is homed; false for one that never sets it: the axis then cannot tell "
                                "whether it is referenced (home = \"if-needed\" leaves it alone)")
    addr_list: str | None = Field(default=None, description="EPICS_CA_ADDR_LIST; default: the environment's")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="for every field of the record to connect at "
                                     "connect, and for each read's reply (s)")
    put_timeout_s: float = Field(default=5.0, gt=0, description="for a put-callback of a non-move field (s)")
    move_timeout_s: float = Field(default=600.0, gt=0, description="longest a move or homing may take (s)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        self.capabilities()
        return self

    def capabilities(self) -> AxisCapabilities:
        return AxisCapabilities(self.unit, self.max_velocity, self.low_limit, self.high_limit, self.acceleration)


class EpicsMotorAxis(Axis):
    """An axis mapped onto a motor record. Read-back, DMOV, MOVN, MSTA, LVIO, HLS and LLS are
    monitored; moves and homing are put-callback writes whose completion ends the Status."""

    backend = "EPICS"
    Options = EpicsMotorOptions

    def __init__(self, name: str, options: EpicsMotorOptions, connection: str | None = None, *,
                 clock: Clock | None = None) -> None:
        if not connection:
            raise ConfigurationError(f"axis {name!r}: connection must be the motor record name (e.g. CT:ROT:m1)")
        self.options = options
        self._configured = options.capabilities()
        super().__init__(name, self._configured, clock)
        self.record = connection
        self._ca = ChannelAccess({key: connection + suffix for key, suffix in FIELDS.items()},
                                 who=self.who, timeout_s=options.connect_timeout_s,
                                 put_timeout_s=options.put_timeout_s, monitored=MONITORED)
        self._engine = MoveEngine(self)

    def pv(self, key: str) -> str:
        """The full PV name of a field key (``"val"`` → ``CT:ROT:m1.VAL``)."""
        return self._ca.names[key]

    # -- lifecycle -----------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        configure_environment(self.options.addr_list, False if self.options.addr_list else None)
        self._ca.connect()

    def _after_connect(self) -> None:
        for key in MONITORED:  # have every monitored value at hand before a watcher waits on them
            self._ca.get(key)
        llm, hlm, dllm, dhlm = (float(value) for value in self._ca.get_fresh("llm", "hlm", "dllm", "dhlm"))
        self._refuse_unusable_limits(llm, hlm, dllm, dhlm)
        self.capabilities = self._configured
        if self.options.use_record_limits:
            self.capabilities = self._configured.narrowed(
                *soft_limits(llm, hlm, dllm, dhlm), who=self.who,
                source=f"the record's ({self.pv('llm')}, {self.pv('hlm')})")
        super()._after_connect()

    def _refuse_unusable_limits(self, llm: float, hlm: float, dllm: float, dhlm: float) -> None:
        """ConfigurationError if the record would refuse every move: soft limits enabled (not both dial
        limits 0) and ``DLLM`` ≥ ``DHLM`` (``codec.limits_usable``)."""
        if limits_usable(dllm, dhlm):
            return
        fields = (f"{self.pv('dllm')} = {dllm:g}, {self.pv('dhlm')} = {dhlm:g} (user {self.pv('llm')} = {llm:g}, "
                  f"{self.pv('hlm')} = {hlm:g} {self.unit})")
        what = "every move" if dllm > dhlm else f"every move but one to {hlm:g} {self.unit}"
        raise self._error(ConfigurationError, f"the motor record refuses {what} with its soft limits {fields}: "
                                              f"it turns them off only when both dial limits are 0; set "
                                              f"{self.pv('dllm')} < {self.pv('dhlm')}, or both to 0 for no soft "
                                              f"limits")

    def _do_close(self) -> None:
        self._engine.close()
        self._ca.close()

    # -- moves ---------------------------------------------------------------------------------------
    def _do_start_move(self, position: float) -> Status:
        return self._start("val", position, f"move to {position:g} {self.unit}", position)

    def _do_start_home(self) -> Status:
        return self._start("homr" if self.options.home_reverse else "homf", START, "home", None)

    def _start(self, key: str, value: Any, what: str, target: float | None) -> Status:
        """A put-callback write of ``value`` to ``key`` as a move of the engine; a watcher thread ends it."""
        completed = threading.Event()  # the record's put-completion has come

        def on_completion() -> None:  # in the CA thread: hand over to the watcher, which sees DMOV too
            completed.set()
            self._ca.notify()  # wake the watcher (it waits on the monitors' condition)

        def send(move: Move) -> None:
            self._ca.put(key, value, wait=False, callback=on_completion)

        def watch(move: Move) -> None:
            threading.Thread(target=self._watch, args=(move, key, completed), name=f"{self.name} {what}",
                             daemon=True).start()

        return self._engine.start(what, send, target=target, on_start=watch)

    def _watch(self, move: Move, key: str, completed: threading.Event) -> None:
        """End the move once its put-callback has completed and the DMOV monitor shows 1 (caproto may
        send the put-completion before the last monitor updates); fail it if the link drops first."""
        try:
            self._ca.wait_until("dmov", lambda dmov: completed.is_set() and int(dmov) == DMOV_DONE,
                                self.options.move_timeout_s)
        except CommunicationError as error:
            move.finish(self._error(CommunicationError, f"{move.what}: PV {self.pv(key)} lost before the move "
                                                        f"completed ({error})"))
        except DeviceTimeoutError:
            move.finish(self._error(DeviceTimeoutError, f"{move.what}: PV {self.pv(key)} put not completed "
                                                        f"within {self.options.move_timeout_s:g} s"))
        else:
            if not move.ended.is_set():  # superseded or stopped meanwhile: the engine has ended it
                move.finish(self._outcome(move, key))

    def _outcome(self, move: Move, key: str) -> BaseException | None:
        """Read LVIO, HLS/LLS and RBV from the IOC (not the monitors: caproto may send the
        put-completion before the last monitor updates)."""
        try:
            lvio, hls, lls, rbv = self._ca.get_fresh("lvio", "hls", "lls", "rbv")
            lvio, hls, lls, here = int(lvio), int(hls), int(lls), float(rbv)
        except CommunicationError as error:
            return self._error(CommunicationError, f"{move.what}: link lost as PV {self.pv(key)} completed ({error})")
        except DeviceTimeoutError as error:
            return error
        if lvio and key == "val":
            return self._error(LimitError, f"{move.what}: the record refused the set-point ({self.pv('lvio')} = 1: "
                                           f"outside its soft limits {self.pv('llm')}..{self.pv('hlm')})")
        if hls or lls:
            which = "hls" if hls else "lls"
            return self._error(DeviceFaultError, f"{move.what}: hardware limit switch hit ({self.pv(which)} = 1) "
                                                 f"at {here:g} {self.unit}")
        return None

    def _do_stop(self) -> None:
        self._engine.stop()
        self._ca.put("stop", START)
        self._ca.wait_until("dmov", lambda value: int(value) == DMOV_DONE, self.options.put_timeout_s)

    # -- values --------------------------------------------------------------------------------------
    def _do_read_position(self) -> float:
        return float(self._ca.get("rbv", fresh=True))  # one round trip; a monitor may lag a move's end

    def _do_set_velocity(self, velocity: float) -> None:
        self._ca.put("velo", velocity)

    def _do_read_referenced(self) -> bool | None:
        """MSTA bit 14, HOMED ("axis has been homed": motor record reference, "Status/readback fields",
        MSTA; ``RA_HOMED`` in the motor module's ``motor.h``), read from the IOC; None when
        ``reports_homed`` is false (a controller whose driver never sets the bit)."""
        if not self.options.reports_homed:
            return None
        return bool(int(self._ca.get("msta", fresh=True)) & Msta.HOMED)

    def _do_check(self) -> list[Finding]:
        """Each bit set in ``.MSTA`` (read from the IOC) with its meaning (codec ``msta_report``): SLIP_STALL,
        PROBLEM and COMM_ERR are errors, a limit switch or a motion under way a warning."""
        msta = int(self._ca.get("msta", fresh=True))
        return [*super()._do_check(), *(Finding(level, "msta", text) for level, text in msta_report(msta))]

    def _do_describe(self) -> dict[str, Any]:
        return {"record": self.record, **super()._do_describe(), "msta": int(self._ca.get("msta")),
                "low_limit": self.capabilities.low_limit, "high_limit": self.capabilities.high_limit}
