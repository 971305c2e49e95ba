"""A Channel Access IOC (caproto) serving the default X-ray source PV scheme, driving a SimulatedSource.

PV names, enum strings and values come from the driver's package (``microct.drivers.epics_source``:
``models.EpicsPVNames``, ``models.DEFAULT_STATES``, ``codec``), so driver and IOC cannot drift apart;
the scheme is described in docs/protocols/epics-xray-source.md.

The tube model is ``SimulatedSource`` (real clock): puts call its public methods, and
a 10 Hz scan copies its read-backs into the ``*_RBV`` PVs (every action also copies
them at once, so a put-callback completes with the read-backs already updated).
``start_ioc(prefix)`` runs it in a background thread on 127.0.0.1 and a free port.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube plays the device ``role``
(default "source") and takes its arcs (``State_RBV`` Fault, ``Fault_RBV`` "tube overload" until
``FaultReset``) and interlock openings (``Interlock_RBV`` Open), at their ``at_s`` time or when a
detector simulator on the same schedule offers it an exposure. They show at the next refresh (10 Hz);
an IOC serving a panel as well refreshes the tube before it publishes each frame (``epics_beamline``).
A ``reply_timeout`` fault is a read of ``State_RBV`` or ``Interlock_RBV`` that the IOC answers
``reply_late_s`` late (default ``REPLY_LATE_S``, longer than Channel Access clients wait): the client
times out, as on an IOC whose scan thread is stuck. A ``disconnect`` fault is such a read that the IOC
answers by closing every client circuit first (``IocHandle.drop_clients``: a network glitch; libca
reconnects by itself, within ~10 s), so the link drops at a request, as on the other links, not at some
moment of a timer. A garbled reply is not played (ConfigurationError): CA is typed.

A silent device (the fault contracts' ``mute``, ``microct.testing.contracts``): every PV group of the
simulated IOCs has a ``Silence``; muted, the IOC drops each write to the group's PVs (a put-callback never
completes), holds each read of them until the device speaks again (the client's read times out, as for a
reply_timeout; the late answer finds no one waiting) and posts no update. Only that group's requests wait:
the client's circuit goes on serving the other PVs of the IOC. ``XRaySourceIOC.fault_hook()`` is the tube's
hook for ``SourceFaultContract``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import caproto as ca
import caproto.server.common as caproto_server_common
from caproto import ChannelType
from caproto.asyncio.server import Context, VirtualCircuit
from caproto.server import PVGroup, pvproperty

from microct.clock import Clock
from microct.devices.source import SourceState, target_power_w
from microct.drivers.epics_source import codec
from microct.drivers.epics_source.models import DEFAULT_STATES, EpicsPVNames
from microct.errors import ConfigurationError
from microct.simulators.faults import REQUEST_KINDS, DeviceFaults, FaultSchedule
from microct.simulators.serving import PORTS, port_problem
from microct.simulators.source import SimulatedSource, SimulatedSourceHook, SimulatedSourceOptions

log = logging.getLogger("microct.simulators.epics_ioc")

PV = EpicsPVNames()
"""The PV names served (after the prefix): the driver's default scheme."""
SCAN_PERIOD_S = 0.1
REPLY_LATE_S = 10.0
"""How late the IOC answers a read hit by a ``reply_timeout`` fault (s)."""
MONITOR_BATCH_S = 0.001
"""caproto's server holds monitor updates for up to its high-load window (10 ms by default, read from
CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC when caproto is imported); a real IOC sends them at once. The
simulated IOCs use 1 ms (measured with caproto 1.3.0: back-to-back updates came ~11 ms apart at the
default, ~1.7 ms apart at 0.001), unless that variable is set."""
if "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC" not in os.environ:
    caproto_server_common.HIGH_LOAD_TIMEOUT = MONITOR_BATCH_S  # a module global, read at each use
SILENCE_POLL_S = 0.005
"""How often a held read, or a paused update, looks whether its device speaks again (s)."""


