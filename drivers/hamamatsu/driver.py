"""The ``hamamatsu`` driver: ``HamamatsuOptions`` and ``HamamatsuSource`` (protocol in ``codec``,
model figures in ``models``; docs/protocols/hamamatsu-microfocus.md)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

from pydantic import Field

from microct.driverkit import (
    Clock,
    ConfigurationError,
    ErrorReply,
    Finding,
    ModelTableOptions,
    ProtocolError,
    SerialSettings,
    SerialTransport,
    SourceState,
    Transport,
    XRaySource,
    reworded,
)
from microct.drivers.hamamatsu.codec import (
    DEFAULT_AUTO_STOP_S,
    NOT_A_COMMAND,
    RST,
    SAR,
    SAT,
    SFC,
    SIN,
    SNR,
    SVI,
    TYP,
    WUP,
    XOF,
    XON,
    BulkStatus,
    describe_not_ready,
    encode_auto_stop,
    encode_current,
    encode_focus,
    encode_voltage,
    parse_auto_stop,
    parse_echo,
    parse_focus,
    parse_interlock_open,
    parse_model_name,
    parse_not_ready,
    parse_setpoints,
    parse_status,
)
from microct.drivers.hamamatsu.models import MODELS, TubeModel

log = logging.getLogger("microct.drivers.hamamatsu")

T = TypeVar("T")


class HamamatsuOptions(ModelTableOptions):
    """``[source.options]`` of the ``hamamatsu`` driver. ``overrides`` replace model-table fields, e.g.
    ``{spot_modes = {small = {power_limit_w = 5.0}}}``."""

    model_table: ClassVar = MODELS
    table_key: ClassVar = "model"

    model: str = Field(default="L10711", description="a key of the model table: " + ", ".join(MODELS))
    serial: SerialSettings = Field(default_factory=SerialSettings, description="line settings; the baud "
                                   "defaults to the model's, the timeout to timeout_s")
    timeout_s: float = Field(default=1.0, gt=0, description="for a whole reply (s), unless serial.timeout_s is set")
    readback_max_age_s: float = Field(default=0.05, ge=0, description="how long one SAR reply serves "
                                      "read_state, read_voltage_kv and read_current_ua (s); 0: never reused")
    keepalive_s: float = Field(default=1.0, ge=0, description="send SAR after this long without another "
                               "exchange (s), from connect to close, so that the controller's automatic X-ray "
                               "stop (no command for its auto-stop time, 3 s by default) does not cut the beam "
                               "between requests; 0: never")
    """The keepalive feeds the controller's communication watchdog, its automatic X-ray stop: X-rays go off
    when no command has arrived for the auto-stop time (``SAT``; 3 s unless ``AST`` changed it; L9421-02T
    manual §10 1., A5 note 3), and the sequencer sends nothing during an exposure, a frame average, a move
    or a pause. Keep it well under half the auto-stop time (connect warns otherwise). 0 disables it: then
    any such gap as long as the auto-stop time drops the beam (the sequencer sees an arc, retakes the frame,
    meets the same gap and aborts)."""
    watchdog_s: int | None = Field(default=None, ge=0, le=60, description="the automatic X-ray stop time "
                                   "(whole s, 1-60) set with AST before X-rays go on (beam on, warm-up) when the "
                                   "controller has another; unset: keep the controller's own time, but arm a "
                                   "disabled auto stop (SAT 0) with 3 s, the manual's initial setting; 0: never "
                                   "send AST")
    """Arming the watchdog: the controller stops X-rays by itself after this long without a command, so that
    a crashed or killed computer cannot leave them on (manual §10 1., A5 note 3, A11: ``AST n``, 1-60 s, 0
    disables it, refused while warming up or with X-rays on). The driver never disables it."""

    def tube(self) -> TubeModel:
        """The model-table entry with the overrides."""
        tube: TubeModel = self.table_entry()
        return tube

    def serial_settings(self) -> SerialSettings:
        """The line settings: what ``serial`` sets, the model's baud and ``timeout_s`` for the rest."""
        return self.serial.with_defaults(baudrate=self.tube().baudrate, timeout_s=self.timeout_s)


