"""The ``spellman`` driver: ``SpellmanOptions`` and ``SpellmanSource`` (protocol in ``codec``, model
figures in ``models``; docs/protocols/spellman-xrv.md)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from microct.driverkit import (
    Clock,
    ConfigurationError,
    DeviceStateError,
    ErrorReply,
    Finding,
    FindingLevel,
    ModelTableOptions,
    ProtocolError,
    SourceState,
    Transport,
    VisaSettings,
    VisaTransport,
    XRaySource,
    reworded,
)
from microct.drivers.spellman.codec import (
    DAC_MAX,
    ETX,
    Codec,
    GeneratorStatus,
    Request,
    Scaling,
    checksum_default,
    not_ready_reason,
    readback_value,
    setpoint_counts,
    setpoint_value,
    state_of,
)
from microct.drivers.spellman.models import MODELS, GeneratorModel, generator_model

log = logging.getLogger("microct.drivers.spellman")

T = TypeVar("T")


class SpellmanOptions(ModelTableOptions):
    """``[source.options]`` of the ``spellman`` driver. ``overrides`` replace model-table fields, e.g.
    ``{spot_modes = {small = {power_limit_w = 600.0}}}``."""

    model_table: ClassVar = MODELS
    table_key: ClassVar = "model"

    model: str = Field(default="XRV160", description="a key of the model table: " + ", ".join(MODELS))
    family: Literal["XRV", "uX"] | None = Field(default=None, description="command set; default: the model's")
    checksum: bool | None = Field(default=None, description="frames carry the checksum; default: off on a "
                                  "TCPIP SOCKET resource, on otherwise (ASRL)")
    timeout_s: float = Field(default=2.0, gt=0, description="for a whole reply (s), unless visa.timeout_s is "
                             "set; 2 s as public clients")
    visa: VisaSettings = Field(default_factory=VisaSettings, description="link settings; the terminators "
                               "default to ETX, the timeout to timeout_s, an ASRL baud to the model's")
    readback_max_age_s: float = Field(default=0.05, ge=0, description="how long one status reply serves "
                                      "read_state and read_interlock_closed, and one monitor reply "
                                      "read_voltage_kv and read_current_ua (s); 0: never reused")
    watchdog_s: float | None = Field(default=None, ge=0, description="the communication watchdog time set in "
                                     "the generator's own configuration (s; the XRV reports it as the last value "
                                     "of its 27 reply): while the beam is on the driver sends a status query "
                                     "(22) after watchdog_s / 3 without another exchange, so that the watchdog "
                                     "does not switch HV off between requests. The protocol has no command to "
                                     "arm it; unset or 0: nothing is sent")

    def table_entry(self) -> GeneratorModel:
        """The model-table entry with the overrides (and ``family``); ConfigurationError naming a bad key."""
        overrides = self.overrides if self.family is None else {**self.overrides, "family": self.family}
        return generator_model(self.model, overrides)

    def generator(self) -> GeneratorModel:
        return self.table_entry()

    def visa_settings(self, resource: str) -> VisaSettings:
        """The VISA settings for ``resource``: what ``visa`` sets; ETX terminators, ``timeout_s`` and, on
        an ASRL resource, the model's baud for the rest."""
        defaults: dict[str, Any] = {"read_terminator": ETX.decode(), "write_terminator": ETX.decode(),
                                    "timeout_s": self.timeout_s}
        if resource.upper().startswith("ASRL"):
            defaults["baudrate"] = self.generator().baudrate
        return self.visa.with_defaults(**defaults)


