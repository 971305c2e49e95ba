"""A Channel Access IOC (caproto) serving the default X-ray source PV scheme, driving a SimulatedSource.

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
times out, as on an IOC whose scan thread is stuck. Other request faults are not played over Channel
Access (ConfigurationError): CA is typed, so there is no garbled reply, and a lost link is the IOC's
circuits closing (``IocHandle.drop_clients``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass

import caproto.server.common as caproto_server_common
from caproto import ChannelType
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty
from microct.clock import Clock
from microct.devices.source import SourceState, target_power_w
from microct.errors import ConfigurationError
from microct.simulators.faults import REQUEST_KINDS, DeviceFaults, FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions

log = logging.getLogger("microct.simulators.epics_ioc")

STATE_STRINGS = ("Warm-up needed", "Warming up", "Standby", "On", "Fault", "Not ready")
"""``State_RBV`` enum strings, in the order of the sheet's table."""
STATE_INDEX = {SourceState.WARMUP_NEEDED: 0, SourceState.WARMING_UP: 1, SourceState.STANDBY: 2,
               SourceState.BEAM_ON: 3, SourceState.FAULT: 4, SourceState.NOT_READY: 5}
SCAN_PERIOD_S = 0.1
REPLY_LATE_S = 10.0
"""How late the IOC answers a read hit by a ``reply_timeout`` fault (s)."""
MONITOR_BATCH_S = 0.001
"""caproto's server holds monitor updates for up to its high-load window (10 ms by default, read from
CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC when caproto is imported); a real IOC sends them at once. The
simulated IOCs use 1 ms (shared/notes/measured-on-this-machine.md), unless that variable is set."""
if "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC" not in os.environ:
    caproto_server_common.HIGH_LOAD_TIMEOUT = MONITOR_BATCH_S  # a module global, read at each use