class Silence:
    """The device behind a PV group gone silent (the fault contracts' ``mute``): requests to its PVs are
    neither carried out nor answered. While ``muted``, the IOC (``run_ioc_in_thread(..., silences=...)``)
    drops every Channel Access write to them (never carried out: a put-callback never completes, a plain
    put is lost), holds every read until ``mute(False)`` (the client times out; the answer, with the
    value of then, comes late to a client that stopped waiting: pyepics needs it, a channel whose read is
    never answered is stuck), and the group's own updates wait in ``heard()`` (no monitor, no move end, no
    put completion; a subscription made meanwhile still gets its first value). Thread-safe: ``mute`` is
    called from any thread."""

    def __init__(self) -> None:
        self.muted = False

    def mute(self, muted: bool = True) -> None:
        self.muted = muted

    async def heard(self) -> None:
        """Return once the device speaks (at once unless muted)."""
        while self.muted:
            await asyncio.sleep(SILENCE_POLL_S)


def silences_of(*groups: PVGroup) -> dict[str, Silence]:
    """PV name → the ``silence`` of the group serving it, for ``run_ioc_in_thread(..., silences=...)``."""
    return {name: group.silence for group in groups for name in group.pvdb}


def make_ioc_class(modes: tuple[str, ...]) -> type[PVGroup]:
    """A PVGroup class with ``FocusMode`` enum strings ``modes`` (the tube's spot modes, as
    ``codec.focus_value`` words them); PV names and enums are the driver's defaults (``epics_source``)."""

    def enum(name: str, value: str, strings: tuple[str, ...], read_only: bool = False, doc: str = "") -> pvproperty:
        return pvproperty(name=name, value=value, enum_strings=strings, dtype=ChannelType.ENUM, read_only=read_only,
                          doc=doc)

    states = codec.state_strings(DEFAULT_STATES)
    on, off = codec.OFF_ON[codec.BEAM_ON], codec.OFF_ON[codec.BEAM_OFF]
    closed, open_ = codec.INTERLOCK_STRINGS[codec.INTERLOCK_CLOSED], codec.INTERLOCK_STRINGS[1 - codec.INTERLOCK_CLOSED]

    class XRaySourceIOC(PVGroup):
        voltage = pvproperty(name=PV.voltage, value=0.0, units="kV", doc="voltage set-point")
        voltage_rbv = pvproperty(name=PV.voltage_rbv, value=0.0, units="kV", read_only=True)
        current = pvproperty(name=PV.current, value=0.0, units="uA", doc="current set-point")
        current_rbv = pvproperty(name=PV.current_rbv, value=0.0, units="uA", read_only=True)
        focus = enum(PV.focus, modes[0], modes)
        focus_rbv = enum(PV.focus_rbv, modes[0], modes, read_only=True)
        xray_on = enum(PV.xray_on, off, codec.OFF_ON)
        xray_on_rbv = enum(PV.xray_on_rbv, off, codec.OFF_ON, read_only=True)
        state = enum(PV.state, states[0], states, read_only=True)
        interlock = enum(PV.interlock, closed, codec.INTERLOCK_STRINGS, read_only=True)
        power = pvproperty(name=PV.power, value=0.0, units="W", read_only=True)
        fault = pvproperty(name=PV.fault, value="", dtype=ChannelType.STRING, read_only=True)
        fault_reset = pvproperty(name=PV.fault_reset, value=0)
        warm_up = pvproperty(name=PV.warm_up, value=0,
                             doc="busy: put 1 starts the warm-up; the put completes when it is done")

        def __init__(self, *args, source: SimulatedSource, requests: DeviceFaults | None = None,
                     reply_late_s: float = REPLY_LATE_S, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.source = source
            self.requests = requests
            self.reply_late_s = reply_late_s
            self.drop_link: Callable[[], None] | None = None
            """Closes every client circuit of the IOC serving this group (``IocHandle.drop_clients``, set
            when it is served): how a disconnect fault is played."""
            self.silence = Silence()
            self._fault = ""
            self._value_of_mode = {name: codec.focus_value(name, mode)
                                   for name, mode in source.capabilities.spot_modes.items()}
            self._mode_of_value = codec.spot_modes_by_value(source.capabilities.spot_modes)

        def fault_hook(self) -> SimulatedSourceHook:
            """The source fault contract's hook on this tube: ``mute`` silences its PVs (``Silence``)."""
            return self.source.fault_hook(mute=self.silence.mute)

        async def answer_read(self, instance) -> None:
            """A client reads ``instance``: answered now, ``reply_late_s`` late if a reply_timeout hits, or
            never if a disconnect hits: every client circuit closes before the answer could go."""
            if self.requests is None:
                return
            kinds = {"reply_timeout", "disconnect"} if self.drop_link is not None else {"reply_timeout"}
            fault = self.requests.take_now(kinds, f"read of {instance.pvname}")
            if fault is None:
                return
            if fault.kind == "disconnect" and self.drop_link is not None:
                self.drop_link()
            else:
                await asyncio.sleep(self.reply_late_s)

        async def refresh(self) -> None:
            """Copy the SimulatedSource's read-backs into the *_RBV PVs (not while the tube is silent)."""
            if self.silence.muted:
                return
            src = self.source
            state = src.read_state()
            kv, ua = src.read_voltage_kv(), src.read_current_ua()
            if state is SourceState.FAULT and not self._fault:
                self._fault = "tube overload"
            elif state is not SourceState.FAULT:
                self._fault = ""
            await self.voltage_rbv.write(kv)
            await self.current_rbv.write(ua)
            await self.power.write(target_power_w(kv, ua))
            for pv, value in ((self.state, codec.STATE_STRINGS[state]),
                              (self.xray_on_rbv, on if state is SourceState.BEAM_ON else off),
                              (self.interlock, closed if src.read_interlock_closed() else open_),
                              (self.focus_rbv, self._value_of_mode[src.spot_mode]), (self.fault, self._fault)):
                if pv.value != value:
                    await pv.write(value)

        @state.startup
        async def state(self, instance, async_lib) -> None:
            await self.voltage.write(self.source.voltage_kv, verify_value=False)
            await self.current.write(self.source.current_ua, verify_value=False)
            await self.focus.write(self._value_of_mode[self.source.spot_mode], verify_value=False)
            await self.refresh()

        @state.getter
        async def state(self, instance) -> None:
            await self.answer_read(instance)

        @interlock.getter
        async def interlock(self, instance) -> None:
            await self.answer_read(instance)

        @voltage_rbv.scan(period=SCAN_PERIOD_S)
        async def voltage_rbv(self, instance, async_lib) -> None:
            await self.refresh()

        @voltage.putter
        async def voltage(self, instance, value):
            self.source.configure(voltage_kv=value)
            await self.refresh()
            return value

        @current.putter
        async def current(self, instance, value):
            self.source.configure(current_ua=value)
            await self.refresh()
            return value

        @focus.putter
        async def focus(self, instance, value):
            self.source.configure(spot_mode=self._mode_of_value[value])
            await self.refresh()
            return value

        @xray_on.putter
        async def xray_on(self, instance, value):
            try:
                self.source.beam_on() if value == on else self.source.beam_off()
            finally:
                await self.refresh()
            return value

        @fault_reset.putter
        async def fault_reset(self, instance, value):
            if value:  # codec.FAULT_RESET (any non-zero value acts)
                self.source.reset()
                await self.refresh()
            return 0

        @warm_up.putter
        async def warm_up(self, instance, value):
            if not value:  # codec.WARM_UP_START (any non-zero value) starts it
                return 0
            self.source.warm_up()
            await self.refresh()
            while self.source.read_state() is SourceState.WARMING_UP:
                await asyncio.sleep(0.02)
            await self.silence.heard()  # a silent tube completes no put
            await self.refresh()
            return 0

    return XRaySourceIOC


_READS = (ca.ReadNotifyRequest, ca.ReadRequest)
_WRITES = (ca.WriteNotifyRequest, ca.WriteRequest)


class _Circuit(VirtualCircuit):
    """A client's circuit that plays silent devices (``Silence``): a write to a muted PV is dropped, a read
    of one is answered from a task of its own once the device speaks, so the circuit goes on serving the
    client's other requests (caproto otherwise answers a circuit's requests one after the other)."""

    context: _Context

    async def _command_queue_iteration(self, command):
        if isinstance(command, _READS + _WRITES):
            silence = self.context.silence_for(self, command)
            if silence is not None and silence.muted:
                if isinstance(command, _READS):
                    self.tasks.create(self._answer_when_heard(silence, command))
                return None  # a write: neither carried out nor answered
        return await super()._command_queue_iteration(command)

    async def _answer_when_heard(self, silence: Silence, command) -> None:
        await silence.heard()
        try:
            response = await super()._command_queue_iteration(command)
            if response is not None:
                await self.send(*response)
        except Exception as error:  # noqa: BLE001 - the client left meanwhile: no one to answer
            log.debug("a held read was not answered: %r", error)


class _Context(Context):
    """caproto's asyncio server on a chosen port, TCP_NODELAY on accepted connections (caproto 1.3.0 does
    not set it: a put-completion and a monitor update sent close together then wait for the client's
    delayed ACK, and ``caput(wait=True)`` took 22 ms instead of 0.35 ms), closing its clients on stop, and
    silent devices (``silences``: PV name → Silence, played by ``_Circuit``). ``exact``: serve on ``port``
    or fail (OSError from its bind); caproto would otherwise try up to 100 random ports after it."""

    CircuitClass = _Circuit

    def __init__(self, pvdb, interfaces, port: int, silences: Mapping[str, Silence] | None = None,
                 exact: bool = False) -> None:
        super().__init__(pvdb, interfaces)
        self.ca_server_port = port
        self.exact = exact
        self.client_writers: list[asyncio.StreamWriter] = []
        self._silence_by_entry = {id(pvdb[name]): silence for name, silence in (silences or {}).items()}

    def silence_for(self, circuit: VirtualCircuit, command) -> Silence | None:
        """The Silence of the PV a read or write ``command`` is for (None: the PV has none, or is unknown)."""
        if not self._silence_by_entry:
            return None
        try:
            _, entry = circuit._get_db_entry_from_command(command)
        except Exception:  # noqa: BLE001 - an unknown channel: caproto answers it as usual
            return None
        return self._silence_by_entry.get(id(entry))

    async def _bind_tcp_sockets_with_consistent_port_number(self, make_socket):
        if not self.exact:
            return await super()._bind_tcp_sockets_with_consistent_port_number(make_socket)
        sockets: dict = {}
        try:
            for interface in self.interfaces:
                sockets[interface] = await make_socket(interface, self.ca_server_port)
        except OSError:
            for sock in sockets.values():
                sock.close()
            raise
        return self.ca_server_port, sockets

    async def tcp_handler(self, client, addr):
        sock = client.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_writers.append(client.writer)
        return await super().tcp_handler(client, addr)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (Channel Access uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no port free for both TCP and UDP")


TUBE_PLAYS = ("reply_timeout", "disconnect")
"""The request faults the tube IOC plays (on its reads of State_RBV and Interlock_RBV)."""


def refuse_request_faults(faults: FaultSchedule | None, *devices: str, played: tuple[str, ...] = ()) -> None:
    """ConfigurationError if ``faults`` holds request faults (reply time-out, garbled reply, disconnect) for
    ``devices`` other than the kinds the IOC ``played``: the simulated IOCs play physics and frame faults,
    not Channel Access link faults (the tube IOC plays a late reply)."""
    request = [f"{f.kind} on {f.device}" for f in (faults.faults if faults else ()) if f.kind in REQUEST_KINDS
               and f.kind not in played and f.device in devices]
    if request:
        raise ConfigurationError(f"the simulated IOCs do not play these request faults over Channel Access "
                                 f"({', '.join(request)}); stop an IOC, or drop its clients, to lose its link")


def build(prefix: str, options: SimulatedSourceOptions | None = None, faults: FaultSchedule | None = None,
          role: str = "source", reply_late_s: float = REPLY_LATE_S) -> tuple[SimulatedSource, PVGroup]:
    """The tube model (joining ``faults`` as ``role``) and its PV group (not served yet: serve it with
    ``run_ioc_in_thread(..., faults=faults)`` and set its ``drop_link`` to the handle's ``drop_clients``);
    ConfigurationError for request faults other than reply_timeout and disconnect (``refuse_request_faults``)."""
    refuse_request_faults(faults, role, played=TUBE_PLAYS)
    source = SimulatedSource(role, options or SimulatedSourceOptions(), clock=Clock(), faults=faults)
    source.connect()
    requests = faults.device(role) if faults is not None else None
    modes = tuple(codec.focus_value(name, mode) for name, mode in source.capabilities.spot_modes.items())
    return source, make_ioc_class(modes)(
        prefix=prefix, source=source, requests=requests, reply_late_s=reply_late_s)


@dataclass
class IocHandle:
    """A running IOC: its TCP/UDP ``port``; ``stop()`` ends it and drops its clients."""

    port: int
    prefix: str
    _loop: asyncio.AbstractEventLoop
    _task: asyncio.Task
    _thread: threading.Thread
    _context: _Context
    ioc: PVGroup | None = None
    """The PV group served, where one is (for tests: its fault hook, counters)."""

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return

        def cancel() -> None:
            self._close_clients()
            self._task.cancel()

        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout_s)

    def drop_clients(self) -> None:
        """A network glitch: close every client's circuit; the IOC keeps serving, clients reconnect. From the
        IOC's own thread (a PV's getter or putter) at once, before the request is answered; from another
        thread, as soon as the IOC's loop gets to it."""
        if threading.current_thread() is self._thread:
            self._close_clients()
        else:
            self._loop.call_soon_threadsafe(self._close_clients)

    def _close_clients(self) -> None:
        writers, self._context.client_writers = self._context.client_writers, []
        for writer in writers:
            writer.close()


def run_ioc_in_thread(pvdb: dict, name: str, port: int = 0, timeout_s: float = 5.0,
                      faults: FaultSchedule | None = None, silences: Mapping[str, Silence] | None = None
                      ) -> IocHandle:
    """Serve ``pvdb`` on 127.0.0.1:``port`` (0: a free one) from a daemon thread; RuntimeError naming
    ``name`` if it has not started within ``timeout_s``; ValueError for a port out of range, OSError (its
    errno kept) saying why a port asked for cannot be served (in use, privileged): the IOC serves on exactly
    that port or not at all. The IOC's calls of the models behind its PVs are physics, quiet in ``faults``
    (the request faults are the IOC's to play). ``silences`` (PV name → Silence, ``silences_of``) lets
    devices go silent."""
    if port not in PORTS:
        raise ValueError(f"port {port}: not a port number; give 0 (a free port) to 65535")
    asked, port = port, port or free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def main() -> None:
        holder["task"] = asyncio.current_task()
        # made in its loop (caproto needs it)
        holder["context"] = context = _Context(pvdb, ["127.0.0.1"], port, silences, exact=bool(asked))

        async def hook(async_lib) -> None:
            started.set()

        await context.run(startup_hook=hook)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            with faults.quiet() if faults is not None else contextlib.nullcontext():
                loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except OSError as error:
            if started.is_set():
                log.exception("EPICS IOC %r stopped on an error", name)
            else:  # its port: for the caller to report
                holder["error"] = error
        except Exception:
            log.exception("EPICS IOC %r stopped on an error", name)
        finally:
            started.set()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name=f"epics-ioc {name}", daemon=True)
    thread.start()
    ready = started.wait(timeout_s)
    error = holder.get("error")  # set before ``started``
    if isinstance(error, OSError):
        thread.join(timeout_s)
        raise OSError(error.errno, port_problem(port, error)) from None
    if not ready or "task" not in holder or not thread.is_alive():
        raise RuntimeError(f"EPICS IOC {name!r} did not start within {timeout_s} s")
    handle = IocHandle(holder["context"].port, name, loop, holder["task"], thread, holder["context"])
    if asked and handle.port != asked:  # never served elsewhere than asked (the _Context binds exactly)
        handle.stop()
        raise OSError(errno.EADDRINUSE, port_problem(asked, OSError(errno.EADDRINUSE, "in use")))
    return handle


def start_ioc(prefix: str = "CT:XRAY:", port: int = 0, options: SimulatedSourceOptions | None = None,
              timeout_s: float = 5.0, faults: FaultSchedule | None = None,
              reply_late_s: float = REPLY_LATE_S) -> tuple[IocHandle, SimulatedSource]:
    """Run the IOC in a daemon thread on 127.0.0.1 (``port`` 0: a free one), playing the source faults of
    ``faults``; returns (handle, tube). ``handle.ioc.fault_hook()``: the tube's SourceHook."""
    source, ioc = build(prefix, options, faults, reply_late_s=reply_late_s)
    handle = run_ioc_in_thread(ioc.pvdb, prefix, port, timeout_s, faults, silences_of(ioc))
    handle.ioc = ioc
    ioc.drop_link = handle.drop_clients
    return handle, source