class SpellmanSource(XRaySource):
    """A Spellman XRV or uX X-ray generator and its tube, on a VISA resource.

    Set-points go out as DAC counts, rounded down (the resolution is full scale / 4095: 0.039 kV
    and 7.3 µA on the XRV160). The status reply (``22``) gives state and interlock, the monitor reply (XRV
    ``19``, uX ``20``) kV and µA; each is reused for ``readback_max_age_s``, and any command discards
    both, so a frame of the scan (state, kV, µA) costs two exchanges. No warm-up programme: the state
    is STANDBY when the supply is ready, never WARMUP_NEEDED or WARMING_UP, and ``warm_up()`` is refused.
    A fault (XRV: ``68`` names it) is cleared by ``reset()`` (``31``; the uX has no such command).
    Spot modes are filaments (the model table's ``code``, "small" or "large"): the XRV selects the large
    one with ``32,1``; beam on enables the filament (``70,1``) before HV on (``98,1``). A command the
    generator refuses is ``ErrorReply`` (its error code and meaning) naming what was sent and the state.

    A communication watchdog set in the generator's configuration (``watchdog_s``; no command arms it) is
    fed while the beam is on (beam on, warm-up, until beam off or close): a status query (``22``) whenever
    the link was silent for ``watchdog_s / 3``, on the device clock (``XRaySource``'s watchdog machinery).

    ``connection`` is a VISA resource (``TCPIP::host::port::SOCKET``, ``ASRL/dev/ttyUSB0::INSTR``);
    ``transport`` (instead) a ready one, for tests: then the checksum defaults to on.
    """

    backend = "VISA"
    Options = SpellmanOptions

    def __init__(self, name: str, options: SpellmanOptions | None = None, connection: str | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or SpellmanOptions()
        self.generator = self.options.generator()
        super().__init__(name, self.generator.capabilities(), clock, watchdog_s=self.options.watchdog_s)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"{name}.connection: the spellman driver needs a VISA resource, e.g. "
                                         f"TCPIP::192.168.1.4::50001::SOCKET or ASRL/dev/ttyUSB0::INSTR")
            transport = VisaTransport(connection, self.options.visa_settings(connection), name=f"source {name!r}")
        with_checksum = self.options.checksum
        if with_checksum is None:
            with_checksum = checksum_default(connection) if connection else True
        self.codec = Codec(self.generator.commands, with_checksum)
        self._transport = transport
        self._status_cache: tuple[float, GeneratorStatus] | None = None
        self._monitor_cache: tuple[float, tuple[int, int]] | None = None
        self._reported_reason = ""

    def fault_flags(self) -> tuple[str, ...]:
        """The faults the XRV reports (``68``), by name; DeviceStateError on a family without it."""
        self._require_connected()
        if self.codec.commands.faults is None:
            raise self._error(DeviceStateError, f"the {self.generator.family} family reports no fault detail")
        return self._ask(Request(self.codec.commands.faults), lambda _, reply: self.codec.parse_faults(reply))

    # -- exchanges -----------------------------------------------------------------------------------
    def _ask(self, request: Request, parse: Callable[[Request, bytes], T]) -> T:
        """One exchange through the transport; codec errors get this device's name."""
        self._exchange_started()
        reply = self._transport.query(self.codec.encode(request))[0]
        try:
            return parse(request, reply)
        except ProtocolError as error:
            raise self._named(error) from None

    def _act(self, request: Request, sent: str = "") -> None:
        """A command answered by ``$``. An error code is reported with what was sent and the state."""
        self._status_cache = self._monitor_cache = None
        try:
            self._ask(request, self.codec.parse_ack)
        except ErrorReply as error:
            status = self._read_status()
            reason = not_ready_reason(status) or ("fault" if status.fault else "")
            detail = f"{sent}; " if sent else ""
            raise reworded(error, f"{error}; {detail}the generator is in state {state_of(status).value!r}"
                                  f"{f' ({reason})' if reason else ''}") from None

    def _read_status(self) -> GeneratorStatus:
        return self._ask(Request(self.codec.commands.status), lambda _, reply: self.codec.parse_status(reply))

    def _status(self) -> GeneratorStatus:
        """The last status reply, read again once older than ``readback_max_age_s``."""
        now = self.clock.monotonic()
        if self._status_cache is None or now - self._status_cache[0] >= self.options.readback_max_age_s:
            self._status_cache = (now, self._read_status())
        return self._status_cache[1]

    def _monitors(self) -> tuple[int, int]:
        """The last monitor reply (kV, mA counts), read again once older than ``readback_max_age_s``."""
        now = self.clock.monotonic()
        if self._monitor_cache is None or now - self._monitor_cache[0] >= self.options.readback_max_age_s:
            self._monitor_cache = (now, self._ask(Request(self.codec.commands.monitors),
                                                  lambda _, reply: self.codec.parse_monitors(reply)))
        return self._monitor_cache[1]

    def _send_setpoint(self, command: int, value: float, full_scale: float, field: str, unit: str) -> None:
        counts = setpoint_counts(value, full_scale, field)
        self._act(Request(command, (counts,)), f"{field}={value:g} {unit} was sent as {counts} counts "
                                               f"(0-{DAC_MAX} = 0-{full_scale:g} {unit})")

    # -- hooks ---------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        """Open the link; on the XRV, check the generator's full scale (``28``) against the model's."""
        self._transport.open()
        self._status_cache = self._monitor_cache = None
        if self.codec.commands.scaling is not None:
            self._check_scaling(self._ask(Request(self.codec.commands.scaling),
                                          lambda _, reply: self.codec.parse_scaling(reply)))

    def _check_scaling(self, scaling: Scaling) -> None:
        """Every kV and mA sent is scaled by the model's full scale: a generator reporting another is refused."""
        g = self.generator
        if not (math.isclose(scaling.full_scale_kv, g.full_scale_kv, rel_tol=1e-6)
                and math.isclose(scaling.full_scale_ma, g.full_scale_ma, rel_tol=1e-6)):
            raise self._error(ConfigurationError,
                              f"the generator reports a full scale of {scaling.full_scale_kv:g} kV / "
                              f"{scaling.full_scale_ma:g} mA ('28'), the model {g.name!r} has {g.full_scale_kv:g} kV "
                              f"/ {g.full_scale_ma:g} mA; choose the matching model or set overrides "
                              f"full_scale_kv and full_scale_ma")

    def _do_close(self) -> None:
        self._stop_feeding()
        self._status_cache = self._monitor_cache = None
        self._transport.close()

    def _do_feed_watchdog(self) -> None:
        """A status query (``22``): any message the generator receives restarts its watchdog time (the
        XRB011 manual's words for its watchdog, 4.15.9; assumed of the XRV: its manual was not available).
        The reply is not kept (a command may have changed the state since it was asked for)."""
        self._read_status()

    def _watchdog_link(self) -> contextlib.AbstractContextManager[Any]:
        return self._transport.transaction("status query (watchdog feed)")

    def _watchdog_at_risk(self) -> str:
        return (f"the generator switches HV off and latches a watchdog fault after {self.watchdog_s or 0:g} s "
                f"without a message")

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        g, commands = self.generator, self.codec.commands
        voltage_kv = setpoint_value(self._ask(Request(commands.read_kv), self.codec.parse_counts), g.full_scale_kv)
        current_ua = setpoint_value(self._ask(Request(commands.read_ma), self.codec.parse_counts), g.full_scale_ua)
        if commands.filament_select is None:
            return voltage_kv, current_ua, next(iter(g.spot_modes))
        large = self._read_status().large_filament
        name = g.spot_mode_of(large)
        if name is None:
            raise self._error(ProtocolError, f"the generator has the {'large' if large else 'small'} filament "
                                             f"selected; the {g.name} table has no spot mode for it "
                                             f"(modes: {', '.join(g.spot_modes)})")
        return voltage_kv, current_ua, name

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._send_setpoint(self.codec.commands.set_kv, voltage_kv, self.generator.full_scale_kv, "voltage_kv", "kV")

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._send_setpoint(self.codec.commands.set_ma, current_ua, self.generator.full_scale_ua, "current_ua", "µA")

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        """Select the mode's filament (reached only on a family with a filament select: the model table
        gives the others one spot mode)."""
        large = self.generator.spot_modes[spot_mode].code == "large"
        self._act(Request(self.codec.commands.filament_select, (int(large),)), f"spot_mode={spot_mode!r}")

    def _do_beam_on(self) -> None:
        commands = self.codec.commands
        if commands.filament_enable is not None:
            self._act(Request(commands.filament_enable, (1,)))
        self._act(Request(commands.hv, (1,)))

    def _do_beam_off(self) -> None:
        self._act(Request(self.codec.commands.hv, (0,)))

    def _do_warm_up(self) -> None:
        raise self._error(DeviceStateError, f"the {self.generator.family} generator runs no warm-up programme; "
                                            f"condition the tube as its maker prescribes (configure() and beam_on())")

    def _do_reset(self) -> None:
        if self.codec.commands.reset is None:
            raise self._error(DeviceStateError, f"the {self.generator.family} family has no reset-faults command; "
                                                f"clear the fault at the generator")
        self._act(Request(self.codec.commands.reset))

    def _do_refresh(self) -> None:
        self._status_cache = None
        self._monitor_cache = None

    def _do_read_state(self) -> SourceState:
        status = self._status()
        state = state_of(status)
        reason = ""
        if state is SourceState.FAULT and self.codec.commands.faults is not None:
            reason = f"fault: {', '.join(self.fault_flags()) or 'no fault flag set'}"
        elif state is SourceState.FAULT:
            reason = f"fault (the {self.generator.family} family reports no detail)"
        elif state is SourceState.NOT_READY:
            reason = f"not ready: {not_ready_reason(status)}"
        if reason and reason != self._reported_reason:
            log.warning("source %r: %s", self.name, reason)
        self._reported_reason = reason
        return state

    def _do_read_voltage_kv(self) -> float:
        g = self.generator
        return readback_value(self._monitors()[0], g.full_scale_kv, g.readback_over_range)

    def _do_read_current_ua(self) -> float:
        g = self.generator
        return readback_value(self._monitors()[1], g.full_scale_ua, g.readback_over_range)

    def _do_read_interlock_closed(self) -> bool:
        return self._status().interlock_closed

    def _do_check(self) -> list[Finding]:
        """Why the generator is not ready, or its fault flags by name (``68``), as ``read_state`` found them:
        a fault is an error, the rest (open interlock, local mode, supply not ready) a warning."""
        findings = super()._do_check()
        if self._reported_reason:
            level: FindingLevel = "error" if self._reported_reason.startswith("fault") else "warning"
            findings.append(Finding(level, "reason", self._reported_reason))
        return findings

    def _do_describe(self) -> dict[str, Any]:
        g = self.generator
        description = {"model": g.name, "family": g.family, "full_scale": f"{g.full_scale_kv:g} kV / "
                       f"{g.full_scale_ma:g} mA", "checksum": self.codec.checksum, **super()._do_describe()}
        if self._reported_reason:
            description["reason"] = self._reported_reason
        return description