class HamamatsuSource(XRaySource):
    """A Hamamatsu microfocus source (L9181-02, L10711, L12721) on a serial line or URL.

    State machine as the vendor host code drives it: warm-up needed → ``WUP``; standby →
    ``XON``/``XOF``; overload → ``RST``; not ready → ``SNR`` says why (``not_ready_reason()``).
    ``read_state``, ``read_voltage_kv`` and ``read_current_ua`` share one ``SAR`` reply for
    ``readback_max_age_s``; any setter or action discards it (in state not-ready, ``read_state``
    adds an ``SNR`` and logs the cause when it changes). The device takes whole kV and µA:
    set-points are truncated (never rounded up, so its power never exceeds the power checked).
    Spot modes are the model's focus modes, selected by their ``CFS`` code. A refusal (``ERR 10 XON``,
    or a bare ``ERR`` from older dialects) is ``ErrorReply`` (the device's code, None for a bare ``ERR``)
    naming the command and the device's state. ``connect()`` sends ``TYP`` again once if a freshly powered
    controller answers it ``ERR 0 NOC``, then reads the auto-stop time (``SAT``, models that answer it) and
    starts the keepalive, the feed of ``XRaySource``'s watchdog machinery: every ``keepalive_s`` without
    another exchange, a ``SAR`` on the device clock (its reply serves the read-backs), so that the
    controller's automatic X-ray stop (its communication watchdog, always running) does not switch the beam
    off between the sequencer's requests. A keepalive that fails is logged (WARNING, once until it is
    answered again) and tried again; it never raises. ``close()`` stops it. Before X-rays go on (beam on,
    warm-up) the watchdog is armed: ``AST n`` when the controller's time differs from ``watchdog_s`` (by
    default only a disabled auto stop, set to 3 s); nothing disarms it (X-rays off, it has nothing to stop).

    ``connection`` is a serial port or pyserial URL; ``transport`` (instead) a ready one, for tests.
    """

    backend = "serial"
    Options = HamamatsuOptions

    def __init__(self, name: str, options: HamamatsuOptions | None = None, connection: str | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or HamamatsuOptions()
        self.tube = self.options.tube()
        super().__init__(name, self.tube.capabilities(), clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"{name}.connection: the hamamatsu driver needs a serial port or URL, "
                                         f"e.g. /dev/ttyUSB0 or socket://127.0.0.1:7001")
            transport = SerialTransport(connection, self.options.serial_settings(), name=f"source {name!r}")
        self._transport = transport
        self._status_cache: tuple[float, BulkStatus] | None = None
        self._cache_lock = threading.Lock()
        self._cache_epoch = 0  # advanced by every invalidation: a SAR reply asked for before it is not kept
        self._reported_reason: str | None = None
        self.identity = ""
        """The model name the device reported (``TYP``) at connect."""
        self.auto_stop_s: int | None = None
        """The controller's auto-stop time (s; 0: disabled) read with ``SAT`` at connect; None if not read."""

    def not_ready_reason(self) -> str:
        """Why the tube is not ready, from ``SNR``: interlock, preheat, board error, vacuum."""
        self._require_connected()
        return describe_not_ready(self._ask(SNR, parse_not_ready), self.tube.vacuum_in_snr)

    # -- exchanges -----------------------------------------------------------------------------------
    def _ask(self, command: bytes, parse: Callable[[bytes], T]) -> T:
        """One exchange through the transport; codec errors get this device's name."""
        self._exchange_started()
        reply = self._transport.query(command)[0]
        try:
            return parse(reply)
        except ProtocolError as error:
            raise self._named(error) from None

    def _act(self, command: bytes) -> None:
        """A setter or action, checked by its echo. An ERR says which state the device is in."""
        refused: ErrorReply | None = None
        try:
            self._ask(command, partial(parse_echo, command))
        except ErrorReply as error:
            refused = error
        finally:  # after the exchange: no SAR reply from before it (a keepalive's) serves a read after it
            self._invalidate()
        if refused is not None:
            state = self._status().state
            detail = f": {self.not_ready_reason()}" if state is SourceState.NOT_READY else ""
            raise reworded(refused, f"{refused}; the device is in state {state.value!r}{detail}") from None

    def _status(self) -> BulkStatus:
        """The last ``SAR`` reply (the driver's or the keepalive's), read again once older than
        ``readback_max_age_s``."""
        now = self.clock.monotonic()
        cached = self._status_cache
        if cached is not None and now - cached[0] < self.options.readback_max_age_s:
            return cached[1]
        epoch = self._cache_epoch
        status = self._ask(SAR, parse_status)
        self._keep(epoch, now, status)
        return status

    def _invalidate(self) -> None:
        """Discard the shared ``SAR`` reply, and any asked for before now and not yet kept."""
        with self._cache_lock:
            self._cache_epoch += 1
            self._status_cache = None

    def _keep(self, epoch: int, asked_t: float, status: BulkStatus) -> None:
        """Share ``status`` (asked for at ``asked_t``, when the cache was at ``epoch``) unless it was
        invalidated since."""
        with self._cache_lock:
            if epoch == self._cache_epoch:
                self._status_cache = (asked_t, status)

    # -- the watchdog: the automatic X-ray stop, fed by the keepalive -------------------------------------
    feeds_watchdog_while_connected = True  # the auto stop runs whenever the controller is on
    watchdog_feed_name = "keepalive"

    @property
    def watchdog_s(self) -> float | None:
        """The auto-stop time armed before X-rays go on (s): option ``watchdog_s``; unset, 3 s (the manual's
        initial setting) if the controller reported its auto stop disabled (``SAT 0``), else None (its own
        time is kept). None for option 0."""
        wanted = self.options.watchdog_s
        if wanted is None:
            return float(DEFAULT_AUTO_STOP_S) if self.auto_stop_s == 0 else None
        return float(wanted) or None

    @property
    def watchdog_feed_s(self) -> float:
        """``keepalive_s``."""
        return self.options.keepalive_s

    def _do_arm_watchdog(self, timeout_s: float) -> None:
        """``AST n`` unless the controller's auto-stop time (``SAT`` at connect, or the last ``AST``) is n
        already. The controller refuses it while warming up or with X-rays on (manual A11): ErrorReply."""
        seconds = int(timeout_s)
        if self.auto_stop_s == seconds:
            return
        self._act(encode_auto_stop(seconds))
        log.info("source %r: automatic X-ray stop set to %d s (was %s)", self.name, seconds,
                 "unknown" if self.auto_stop_s is None else f"{self.auto_stop_s} s")
        self.auto_stop_s = seconds

    def _do_feed_watchdog(self) -> None:
        """``SAR``; its reply serves the read-backs unless a command invalidated it meanwhile."""
        epoch, asked_t = self._cache_epoch, self.clock.monotonic()
        self._keep(epoch, asked_t, self._ask(SAR, parse_status))

    def _watchdog_link(self) -> contextlib.AbstractContextManager[Any]:
        return self._transport.transaction("SAR (keepalive)")  # none of ours gets in between

    def _watchdog_at_risk(self) -> str:
        auto_stop_s = DEFAULT_AUTO_STOP_S if self.auto_stop_s is None else self.auto_stop_s
        return f"the controller switches X-rays off after {auto_stop_s} s without a command"

    def _check_auto_stop(self) -> None:
        """Read the auto-stop time (``SAT``) if the model answers it; warn if the auto stop is disabled,
        or if the keepalive is off or slower than half the auto-stop time X-rays will run with (then the beam
        may drop)."""
        self.auto_stop_s = None
        if self.tube.auto_stop_query:
            try:
                self.auto_stop_s = self._ask(SAT, parse_auto_stop)
            except ErrorReply as error:
                log.warning("%s; the auto-stop time is unknown (%d s unless changed with AST)", error,
                            DEFAULT_AUTO_STOP_S)
        armed = self.watchdog_s
        if self.auto_stop_s == 0:
            remedy = (f"the driver sets it to {armed:g} s (AST) before X-rays go on (option watchdog_s)" if armed
                      else "watchdog_s = 0: the driver leaves it so (the manual: never 0 in normal use)")
            log.warning("source %r: SAT reports 0: the controller's automatic X-ray stop is disabled, a safety "
                        "feature: X-rays stay on if this computer stops or the cable breaks; %s", self.name, remedy)
            return
        auto_stop_s = int(armed) if armed else self.auto_stop_s or DEFAULT_AUTO_STOP_S
        origin = "watchdog_s" if armed else "SAT" if self.auto_stop_s else "the default; not read"
        keepalive_s = self.options.keepalive_s
        if keepalive_s == 0:
            log.warning("source %r: keepalive_s = 0: nothing is sent between requests, and the controller "
                        "switches X-rays off after %d s without a command (%s): a longer exposure, frame "
                        "average, move or pause drops the beam", self.name, auto_stop_s, origin)
        elif keepalive_s > auto_stop_s / 2:
            log.warning("source %r: keepalive_s = %g s is more than half the controller's auto-stop time, "
                        "%d s (%s): one late keepalive and X-rays switch off", self.name, keepalive_s,
                        auto_stop_s, origin)

    def _whole(self, value: float, field: str, unit: str) -> int:
        whole = math.floor(value + 1e-6)
        if whole != value:
            log.warning("source %r: %s=%g %s is sent as %d %s (the device takes whole %s)",
                        self.name, field, value, unit, whole, unit, unit)
        return whole

    # -- hooks ---------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        self._invalidate()
        try:
            self.identity = self._ask(TYP, parse_model_name)
        except ErrorReply as error:
            if error.code != NOT_A_COMMAND:
                raise
            # A controller answers the first command after power-on "ERR 0 NOC": a connection check, not a
            # fault (L9421-02T manual §10 2.; docs/protocols/hamamatsu-microfocus.md). The same TYP again
            # gets the real answer; a second NOC is an error (the device does not know TYP).
            log.info("source %r: TYP answered 'ERR 0 NOC' (a freshly powered controller): sending it again",
                     self.name)
            self.identity = self._ask(TYP, parse_model_name)
        if not self.identity.startswith(self.tube.name):
            log.warning("source %r: the device reports model %r, the options configure %r; the %r figures "
                        "(ranges, power limits) apply", self.name, self.identity, self.tube.name, self.tube.name)

    def _after_connect(self) -> None:
        """Adopt the device's set-points, read its auto-stop time (the keepalive starts after: connect())."""
        super()._after_connect()
        self._check_auto_stop()

    def _do_close(self) -> None:
        self._stop_feeding()
        self._invalidate()
        self._transport.close()

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        voltage_kv, current_ua = self._ask(SVI, parse_setpoints)
        code = self._ask(SFC, parse_focus)
        names = {mode.code: name for name, mode in self.tube.spot_modes.items()}
        if code not in names:
            raise self._error(ProtocolError, f"'SFC' reports focus mode {code}; the {self.tube.name} table "
                                             f"has codes {sorted(names)}")
        return voltage_kv, current_ua, names[code]

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._act(encode_voltage(self._whole(voltage_kv, "voltage_kv", "kV")))

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._act(encode_current(self._whole(current_ua, "current_ua", "µA")))

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        self._act(encode_focus(self.tube.spot_modes[spot_mode].code))

    def _do_beam_on(self) -> None:
        self._act(XON)

    def _do_beam_off(self) -> None:
        """``XOF``; an ERR while X-rays are off is the device saying so, and is not an error."""
        try:
            self._act(XOF)
        except ErrorReply:
            if self._status().state is SourceState.BEAM_ON:
                raise
            log.debug("source %r: XOF answered ERR with X-rays already off", self.name)

    def _do_warm_up(self) -> None:
        self._act(WUP)

    def _do_reset(self) -> None:
        """``RST``; the device refuses it outside overload (``ERR 10 RST``, L9421-02T manual A11), where
        there is nothing to clear: not an error."""
        try:
            self._act(RST)
        except ErrorReply:
            if self._status().state is SourceState.FAULT:
                raise
            log.debug("source %r: RST refused with no overload to clear", self.name)

    def _do_refresh(self) -> None:
        self._invalidate()

    def _do_read_state(self) -> SourceState:
        state = self._status().state
        reason = self.not_ready_reason() if state is SourceState.NOT_READY else None
        if reason and reason != self._reported_reason:
            log.warning("source %r: not ready: %s", self.name, reason)
        self._reported_reason = reason
        return state

    def _do_read_voltage_kv(self) -> float:
        return self._status().voltage_kv

    def _do_read_current_ua(self) -> float:
        return self._status().current_ua

    def _do_read_interlock_closed(self) -> bool:
        return not self._ask(SIN, parse_interlock_open)

    def _do_check(self) -> list[Finding]:
        """The model the device reports against the configured one, the auto-stop time, and why the tube is
        not ready (``SNR``, with the board error's meaning): a board error is an error, the rest warnings."""
        findings = super()._do_check()
        if not self.identity.startswith(self.tube.name):
            findings.append(Finding("warning", "model", f"{self.identity}: the options configure {self.tube.name}, "
                                                        f"whose figures (ranges, power limits) apply"))
        if self.auto_stop_s == 0:
            findings.append(Finding("warning", "auto_stop_s", "0: the controller's automatic X-ray stop is "
                                                              "disabled (a safety feature; AST n sets 1-60 s)"))
        if self._reported_reason:
            causes = self._ask(SNR, parse_not_ready)
            findings.append(Finding("error" if causes.board_error else "warning", "not_ready_reason",
                                    describe_not_ready(causes, self.tube.vacuum_in_snr)))
        return findings

    def _do_describe(self) -> dict[str, Any]:
        description = {"model": self.identity, **super()._do_describe()}
        if self.auto_stop_s is not None:
            description["auto_stop_s"] = self.auto_stop_s
        if self._reported_reason:
            description["not_ready_reason"] = self._reported_reason
        return description