def make_ioc_class(modes: tuple[str, ...]) -> type[PVGroup]:
    """A PVGroup class with ``FocusMode`` enum strings ``modes`` (the tube's spot modes)."""

    def enum(value: str, strings: tuple[str, ...], read_only: bool = False, doc: str = "") -> pvproperty:
        return pvproperty(value=value, enum_strings=strings, dtype=ChannelType.ENUM, read_only=read_only, doc=doc)

    class XRaySourceIOC(PVGroup):
        HV = pvproperty(value=0.0, units="kV", doc="voltage set-point")
        HV_RBV = pvproperty(value=0.0, units="kV", read_only=True)
        Current = pvproperty(value=0.0, units="uA", doc="current set-point")
        Current_RBV = pvproperty(value=0.0, units="uA", read_only=True)
        FocusMode = enum(modes[0], modes)
        FocusMode_RBV = enum(modes[0], modes, read_only=True)
        XrayOn = enum("Off", ("Off", "On"))
        XrayOn_RBV = enum("Off", ("Off", "On"), read_only=True)
        State_RBV = enum(STATE_STRINGS[0], STATE_STRINGS, read_only=True)
        Interlock_RBV = enum("Closed", ("Closed", "Open"), read_only=True)
        Power_RBV = pvproperty(value=0.0, units="W", read_only=True)
        Fault_RBV = pvproperty(value="", dtype=ChannelType.STRING, read_only=True)
        FaultReset = pvproperty(value=0)
        WarmUp = pvproperty(value=0, doc="busy: put 1 starts the warm-up; the put completes when it is done")

        def __init__(self, *args, source: SimulatedSource, requests: DeviceFaults | None = None,
                     reply_late_s: float = REPLY_LATE_S, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.source = source
            self.requests = requests
            self.reply_late_s = reply_late_s
            self._fault = ""

        async def answer_read(self, instance) -> None:
            """A client reads ``instance``: answered now, or ``reply_late_s`` late if a reply_timeout hits."""
            if self.requests is not None and self.requests.take_now({"reply_timeout"}, f"read of {instance.pvname}"):
                await asyncio.sleep(self.reply_late_s)

        async def refresh(self) -> None:
            """Copy the SimulatedSource's read-backs into the *_RBV PVs."""
            src = self.source
            state = src.read_state()
            kv, ua = src.read_voltage_kv(), src.read_current_ua()
            if state is SourceState.FAULT and not self._fault:
                self._fault = "tube overload"
            elif state is not SourceState.FAULT:
                self._fault = ""
            await self.HV_RBV.write(kv)
            await self.Current_RBV.write(ua)
            await self.Power_RBV.write(target_power_w(kv, ua))
            for pv, value in ((self.State_RBV, STATE_STRINGS[STATE_INDEX[state]]),
                              (self.XrayOn_RBV, "On" if state is SourceState.BEAM_ON else "Off"),
                              (self.Interlock_RBV, "Closed" if src.read_interlock_closed() else "Open"),
                              (self.FocusMode_RBV, src.spot_mode), (self.Fault_RBV, self._fault)):
                if pv.value != value:
                    await pv.write(value)

        @State_RBV.startup
        async def State_RBV(self, instance, async_lib) -> None:
            await self.HV.write(self.source.voltage_kv, verify_value=False)
            await self.Current.write(self.source.current_ua, verify_value=False)
            await self.FocusMode.write(self.source.spot_mode, verify_value=False)
            await self.refresh()

        @State_RBV.getter
        async def State_RBV(self, instance) -> None:
            await self.answer_read(instance)

        @Interlock_RBV.getter
        async def Interlock_RBV(self, instance) -> None:
            await self.answer_read(instance)

        @HV_RBV.scan(period=SCAN_PERIOD_S)
        async def HV_RBV(self, instance, async_lib) -> None:
            await self.refresh()

        @HV.putter
        async def HV(self, instance, value):
            self.source.configure(voltage_kv=value)
            await self.refresh()
            return value

        @Current.putter
        async def Current(self, instance, value):
            self.source.configure(current_ua=value)
            await self.refresh()
            return value

        @FocusMode.putter
        async def FocusMode(self, instance, value):
            self.source.configure(spot_mode=value)
            await self.refresh()
            return value

        @XrayOn.putter
        async def XrayOn(self, instance, value):
            try:
                self.source.beam_on() if value == "On" else self.source.beam_off()
            finally:
                await self.refresh()
            return value

        @FaultReset.putter
        async def FaultReset(self, instance, value):
            if value:
                self.source.reset()
                await self.refresh()
            return 0

        @WarmUp.putter
        async def WarmUp(self, instance, value):
            if not value:
                return 0
            self.source.warm_up()
            await self.refresh()
            while self.source.read_state() is SourceState.WARMING_UP:
                await asyncio.sleep(0.02)
            await self.refresh()
            return 0

    return XRaySourceIOC


class _Context(Context):
    """caproto's asyncio server on a chosen port, TCP_NODELAY on accepted connections
    (see shared/notes/measured-on-this-machine.md), and closing its clients on stop."""

    def __init__(self, pvdb, interfaces, port: int) -> None:
        super().__init__(pvdb, interfaces)
        self.ca_server_port = port
        self.client_writers: list[asyncio.StreamWriter] = []

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
    ``run_ioc_in_thread(..., faults=faults)``); ConfigurationError for request faults other than
    reply_timeout (``refuse_request_faults``)."""
    refuse_request_faults(faults, role, played=("reply_timeout",))
    source = SimulatedSource(role, options or SimulatedSourceOptions(), clock=Clock(), faults=faults)
    source.connect()
    requests = faults.device(role) if faults is not None else None
    return source, make_ioc_class(tuple(source.capabilities.spot_modes))(
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

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return

        def cancel() -> None:
            self._close_clients()
            self._task.cancel()

        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout_s)

    def drop_clients(self) -> None:
        """A network glitch: close every client's circuit; the IOC keeps serving, clients reconnect."""
        self._loop.call_soon_threadsafe(self._close_clients)

    def _close_clients(self) -> None:
        writers, self._context.client_writers = self._context.client_writers, []
        for writer in writers:
            writer.close()


def run_ioc_in_thread(pvdb: dict, name: str, port: int = 0, timeout_s: float = 5.0,
                      faults: FaultSchedule | None = None) -> IocHandle:
    """Serve ``pvdb`` on 127.0.0.1:``port`` (0: a free one) from a daemon thread; RuntimeError naming
    ``name`` if it has not started within ``timeout_s``. The IOC's calls of the models behind its PVs
    are physics, quiet in ``faults`` (the request faults are the IOC's to play)."""
    port = port or free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def main() -> None:
        holder["task"] = asyncio.current_task()
        holder["context"] = context = _Context(pvdb, ["127.0.0.1"], port)  # in its loop (caproto needs it)

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
    if not started.wait(timeout_s) or "task" not in holder or not thread.is_alive():
        raise RuntimeError(f"EPICS IOC {name!r} did not start within {timeout_s} s")
    return IocHandle(holder["context"].port, name, loop, holder["task"], thread, holder["context"])


def start_ioc(prefix: str = "CT:XRAY:", port: int = 0, options: SimulatedSourceOptions | None = None,
              timeout_s: float = 5.0, faults: FaultSchedule | None = None,
              reply_late_s: float = REPLY_LATE_S) -> tuple[IocHandle, SimulatedSource]:
    """Run the IOC in a daemon thread on 127.0.0.1 (``port`` 0: a free one), playing the source faults of
    ``faults``; returns (handle, tube)."""
    source, ioc = build(prefix, options, faults, reply_late_s=reply_late_s)
    return run_ioc_in_thread(ioc.pvdb, prefix, port, timeout_s, faults), source
