"""A stage axis behind an EPICS motor record, over Channel Access (shared/protocols/epics-motor-record.md).

``connection`` is the record name (e.g. ``CT:ROT:m1``); fields are ``record + '.FIELD'``.

- A move is a put-callback write to ``.VAL``: the record completes it when the move is done
  (``DMOV`` back to 1), and that completion completes the move's ``Status`` (no polling).
- ``LVIO`` = 1 when the put completes means the record refused the set-point (outside its
  ``LLM``..``HLM``): the Status fails with ``LimitError`` naming ``.LVIO``.
- ``HLS`` / ``LLS`` = 1 at the end of a move (a hardware limit switch hit): ``DeviceFaultError``.
- A move ended by ``stop()`` (``.STOP`` = 1) fails with ``DeviceStateError`` (as ``SimulatedAxis``).
- If the IOC goes away mid-move the Status fails with ``CommunicationError`` naming the PV.
- ``home()`` is a put-callback write of 1 to ``.HOMF`` (``.HOMR`` with ``home_reverse``);
  ``set_velocity`` writes ``.VELO``.

Soft limits: ``low_limit`` / ``high_limit`` in the options are the driver's own (None: unbounded).
With ``use_record_limits`` (the default), ``connect()`` reads the record's ``LLM``/``HLM`` and
narrows them to the intersection (a record with ``HLM`` ≤ ``LLM`` has its limits disabled and
narrows nothing); the configured values come back at the next ``connect()``. Every move is checked
against these limits before anything is sent; the record checks its own limits again (``LVIO``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.clock import Clock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit
from microct.devices.base import Status
from microct.errors import (CommunicationError, ConfigurationError, DeviceFaultError, DeviceStateError,
                            DeviceTimeoutError, LimitError)
from microct.devices.base import DriverContext
from microct.transport.epics import ChannelAccess, configure_environment

log = logging.getLogger("microct.drivers.epics_motor")

FIELDS = {"val": ".VAL", "rbv": ".RBV", "dmov": ".DMOV", "movn": ".MOVN", "velo": ".VELO", "accl": ".ACCL",
          "hlm": ".HLM", "llm": ".LLM", "stop": ".STOP", "homf": ".HOMF", "homr": ".HOMR", "msta": ".MSTA",
          "lvio": ".LVIO", "hls": ".HLS", "lls": ".LLS"}
MONITORED = ("rbv", "dmov", "movn", "msta", "lvio", "hls", "lls")


class EpicsMotorOptions(BaseModel):
    """``[axis.options]`` of the ``epics-motor`` driver."""

    model_config = ConfigDict(extra="forbid")
    unit: AxisUnit = "deg"
    max_velocity: float = Field(gt=0, description="top speed (unit/s) that set_velocity allows (≤ the record's VMAX)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s², for move-time estimates only")
    low_limit: float | None = Field(default=None, description="driver soft limit (unit); narrowed by LLM")
    high_limit: float | None = Field(default=None, description="driver soft limit (unit); narrowed by HLM")
    use_record_limits: bool = Field(default=True, description="narrow the soft limits to the record's LLM/HLM "
                                                              "at connect")
    home_reverse: bool = Field(default=False, description="home with HOMR instead of HOMF")
    addr_list: str | None = Field(default=None, description="EPICS_CA_ADDR_LIST; default: the environment's")
    connect_timeout_s: float = Field(default=2.0, gt=0)
    put_timeout_s: float = Field(default=5.0, gt=0, description="for a put-callback of a non-move field (s)")
    move_timeout_s: float = Field(default=600.0, gt=0, description="longest a move or homing may take (s)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        self.capabilities()
        return self

    def capabilities(self) -> AxisCapabilities:
        return AxisCapabilities(self.unit, self.max_velocity, self.low_limit, self.high_limit, self.acceleration)


@dataclass
class _Move:
    status: Status
    what: str
    target: float | None
    stopped: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


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
                                 who=f"axis {name!r}", timeout_s=options.connect_timeout_s,
                                 put_timeout_s=options.put_timeout_s, monitored=MONITORED)
        self._move: _Move | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, name: str, options: EpicsMotorOptions, connection: str | None,
                    context: DriverContext) -> EpicsMotorAxis:
        return cls(name, options, connection, clock=context.clock)

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
        self.capabilities = self._configured
        if self.options.use_record_limits:
            self.capabilities = self._narrowed(float(self._ca.get("llm", fresh=True)),
                                               float(self._ca.get("hlm", fresh=True)))
        super()._after_connect()

    def _narrowed(self, llm: float, hlm: float) -> AxisCapabilities:
        caps = self._configured
        if hlm <= llm:  # the record's soft limits are disabled
            return caps
        low = llm if caps.low_limit is None else max(caps.low_limit, llm)
        high = hlm if caps.high_limit is None else min(caps.high_limit, hlm)
        if low >= high:
            raise self._error(ConfigurationError, f"soft limits {caps.low_limit} to {caps.high_limit} {caps.unit} "
                                                  f"do not overlap the record's LLM {llm:g} to HLM {hlm:g}")
        return AxisCapabilities(caps.unit, caps.max_velocity, low, high, caps.acceleration)

    def _do_close(self) -> None:
        move, self._move = self._move, None
        self._ca.close()
        if move is not None:
            move.status.set_done(self._error(CommunicationError, f"{move.what}: closed before it finished"))

    # -- moves ---------------------------------------------------------------------------------------
    def _do_start_move(self, position: float) -> Status:
        return self._start("val", position, f"move to {position:g} {self.unit}", position)

    def _do_start_home(self) -> Status:
        key = "homr" if self.options.home_reverse else "homf"
        return self._start(key, 1, "home", None)

    def _start(self, key: str, value: Any, what: str, target: float | None) -> Status:
        move = _Move(Status(self.clock, f"axis {self.name!r}: {what}"), what, target)
        with self._lock:
            previous, self._move = self._move, move
        if previous is not None and not previous.status.done:  # the record retargets; the old move ends here
            previous.status.set_done(self._error(DeviceStateError, f"{previous.what}: superseded by {what}"))
        self._ca.put(key, value, wait=False, callback=lambda: self._completed(move))
        threading.Thread(target=self._watch, args=(move, key), name=f"{self.name} {what}", daemon=True).start()
        return move.status

    def _completed(self, move: _Move) -> None:
        """The put-callback (in the CA thread): hand over to the watcher, which sees DMOV too."""
        move.finished.set()
        self._ca._notify()  # wake the watcher (it waits on the monitors' condition)

    def _watch(self, move: _Move, key: str) -> None:
        """End the move once its put-callback has completed and the DMOV monitor shows 1 (caproto may
        send the put-completion before the last monitor updates); fail it if the link drops first."""
        try:
            self._ca.wait_until("dmov", lambda dmov: move.finished.is_set() and int(dmov) == 1,
                                self.options.move_timeout_s)
        except CommunicationError as error:
            move.status.set_done(self._error(CommunicationError, f"{move.what}: PV {self.pv(key)} lost before the "
                                                                 f"move completed ({error})"))
        except DeviceTimeoutError:
            move.status.set_done(self._error(DeviceTimeoutError, f"{move.what}: PV {self.pv(key)} put not "
                                                                 f"completed within {self.options.move_timeout_s:g} s"))
        else:
            move.status.set_done(self._outcome(move, key))

    def _outcome(self, move: _Move, key: str) -> BaseException | None:
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
        if move.stopped:
            return self._error(DeviceStateError, f"{move.what}: stopped at {here:g} {self.unit}")
        return None

    def _do_stop(self) -> None:
        with self._lock:
            move = self._move
        if move is not None and not move.status.done:
            move.stopped = True
        self._ca.put("stop", 1)
        self._ca.wait_until("dmov", lambda value: int(value) == 1, self.options.put_timeout_s)

    # -- values --------------------------------------------------------------------------------------
    def _do_read_position(self) -> float:
        return float(self._ca.get("rbv", fresh=True))  # one round trip; a monitor may lag a move's end

    def _do_set_velocity(self, velocity: float) -> None:
        self._ca.put("velo", velocity)

    def _do_describe(self) -> dict[str, Any]:
        return {"record": self.record, **super()._do_describe(), "msta": int(self._ca.get("msta")),
                "low_limit": self.capabilities.low_limit, "high_limit": self.capabilities.high_limit}
