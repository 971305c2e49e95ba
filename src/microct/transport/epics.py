"""A small Channel Access layer on pyepics: a named set of PVs, connected together.

``ChannelAccess({"hv": "CT:XRAY:HV", ...})`` connects every PV with one time-out and
names every PV that did not connect; ``get`` reads the monitored value (or asks the
IOC), ``put(wait=True)`` waits on the put-callback (no polling), and a lost PV is a
CommunicationError naming it. pyepics reads the EPICS environment once, when its CA
context is created: an ``addr_list`` given here is put into the environment before
that, and ignored (with a warning) if the context already exists.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from microct.errors import CommunicationError, DeviceTimeoutError

log = logging.getLogger("microct.transport.epics")

PYEPICS_MAX_ARRAY_BYTES = 2**24
"""What pyepics sets EPICS_CA_MAX_ARRAY_BYTES to when it starts libca, if the environment has none."""
LINK_CHECK_S = 0.1
"""While waiting for a put-callback, how often to check that the channel is still connected (s)."""


def configure_environment(addr_list: str | None = None, auto_addr_list: bool | None = None,
                          max_array_bytes: int | None = None) -> None:
    """Set ``EPICS_CA_ADDR_LIST`` / ``EPICS_CA_AUTO_ADDR_LIST`` and raise ``EPICS_CA_MAX_ARRAY_BYTES``
    to at least ``max_array_bytes``, before pyepics creates its context (warns if it already has)."""
    wanted = {}
    if addr_list is not None:
        wanted["EPICS_CA_ADDR_LIST"] = addr_list
    if auto_addr_list is not None:
        wanted["EPICS_CA_AUTO_ADDR_LIST"] = "YES" if auto_addr_list else "NO"
    current = int(os.environ.get("EPICS_CA_MAX_ARRAY_BYTES", PYEPICS_MAX_ARRAY_BYTES))
    if max_array_bytes is not None and current < max_array_bytes:
        wanted["EPICS_CA_MAX_ARRAY_BYTES"] = str(max_array_bytes)
    if not wanted:
        return
    import epics.ca

    if epics.ca.libca is not None and epics.ca.current_context() is not None:  # (current_context() starts libca)
        if any(os.environ.get(key) != value for key, value in wanted.items()):
            log.warning("Channel Access already started with EPICS_CA_ADDR_LIST=%r, EPICS_CA_MAX_ARRAY_BYTES=%r; "
                        "%s not applied", os.environ.get("EPICS_CA_ADDR_LIST"),
                        os.environ.get("EPICS_CA_MAX_ARRAY_BYTES"), wanted)
        return
    os.environ.update(wanted)


def _forget_refused_read(pv: Any, error: Exception) -> None:
    """Undo pyepics' "get pending" mark of a read libca refused (pyepics 3.5: it marks the channel's get
    pending before asking libca, and keeps the mark when libca refuses, e.g. ECA_DISCONN as the circuit drops).
    Left, it makes every later read of the channel wait for a reply never asked for, and time out, even once
    the channel is back: the refusal takes its place, so the next read asks the IOC again."""
    import epics.ca

    entry = epics.ca.get_cache(pv.pvname)
    results = getattr(entry, "get_results", None)
    if entry is None or not isinstance(results, Mapping):
        return
    with entry.lock:
        for result in results.values():
            if result and result[0] is epics.ca.GET_PENDING:
                result[0] = error


class ChannelAccess:
    """PVs by key (``{"hv": "CT:XRAY:HV"}``); ``who`` starts every error message."""

    def __init__(self, names: Mapping[str, str], *, who: str = "epics", timeout_s: float = 2.0,
                 put_timeout_s: float = 5.0, monitored: tuple[str, ...] = ()) -> None:
        self.names = dict(names)
        self.who = who
        self.timeout_s = timeout_s
        self.put_timeout_s = put_timeout_s
        self.monitored = set(monitored)
        self._pvs: dict[str, Any] = {}
        self._changed = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect every PV; CommunicationError naming each one that did not connect in time."""
        import epics

        self.close()
        all_up = threading.Event()
        pending = set(self.names.values())
        lock = threading.Lock()

        def on_connection(pvname: str | None = None, conn: bool = False, **_: Any) -> None:
            if conn:
                with lock:
                    pending.discard(pvname)
                    if not pending:
                        all_up.set()
            else:
                log.warning("%s: PV %s disconnected", self.who, pvname)
            with self._changed:
                self._changed.notify_all()

        self._pvs = {key: epics.PV(name, auto_monitor=key in self.monitored, connection_callback=on_connection,
                                   callback=self.notify if key in self.monitored else None,
                                   connection_timeout=self.timeout_s)
                     for key, name in self.names.items()}
        if not pending or all_up.wait(self.timeout_s):
            return
        missing = sorted(name for key, name in self.names.items() if not self._pvs[key].connected)
        if not missing:
            return
        self.close()
        raise CommunicationError(f"{self.who}: {len(missing)} PV(s) did not connect within {self.timeout_s:g} s: "
                                 f"{', '.join(missing)} (check the names, the IOC and EPICS_CA_ADDR_LIST="
                                 f"{os.environ.get('EPICS_CA_ADDR_LIST', '')!r})")

    def close(self) -> None:
        pvs, self._pvs = self._pvs, {}
        for pv in pvs.values():
            try:
                pv.clear_callbacks()
                pv.disconnect()
            except Exception as error:  # noqa: BLE001 - closing must not fail
                log.debug("%s: disconnecting %s: %s", self.who, pv.pvname, error)

    def subscribe(self, key: str, callback: Callable[[Any, float], None]) -> None:
        """Call ``callback(value, timestamp)`` (in the CA thread) on every monitor update of a monitored PV."""
        if key not in self.monitored:
            raise ValueError(f"{key!r} is not monitored")
        self._pv(key).add_callback(lambda value=None, timestamp=None, **_: callback(value, timestamp))

    def notify(self, **_: Any) -> None:
        """Wake every ``wait_until`` to look again (monitor updates do this; a put-callback may too)."""
        with self._changed:
            self._changed.notify_all()

    def _pv(self, key: str) -> Any:
        pv = self._pvs.get(key)
        if pv is None:
            raise CommunicationError(f"{self.who}: PV {self.names.get(key, key)} is not connected (connect() first)")
        if not pv.connected:
            raise CommunicationError(f"{self.who}: PV {pv.pvname} is disconnected (IOC down or unreachable)")
        return pv

    @contextmanager
    def _channel_call(self, pv: Any, action: str) -> Iterator[None]:
        """Turn pyepics' failures on a channel lost under our feet into a CommunicationError naming the PV.

        A channel that drops between the ``connected`` check and the call makes pyepics raise its own
        ChannelAccessException, a CASeverityException (a libca call returning an error status, e.g.
        ECA_DISCONN "Virtual circuit disconnect": pyepics still reports the PV connected while libca has
        marked its circuit down), or a bare KeyError (field type -1 looked up in its type map). A read libca
        refused leaves no request pending behind it (``_forget_refused_read``).
        """
        import epics.ca

        try:
            yield
        except (epics.ca.ChannelAccessException, epics.ca.ChannelAccessGetFailure, epics.ca.CASeverityException,
                KeyError) as error:
            if isinstance(error, epics.ca.CASeverityException) and action == "reading":
                _forget_refused_read(pv, error)
            state = "connected" if pv.connected else "disconnected"
            raise CommunicationError(f"{self.who}: {action} PV {pv.pvname} failed ({state}): {error!r}") from None

    # -- access ----------------------------------------------------------------------------------
    def get(self, key: str, *, as_string: bool = False, fresh: bool = False) -> Any:
        """The PV's value: the last monitor update if monitored (unless ``fresh``), else a read from the IOC."""
        pv = self._pv(key)
        use_monitor = key in self.monitored and not fresh
        with self._channel_call(pv, "reading"):
            value = pv.get(as_string=as_string, use_monitor=use_monitor, timeout=self.timeout_s)
        if value is None:
            if not pv.connected:
                raise CommunicationError(f"{self.who}: PV {pv.pvname} disconnected while reading it")
            raise DeviceTimeoutError(f"{self.who}: reading PV {pv.pvname}: no reply within {self.timeout_s:g} s")
        return value

    def get_fresh(self, *keys: str) -> list[Any]:
        """Read several PVs from the IOC in one round trip: every request is sent, then every reply
        awaited (CommunicationError / DeviceTimeoutError naming the PV, as ``get``)."""
        import epics.ca

        epics.ca.use_initial_context()  # the calls below are pyepics' low-level ones: this thread needs the context
        pvs = [self._pv(key) for key in keys]
        for pv in pvs:
            with self._channel_call(pv, "reading"):
                epics.ca.get(pv.chid, wait=False)
        values = []
        for pv in pvs:
            with self._channel_call(pv, "reading"):
                value = epics.ca.get_complete(pv.chid, timeout=self.timeout_s)
            if value is None:
                if not pv.connected:
                    raise CommunicationError(f"{self.who}: PV {pv.pvname} disconnected while reading it")
                raise DeviceTimeoutError(f"{self.who}: reading PV {pv.pvname}: no reply within {self.timeout_s:g} s")
            values.append(value)
        return values

    def put(self, key: str, value: Any, *, wait: bool = True, timeout_s: float | None = None,
            callback: Callable[[], None] | None = None) -> None:
        """Write; with ``wait`` block until the IOC's put-callback (DeviceTimeoutError naming the PV).

        Without ``wait`` but with ``callback``: a put-callback write that returns at once and calls
        ``callback()`` when the IOC completes it (e.g. a long busy record).
        """
        pv = self._pv(key)
        if not wait and callback is None:
            with self._channel_call(pv, f"writing {value!r} to"):
                pv.put(value, wait=False)
            return
        done = threading.Event()

        def completed(**_: Any) -> None:
            done.set()
            if callback is not None:
                callback()

        with self._channel_call(pv, f"writing {value!r} to"):
            pv.put(value, wait=False, callback=completed, use_complete=True)
        if not wait:
            return
        timeout = self.put_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while not done.wait(min(max(deadline - time.monotonic(), 0.0), LINK_CHECK_S)):
            if not pv.connected:
                raise CommunicationError(f"{self.who}: PV {pv.pvname} disconnected while writing {value!r} to it")
            if time.monotonic() < deadline:
                continue
            raise DeviceTimeoutError(f"{self.who}: writing {value!r} to PV {pv.pvname}: no put-completion "
                                     f"within {timeout:g} s")

    def wait_until(self, key: str, predicate: Callable[[Any], bool], timeout_s: float) -> Any:
        """Block (on monitor updates, not polling) until ``predicate(value)``; DeviceTimeoutError otherwise."""
        if key not in self.monitored:
            raise ValueError(f"{key!r} is not monitored")
        with self._changed:
            ok = self._changed.wait_for(lambda: predicate(self.get(key)), timeout_s)
        if not ok:
            raise DeviceTimeoutError(f"{self.who}: PV {self.names[key]} is {self.get(key)!r}, still not the "
                                     f"awaited value after {timeout_s:g} s")
        return self.get(key)
